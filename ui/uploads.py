"""What the Data page may read: uploaded files (stored by ``ood_core.save_upload``) and folders
on this machine, which must lie under an allowed root (the folder sandbox).

The allowed roots are a setting: ``$OOD_DATA_ROOTS`` (paths separated by ``os.pathsep``), else
``data_roots = ["/data", "/mnt/images"]`` in the config file (:func:`config_file`), else the
folder the dashboard was started in.
"""
from __future__ import annotations

import os
from pathlib import Path

import ood_core
from ood_core import settings

ROOTS_ENV = settings.SETTINGS["data_roots"].env
CONFIG_ENV = settings.SETTINGS["config"].env


def upload_source(name: str, data: bytes, allowed: tuple[str, ...] = ood_core.UPLOAD_SUFFIXES) -> str:
    """Store an uploaded file by content hash (its extension checked against ``allowed``) and
    return the source spec (a path) to run on."""
    return str(ood_core.save_upload(name, data, allowed))


def config_file() -> Path:
    """The config file: ``$OOD_CONFIG``, else ``config.toml`` in the user config folder."""
    return settings.config_file()


def allowed_roots() -> tuple[list[Path], str]:
    """The folders an image-folder path may lie under, and where that setting came from (the
    ``data_roots`` setting of :mod:`ood_core.settings`)."""
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
