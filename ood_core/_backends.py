"""Inference backends for the embedder on the CPU: torch, ONNX Runtime or OpenVINO.

The network (with its input normalisation) is exported once per model, weights identity, input
size, BatchNorm folding and backend version, kept in the cache folder's ``exports/`` (files written
to a temporary folder and renamed into place, so a reader never sees half an export; their SHA-256
recorded beside them), and checked against torch on a probe batch when made: features within
``MAX_ABS_DIFF`` and every row's cosine at least ``MIN_COSINE``. The verdict is stored with the
export, so a backend that disagreed is not tried again.

``backend="auto"`` picks the first of ``AUTO_ORDER`` that is installed and has not disagreed with
torch, else torch; on CUDA (or MPS) it is always torch. Measured (lite2 at 160 px, batch 64, BatchNorm
folded, 2 threads, alternating rounds): torch 102 images/s, ONNX Runtime 168, OpenVINO 189
(``bench/embed.py`` prints the row per backend). OpenVINO runs with ``INFERENCE_PRECISION_HINT=f32``:
its default CPU hint changed features by 0.2. Nothing is unpickled: exports are ``.onnx`` or
OpenVINO ``.xml``/``.bin`` files; a damaged one is rebuilt with a warning.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

logger = logging.getLogger(__name__)

AUTO = "auto"
TORCH = "torch"
BACKENDS = (AUTO, TORCH, "onnx", "openvino")
# backend -> the packages it needs (import names, PyPI names)
REQUIRES = {"onnx": (("onnxruntime", "onnxruntime"), ("onnx", "onnx")), "openvino": (("openvino", "openvino"),)}
# Fastest first, by measurement (see the module docstring); "auto" takes the first usable one.
AUTO_ORDER = ("openvino", "onnx")
MAX_ABS_DIFF = 1e-4
MIN_COSINE = 0.9999
PROBE_IMAGES = 8
EXPORT_FORMAT = "ood-explorer-export-v1"


def check_backend(backend) -> str:
    """``backend`` as one of ``BACKENDS``; a ValueError lists them otherwise."""
    if not isinstance(backend, str) or backend.strip().lower() not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not one of {list(BACKENDS)}")
    return backend.strip().lower()


def installed(backend: str) -> bool:
    """True when the packages ``backend`` needs are installed (nothing is imported)."""
    if backend == TORCH:
        return True
    return all(importlib.util.find_spec(module) is not None for module, _ in REQUIRES[backend])


def backend_version(backend: str) -> str:
    """The installed version(s) behind ``backend`` (from the package metadata; nothing is imported)."""
    packages = [("torch", "torch")] if backend == TORCH else [("torch", "torch"), *REQUIRES[backend]]
    return ",".join(f"{dist}=={importlib.metadata.version(dist)}" for _, dist in packages)


def export_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where exports live: ``exports/`` in the run's cache folder ``cache_dir`` (``--cache-dir``,
    ``analyze(cache_dir=)``), else in the ``cache_dir`` setting's."""
    if cache_dir is not None:
        return Path(cache_dir) / "exports"
    from ood_core import settings

    return Path(settings.value("cache_dir")) / "exports"


def export_key(backend: str, model: str, weights: str, image_size: int, fold_batchnorm: bool) -> str:
    """Content key of one export: what changes the exported graph or how it runs."""
    fields = {"format": EXPORT_FORMAT, "backend": backend, "version": backend_version(backend), "model": model,
              "weights": weights, "image_size": int(image_size), "fold_batchnorm": bool(fold_batchnorm)}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]


def _verdict_path(key: str, folder: Path | None = None) -> Path:
    return (folder or export_dir()) / key / "verdict.json"


def read_verdict(key: str, folder: Path | None = None) -> dict | None:
    """The stored verdict of export ``key`` (None when absent or unreadable)."""
    try:
        verdict = json.loads(_verdict_path(key, folder).read_text())
    except (OSError, ValueError):
        return None
    return verdict if isinstance(verdict, dict) and isinstance(verdict.get("ok"), bool) else None


