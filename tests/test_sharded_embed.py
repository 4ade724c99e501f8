"""Features as resumable `.npy` shards: the writer and reader, a shard folder as a source
(`load_arrays`, `score`), and `embed` into shards on one process and on Ray: both give the
single-process path's features, and a Ray run killed half-way resumes from the shards it wrote.

Ray starts slowly (a local instance about 8 s, each actor 10 s or more to import torch and load the
model on 2 cores), so the Ray run is one test: a 2-worker run killed, then resumed; the features of
the folder it completes are compared with the single-process ones."""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

import ood_core
from ood_core.cli import main
from ood_core.shards import FeatureShards, ShardWriter, blocks, concat, read_meta, rows, shard_name
from ood_core.sources import fit_query_arrays, in_out_split, load_arrays, open_source

REPO = Path(__file__).resolve().parents[1]
HAVE_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="Ray is not installed (pip install 'ood-explorer[ray]')")


def _write(folder, X, shard_rows, key="k", meta=None, notes=None):
    writer = ShardWriter(folder, n_rows=len(X), key=key, shard_rows=shard_rows)
    for number in writer.pending():
        start, stop = writer.span(number)
        writer.write(number, X[start:stop], notes=(notes or {}).get(number))
    return writer.finish(meta)


# ----------------------------------------------------------------------------- writer and reader
def test_shards_read_back_as_the_array_they_hold(tmp_path):
    X = np.random.default_rng(0).normal(size=(23, 5)).astype(np.float32)
    shards = _write(tmp_path / "s", X, shard_rows=10)
    assert shards.shape == (23, 5) and len(shards) == 23 and len(shards.files) == 3
    np.testing.assert_array_equal(np.asarray(shards), X)
    np.testing.assert_array_equal(np.concatenate(list(shards.blocks(7))), X)
    np.testing.assert_array_equal(np.concatenate(list(blocks(X, 7))), X)
    picks = np.array([22, 0, 9, 10, -1, 15, 15])
    np.testing.assert_array_equal(shards.take(picks), X[picks])
    np.testing.assert_array_equal(shards[3:19:4], X[3:19:4])
    np.testing.assert_array_equal(shards[X[:, 0] > 0], X[X[:, 0] > 0])
    np.testing.assert_array_equal(shards[[1, 2], 3], X[[1, 2], 3])
    np.testing.assert_array_equal(shards[4], X[4])
    with pytest.raises(IndexError):
        shards.take([23])
    view = shards.subset(np.array([20, 3, 11, 12, 0]))  # lazy: nothing read
    assert isinstance(view, FeatureShards) and view.shape == (5, 5)
    np.testing.assert_array_equal(np.asarray(view), X[[20, 3, 11, 12, 0]])
    np.testing.assert_array_equal(np.concatenate(list(view.subset([4, 1]).blocks(1))), X[[0, 3]])
    assert rows(shards, np.arange(23)) is shards and isinstance(rows(shards, [1, 2]), FeatureShards)
    np.testing.assert_array_equal(rows(X, [1, 2]), X[[1, 2]])


def test_concat_keeps_shards_on_disk(tmp_path):
    rng = np.random.default_rng(1)
    A, B = rng.normal(size=(12, 4)).astype(np.float32), rng.normal(size=(7, 4)).astype(np.float32)
    a, b = _write(tmp_path / "a", A, 5), _write(tmp_path / "b", B, 3)
    Q = rng.normal(size=(4, 4))
    joined = concat([a.subset([11, 0, 5]), b, Q])
    assert isinstance(joined, FeatureShards) and joined.shape == (14, 4)
    np.testing.assert_array_equal(np.asarray(joined), np.concatenate([A[[11, 0, 5]], B, Q.astype(np.float32)]))
    np.testing.assert_array_equal(np.concatenate(list(joined.blocks(4))), np.asarray(joined))
    assert isinstance(concat([A, Q]), np.ndarray) and concat([A, Q]).dtype == np.float64
    with pytest.raises(ValueError, match="same number of columns"):
        concat([a, np.zeros((2, 3))])


