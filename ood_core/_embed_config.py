"""Embedding settings, resolved once into a frozen :class:`EmbedConfig` (the cache key is built from it).

The model: a timm model name (or a short alias, ``lite0``..``lite2``), a pixel model
(``pixels``: the flattened, resized pixels, centred on the fit rows' mean;
``pixels-raw``: the same without centring), or ``auto``, resolved per image set:

* grayscale images whose typical longer side is at most ``PIXELS_AUTO_MAX_SIDE``
  pixels (the 8x8 digits) get ``pixels``. Measured on the digits (0-4 fit, all scored):
  feature AUROC 0.993 with ``pixels``, 0.985 with ``pixels-raw``, 0.83 with lite0 at
  128 px: an ImageNet network is the wrong embedder for them;
* everything else gets ``DEFAULT_NETWORK`` (see :mod:`ood_core.weights`). On colour
  32 px images (CIFAR-10) the networks win by far (``pixels`` 0.43, ``pixels-raw`` 0.55).

The input size: ``image_size`` sets it. Left at None it is chosen per image set. For a
network, images up to ``SMALL_IMAGE_MAX_SIDE`` pixels (CIFAR-10) are upscaled to
``small_image_size(model)``, measured per model (bench/models.py), larger images use the
model's own input size. Mean, std, interpolation and centre crop come from timm's
pretrained config for the network, never assumed; the crop applies to upscaled images
too (lite2 at 160 px on the CIFAR-10 demo split: 0.952 with its crop of 0.89, 0.946
without; lite0 at 128 px: 0.920 and 0.914). Pixel models keep the images' own size up
to ``PIXELS_MAX_SIDE`` (larger images are shrunk to it, box filter), with one channel
when the images are grayscale.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ood_core.sources import ImageSet
from ood_core._backends import AUTO as AUTO_BACKEND, check_backend, resolve_backend
from ood_core.weights import DEFAULT_MODEL, DEFAULT_NETWORK, MODEL_ALIASES, PRETRAINED, bundled_installed, resolve_weights

AUTO = "auto"
# Pixel models: name -> whether the features are centred on the fit rows' mean.
PIXEL_MODELS = {"pixels": True, "pixels-raw": False}
# The models a user can pick by a short name (any other timm model name works too); the networks
# listed are those whose bundled weights are installed (lite1's package is optional).
MODEL_CHOICES = (AUTO, *(a for a, m in MODEL_ALIASES.items() if bundled_installed(m)), *PIXEL_MODELS)
# "auto" picks "pixels" for grayscale images whose typical longer side is at most this.
PIXELS_AUTO_MAX_SIDE = 16
# Pixel features of larger images are taken at this side (box-filtered).
PIXELS_MAX_SIDE = 32
# Images whose typical longer side is at most this many pixels count as "small".
SMALL_IMAGE_MAX_SIDE = 64
# Input size of a network for small images, by measurement (bench/models.py: FeatureScorer on the
# CIFAR-10 demo split, 5000 fit / 1000 query, and a vehicles-in / animals-out split; demo AUROC):
# lite0 0.920 at 128 px, 0.909 at 160; lite1 0.930 at 128, 0.940 at 160; lite2 0.949 at 128,
# 0.952 at 160, 0.948 at 192 (the held-out split agrees: lite2 0.961, 0.970, 0.970).
SMALL_IMAGE_SIZES = {"tf_efficientnet_lite0": 128, "tf_efficientnet_lite1": 160, "tf_efficientnet_lite2": 160}
SMALL_IMAGE_SIZE = 128  # any other network
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

    model: str  # timm model name, a pixel model, or "auto" (until resolved per image set)
    weights: str  # weights identity: "bundled:sha256:…", "hub:<hub id>", "file:sha256:…"; "none" for pixels
    image_size: int | None  # square input side in pixels; None = auto (per image set)
    crop_pct: float | None  # centre crop kept after resizing to image_size / crop_pct; None = auto
    interpolation: str  # resize filter ("bicubic", "bilinear", "box", …)
    mean: tuple[float, float, float]  # per-channel normalisation, on 0..1 pixels
    std: tuple[float, float, float]
    model_image_size: int  # the model's own input size (used by auto for larger images)
    model_crop_pct: float  # the model's own centre crop (used by auto when downscaling)
    # BatchNorm folded into the convolutions (numerically ~1e-5 off the unfolded model, so
    # part of the cache key: features embedded without folding are never reused for it).
    fold_batchnorm: bool = True
    channels: int = 3  # pixel models: 1 when the images are grayscale
    centre: bool = False  # pixel models: features minus their mean over the fit rows
    # The inference backend that computes the features ("torch", "onnx", "openvino"; "none" for pixel
    # models; "auto" until resolved per image set), see ood_core._backends.
    backend: str = "torch"

    @property
    def resolved(self) -> bool:
        """True when nothing is left to choose per image set."""
        return (self.model != AUTO and self.image_size is not None and self.crop_pct is not None
                and self.backend != AUTO_BACKEND)

    @property
    def pixels(self) -> bool:
        """True for a pixel model (no network)."""
        return self.model in PIXEL_MODELS


def small_image_size(model: str) -> int:
    """The input size a network gets for small images (measured per model)."""
    return SMALL_IMAGE_SIZES.get(model, SMALL_IMAGE_SIZE)


def canonical_model(model) -> str:
    """``model`` with aliases spelled out (``lite2`` -> ``tf_efficientnet_lite2``); checked
    (timm is imported only for a model outside the bundled table)."""
    if not isinstance(model, str):
        raise ValueError(f"model={model!r} is not a model name (a timm model, {list(MODEL_ALIASES)}, "
                         f"{list(PIXEL_MODELS)} or {AUTO!r})")
    name = MODEL_ALIASES.get(model.strip(), model.strip())
    if name == AUTO or name in PIXEL_MODELS or name in PRETRAINED:
        return name
    import timm

    if timm.is_model(name):
        return name
    close = timm.list_models(f"*{name}*")[:8] if name else []
    raise ValueError(f"model={model!r} is not a timm model, {list(PIXEL_MODELS)} or {AUTO!r}"
                     + (f"; close matches: {close}" if close else ""))


def _check_image_size(image_size) -> int | None:
    """``image_size`` as an int in 8..2048, or None (auto)."""
    if image_size is None:
        return None
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
        raise TypeError(f"image_size must be an int or None, got {type(image_size).__name__}")
    if not 8 <= int(image_size) <= 2048:
        raise ValueError(f"image_size={image_size} must be between 8 and 2048 pixels (or None for auto)")
    return int(image_size)


def _pixel_config(model: str, size: int | None, native_size: int | None, grayscale: bool | None) -> EmbedConfig:
    if size is None and native_size is not None:
        size = min(native_size, PIXELS_MAX_SIDE)
    # Resolved only with the images' colour known: grayscale images give one channel.
    return EmbedConfig(model=model, weights="none", image_size=size, crop_pct=None if grayscale is None else 1.0,
                       interpolation="box",
                       mean=(0.5,) * 3, std=(0.5,) * 3, model_image_size=PIXELS_MAX_SIDE, model_crop_pct=1.0,
                       fold_batchnorm=False, channels=3 if grayscale is None else (1 if grayscale else 3),
                       centre=PIXEL_MODELS[model], backend="none")


def _data_config(network: str) -> dict:
    """timm's data config of ``network`` (mean, std, interpolation, crop, input size); the bundled
    models' from the table in :mod:`ood_core.weights`, without importing timm."""
    if network in PRETRAINED:
        cfg = PRETRAINED[network]
        return {"input_size": (3, cfg["input_size"], cfg["input_size"]), "interpolation": cfg["interpolation"],
                "mean": cfg["mean"], "std": cfg["std"], "crop_pct": cfg["crop_pct"]}
    import timm
    from timm.data import resolve_data_config

    pretrained = timm.models.get_pretrained_cfg(network)
    return resolve_data_config({}, pretrained_cfg=pretrained.to_dict() if pretrained else {})


