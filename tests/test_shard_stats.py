"""The image statistics of `ood_core.issues` in the shard engines: gathered in the decoding pass that
embeds each shard, kept beside it (`stats-NNNNN.npy`, recorded in the manifest like the shard), and
read by `Analysis.issues()` on the shard folder: the same issue scores as the in-process path, with
no image opened again; a damaged, swapped or missing statistics file is refused naming it, and the
same embed command repairs it."""
from __future__ import annotations

import json
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ood_core
from ood_core.shards import ShardWriter
from ood_core.sources import open_source

CLASSES = ("cat", "ship")
BROKEN = "train/cat/0003b.jpg"  # lists as an image, fails to decode when embedded
EMBED = {"image_size": 32, "device": "cpu", "backend": "torch"}  # stats are the subject, not the backend: no export


@pytest.fixture(scope="module")
def folder(cifar_zip, tmp_path_factory) -> Path:
    """2 CIFAR-10 classes (24 train + 8 test each) with an exact copy, a resized re-encoded copy, two
    darkened images and a truncated file."""
    root = tmp_path_factory.mktemp("shardstats") / "data"
    with zipfile.ZipFile(cifar_zip) as zf:
        for split, n in (("train", 24), ("test", 8)):
            for cls in CLASSES:
                for i in range(n):
                    path = root / split / cls / f"{i:04d}.jpg"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(zf.read(f"cifar10/{split}/{cls}/{i:04d}.jpg"))
    shutil.copy(root / "train/cat/0001.jpg", root / "test/cat/copy.jpg")
    Image.open(root / "train/ship/0002.jpg").convert("RGB").resize((28, 28)).save(root / "train/ship/small.jpg",
                                                                                 quality=70)
    for k, src in enumerate(("train/cat/0005.jpg", "train/ship/0006.jpg")):
        img = np.asarray(Image.open(root / src).convert("RGB"), dtype=np.float64)
        Image.fromarray((img * 0.2).astype(np.uint8)).save(root / src.replace(".jpg", f"dark{k}.jpg"), quality=95)
    (root / BROKEN).write_bytes((root / "train/cat/0003.jpg").read_bytes()[:300])
    return root