def test_an_interrupted_folder_resumes_and_keeps_what_was_written(tmp_path):
    X = np.arange(50, dtype=np.float32).reshape(25, 2)
    folder = tmp_path / "s"
    writer = ShardWriter(folder, n_rows=25, key="settings-1", shard_rows=10)
    writer.write(0, X[:10], notes={"failures": [[3, "a.jpg", "broken"]]})
    writer.write(2, X[20:])
    (folder / ".features-00001.npy.abc.tmp").write_bytes(b"half a shard")  # a write killed half-way
    with pytest.raises(ValueError, match="incomplete: 1 of 3 shard"):
        FeatureShards.open(folder)
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.glob("features-*.npy")}

    again = ShardWriter(folder, n_rows=25, key="settings-1", shard_rows=10)  # the rerun
    assert again.pending() == [1] and not list(folder.glob(".*.tmp"))
    assert again.notes(0) == {"failures": [[3, "a.jpg", "broken"]]} and again.notes(1) == {}
    again.write(1, X[10:20])
    with pytest.raises(ValueError, match="did not finish"):
        FeatureShards.open(folder)
    shards = again.finish({"ids": np.array([f"i{i}" for i in range(25)])})
    np.testing.assert_array_equal(np.asarray(shards), X)
    assert {p: (folder / p).stat().st_ino for p in before} == {p: v[0] for p, v in before.items()}
    assert all((folder / p).stat().st_mtime_ns == v[1] for p, v in before.items())
    assert read_meta(folder)["ids"][24] == "i24"


def test_a_folder_of_other_data_or_settings_is_refused(tmp_path):
    X = np.zeros((8, 2), np.float32)
    _write(tmp_path / "s", X, 4, key="one")
    with pytest.raises(ValueError, match="other images or embedding settings; give another folder"):
        ShardWriter(tmp_path / "s", n_rows=8, key="two", shard_rows=4)
    with pytest.raises(ValueError, match=r"\(8 rows; this run: 9\)"):
        ShardWriter(tmp_path / "s", n_rows=9, key="one", shard_rows=4)
    with pytest.raises(ValueError, match="shards of 4 rows; this run asks for 5"):
        ShardWriter(tmp_path / "s", n_rows=8, key="one", shard_rows=5)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "photo.jpg").write_bytes(b"x")
    with pytest.raises(ValueError, match="not empty and holds no shard manifest"):
        ShardWriter(tmp_path / "other", n_rows=8, key="one", shard_rows=4)
    assert FeatureShards.open(tmp_path / "s").shape == (8, 2)  # the refused runs changed nothing


# ----------------------------------------------------------------------------- a shard folder as a source
@pytest.fixture()
def shard_pair(tmp_path):
    """A fit shard folder (2 classes, one NaN row recorded as a failed image) and a query .npz."""
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=4.0, size=(3, 8))
    y = np.repeat([0, 1], 30)
    X = (centers[y] + rng.normal(size=(60, 8))).astype(np.float32)
    X[7] = np.nan
    ids = np.array([f"{'cat' if c == 0 else 'dog'}/{i:03d}.jpg" for i, c in enumerate(y)])
    meta = {"ids": ids, "labels": y, "class_names": np.array(["cat", "dog"]),
            "failed_index": np.array([7]), "failed_path": ids[[7]], "failed_reason": np.array(["truncated file"])}
    _write(tmp_path / "fit", X, 16, meta=meta)
    Q = np.concatenate([centers[[0, 1]].repeat(5, axis=0), centers[[2]].repeat(10, axis=0)]) + rng.normal(size=(20, 8))
    Q[0] = X[3]  # the same item in both sets
    np.savez(tmp_path / "query.npz", features=Q, labels=np.repeat([0, 1, 2], [5, 5, 10]),
             class_names=np.array(["cat", "dog", "car"]))
    return tmp_path / "fit", tmp_path / "query.npz", X, Q


@pytest.fixture()
def never_whole(monkeypatch):
    """Fail a test that reads a FeatureShards whole (np.asarray) where it should go block by block."""
    def refuse(self, dtype=None, copy=None):
        raise AssertionError("FeatureShards read whole")

    monkeypatch.setattr(FeatureShards, "__array__", refuse)
    return monkeypatch