def resolve_embed_config(
    model: str = DEFAULT_MODEL,
    weights: str | os.PathLike = "bundled",
    image_size: int | None = None,
    *,
    native_size: int | None = None,
    grayscale: bool | None = None,
    fold_batchnorm: bool = True,
    backend: str = "torch",
    device_type: str = "cpu",
    cache_dir: str | os.PathLike | None = None,
) -> EmbedConfig:
    """Resolve embedding settings: user values, then timm's data config for the network.

    With ``native_size`` (the typical longer side of the images) and ``grayscale`` the
    per-image-set choices are made too (see the module docstring): ``auto`` becomes a
    pixel model or ``DEFAULT_NETWORK``; a network's ``image_size`` None becomes
    ``small_image_size(model)`` for images up to ``SMALL_IMAGE_MAX_SIDE`` px, else the
    model's size, with the model's own centre crop. Without them, an
    ``auto`` model keeps ``model="auto"`` (unresolved) and the network's settings.
    Pixel models take no weights: ``weights`` is ignored for them. ``backend`` ("auto", "torch",
    "onnx", "openvino") is resolved for ``device_type`` by :func:`ood_core._backends.resolve_backend`
    once the input size is known (its verdicts read from the exports of the cache folder ``cache_dir``).
    """
    backend = check_backend(backend)
    name = canonical_model(model)
    size = _check_image_size(image_size)
    if not isinstance(fold_batchnorm, (bool, np.bool_)):
        raise TypeError(f"fold_batchnorm must be True or False, got {type(fold_batchnorm).__name__}")
    if name == AUTO and native_size is not None and grayscale is not None:
        name = "pixels" if grayscale and native_size <= PIXELS_AUTO_MAX_SIDE else DEFAULT_NETWORK
    if name in PIXEL_MODELS:
        return _pixel_config(name, size, native_size, grayscale)
    network = DEFAULT_NETWORK if name == AUTO else name
    spec = resolve_weights(weights, network)
    data = _data_config(network)
    interpolation = data.get("interpolation", "bicubic")
    if interpolation not in RESAMPLE:
        interpolation = "bicubic"
    model_size = int(data["input_size"][-1])
    model_crop = float(data.get("crop_pct") or 1.0)
    crop = None
    if native_size is not None and name != AUTO:
        if size is None:
            size = small_image_size(network) if native_size <= SMALL_IMAGE_MAX_SIDE else model_size
        crop = model_crop  # upscaled images too: measured better than no crop (see the module docstring)
    chosen, _ = resolve_backend(backend, device_type, network, spec.identity, size, bool(fold_batchnorm), cache_dir)
    return EmbedConfig(
        model=name,
        weights=spec.identity,
        image_size=size,
        crop_pct=crop,
        interpolation=interpolation,
        mean=tuple(float(v) for v in data["mean"]),
        std=tuple(float(v) for v in data["std"]),
        model_image_size=model_size,
        model_crop_pct=model_crop,
        fold_batchnorm=bool(fold_batchnorm),
        backend=chosen,
    )


