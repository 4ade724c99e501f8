"""Image embeddings from a pretrained timm model.

:class:`Embedder` turns an :class:`~ood_core.sources.ImageSet` into float32 pooled
features (N, D). Its settings are resolved once, in :func:`resolve_embed_config`,
into a frozen :class:`EmbedConfig` (the cache key is built from it): user values
first, then timm's data config for the model (mean, std, interpolation, crop).

The input size: ``image_size`` sets it. Left at None it is chosen per image set:
images up to ``SMALL_IMAGE_MAX_SIDE`` pixels (CIFAR-10, digits) are upscaled to
``SMALL_IMAGE_SIZE`` (measured: see the module constants), larger images use the
model's own input size. Upscaled images are never centre-cropped.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

from ood_core._sources_io import describe_error
from ood_core.sources import ImageSet
from ood_core.weights import load_model, resolve_weights

logger = logging.getLogger(__name__)

# Images whose typical longer side is at most this many pixels count as "small".
SMALL_IMAGE_MAX_SIDE = 64
# Default input size for small images, chosen by measurement (bench/embed.py: lite0,
# bundled weights, FeatureScorer on the CIFAR-10 demo split, 5000 fit / 1000 query):
# feature AUROC 0.697 at 32 px, 0.830 at 64, 0.901 at 96, 0.914 at 128, 0.911 at 160.
# 96 px only just reaches the 0.90 the demo must meet; 128 px is the best measured,
# at about half the images/s of 96 px (~220 img/s on 2 CPU cores).
SMALL_IMAGE_SIZE = 128
# Pillow resampling filter per timm interpolation name.
_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


@dataclass(frozen=True)
class EmbedConfig:
    """Everything that changes the features (the cache key is built from it)."""

    model: str  # timm model name
    weights: str  # weights identity: "bundled:sha256:…", "hub:<hub id>", "file:sha256:…"
    image_size: int | None  # square input side in pixels; None = auto (per image set)
    crop_pct: float | None  # centre crop kept after resizing to image_size / crop_pct; None = auto
    interpolation: str  # resize filter ("bicubic", "bilinear", …)
    mean: tuple[float, float, float]  # per-channel normalisation, on 0..1 pixels
    std: tuple[float, float, float]
    model_image_size: int  # the model's own input size (used by auto for larger images)
    model_crop_pct: float  # the model's own centre crop (used by auto when downscaling)
    # BatchNorm folded into the convolutions (numerically ~1e-5 off the unfolded model, so
    # part of the cache key: features embedded without folding are never reused for it).
    fold_batchnorm: bool = True

    @property
    def resolved(self) -> bool:
        """True when nothing is left to choose per image set."""
        return self.image_size is not None and self.crop_pct is not None


def _check_image_size(image_size) -> int | None:
    if image_size is None:
        return None
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
        raise TypeError(f"image_size must be an int or None, got {type(image_size).__name__}")
    if not 8 <= int(image_size) <= 2048:
        raise ValueError(f"image_size={image_size} must be between 8 and 2048 pixels (or None for auto)")
    return int(image_size)


def resolve_embed_config(
    model: str = "tf_efficientnet_lite0",
    weights: str | os.PathLike = "bundled",
    image_size: int | None = None,
    *,
    native_size: int | None = None,
    fold_batchnorm: bool = True,
) -> EmbedConfig:
    """Resolve embedding settings: user values, then timm's data config for ``model``.

    With ``native_size`` (the typical longer side of the images) the auto choices
    are made too: ``image_size`` None -> ``SMALL_IMAGE_SIZE`` for images up to
    ``SMALL_IMAGE_MAX_SIDE`` px, else the model's size; no centre crop when the
    images are upscaled (native size <= input size), else the model's crop.
    """
    import timm
    from timm.data import resolve_data_config

    if not isinstance(model, str) or not timm.is_model(model):
        close = timm.list_models(f"*{model}*")[:8] if isinstance(model, str) else []
        raise ValueError(f"model={model!r} is not a timm model" + (f"; close matches: {close}" if close else ""))
    size = _check_image_size(image_size)
    if not isinstance(fold_batchnorm, (bool, np.bool_)):
        raise TypeError(f"fold_batchnorm must be True or False, got {type(fold_batchnorm).__name__}")
    spec = resolve_weights(weights, model)
    pretrained = timm.models.get_pretrained_cfg(model)
    data = resolve_data_config({}, pretrained_cfg=pretrained.to_dict() if pretrained else {})
    interpolation = data.get("interpolation", "bicubic")
    if interpolation not in _RESAMPLE:
        interpolation = "bicubic"
    model_size = int(data["input_size"][-1])
    model_crop = float(data.get("crop_pct") or 1.0)
    crop = None
    if native_size is not None:
        if size is None:
            size = SMALL_IMAGE_SIZE if native_size <= SMALL_IMAGE_MAX_SIDE else model_size
        crop = 1.0 if native_size <= size else model_crop
    return EmbedConfig(
        model=model,
        weights=spec.identity,
        image_size=size,
        crop_pct=crop,
        interpolation=interpolation,
        mean=tuple(float(v) for v in data["mean"]),
        std=tuple(float(v) for v in data["std"]),
        model_image_size=model_size,
        model_crop_pct=model_crop,
        fold_batchnorm=bool(fold_batchnorm),
    )


def typical_side(images: ImageSet, n_sample: int = 8) -> int | None:
    """The images' typical longer side: ``size_hint`` or the median of a few samples."""
    if images.size_hint is not None:
        return int(images.size_hint)
    sides = []
    for i in np.unique(np.linspace(0, len(images) - 1, num=min(n_sample, len(images))).astype(int)):
        try:
            sides.append(max(images.load_image(i).size))
        except Exception:  # noqa: BLE001 - unreadable samples are reported at embed time
            continue
    return int(np.median(sides)) if sides else None