def test_load_arrays_reads_a_shard_folder_lazily(shard_pair, never_whole):
    folder, _, X, _ = shard_pair
    with pytest.warns(UserWarning, match="dropped 1 of 60 rows"):
        arrays = load_arrays(folder)
    with never_whole.context() as m, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m.setattr(FeatureShards, "_map", staticmethod(lambda part: pytest.fail("features read")))
        listed = open_source(str(folder), verify=False)  # listing its classes reads no feature
    assert listed.ids == arrays.ids and listed.skipped == arrays.skipped
    never_whole.undo()
    assert isinstance(arrays.features, FeatureShards) and arrays.features.shape == (59, 8)
    assert arrays.skipped == [("cat/007.jpg", "truncated file")]
    assert arrays.ids[7] == "cat/008.jpg" and arrays.class_names == ["cat", "dog"]
    np.testing.assert_array_equal(np.asarray(arrays.features), np.delete(X, 7, axis=0))
    assert arrays.description.startswith("feature shards fit (59 rows")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert isinstance(open_source(str(folder)).features, FeatureShards)
        split = in_out_split(arrays, ["cat"], fit_fraction=0.5)
    assert isinstance(split.features, FeatureShards) and len(split.features) == len(split.ids)


def test_fit_and_query_keep_shards_on_disk(shard_pair, never_whole):
    folder, query, X, Q = shard_pair
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        joined = fit_query_arrays(load_arrays(folder), load_arrays(query))
    never_whole.undo()
    assert any("1 of 20 query rows are identical to fit rows" in str(w.message) for w in caught)
    assert isinstance(joined.features, FeatureShards) and joined.features.shape == (79, 8)
    np.testing.assert_array_equal(np.asarray(joined.features),
                                  np.concatenate([np.delete(X, 7, axis=0), Q.astype(np.float32)]))
    assert joined.class_names == ["cat", "dog", "car"] and joined.is_ood.sum() == 10