@pytest.fixture(scope="module")
def in_process(folder, tmp_path_factory):
    """The in-process path's issue table (images embedded with the statistics in the same pass)."""
    images = open_source(str(folder), verify=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = ood_core.analyze(images, cache_dir=tmp_path_factory.mktemp("cache"), **EMBED)
    return a, a.issues()


@pytest.fixture()
def no_image_reads(monkeypatch):
    """Fail the test if an image file is opened (or a separate statistics pass runs)."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"an image was opened: {args[:1]}")

    monkeypatch.setattr(Image, "open", refuse)
    monkeypatch.setattr("ood_core.issues._run.collect_image_stats", refuse)


def _sharded(folder, out, engine="local"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ood_core.embed_shards(open_source(str(folder), verify=False), out, shard_rows=16, engine=engine,
                                     **EMBED)


def _assert_same_issues(table, reference):
    assert len(table) == len(reference) and sorted(set(table["issue"])) == sorted(set(reference["issue"]))
    for issue in set(reference["issue"]):
        mine, theirs = table[table["issue"] == issue], reference[reference["issue"] == issue]
        assert list(mine["id"]) == list(theirs["id"]), issue
        np.testing.assert_allclose(mine["score"].astype(float), theirs["score"].astype(float), atol=1e-9,
                                   err_msg=issue)
        assert mine["flagged"].tolist() == theirs["flagged"].tolist(), issue
        if issue != "exact_duplicate":  # the in-process path groups by file digest, a shard folder by pixels
            assert list(mine["detail"]) == list(theirs["detail"]), issue


def test_a_sharded_embed_gives_the_in_process_issue_scores_without_reading_images(folder, in_process, tmp_path,
                                                                                   request):
    reference_analysis, reference = in_process
    result = _sharded(folder, tmp_path / "s")
    assert result.shards == 5 and sorted(p.name for p in (tmp_path / "s").glob("stats-*.npy")) == [
        f"stats-{k:05d}.npy" for k in range(5)]
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    record = manifest["shards"][1]["stats"]
    assert record["file"] == "stats-00001.npy" and record["shape"] == [16] and len(record["sha256"]) == 64
    assert record["bytes"] == (tmp_path / "s" / "stats-00001.npy").stat().st_size

    request.getfixturevalue("no_image_reads")  # from here on, opening an image fails the test
    with pytest.raises(AssertionError, match="an image was opened"):  # the guard bites the sources' reader
        open_source(str(folder), verify=False).load_image(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "dropped 1 of 69": the broken image
        a = ood_core.analyze(tmp_path / "s", cache_dir=tmp_path / "cache")
    assert a.items is None and a.ids == reference_analysis.ids
    table = a.issues()
    flagged = {(str(i), str(t)) for i, t, f in zip(table["id"], table["issue"], table["flagged"]) if f}
    assert {("train/cat/0005dark0.jpg", "dark"), ("train/ship/0006dark1.jpg", "dark"),
            ("test/cat/copy.jpg", "exact_duplicate"), ("train/cat/0001.jpg", "exact_duplicate"),
            ("train/ship/small.jpg", "near_duplicate")} <= flagged
    _assert_same_issues(table, reference)
    assert a.issue_scores("dark").info == reference_analysis.issue_scores("dark").info
    np.testing.assert_array_equal(a.image_stats().phash, reference_analysis.image_stats().phash)


def test_a_damaged_swapped_or_missing_stats_file_is_refused_by_name_and_repaired(folder, in_process, tmp_path):
    out = tmp_path / "s"
    _sharded(folder, out)
    original = {p.name: p.read_bytes() for p in out.glob("stats-*.npy")}

    def issues():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ood_core.analyze(out, cache_dir=tmp_path / "cache").issues()

    (out / "stats-00001.npy").write_bytes(original["stats-00001.npy"][:-40])  # cut short
    with pytest.raises(ValueError, match=r"stats-00001\.npy is cut short.*run the same embed command again"):
        issues()
    (out / "stats-00001.npy").write_bytes(original["stats-00002.npy"])  # swapped: same size, other rows
    with pytest.raises(ValueError, match=r"stats-00001\.npy does not hold the rows 16\.\.31 .* contents differ"):
        issues()
    (out / "stats-00001.npy").unlink()
    with pytest.raises(ValueError, match=r"stats-00001\.npy is missing"):
        issues()

    features = out / "features-00001.npy"
    before = (features.stat().st_ino, features.stat().st_mtime_ns)
    with pytest.warns(UserWarning, match=r"first stats-00001\.npy: missing.*embedded again"):
        again = ood_core.embed_shards(open_source(str(folder), verify=False), out, shard_rows=16, **EMBED)
    assert again.written == 1 and (features.stat().st_ino, features.stat().st_mtime_ns) != before
    assert (out / "stats-00001.npy").read_bytes() == original["stats-00001.npy"]
    _assert_same_issues(issues(), in_process[1])


def test_a_folder_written_without_statistics_scores_no_property_issue(tmp_path):
    """Features from elsewhere (ShardWriter without stats_format) keep working; the types that need
    the images say so rather than reading anything."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 6)).astype(np.float32)
    writer = ShardWriter(tmp_path / "s", n_rows=40, key="mine", shard_rows=16)
    for number in writer.pending():
        writer.write(number, X[slice(*writer.span(number))])
    shards = writer.finish({"ids": np.array([f"i{k}" for k in range(40)]), "labels": np.repeat([0, 1], 20)})
    assert shards.stats is None
    with pytest.raises(ValueError, match="keeps no statistics"):
        writer.write(0, X[:16], stats=np.zeros(16, dtype=[("ok", bool)]))
    a = ood_core.analyze(tmp_path / "s", cache_dir=tmp_path / "cache")
    assert a.image_stats() is None
    with pytest.raises(ValueError, match="issue type 'dark' cannot be scored on this analysis"):
        a.issues(["dark"])


def test_a_writer_that_keeps_statistics_needs_them_for_each_shard(tmp_path):
    writer = ShardWriter(tmp_path / "s", n_rows=20, key="k", shard_rows=10, stats_format="fmt-1")
    X = np.zeros((20, 3), np.float32)
    with pytest.raises(ValueError, match="shard 0 needs its statistics: a structured array of 10 rows"):
        writer.write(0, X[:10])
    stats = np.zeros(10, dtype=[("phash", np.uint64), ("ok", bool)])
    writer.write(0, X[:10], stats=stats)
    writer.write(1, X[10:], stats=stats)
    assert writer.pending() == []
    shards = writer.finish()
    np.testing.assert_array_equal(shards.subset([12, 3]).take_stats()["ok"], [False, False])
    # another statistics format (a newer version): every shard is pending again, by name
    with pytest.warns(UserWarning, match="first features-00000.npy"):
        assert ShardWriter(tmp_path / "s", n_rows=20, key="k", shard_rows=10, stats_format="fmt-2").pending() == [0, 1]
