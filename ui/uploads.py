"""What the Data page may read: uploaded files (stored by ``ood_core.save_upload``) and folders
on this machine, which must lie under an allowed root (the folder sandbox)."""
from __future__ import annotations

import os
from pathlib import Path

import ood_core

ROOTS_ENV = "OOD_DATA_ROOTS"


def upload_source(name: str, data: bytes, allowed: tuple[str, ...] = ood_core.UPLOAD_SUFFIXES) -> str:
    """Store an uploaded file by content hash (its extension checked against ``allowed``) and
    return the source spec (a path) to run on."""
    return str(ood_core.save_upload(name, data, allowed))


def allowed_roots() -> list[Path]:
    """Folders an image-folder path may lie under: $OOD_DATA_ROOTS (os.pathsep-separated), else the
    working directory and the home folder."""
    env = os.environ.get(ROOTS_ENV)
    roots = env.split(os.pathsep) if env else [os.getcwd(), str(Path.home())]
    return [Path(r).expanduser().resolve() for r in roots if r]


def check_folder(path_text: str) -> Path:
    """Resolve a typed folder path and refuse one outside the allowed roots."""
    if not path_text.strip():
        raise ValueError("type the path of a folder of images")
    path = Path(path_text.strip()).expanduser().resolve()
    roots = allowed_roots()
    if not any(path == r or r in path.parents for r in roots):
        raise ValueError(
            f"{path} is outside the folders this dashboard may read ({', '.join(map(str, roots))}); "
            f"set {ROOTS_ENV} to allow another"
        )
    if not path.is_dir():
        raise ValueError(f"{path} is not a folder")
    return path
