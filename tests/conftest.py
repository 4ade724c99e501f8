"""Shared fixtures: the CIFAR-10 zip, and writers of tiny image folders and zips."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
# Pillow format per extension, for the writers below.
_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP",
            ".gif": "GIF", ".tif": "TIFF", ".tiff": "TIFF"}


@pytest.fixture(scope="session", autouse=True)
def _private_data_dir(tmp_path_factory):
    """Downloads (CIFAR-10) go to a folder of this test session, never the user's data folder, and the
    user's config file is not read, so a developer's own copy or settings cannot change what the tests see."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OOD_DATA_DIR", str(tmp_path_factory.mktemp("ood_data")))
        mp.setenv("OOD_CONFIG", str(tmp_path_factory.mktemp("ood_config") / "config.toml"))  # not written
        yield


@pytest.fixture(scope="session")
def cifar_zip() -> Path:
    """Path of the CIFAR-10 jpeg zip (OOD_CIFAR10 or ../shared/data/cifar10-jpeg.zip); skips if absent."""
    path = Path(os.environ.get("OOD_CIFAR10") or REPO.parent / "shared" / "data" / "cifar10-jpeg.zip")
    if not path.exists():
        pytest.skip(f"CIFAR-10 not available at {path} (set OOD_CIFAR10)")
    return path


def extract_cifar(cifar_zip: Path, root: Path, classes: dict[str, range], split: str = "test") -> Path:
    """``root/{class}/NNNN.jpg``: the given CIFAR-10 images of each class, copied out of the zip."""
    with zipfile.ZipFile(cifar_zip) as zf:
        for name, numbers in classes.items():
            (root / name).mkdir(parents=True, exist_ok=True)
            for i in numbers:
                (root / name / f"{i:04d}.jpg").write_bytes(zf.read(f"cifar10/{split}/{name}/{i:04d}.jpg"))
    return root


def encode(content, name: str) -> bytes:
    """File bytes for ``content``: bytes as is, a PIL image or an RGB colour tuple
    (a 12x10 solid image) encoded in the format the extension of ``name`` names."""
    if isinstance(content, bytes):
        return content
    img = Image.new("RGB", (12, 10), content) if isinstance(content, tuple) else content
    buf = io.BytesIO()
    img.save(buf, format=_FORMATS[Path(name).suffix.lower()])
    return buf.getvalue()


@pytest.fixture
def write_tree(tmp_path):
    """``write_tree({"cat/a.png": (255, 0, 0), "notes.txt": b"hi"})`` -> folder path."""

    def make(files: dict, root: str = "data") -> Path:
        base = tmp_path / root
        base.mkdir(parents=True, exist_ok=True)
        for rel, content in files.items():
            path = base / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(encode(content, rel))
        return base

    return make


@pytest.fixture
def write_zip(tmp_path):
    """``write_zip({"pets/cat/a.png": (255, 0, 0)})`` -> zip path (stored, no compression)."""

    def make(files: dict, name: str = "data.zip") -> Path:
        path = tmp_path / name
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
            for rel, content in files.items():
                zf.writestr(rel, encode(content, rel))
        return path

    return make


def markdown_text(value: str) -> str:
    """What Markdown shows of ``value`` (``ood_dashboard.markup.escape``'s output): its backslash
    escapes read, the word joiners that break bare addresses left out."""
    import re

    return re.sub(r"\\(.)", r"\1", value).replace("\u2060", "")