def test_score_reads_a_shard_folder(shard_pair, tmp_path, capsys):
    folder, query, _, _ = shard_pair
    out = tmp_path / "scores.csv"
    assert main(["-q", "score", "--fit", str(folder), "--query", str(query), "--k", "5", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "fit items: 59   query items: 20" in printed.out and "AUROC" in printed.out
    assert "skipped files: 1" in printed.out and "fit/cat/007.jpg: truncated file" in printed.out
    assert len(out.read_text().splitlines()) == 80
    assert main(["-q", "score", "--fit", str(folder), "--query", str(folder), "--out", str(out)]) == 0
    assert "59 of 59 query rows are identical" in capsys.readouterr().err


def test_an_unfinished_folder_is_not_read(tmp_path):
    writer = ShardWriter(tmp_path / "s", n_rows=10, key="k", shard_rows=4)
    writer.write(0, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="incomplete.*run the same embed command again"):
        load_arrays(tmp_path / "s")


# ----------------------------------------------------------------------------- the embed command's flags
@pytest.mark.parametrize("argv, message", [
    (["--engine", "ray", "--out", "x.npz"], "--engine ray writes a folder of shards"),
    (["--out", "x.npz", "--shard-rows", "10"], "--shard-rows sets the shards of a folder"),
    (["--out", "feats", "--workers", "3"], "--workers and --ray-address apply to --engine ray"),
])
def test_embed_flags_that_do_not_go_together_are_refused(tmp_path, capsys, argv, message):
    argv = [a if a not in ("x.npz", "feats") else str(tmp_path / a) for a in argv]
    assert main(["embed", "digits", *argv]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("argv, message", [
    (["--out", "x.npy"], "must be a .npz file path or a folder for shards"),
    (["--out", "f", "--engine", "spark"], "invalid choice: 'spark'"),
    (["--out", "f", "--shard-rows", "0"], "must be at least 1"),
])
def test_embed_flags_are_checked_at_parse_time(capsys, argv, message):
    with pytest.raises(SystemExit):
        main(["embed", "digits", *argv])
    assert message in capsys.readouterr().err


def test_the_ray_engine_without_ray_names_the_extra(monkeypatch):
    from ood_core._ray_embed import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(RuntimeError, match=r"pip install 'ood-explorer\[ray\]'"):
        import_ray()


def test_centred_pixels_cannot_be_sharded(tmp_path):
    with pytest.raises(ValueError, match="pixels-raw"):
        ood_core.embed_shards("digits", tmp_path / "s", model="pixels")
    assert not (tmp_path / "s").exists()


# ----------------------------------------------------------------------------- embedding CIFAR-10 images
PER_CLASS = {"train": 30, "test": 10}
CLASSES = ("cat", "dog", "ship", "truck", "frog")  # 200 images
N = 200
BROKEN = "train/cat/0007b.jpg"  # lists as an image, fails to decode when embedded


@pytest.fixture(scope="module")
def cifar_slice(cifar_zip, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cifar_slice")
    with zipfile.ZipFile(cifar_zip) as zf:
        for split, n in PER_CLASS.items():
            for cls in CLASSES:
                for i in range(n):
                    path = root / split / cls / f"{i:04d}.jpg"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(zf.read(f"cifar10/{split}/{cls}/{i:04d}.jpg"))
    (root / BROKEN).write_bytes((root / "train/cat/0007.jpg").read_bytes()[:300])  # a truncated jpeg
    return root


@pytest.fixture(scope="module")
def unverified(cifar_slice):
    """The slice listed without decoding: the broken image is found when embedding."""
    return open_source(str(cifar_slice), verify=False)


@pytest.fixture(scope="module")
def reference(unverified, tmp_path_factory):
    """The single-process path's features, by image id."""
    embedded = ood_core.embed(unverified, image_size=32, cache_dir=tmp_path_factory.mktemp("cache"))
    assert [p for p, _ in embedded.images.skipped] == [BROKEN]
    return dict(zip(embedded.images.ids, embedded.features))


def test_local_shards_equal_the_single_process_embedding(unverified, reference, tmp_path):
    progress = []
    result = ood_core.embed_shards(unverified, tmp_path / "s", shard_rows=64, image_size=32,
                                   progress=lambda *a: progress.append(a))
    assert (result.shards, result.written) == (4, 4) and progress[-1] == ("embed", N + 1, N + 1)
    assert result.images.ids == list(reference) and result.images.skipped[-1][0] == BROKEN
    np.testing.assert_array_equal(np.asarray(result.features), np.stack(list(reference.values())))
    assert read_meta(tmp_path / "s")["failed_path"].tolist() == [BROKEN]

    with pytest.warns(UserWarning, match=f"dropped 1 of {N + 1}"):
        arrays = load_arrays(tmp_path / "s")
    assert arrays.ids == list(reference) and arrays.skipped[0][0] == BROKEN and arrays.split is not None
    assert isinstance(arrays.features, FeatureShards)

    (tmp_path / "s" / shard_name(2)).unlink()  # resume: only the missing shard is embedded again
    again = ood_core.embed_shards(unverified, tmp_path / "s", shard_rows=64, image_size=32)
    assert again.written == 1
    np.testing.assert_array_equal(np.asarray(again.features), np.asarray(result.features))
    with pytest.raises(ValueError, match="other images or embedding settings"):
        ood_core.embed_shards(unverified, tmp_path / "s", shard_rows=64, image_size=48)


def test_a_ray_actor_embeds_a_shard_and_reports_its_failures(unverified, reference, write_zip):
    """The actor's work, without Ray: the shard's images travel pickled, failures come back listed."""
    import pickle

    import torch

    from ood_core._ray_embed import ShardActor, shard_images
    from ood_core.embedder import Embedder

    config = Embedder(image_size=32).config_for(unverified)
    actor = ShardActor(config, "bundled", "cpu", 64, threads=torch.get_num_threads())
    at = unverified.ids.index(BROKEN)
    out = actor({"shard": np.array([5]), "images": np.array([shard_images(unverified, at - 2, at + 3)], dtype=object)})
    assert out["shard"].tolist() == [5] and out["rows"].tolist() == [5]
    features = np.frombuffer(out["features"][0], dtype=np.float32).reshape(5, int(out["dim"][0]))
    assert [row[:2] for row in json.loads(out["failures"][0])] == [[2, BROKEN]]
    ids = unverified.ids[at - 2:at + 3]
    assert np.isnan(features[2]).all()
    np.testing.assert_array_equal(np.delete(features, 2, axis=0), np.stack([reference[i] for i in ids if i != BROKEN]))
    # the images' statistics come back too, those the local engine gathers for the same images
    from ood_core._shard_stats import stats_from_bytes
    from ood_core._shard_work import embed_shard

    stats = stats_from_bytes(out["stats"][0])
    local = embed_shard(actor.embedder, unverified.subset(np.arange(at - 2, at + 3)))[2]
    assert stats.dtype == local.dtype and stats.tobytes() == local.tobytes()
    assert stats["ok"].tolist() == [True, True, False, True, True]

    zipped = open_source(str(write_zip({"a/x.png": (255, 0, 0), "b/y.png": (0, 0, 255)})))
    travelled = pickle.loads(shard_images(zipped, 1, 2))  # a zip travels as its path, opened on the worker
    assert travelled.ids == ["b/y.png"] and travelled.load_image(0).getpixel((0, 0)) == (0, 0, 255)


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray instance of 2 CPUs, the cluster a rerun connects to (``--ray-address``)."""
    if not HAVE_RAY:
        pytest.skip("Ray is not installed (pip install 'ood-explorer[ray]')")
    import logging

    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@needs_ray
@pytest.mark.slow
def test_a_killed_ray_run_resumes_from_its_shards(cifar_slice, reference, ray_cluster, tmp_path):
    """`embed --engine ray` (a local Ray instance of 2 workers, started by the command) killed once it
    has written a shard; the same command, run again on a Ray cluster, embeds only the shards still
    missing, and the folder holds the single-process features (to 1e-5)."""
    out = tmp_path / "shards"
    command = [sys.executable, "-m", "ood_core", "-q", "embed", str(cifar_slice), "--out", str(out),
               "--engine", "ray", "--workers", "2", "--shard-rows", "16", "--image-size", "32"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # its own local Ray instance
    run = subprocess.Popen(command, cwd=REPO, env=env, start_new_session=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    try:
        while not list(out.glob("features-*.npy")) and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        finished = run.poll() is not None
    finally:
        try:
            os.killpg(run.pid, signal.SIGKILL)  # the driver and the Ray instance it started
        except ProcessLookupError:
            pass
        output = run.communicate(timeout=60)[0].decode(errors="replace")
    assert not finished, f"the run ended before it was killed:\n{output}"
    written = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("features-*.npy")}
    shards = -(-N // 16)
    assert 1 <= len(written) < shards, written

    rerun = subprocess.run(command + ["--ray-address", ray_cluster], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{shards - len(written)} embedded now, {len(written)} already there; 1 skipped" in rerun.stdout
    assert {p: ((out / p).stat().st_ino, (out / p).stat().st_mtime_ns) for p in written} == written
    arrays = load_arrays(out)
    assert arrays.ids == list(reference) and isinstance(arrays.features, FeatureShards)
    # the images' statistics, gathered by the actors in their decoding pass, equal the local engine's
    from ood_core._shard_stats import stats_from_columns
    from ood_core._shard_work import embed_shard, make_embedder
    from ood_core.embedder import Embedder

    images = open_source(str(cifar_slice), verify=False)
    local = embed_shard(make_embedder(Embedder(image_size=32).config_for(images), "bundled", "cpu", 64), images)[2]
    kept = local[[images.ids.index(i) for i in arrays.ids]]
    ray_stats = stats_from_columns(arrays.features.take_stats(), str(out))
    np.testing.assert_array_equal(ray_stats.phash, kept["phash"])
    np.testing.assert_array_equal(ray_stats.properties, kept["properties"])
    assert ray_stats.pixel_digest.tolist() == [d.decode() for d in kept["pixel_digest"]]
    diff = float(np.abs(np.asarray(arrays.features) - np.stack(list(reference.values()))).max())
    print(f"ray vs single process: max abs diff {diff:.3g} ({len(written)} of {shards} shards before the kill)")
    assert diff <= 1e-5
