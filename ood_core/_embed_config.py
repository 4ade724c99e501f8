"""Embedding settings, resolved once into a frozen :class:`EmbedConfig` (the cache key is built from it).

User values come first, then timm's data config for the model (mean, std, interpolation, crop).

The input size: ``image_size`` sets it. Left at None it is chosen per image set:
images up to ``SMALL_IMAGE_MAX_SIDE`` pixels (CIFAR-10, digits) are upscaled to
``SMALL_IMAGE_SIZE`` (measured: see the constants below), larger images use the
model's own input size. Upscaled images are never centre-cropped.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ood_core.sources import ImageSet
from ood_core.weights import DEFAULT_MODEL, resolve_weights

# Images whose typical longer side is at most this many pixels count as "small".
SMALL_IMAGE_MAX_SIDE = 64
# Default input size for small images, chosen by measurement (bench/embed.py: lite0,
# bundled weights, FeatureScorer on the CIFAR-10 demo split, 5000 fit / 1000 query):
# feature AUROC 0.697 at 32 px, 0.830 at 64, 0.901 at 96, 0.914 at 128, 0.911 at 160.
# 96 px only just reaches the 0.90 the demo must meet; 128 px is the best measured,
# at about half the images/s of 96 px (~220 img/s on 2 CPU cores).
SMALL_IMAGE_SIZE = 128
# Pillow resampling filter per timm interpolation name.
RESAMPLE = {
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
    """``image_size`` as an int in 8..2048, or None (auto)."""
    if image_size is None:
        return None
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
        raise TypeError(f"image_size must be an int or None, got {type(image_size).__name__}")
    if not 8 <= int(image_size) <= 2048:
        raise ValueError(f"image_size={image_size} must be between 8 and 2048 pixels (or None for auto)")
    return int(image_size)


def resolve_embed_config(
    model: str = DEFAULT_MODEL,
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
    if interpolation not in RESAMPLE:
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


__all__ = [
    "EmbedConfig",
    "RESAMPLE",
    "SMALL_IMAGE_MAX_SIDE",
    "SMALL_IMAGE_SIZE",
    "resolve_embed_config",
    "typical_side",
]