def _resolve_device(device: str):
    import torch

    if not isinstance(device, str):
        raise TypeError(f"device must be a string like 'auto', 'cpu' or 'cuda', got {type(device).__name__}")
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device={device!r} is not a torch device; use 'auto', 'cpu' or 'cuda'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} requested but CUDA is not available; use 'auto' or 'cpu'")
    return dev


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


def _fold_batchnorm_in_place(net) -> int:
    """Fold each eval-mode BatchNorm into the convolution registered just before it;
    the norm is replaced by its activation (timm's BatchNormAct2d) or nothing.
    Returns how many pairs were folded."""
    import torch
    from torch import nn

    class _ActOnly(nn.Module):
        def __init__(self, bn):
            super().__init__()
            self.act = getattr(bn, "act", nn.Identity())
            self.drop = getattr(bn, "drop", nn.Identity())

        def forward(self, x):
            return self.drop(self.act(x))

    folded = 0
    with torch.no_grad():
        for parent in list(net.modules()):
            children = list(parent.named_children())
            for (_, conv), (bn_name, bn) in zip(children, children[1:]):
                if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats and bn.affine
                        and bn.num_features == conv.out_channels):
                    continue
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                bias = bn.bias - bn.running_mean * scale
                if conv.bias is not None:
                    bias = bias + conv.bias * scale
                conv.weight.mul_(scale.view(-1, 1, 1, 1))
                conv.bias = nn.Parameter(bias)
                setattr(parent, bn_name, _ActOnly(bn))
                folded += 1
    return folded


def fold_batchnorm(net):
    """An inference copy of ``net`` with BatchNorm folded into the convolutions
    (about 1.5x faster on CPU), checked against ``net`` on a random batch; ``net``
    itself when nothing folds or the outputs would change."""
    import copy

    import torch

    folded = copy.deepcopy(net).eval()
    if _fold_batchnorm_in_place(folded) == 0:
        return net
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    try:
        with torch.inference_mode():
            ref, out = net(x), folded(x)
    except Exception:  # noqa: BLE001 - e.g. a fixed input size: keep the model as it is
        return net
    if not torch.allclose(out, ref, rtol=1e-3, atol=1e-4 * float(ref.abs().max()) + 1e-6):
        logger.info("folding BatchNorm changed the outputs of %s; using the model unfolded", type(net).__name__)
        return net
    return folded