def _sample_positions(images: ImageSet, n_sample: int) -> np.ndarray:
    return np.unique(np.linspace(0, len(images) - 1, num=min(n_sample, len(images))).astype(int))


def typical_side(images: ImageSet, n_sample: int = 8) -> int | None:
    """The images' typical longer side: ``size_hint`` or the median of a few samples."""
    if images.size_hint is not None:
        return int(images.size_hint)
    sides = []
    for i in _sample_positions(images, n_sample):
        try:
            sides.append(max(images.load_image(i).size))
        except Exception:  # noqa: BLE001 - unreadable samples are reported at embed time
            continue
    return int(np.median(sides)) if sides else None


def is_grayscale(images: ImageSet, n_sample: int = 8) -> bool:
    """True when every readable sampled image has equal R, G and B everywhere."""
    seen = False
    for i in _sample_positions(images, n_sample):
        try:
            rgb = np.asarray(images.load_image(i), dtype=np.int16)
        except Exception:  # noqa: BLE001 - unreadable samples are reported at embed time
            continue
        seen = True
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])):
            return False
    return seen


def resolve_for_images(model: str, weights: str | os.PathLike, image_size: int | None, images: ImageSet, *,
                       fold_batchnorm: bool = True, fallback_size: int = 224, backend: str = "torch",
                       device_type: str = "cpu", cache_dir: str | os.PathLike | None = None) -> EmbedConfig:
    """The fully resolved settings ``images`` are embedded with (their size and colour sampled)."""
    side = typical_side(images) or fallback_size
    name = canonical_model(model)
    wants_colour = name in PIXEL_MODELS or (name == AUTO and side <= PIXELS_AUTO_MAX_SIDE)
    grayscale = is_grayscale(images) if wants_colour and len(images) else False
    return resolve_embed_config(name, weights, image_size, native_size=side, grayscale=grayscale,
                                fold_batchnorm=fold_batchnorm, backend=backend, device_type=device_type,
                                cache_dir=cache_dir)


__all__ = [
    "AUTO",
    "EmbedConfig",
    "MODEL_CHOICES",
    "PIXEL_MODELS",
    "PIXELS_AUTO_MAX_SIDE",
    "PIXELS_MAX_SIDE",
    "RESAMPLE",
    "SMALL_IMAGE_MAX_SIDE",
    "SMALL_IMAGE_SIZE",
    "SMALL_IMAGE_SIZES",
    "canonical_model",
    "is_grayscale",
    "resolve_embed_config",
    "resolve_for_images",
    "small_image_size",
    "typical_side",
]
