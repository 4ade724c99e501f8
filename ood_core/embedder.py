"""Image embeddings from a pretrained timm model.

:class:`Embedder` turns an :class:`~ood_core.sources.ImageSet` into float32 pooled
features (N, D), decoding images in threads ahead of the model. Its settings are
resolved into a frozen :class:`~ood_core._embed_config.EmbedConfig` (the cache key is
built from it; see :mod:`ood_core._embed_config` for the automatic input size).
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from ood_core._backends import TORCH, check_backend, exported_runner, resolve_backend
from ood_core._batchnorm import fold_batchnorm
from ood_core._device import resolve_device
from ood_core._embed_config import AUTO, MODEL_CHOICES, RESAMPLE, EmbedConfig, resolve_embed_config, resolve_for_images
from ood_core._pixels import centre_on_fit, pixel_rows, pixel_width
from ood_core._progress import StepProgress
from ood_core.sources._io import describe_error
from ood_core.sources import ImageSet
from ood_core.weights import DEFAULT_MODEL, DEFAULT_NETWORK, load_model



def _prepare(img: Image.Image, size: int, crop_pct: float, resample) -> np.ndarray:
    """timm's eval transform on a PIL image: resize the shorter side to
    floor(size / crop_pct), centre-crop size x size; returns uint8 (size, size, 3)."""
    scale = math.floor(size / crop_pct)
    w, h = img.size
    if w <= h:
        nw, nh = scale, int(scale * h / w)
    else:
        nw, nh = int(scale * w / h), scale
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), resample)
    if (nw, nh) != (size, size):
        top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
        img = img.crop((left, top, left + size, top + size))
    return np.asarray(img)


def _runner_key(cfg: EmbedConfig) -> tuple:
    return cfg.backend, cfg.model, cfg.weights, cfg.image_size, cfg.fold_batchnorm


class Embedder:
    """Pooled features of a pretrained timm model, or the images' pixels.

    Parameters
    ----------
    model : "auto" (pixels for tiny grayscale images, else ``DEFAULT_NETWORK``), a timm
        model name or alias (``lite0``..``lite2``), or a pixel model (``pixels``,
        ``pixels-raw``); see :mod:`ood_core._embed_config`.
    weights : "bundled" (tf_efficientnet_lite0/1/2, no network), "hub" (timm's
        pretrained weights, needs the network) or a path to a .safetensors/.pth file;
        ignored by pixel models.
    image_size : square input side in pixels; None = auto (see :mod:`ood_core._embed_config`).
    device : "auto" (CUDA when present, else CPU), "cpu", "cuda", "cuda:1", "mps", …
    batch_size : images per forward pass.
    num_workers : image-decoding threads running ahead of the model; None = auto.
    fold_batchnorm : fold BatchNorm into the convolutions (about 1.5x faster on CPU;
        features differ from the unfolded model by ~1e-5, and are cached separately).
    backend : "auto" (the fastest installed CPU backend that agrees with torch, else torch;
        torch on CUDA), "torch", "onnx" (ONNX Runtime) or "openvino"; see :mod:`ood_core._backends`.
        The chosen one is ``config_for(images).backend`` (part of the cache key) and
        ``backend_reason_`` says why.
    cache_dir : the cache folder whose ``exports/`` keeps the backend's exports and their verdicts
        (the run's ``--cache-dir`` / ``cache_dir=``); None = the ``cache_dir`` setting.

    ``config`` holds the resolved settings (``image_size``/``crop_pct`` None when
    auto); ``config_for(images)`` the ones an image set is embedded with.
    After ``embed``, ``failures_`` lists (index, path, reason) of images that could
    not be decoded; their feature rows are NaN (see :func:`drop_failed`).
    """

    def __init__(self, model: str = DEFAULT_MODEL, weights: str | os.PathLike = "bundled",
                 image_size: int | None = None, device: str = "auto", batch_size: int = 64,
                 num_workers: int | None = None, fold_batchnorm: bool = True, backend: str = "auto",
                 cache_dir: str | os.PathLike | None = None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if num_workers is not None and (not isinstance(num_workers, int) or num_workers < 1):
            raise ValueError(f"num_workers must be a positive int or None, got {num_workers!r}")
        self.model = model
        self.weights = weights
        self.image_size = image_size
        self.device = device
        self.batch_size = int(batch_size)
        self.num_workers = num_workers
        self.fold_batchnorm = fold_batchnorm
        self.backend = check_backend(backend)
        self.cache_dir = cache_dir
        self.device_ = resolve_device(device)
        self.config = resolve_embed_config(model, weights, image_size, fold_batchnorm=fold_batchnorm,
                                           backend=self.backend, device_type=self.device_.type, cache_dir=cache_dir)
        self.backend_reason_ = ""
        self.failures_: list[tuple[int, str, str]] = []
        self._nets: dict = {}
        self._runners: dict = {}
        self._fell_back: set = set()
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return (f"Embedder(model={self.model!r}, weights={self.weights!r}, image_size={self.image_size!r}, "
                f"device={self.device!r}, batch_size={self.batch_size}, backend={self.backend!r})")

    def config_for(self, images: ImageSet) -> EmbedConfig:
        """The fully resolved settings ``images`` are embedded with."""
        cfg = self.config if self.config.resolved else resolve_for_images(
            self.model, self.weights, self.image_size, images, fold_batchnorm=self.fold_batchnorm,
            fallback_size=self.config.model_image_size, backend=self.backend, device_type=self.device_.type,
            cache_dir=self.cache_dir)
        if _runner_key(cfg) in self._fell_back:  # its export disagreed with torch: torch computed them
            cfg = dataclasses.replace(cfg, backend=TORCH)
        return cfg

    def _network(self, name: str):
        """The torch module of timm model ``name`` (loaded once, eval mode, on ``device_``)."""
        import torch

        with self._lock:
            if name not in self._nets:
                net, _ = load_model(name, self.weights)
                net = net.requires_grad_(False)
                if self.config.fold_batchnorm:
                    net = fold_batchnorm(net)
                self._nets[name] = net.to(self.device_, memory_format=torch.channels_last)
            return self._nets[name]

    @property
    def network(self):
        """The torch module (loaded on first use); ``DEFAULT_NETWORK``'s for ``model="auto"``."""
        if self.config.pixels:
            raise ValueError(f"model={self.config.model!r} embeds pixels: it has no network")
        return self._network(DEFAULT_NETWORK if self.config.model == AUTO else self.config.model)

    @property
    def num_features(self) -> int:
        """Width D of the pooled features of :attr:`network`."""
        return int(self.network.num_features)

    def embed(self, images: ImageSet, progress: StepProgress | None = None, collector=None) -> np.ndarray:
        """Features of every image: float32 (N, D); NaN rows for undecodable images.

        A network gives its pooled pre-logits features; a pixel model the pixels
        (``pixels`` centred on the mean of the set's fit rows, see :mod:`ood_core._pixels`).
        ``collector`` (e.g. an :class:`~ood_core.issues.ImageStatsCollector`): its ``reduce(i, img)``
        gets each image as decoded, before it is resized for the model, ``add_decoded(items,
        reduced)`` each batch, and ``fail(i)`` each image that could not be decoded, so image
        statistics cost no second read of the files."""
        if not isinstance(images, ImageSet):
            raise TypeError(f"images must be an ImageSet (see ood_core.sources), got {type(images).__name__}")
        cfg = self.config_for(images)
        n = len(images)
        if cfg.pixels:
            width, forward = pixel_width(cfg), lambda buf: pixel_rows(buf, cfg)
        else:
            forward, width = self._runner(cfg)
        out = np.empty((n, width), dtype=np.float32)
        self.failures_ = []
        if progress is not None:
            progress(0, n)
        if n == 0:
            return out
        for start, stop, buf, bad in self._decoded_batches(images, cfg, collector):
            out[start:stop] = forward(buf)
            for i, path, reason in bad:
                out[i] = np.nan
                self.failures_.append((i, path, reason))
            if progress is not None:
                progress(stop, n)
        if cfg.centre:
            centre_on_fit(out, images)
        if self.failures_:
            warnings.warn(
                f"{len(self.failures_)} of {n} images could not be decoded (first: "
                f"{self.failures_[0][1]}: {self.failures_[0][2]}); their feature rows are NaN",
                stacklevel=2,
            )
        return out

    def runner(self, cfg: EmbedConfig):
        """The function uint8 NHWC batch -> features for resolved settings ``cfg`` on ``cfg.backend``
        (exported and checked against torch once, see :mod:`ood_core._backends`). When the export
        disagrees with torch: ``backend="auto"`` warns and falls back to torch (the verdict is kept, so
        :meth:`config_for` says torch from then on), an explicit backend raises ValueError."""
        return self._runner(cfg)[0]

    def _runner(self, cfg: EmbedConfig):
        """``(runner, feature width)``; a cached export runs without building the torch network."""
        reason = resolve_backend(self.backend, self.device_.type, cfg.model, cfg.weights, cfg.image_size,
                                 cfg.fold_batchnorm, self.cache_dir)[1]
        if cfg.backend in (TORCH, "none"):
            net = self._network(cfg.model)
            self.backend_reason_ = reason
            return self._forward(net, cfg), int(net.num_features)
        key = _runner_key(cfg)
        with self._lock:
            if key not in self._runners:
                self._runners[key] = exported_runner(
                    cfg.backend, lambda: self._network(cfg.model), model=cfg.model, weights=cfg.weights,
                    image_size=cfg.image_size, fold_batchnorm=cfg.fold_batchnorm, mean=cfg.mean, std=cfg.std,
                    reference=lambda: self._forward(self._network(cfg.model), cfg), cache_dir=self.cache_dir)
        run, verdict = self._runners[key]
        if run is not None:
            self.backend_reason_ = f"{reason}; agrees with torch: {verdict.get('reason', '')}"
            return run, int(verdict["num_features"])
        message = f"the {cfg.backend} export of {cfg.model} disagrees with torch ({verdict.get('reason', '')})"
        if self.backend != "auto":
            raise ValueError(f"backend={self.backend!r}: {message}; use backend='torch' or 'auto'")
        warnings.warn(f"{message}; embedding with torch instead", stacklevel=3)
        self._fell_back.add(key)
        self.backend_reason_ = f"{message}; using torch"
        net = self._network(cfg.model)
        return self._forward(net, cfg), int(net.num_features)

    def _forward(self, net, cfg: EmbedConfig):
        """uint8 NHWC batch -> the network's pooled pre-logits features (float32 numpy)."""
        import torch

        dev = self.device_
        if dev.type == "cuda":
            # cuDNN's default TF32 convolutions round inputs to 10-bit mantissas: features would differ
            # from the CPU's by ~1e-3. Full float32 keeps CUDA and CPU features (and scores) the same.
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        mean = torch.tensor(cfg.mean, device=dev).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(cfg.std, device=dev).view(1, 3, 1, 1) * 255.0

        def forward(buf: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                # NHWC uint8 permuted to NCHW is already channels-last in memory.
                x = (torch.from_numpy(buf).to(dev).permute(0, 3, 1, 2).float() - mean) / std
                return net.forward_head(net.forward_features(x), pre_logits=True).float().cpu().numpy()

        return forward

    def _decoded_batches(self, images: ImageSet, cfg: EmbedConfig, collector=None):
        """Yield ``(start, stop, uint8 NHWC batch, failures)`` in order, decoded by a pool of
        threads running ``num_workers`` batches ahead of the model (each decoded image also
        passed to ``collector``, see :meth:`embed`)."""
        n, bs, size = len(images), self.batch_size, cfg.image_size
        resample = RESAMPLE[cfg.interpolation]
        draft = math.floor(size / cfg.crop_pct)

        def decode(start: int):
            stop = min(start + bs, n)
            buf = np.zeros((stop - start, size, size, 3), dtype=np.uint8)
            bad, decoded, smalls = [], [], []
            for j, i in enumerate(range(start, stop)):
                try:
                    img = images._load(i, draft)
                    buf[j] = _prepare(img, size, cfg.crop_pct, resample)
                except Exception as exc:  # noqa: BLE001 - one bad image must not stop the run
                    if collector is not None:
                        collector.fail(i)
                    bad.append((i, images.paths[i], describe_error(exc)))
                    continue
                small = collector.reduce(i, img) if collector is not None else None
                if small is not None:  # a few kB: the decoded image itself is not kept
                    decoded.append(i)
                    smalls.append(small)
            if collector is not None:
                collector.add_decoded(decoded, smalls)  # the whole batch at once: cheaper than one by one
            return start, stop, buf, bad

        workers = self.num_workers or (min(8, os.cpu_count() or 1) if self.device_.type == "cuda" else 2)
        starts = list(range(0, n, bs))
        with ThreadPoolExecutor(workers, thread_name_prefix="ood-decode") as pool:
            pending = deque(pool.submit(decode, s) for s in starts[: workers + 1])
            queued = len(pending)
            while pending:
                batch = pending.popleft().result()
                if queued < len(starts):
                    pending.append(pool.submit(decode, starts[queued]))
                    queued += 1
                yield batch


def drop_failed(images: ImageSet, features: np.ndarray,
                failures: list[tuple[int, str, str]] | None = None) -> tuple[ImageSet, np.ndarray]:
    """Remove rows whose features are not finite (undecodable images).

    Returns the remaining items and their features; the dropped files are added to
    ``skipped`` with the reason from ``failures`` (``Embedder.failures_``) when known.
    """
    features = np.asarray(features)
    if features.ndim != 2 or len(features) != len(images):
        raise ValueError(f"drop_failed: features has shape {features.shape}, expected ({len(images)}, D)")
    ok = np.isfinite(features).all(axis=1)
    if ok.all():
        return images, features
    reasons = {i: reason for i, _, reason in failures or []}
    kept = images.subset(ok)
    kept.description = images.description
    kept.skipped = list(images.skipped) + [
        (images.paths[i], reasons.get(int(i), "could not be decoded")) for i in np.flatnonzero(~ok)
    ]
    return kept, features[ok]


__all__ = ["MODEL_CHOICES", "EmbedConfig", "Embedder", "drop_failed", "resolve_embed_config"]
