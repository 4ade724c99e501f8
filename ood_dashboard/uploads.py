"""What the Data page may read: uploaded files (stored by ``ood_core.save_upload``) and folders
on this machine, which must lie under an allowed root (the folder sandbox).

The allowed roots are a setting: ``$OOD_DATA_ROOTS`` (paths separated by ``os.pathsep``), else
``data_roots = ["/data", "/mnt/images"]`` in the config file (:func:`config_file`), else the
folder the dashboard was started in. A dataset the server was started with (``--source``) is
trusted: its folder joins the roots for this server process (:func:`trust_start_source`).
"""
from __future__ import annotations

import os
from pathlib import Path

import ood_core
from ood_core import settings

ROOTS_ENV = settings.SETTINGS["data_roots"].env
CONFIG_ENV = settings.SETTINGS["config"].env
# What whoever started the server named with --source (resolved paths): readable by every session.
_STARTED_WITH: set[Path] = set()


def upload_source(name: str, data: bytes, allowed: tuple[str, ...] = ood_core.UPLOAD_SUFFIXES) -> str:
    """Store an uploaded file by content hash (its extension checked against ``allowed``) and
    return the source spec (a path) to run on."""
    return str(ood_core.save_upload(name, data, allowed))


def config_file() -> Path:
    """The config file: ``$OOD_CONFIG``, else ``config.toml`` in the user config folder."""
    return settings.config_file()


def trust_start_source(source: str) -> str:
    """The spec of the dataset the server was started with (``--source``): a built-in name as it is,
    else the resolved path of an existing folder, zip or features file, trusted from now on by this
    server process (a folder joins the allowed roots; a file may be opened by its exact path).
    Raises ValueError naming ``--source`` when it is neither."""
    if source in ood_core.list_sources():
        return source
    path = Path(source).expanduser().resolve()
    if not path.exists():
        raise ValueError(f"--source {source}: no such folder or file ({path}); give a folder of images, a zip, an "
                         f".npz/.npy, or one of {', '.join(ood_core.list_sources())}")
    if path.is_file() and path.suffix.lower() not in ood_core.UPLOAD_SUFFIXES:
        raise ValueError(f"--source {source}: {path.name} is not a folder, a zip or a features file "
                         f"({', '.join(ood_core.UPLOAD_SUFFIXES)})")
    _STARTED_WITH.add(path)
    return str(path)


def started_with(path_text: str) -> bool:
    """Whether ``path_text`` names (exactly) the dataset this server was started with."""
    return Path(path_text).expanduser().resolve() in _STARTED_WITH


def allowed_roots() -> tuple[list[Path], str]:
    """The folders an image-folder path may lie under, and where that setting came from (plus
    the folder the server was started with, if any)."""
    roots, origin = _configured_roots()
    started = sorted(p for p in _STARTED_WITH if p.is_dir() and p not in roots)
    if started:
        return roots + started, origin + ", and the folder the dashboard was started with (--source)"
    return roots, origin


def _configured_roots() -> tuple[list[Path], str]:
    """The ``data_roots`` setting of :mod:`ood_core.settings`, resolved, and where it came from."""
    resolved = settings.resolve("data_roots")
    return _resolve([str(r) for r in resolved.value]), resolved.where


def _resolve(roots: list[str]) -> list[Path]:
    return [Path(r).expanduser().resolve() for r in roots if r.strip()]


def how_to_allow(path: Path | str) -> str:
    """One sentence on how to let the dashboard read ``path``."""
    return (f"to allow it, start the dashboard with {ROOTS_ENV}={path}{os.pathsep}... (paths separated by "
            f"'{os.pathsep}'), or add it to data_roots = [...] in {config_file()}")


def _under_roots(path_text: str, what: str, verb: str) -> Path:
    """Resolve a typed path and refuse one outside the allowed roots (``..`` is resolved first)."""
    if not path_text.strip():
        raise ValueError(f"type the path of {what}")
    path = Path(path_text.strip()).expanduser().resolve()
    roots, origin = allowed_roots()
    if not any(path == r or r in path.parents for r in roots):
        raise ValueError(f"{path} is outside the folders this dashboard may {verb} ({', '.join(map(str, roots))}, "
                         f"from {origin}); " + how_to_allow(path))
    return path


def check_folder(path_text: str) -> Path:
    """A folder of images to read: under an allowed root, and existing."""
    path = _under_roots(path_text, "a folder of images", "read")
    if not path.is_dir():
        raise ValueError(f"{path} is not a folder")
    return path


def check_destination(path_text: str) -> Path:
    """A folder to write copies into: under an allowed root (created when missing), never elsewhere."""
    return _under_roots(path_text, "the folder to copy into", "write")