def resolve_backend(backend: str, device_type: str, model: str, weights: str, image_size: int | None,
                    fold_batchnorm: bool, cache_dir: str | os.PathLike | None = None) -> tuple[str, str]:
    """The backend to run with and why: ``(name, reason)``. Cheap: builds and imports nothing.

    ``auto`` on the CPU takes the first of ``AUTO_ORDER`` that is installed and not recorded as
    disagreeing with torch for these settings; an explicit backend must be installed and needs the
    CPU. ``image_size`` None (settings not yet resolved per image set) keeps ``auto``. The verdicts
    are read from the exports of the cache folder ``cache_dir`` (see :func:`export_dir`)."""
    backend = check_backend(backend)
    if backend == TORCH:
        return TORCH, "asked for"
    if backend != AUTO:
        if device_type != "cpu":
            raise ValueError(f"backend={backend!r} runs on the CPU; device is {device_type!r} "
                             "(use backend='torch' or 'auto' there)")
        if not installed(backend):
            pip = " ".join(dist for _, dist in REQUIRES[backend])
            raise ValueError(f"backend={backend!r} needs the package(s) {pip} (pip install {pip}); "
                             "or use backend='torch'")
        return backend, "asked for"
    if device_type != "cpu":
        return TORCH, f"the device is {device_type}: torch runs it"
    if image_size is None:
        return AUTO, "resolved per image set"
    reasons = []
    for name in AUTO_ORDER:
        if not installed(name):
            reasons.append(f"{name} is not installed")
            continue
        verdict = read_verdict(export_key(name, model, weights, image_size, fold_batchnorm), export_dir(cache_dir))
        if verdict is not None and not verdict["ok"]:
            reasons.append(f"{name} disagreed with torch ({verdict.get('reason', '')})")
            continue
        return name, "; ".join([*reasons, f"{name} is the fastest usable backend"])
    return TORCH, "; ".join(reasons) + "; using torch"


class FeatureModule:
    """Wraps a timm network as uint8 NHWC batch -> pooled pre-logits features (what is exported)."""

    @staticmethod
    def build(net, mean, std):
        """A torch module taking uint8 (N, H, W, 3) and returning float32 (N, D)."""
        import torch

        class _Features(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.net = net
                self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)
                self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)

            def forward(self, x):
                x = (x.permute(0, 3, 1, 2).float() - self.mean) / self.std
                return self.net.forward_head(self.net.forward_features(x), pre_logits=True)

        return _Features().eval()


def probe_batch(image_size: int) -> np.ndarray:
    """The fixed batch exports are checked on: smooth random colour images, uint8 NHWC."""
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, size=(PROBE_IMAGES, 8, 8, 3)).astype(np.float32)
    reps = -(-image_size // 8)
    smooth = np.repeat(np.repeat(coarse, reps, axis=1), reps, axis=2)[:, :image_size, :image_size]
    noise = rng.normal(0, 12, size=smooth.shape)
    return np.clip(smooth + noise, 0, 255).astype(np.uint8)


def agreement(ref: np.ndarray, out: np.ndarray) -> tuple[bool, float, float]:
    """(agrees, max |difference|, smallest row cosine) of ``out`` against torch's ``ref``."""
    if out.shape != ref.shape or not np.isfinite(out).all():
        return False, float("inf"), -1.0
    diff = float(np.abs(out.astype(np.float64) - ref).max())
    num = (out.astype(np.float64) * ref).sum(axis=1)
    den = np.linalg.norm(out.astype(np.float64), axis=1) * np.linalg.norm(ref.astype(np.float64), axis=1)
    cos = float(np.min(np.where(den > 0, num / np.where(den > 0, den, 1.0), 1.0)))
    return diff <= MAX_ABS_DIFF and cos >= MIN_COSINE, diff, cos


def _threads() -> int:
    import torch

    return max(1, torch.get_num_threads())


def _export(backend: str, module, image_size: int, folder: Path) -> list[str]:
    """Write ``module``'s export for ``backend`` into ``folder``; returns the file names."""
    import torch

    example = torch.from_numpy(probe_batch(image_size)[:1])
    if backend == "openvino":
        import openvino as ov

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about timm's padding arithmetic
            graph = ov.convert_model(module, example_input=example, input=[(-1, image_size, image_size, 3)])
        ov.save_model(graph, str(folder / "model.xml"), compress_to_fp16=False)
        return ["model.xml", "model.bin"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(folder / "model.onnx"), dynamo=False, input_names=["images"],
                          output_names=["features"], dynamic_axes={"images": {0: "n"}, "features": {0: "n"}},
                          opset_version=17)
    return ["model.onnx"]


def _load(backend: str, folder: Path) -> Callable[[np.ndarray], np.ndarray]:
    """A function uint8 NHWC batch -> float32 features running the export in ``folder``."""
    threads = _threads()
    if backend == "openvino":
        import openvino as ov

        core = ov.Core()
        compiled = core.compile_model(core.read_model(str(folder / "model.xml")), "CPU", {
            "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"})
        request = compiled.create_infer_request()

        def run_openvino(batch: np.ndarray) -> np.ndarray:
            return np.array(request.infer({0: np.ascontiguousarray(batch)})[0], dtype=np.float32, copy=True)

        return run_openvino
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])

    def run_onnx(batch: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {"images": np.ascontiguousarray(batch)})[0], dtype=np.float32)

    return run_onnx


