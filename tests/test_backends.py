"""Inference backends (torch, ONNX Runtime, OpenVINO): same features, exports kept and checked, a cached
embedding read without timm."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ood_core import _backends
from ood_core._backends import resolve_backend
from ood_core.cache import cache_key, cached_embed
from ood_core.embedder import Embedder
from ood_core.sources import image_folder
from ood_core.weights import PRETRAINED

REPO = Path(__file__).resolve().parents[1]
SIZE = 64  # small input: exports and forwards stay quick


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("OOD_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def folder(write_tree):
    from PIL import Image

    rng = np.random.default_rng(0)
    files = {f"{'ab'[i % 2]}/{i}.png": Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
             for i in range(12)}
    return write_tree(files)


@pytest.fixture
def images(folder):
    return image_folder(folder)


def test_pretrained_table_matches_timm():
    import timm
    from timm.data import resolve_data_config

    for name, row in PRETRAINED.items():
        cfg = timm.models.get_pretrained_cfg(name)
        data = resolve_data_config({}, pretrained_cfg=cfg.to_dict())
        assert (row["input_size"], row["crop_pct"], row["interpolation"]) == (
            data["input_size"][-1], data["crop_pct"], data["interpolation"])
        assert row["mean"] == tuple(data["mean"]) and row["std"] == tuple(data["std"])
        assert row["hf_hub_id"] == cfg.hf_hub_id


def test_unknown_backend_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"backend='tensorrt' is not one of \['auto', 'torch', 'onnx', 'openvino'\]"):
        Embedder(backend="tensorrt")


def test_cuda_keeps_torch_and_an_explicit_cpu_backend_refuses_it():
    assert resolve_backend("auto", "cuda", "tf_efficientnet_lite0", "w", 64, True)[0] == "torch"
    with pytest.raises(ValueError, match="backend='openvino' runs on the CPU; device is 'cuda'"):
        resolve_backend("openvino", "cuda", "tf_efficientnet_lite0", "w", 64, True)


@pytest.mark.parametrize("backend", ["openvino", "onnx"])
def test_backend_features_match_torch_and_key_the_cache(backend, images, cache_dir):
    if not _backends.installed(backend):
        pytest.skip(f"{backend} is not installed")
    ref = Embedder(model="lite0", image_size=SIZE, backend="torch").embed(images)
    emb = Embedder(model="lite0", image_size=SIZE, backend=backend)
    out = emb.embed(images)
    cos = (out * ref).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(ref, axis=1)
    assert np.abs(out - ref).max() <= 1e-4 and cos.min() >= 0.9999
    assert emb.config_for(images).backend == backend
    assert "agrees with torch: max |difference|" in emb.backend_reason_
    torch_cfg = Embedder(model="lite0", image_size=SIZE, backend="torch").config_for(images)
    assert cache_key(emb.config_for(images), images) != cache_key(torch_cfg, images)
    # the export is kept: a second embedder runs it without building the torch network
    again = Embedder(model="lite0", image_size=SIZE, backend=backend)
    np.testing.assert_array_equal(again.embed(images), out)
    assert again._nets == {}


def test_auto_picks_openvino_and_records_it_in_the_cache_file(images, cache_dir):
    if not _backends.installed("openvino"):
        pytest.skip("openvino is not installed")
    emb = Embedder(model="lite0", image_size=SIZE, device="cpu")
    features, hit = cached_embed(emb, images)
    assert not hit and emb.config_for(images).backend == "openvino"
    (entry,) = cache_dir.glob("*.npz")
    with np.load(entry) as data:
        assert json.loads(str(data["config"]))["backend"] == "openvino"


def test_a_damaged_export_is_rebuilt_with_a_warning(images, cache_dir):
    if not _backends.installed("openvino"):
        pytest.skip("openvino is not installed")
    first = Embedder(model="lite0", image_size=SIZE, backend="openvino").embed(images)
    (weights,) = (cache_dir / "exports").glob("*/model.bin")
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.warns(UserWarning, match="openvino export .* is damaged .*SHA-256.*; rebuilding it"):
        again = Embedder(model="lite0", image_size=SIZE, backend="openvino").embed(images)
    np.testing.assert_array_equal(again, first)


def test_an_export_that_disagrees_falls_back_to_torch(images, cache_dir, monkeypatch):
    if not _backends.installed("openvino"):
        pytest.skip("openvino is not installed")
    monkeypatch.setattr(_backends, "MAX_ABS_DIFF", 0.0)  # any difference at all counts as disagreeing
    monkeypatch.setattr(_backends, "AUTO_ORDER", ("openvino",))
    emb = Embedder(model="lite0", image_size=SIZE, device="cpu")
    assert emb.config.backend == "openvino"
    with pytest.warns(UserWarning, match="openvino export of tf_efficientnet_lite0 disagrees with torch"):
        features, _ = cached_embed(emb, images)
    ref = Embedder(model="lite0", image_size=SIZE, backend="torch").embed(images)
    np.testing.assert_array_equal(features, ref)
    assert emb.config_for(images).backend == "torch"
    assert "using torch" in emb.backend_reason_
    # the verdict is kept: a new auto embedder picks torch at once, an explicit one refuses
    assert Embedder(model="lite0", image_size=SIZE, device="cpu").config.backend == "torch"
    with pytest.raises(ValueError, match="backend='openvino': the openvino export .* disagrees with torch"):
        Embedder(model="lite0", image_size=SIZE, backend="openvino").embed(images)


def test_a_cached_embed_does_not_import_timm(folder, cache_dir, tmp_path):
    out = tmp_path / "f.npz"
    env = {**os.environ, "OOD_CACHE_DIR": str(cache_dir), "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "ood_core", "embed", str(folder), "--out", str(out), "--model", "lite0",
           "--image-size", str(SIZE)]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert first.returncode == 0, first.stderr
    probe = ("import runpy, sys; sys.argv = " + repr(["ood_core", *cmd[3:]]) + "\n"
             "try:\n    runpy.run_module('ood_core', run_name='__main__')\nexcept SystemExit as e:\n"
             "    assert not e.code, e.code\n"
             "print('timm imported' if 'timm' in sys.modules else 'no timm')")
    second = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=600,
                            cwd=REPO)
    assert second.returncode == 0, second.stderr
    assert "from the cache" in second.stdout and second.stdout.strip().endswith("no timm")


def test_exports_follow_the_cache_dir_flag_not_the_setting(folder, cache_dir, tmp_path, capsys):
    """`--cache-dir B` keeps the ONNX/OpenVINO export in B/exports, as it keeps the embeddings there,
    for a .npz and for a shard folder (which reuses it); the cache_dir setting's folder stays empty."""
    from ood_core.cli import main

    if not _backends.installed("openvino"):
        pytest.skip("openvino is not installed")
    flag_dir = tmp_path / "flag-cache"
    common = ["--model", "lite0", "--image-size", str(SIZE), "--backend", "openvino", "--device", "cpu",
              "--cache-dir", str(flag_dir)]
    assert main(["-q", "embed", str(folder), "--out", str(tmp_path / "f.npz"), *common]) == 0
    (verdict,) = (flag_dir / "exports").glob("*/verdict.json")
    assert json.loads(verdict.read_text())["ok"] is True and (verdict.parent / "model.bin").is_file()
    assert not (cache_dir / "exports").exists()
    stamp = verdict.stat().st_mtime_ns
    assert main(["-q", "embed", str(folder), "--out", str(tmp_path / "shards"), *common]) == 0
    assert [p.stat().st_mtime_ns for p in (flag_dir / "exports").glob("*/verdict.json")] == [stamp]  # reused
    assert not (cache_dir / "exports").exists()


def test_a_verdict_is_read_from_the_runs_cache_folder(images, cache_dir, tmp_path, monkeypatch):
    if not _backends.installed("openvino"):
        pytest.skip("openvino is not installed")
    monkeypatch.setattr(_backends, "MAX_ABS_DIFF", 0.0)  # any difference at all counts as disagreeing
    monkeypatch.setattr(_backends, "AUTO_ORDER", ("openvino",))
    run_dir = tmp_path / "run-cache"
    with pytest.warns(UserWarning, match="disagrees with torch"):
        cached_embed(Embedder(model="lite0", image_size=SIZE, device="cpu", cache_dir=run_dir), images,
                     cache_dir=run_dir)
    assert list((run_dir / "exports").glob("*/verdict.json")) and not (cache_dir / "exports").exists()
    # the verdict lives with that run's cache: auto picks torch there, openvino elsewhere
    assert Embedder(model="lite0", image_size=SIZE, device="cpu", cache_dir=run_dir).config.backend == "torch"
    assert Embedder(model="lite0", image_size=SIZE, device="cpu").config.backend == "openvino"
