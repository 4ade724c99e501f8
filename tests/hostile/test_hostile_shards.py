"""Hostile shard folders: shards swapped, copied from another folder or cut short, and a folder
without its meta.npz. Each is refused when read, naming the file at fault and how to fix it (run the
same embed command again), through the CLI (exit code and message), ``load_arrays`` and
``FeatureShards``; and the same embed command repairs the folder, giving the original scores."""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ood_core.cli
from ood_core import load_arrays
from ood_core.shards import FeatureShards, ShardWriter, shard_name

REPO = Path(__file__).resolve().parents[2]
RESUME = "run the same embed command again"


def _images(root: Path, seed: int) -> Path:
    """90 noisy 8x8 PNGs, 30 per class (cat, dog, ship), each class of its own brightness."""
    rng = np.random.default_rng(seed)
    for c, cls in enumerate(["cat", "dog", "ship"]):
        (root / cls).mkdir(parents=True)
        for i in range(30):
            pixels = np.clip(rng.normal(60 + 70 * c, 40, size=(8, 8, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{i:03d}.png")
    return root


def _embed(images: Path, out: Path) -> list[str]:
    return ["embed", str(images), "--out", str(out), "--model", "pixels-raw", "--shard-rows", "20"]


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """(images, shard folder, scores CSV of `run --in-classes cat,dog`) of the 90 images, and a shard
    folder of 90 other images (same shapes, other pixels)."""
    base = tmp_path_factory.mktemp("shards")
    images, other = _images(base / "images", 0), _images(base / "other-images", 1)
    for source, out in ((images, base / "s"), (other, base / "other")):
        assert ood_core.cli.main(["-q", *_embed(source, out)]) == 0
    assert ood_core.cli.main(["-q", "run", str(base / "s"), "--in-classes", "cat,dog",
                              "--out", str(base / "scores.csv")]) == 0
    return images, base / "s", base / "other", base / "scores.csv"


@pytest.fixture()
def folder(embedded, tmp_path):
    """A fresh copy of the complete shard folder (its images stay where they were embedded from)."""
    return Path(shutil.copytree(embedded[1], tmp_path / "s"))


def _scores(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _run(folder: Path, out: Path, capsys) -> tuple[int, str]:
    rc = ood_core.cli.main(["-q", "run", str(folder), "--in-classes", "cat,dog", "--out", str(out)])
    return rc, capsys.readouterr().err


def _swap(a: Path, b: Path) -> None:
    tmp = a.with_name("swap.tmp")
    os.replace(a, tmp)
    os.replace(b, a)
    os.replace(tmp, b)


def test_swapped_shards_are_refused_and_the_same_embed_repairs_them(embedded, folder, tmp_path, capsys):
    images, _, _, scores = embedded
    _swap(folder / shard_name(0), folder / shard_name(1))
    command = [sys.executable, "-m", "ood_core", "-q", "run", str(folder), "--in-classes", "cat,dog",
               "--out", str(tmp_path / "swapped.csv")]
    swapped = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert swapped.returncode == 2, swapped.stdout
    assert f"{folder / shard_name(0)} does not hold the rows 0..19 that {folder / 'manifest.json'} records" \
           in swapped.stderr
    assert "swapped with another shard" in swapped.stderr and RESUME in swapped.stderr
    assert not (tmp_path / "swapped.csv").exists()

    assert ood_core.cli.main(_embed(images, folder)) == 0
    printed = capsys.readouterr()
    assert f"warning: 2 shard(s) in {folder} do not match the record written with them (first features-00000.npy" \
           in printed.err
    assert "5 shard(s): 2 embedded now, 3 already there" in printed.out
    assert _run(folder, tmp_path / "repaired.csv", capsys)[0] == 0
    assert _scores(tmp_path / "repaired.csv") == _scores(scores)


def test_a_shard_swapped_after_it_was_read_is_refused_in_the_same_process(folder):
    shards = FeatureShards.open(folder)
    before = np.asarray(shards)  # every shard verified (and remembered) by this process
    _swap(folder / shard_name(2), folder / shard_name(3))
    with pytest.raises(ValueError, match=f"{shard_name(2)} does not hold the rows 40..59"):
        shards.take([45])
    _swap(folder / shard_name(2), folder / shard_name(3))
    np.testing.assert_array_equal(shards.take([45, 0]), before[[45, 0]])
    with open(folder / shard_name(4), "r+b") as f:  # the same size, one byte changed in place
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 1]))
    with pytest.raises(ValueError, match=f"{shard_name(4)} does not hold the rows 80..89"):
        np.asarray(FeatureShards.open(folder)[85])


def test_a_shard_copied_from_another_folder_is_refused(embedded, folder, tmp_path, capsys):
    images, _, other, scores = embedded
    shutil.copy2(other / shard_name(2), folder / shard_name(2))  # same shape, other pixels
    shards = FeatureShards.open(folder)  # the header and size are right
    original = FeatureShards.open(embedded[1])
    np.testing.assert_array_equal(shards.take([0, 39, 60]), original.take([0, 39, 60]))  # the other shards read
    with pytest.raises(ValueError, match=f"{shard_name(2)} does not hold the rows 40..59.*copied from another "
                                         f"folder\\); {RESUME}"):
        shards.take([40])
    with pytest.raises(ValueError, match=f"{shard_name(2)} does not hold the rows 40..59"):
        load_arrays(folder)
    rc, err = _run(folder, tmp_path / "copied.csv", capsys)
    assert rc == 2 and f"{folder / shard_name(2)} does not hold the rows 40..59" in err

    # the shard and its notes copied together: the notes name the other folder's images, so the
    # writer does not take them for this folder's record either
    shutil.copy2(other / "notes-00002.json", folder / "notes-00002.json")
    assert ood_core.cli.main(["-q", *_embed(images, folder)]) == 0
    assert f"warning: 1 shard(s) in {folder} do not match" in capsys.readouterr().err
    assert _run(folder, tmp_path / "repaired.csv", capsys)[0] == 0
    assert _scores(tmp_path / "repaired.csv") == _scores(scores)


def test_a_folder_without_its_meta_is_refused_naming_it(embedded, folder, tmp_path, capsys):
    images, _, other, scores = embedded
    (folder / "meta.npz").unlink()
    message = f"{folder / 'meta.npz'} is missing: it holds the ids, labels and class names"
    with pytest.raises(ValueError, match=f"load_arrays: {message}.*{RESUME} to finish the folder"):
        load_arrays(folder)
    rc, err = _run(folder, tmp_path / "no-meta.csv", capsys)
    assert rc == 2 and message in err and "unknown class" not in err
    assert not (tmp_path / "no-meta.csv").exists()

    shutil.copy2(other / "meta.npz", folder / "meta.npz")  # another folder's meta: other ids
    rc, err = _run(folder, tmp_path / "other-meta.csv", capsys)
    assert rc == 2 and f"{folder / 'meta.npz'} is not the meta.npz written with these shards" in err

    assert ood_core.cli.main(_embed(images, folder)) == 0  # finishes the folder: no shard embedded
    assert "5 shard(s): 0 embedded now, 5 already there" in capsys.readouterr().out
    assert _run(folder, tmp_path / "finished.csv", capsys)[0] == 0
    assert _scores(tmp_path / "finished.csv") == _scores(scores)
    assert _scores(scores)[0]["id"].startswith(("cat/", "dog/", "ship/"))


def test_a_truncated_shard_is_named_with_how_to_resume(embedded, folder, tmp_path, capsys):
    images, _, _, scores = embedded
    path = folder / shard_name(3)
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    message = (f"{path} is cut short: {size // 2:,} bytes where its header describes 20 x 192 float32 rows "
               f"({size:,} bytes")
    with pytest.raises(ValueError, match=f"{message.replace('(', '[(]')}.*{RESUME}"):
        FeatureShards.open(folder)
    with pytest.raises(ValueError, match="load_arrays: .*is cut short"):
        load_arrays(folder)
    rc, err = _run(folder, tmp_path / "cut.csv", capsys)
    assert rc == 2 and message in err and RESUME in err and "mmap length" not in err

    assert ood_core.cli.main(_embed(images, folder)) == 0
    assert "5 shard(s): 1 embedded now, 4 already there" in capsys.readouterr().out
    assert _run(folder, tmp_path / "resumed.csv", capsys)[0] == 0
    assert _scores(tmp_path / "resumed.csv") == _scores(scores)


def test_a_manifest_without_records_is_refused(folder):
    import json

    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["shards"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=f"records no digest of the folder's files .*; {RESUME}"):
        FeatureShards.open(folder)


def test_the_writer_embeds_again_a_shard_that_does_not_match_its_record(tmp_path):
    X = np.arange(40, dtype=np.float32).reshape(20, 2)
    writer = ShardWriter(tmp_path / "s", n_rows=20, key="k", shard_rows=5)
    for number in range(4):
        writer.write(number, X[number * 5:(number + 1) * 5], notes={"failures": [number]})
    _swap(tmp_path / "s" / shard_name(1), tmp_path / "s" / shard_name(2))
    with pytest.warns(UserWarning, match=r"2 shard\(s\) .* \(first features-00001.npy"):
        assert ShardWriter(tmp_path / "s", n_rows=20, key="k", shard_rows=5).pending() == [1, 2]
    with pytest.raises(ValueError, match=r"2 shard\(s\) of 4 are not written yet"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        writer.finish()
    writer.write(1, X[5:10])
    writer.write(2, X[10:15])
    assert writer.notes(3) == {"failures": [3]} and writer.notes(1) == {}
    np.testing.assert_array_equal(np.asarray(writer.finish()), X)