class Embedder:
    """Pooled features of a pretrained timm model (default: EfficientNet-Lite0, bundled weights).

    Parameters
    ----------
    model : timm model name.
    weights : "bundled" (only for tf_efficientnet_lite0, no network), "hub" (timm's
        pretrained weights, needs the network) or a path to a .safetensors/.pth file.
    image_size : square input side in pixels; None = auto (see module docstring).
    device : "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:1", …
    batch_size : images per forward pass.
    num_workers : image-decoding threads running ahead of the model; None = auto.
    fold_batchnorm : fold BatchNorm into the convolutions (about 1.5x faster on CPU;
        features differ from the unfolded model by ~1e-5, and are cached separately).

    ``config`` holds the resolved settings (``image_size``/``crop_pct`` None when
    auto); ``config_for(images)`` the ones an image set is embedded with.
    After ``embed``, ``failures_`` lists (index, path, reason) of images that could
    not be decoded; their feature rows are NaN (see :func:`drop_failed`).
    """

    def __init__(self, model: str = "tf_efficientnet_lite0", weights: str | os.PathLike = "bundled",
                 image_size: int | None = None, device: str = "auto", batch_size: int = 64,
                 num_workers: int | None = None, fold_batchnorm: bool = True):
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
        self.config = resolve_embed_config(model, weights, image_size, fold_batchnorm=fold_batchnorm)
        self.device_ = _resolve_device(device)
        self.failures_: list[tuple[int, str, str]] = []
        self._net = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"Embedder(model={self.model!r}, weights={self.weights!r}, image_size={self.image_size!r}, "
                f"device={self.device!r}, batch_size={self.batch_size})")

    def config_for(self, images: ImageSet) -> EmbedConfig:
        """The fully resolved settings ``images`` are embedded with."""
        if self.config.resolved:
            return self.config
        return resolve_embed_config(self.model, self.weights, self.image_size,
                                    native_size=typical_side(images) or self.config.model_image_size,
                                    fold_batchnorm=self.fold_batchnorm)

    @property
    def network(self):
        """The torch module (loaded on first use, eval mode, on ``device_``)."""
        import torch

        with self._lock:
            if self._net is None:
                net, _ = load_model(self.model, self.weights)
                net = net.requires_grad_(False)
                if self.config.fold_batchnorm:
                    net = fold_batchnorm(net)
                self._net = net.to(self.device_, memory_format=torch.channels_last)
            return self._net

    @property
    def num_features(self) -> int:
        """Width D of the pooled features."""
        return int(self.network.num_features)

    def embed(self, images: ImageSet, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Pooled features of every image: float32 (N, D); NaN rows for undecodable images."""
        net = self.network
        return self._run(images, lambda x: net.forward_head(net.forward_features(x), pre_logits=True),
                         self.num_features, progress)

    def classify(self, images: ImageSet, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Class logits of the model's own head (ImageNet for pretrained weights): float32 (N, C)."""
        net = self.network
        return self._run(images, net, int(net.num_classes), progress)

    def _run(self, images: ImageSet, head, width: int, progress) -> np.ndarray:
        import torch

        if not isinstance(images, ImageSet):
            raise TypeError(f"images must be an ImageSet (see ood_core.sources), got {type(images).__name__}")
        cfg = self.config_for(images)
        n, bs, size = len(images), self.batch_size, cfg.image_size
        out = np.empty((n, width), dtype=np.float32)
        self.failures_ = []
        if progress is not None:
            progress(0, n)
        if n == 0:
            return out
        resample = _RESAMPLE[cfg.interpolation]
        draft = math.floor(size / cfg.crop_pct)
        dev = self.device_
        mean = torch.tensor(cfg.mean, device=dev).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(cfg.std, device=dev).view(1, 3, 1, 1) * 255.0

        def decode(start: int):
            stop = min(start + bs, n)
            buf = np.zeros((stop - start, size, size, 3), dtype=np.uint8)
            bad = []
            for j, i in enumerate(range(start, stop)):
                try:
                    buf[j] = _prepare(images._load(i, draft), size, cfg.crop_pct, resample)
                except Exception as exc:  # noqa: BLE001 - one bad image must not stop the run
                    bad.append((i, images.paths[i], describe_error(exc)))
            return start, stop, buf, bad

        workers = self.num_workers or (min(8, os.cpu_count() or 1) if dev.type == "cuda" else 2)
        starts = list(range(0, n, bs))
        with ThreadPoolExecutor(workers, thread_name_prefix="ood-decode") as pool, torch.inference_mode():
            pending = deque(pool.submit(decode, s) for s in starts[: workers + 1])
            queued = len(pending)
            while pending:
                start, stop, buf, bad = pending.popleft().result()
                if queued < len(starts):
                    pending.append(pool.submit(decode, starts[queued]))
                    queued += 1
                # NHWC uint8 permuted to NCHW is already channels-last in memory.
                x = torch.from_numpy(buf).to(dev).permute(0, 3, 1, 2).float()
                x = (x - mean) / std
                out[start:stop] = head(x).float().cpu().numpy()
                for i, path, reason in bad:
                    out[i] = np.nan
                    self.failures_.append((i, path, reason))
                if progress is not None:
                    progress(stop, n)
        if self.failures_:
            warnings.warn(
                f"{len(self.failures_)} of {n} images could not be decoded (first: "
                f"{self.failures_[0][1]}: {self.failures_[0][2]}); their feature rows are NaN",
                stacklevel=3,
            )
        return out


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


__all__ = [
    "EmbedConfig",
    "Embedder",
    "SMALL_IMAGE_MAX_SIDE",
    "SMALL_IMAGE_SIZE",
    "drop_failed",
    "fold_batchnorm",
    "resolve_embed_config",
    "typical_side",
]