def _digests(folder: Path, names: list[str]) -> dict[str, str]:
    from ood_core._files import file_digest

    return {name: file_digest(folder / name) for name in names}


def _open_existing(backend: str, key: str, root: Path):
    """The cached export's runner, None when absent; a damaged one is removed with a warning."""
    folder = root / key
    verdict = read_verdict(key, root)
    if verdict is None or not verdict["ok"]:
        return None
    try:
        files, _ = verdict["files"], int(verdict["num_features"])
        if _digests(folder, list(files)) != files:
            raise ValueError("its files do not match their recorded SHA-256")
        return _load(backend, folder)
    except Exception as exc:  # noqa: BLE001 - damaged, truncated or foreign: rebuild it
        warnings.warn(f"the cached {backend} export {folder} is damaged ({type(exc).__name__}: {exc}); "
                      "rebuilding it", stacklevel=3)
        shutil.rmtree(folder, ignore_errors=True)
        return None


def _store(key: str, root: Path, build: Callable[[Path], dict]) -> None:
    """Build an export into a temporary folder beside its place, then rename it into place."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}.", dir=root))
    try:
        verdict = build(tmp)
        (tmp / "verdict.json").write_text(json.dumps(verdict, sort_keys=True, indent=1))
        target = root / key
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def exported_runner(backend: str, network: Callable, *, model: str, weights: str, image_size: int,
                    fold_batchnorm: bool, mean, std, reference: Callable,
                    cache_dir: str | os.PathLike | None = None,
                    ) -> tuple[Callable[[np.ndarray], np.ndarray] | None, dict]:
    """The runner on ``backend`` of the torch module ``network()`` (exported once, kept in the cache;
    a cached export needs no torch module, so ``network`` is called only to make one), or None when
    the export disagrees with torch's ``reference()`` (a batch -> features function) on the probe
    batch. Returns ``(runner, verdict)``; the verdict holds ``num_features``. The export is kept in
    the cache folder ``cache_dir`` (see :func:`export_dir`)."""
    key = export_key(backend, model, weights, image_size, fold_batchnorm)
    root = export_dir(cache_dir)
    runner = _open_existing(backend, key, root)
    if runner is not None:
        return runner, read_verdict(key, root) or {}
    net = network()
    probe = probe_batch(image_size)
    ref = reference()(probe)
    built: dict = {}

    def build(folder: Path) -> dict:
        names = _export(backend, FeatureModule.build(net, mean, std), image_size, folder)
        run = _load(backend, folder)
        ok, diff, cos = agreement(ref, run(probe))
        built["runner"] = run if ok else None
        return {"ok": ok, "max_abs_diff": diff, "min_cosine": cos, "backend": backend,
                "num_features": int(ref.shape[1]),
                "version": backend_version(backend), "files": _digests(folder, names) if ok else {},
                "reason": (f"max |difference| {diff:.1e}, min cosine {cos:.6f} on {PROBE_IMAGES} probe images"
                           + ("" if ok else f"; needs <= {MAX_ABS_DIFF:g} and >= {MIN_COSINE}"))}

    try:
        _store(key, root, build)
    except OSError as exc:  # a cache folder that cannot be written costs only the reuse
        logger.warning("could not keep the %s export in %s (%s)", backend, root, exc)
        if "runner" not in built:
            raise
    # The runner keeps working from the renamed folder: its model is already in memory.
    return built.get("runner"), read_verdict(key, root) or {}


__all__ = ["AUTO_ORDER", "BACKENDS", "agreement", "backend_version", "check_backend", "exported_runner",
           "installed", "resolve_backend"]
