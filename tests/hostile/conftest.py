"""Fixtures of the hostile corpus: a folder and a zip of hostile images, the bombs, and a fresh
cache folder; everything is generated into temporary folders."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from tests.hostile import _corpus as C


@pytest.fixture(scope="session")
def corpus_folder(tmp_path_factory) -> Path:
    """Every image case, plus links (out, looping, broken, to a folder), a FIFO and a sparse 65 MiB file."""
    base = tmp_path_factory.mktemp("hostile")
    root, outside = base / "corpus", base / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.png").write_bytes(C.solid("x.png", (1, 2, 3)))
    for case in C.image_cases():
        (root / case.name).write_bytes(case.data)
    (root / "outside-link.png").symlink_to(outside / "secret.png")
    (root / "loop.png").symlink_to(root / "loop.png")
    (root / "broken-link.png").symlink_to(root / "missing.png")
    (root / "linked-folder").symlink_to(outside, target_is_directory=True)
    os.mkfifo(root / "pipe.jpg")
    with open(root / "huge.png", "wb") as f:
        f.truncate(65 * C.MiB)  # sparse: no disk used, and never read
    return root


@pytest.fixture(scope="session")
def corpus_zip(tmp_path_factory) -> Path:
    """Every image case in a wrapper folder, plus a folder entry, a duplicate name, an encrypted
    entry, an entry whose CRC does not match and one declaring 65 MiB."""
    entries = [C.stored("corpus/", b"")] + [C.stored(f"corpus/{c.name}", c.data) for c in C.image_cases()]
    red = C.solid("x.png", (1, 1, 1))
    bad = C.stored("corpus/bad-crc.png", C.solid("x.png", (5, 5, 5)))
    entries += [
        C.stored("corpus/red.png", red),  # a second entry named red.png
        C.stored("corpus/encrypted.png", red, flags=0x1),
        dataclasses.replace(bad, crc=bad.crc ^ 0xFFFF),
        C.deflated_zeros("corpus/oversized.png", 65),
    ]
    return C.write_zip(tmp_path_factory.mktemp("hostile-zip") / "corpus.zip", entries)


@pytest.fixture(scope="session")
def bombs(tmp_path_factory) -> dict[str, Path]:
    """The bombs, a few MB on disk in all: name -> path."""
    root = tmp_path_factory.mktemp("bombs")
    valid = [C.stored(name, C.solid(name, colour)) for name, colour in list(C.VALID.items())[:2]]
    block = C.deflated_zeros("z", 60)
    liar = C.deflated_zeros("liar.png", 1024, declared=1000)  # says 1000 bytes, inflates to 1 GiB
    header = C.npy_header((100_000, 1280))
    folder = root / "megapixels"
    folder.mkdir()
    for entry in valid:
        (folder / entry.name).write_bytes(entry.payload)
    (folder / "megapixels-144.png").write_bytes(C.png_1bit(12_000, 12_000))
    npy = root / "lying-header.npy"
    npy.write_bytes(C.npy_header((10**9, 1280)) + bytes(1024))
    return {
        "zip-2gib-entry": C.write_zip(root / "zip-2gib-entry.zip", valid + [C.deflated_zeros("bomb.png", 2048)]),
        "zip-1gib-entry": C.write_zip(root / "zip-1gib-entry.zip", valid + [C.deflated_zeros("bomb.png", 1024)]),
        "zip-over-total": C.write_zip(root / "zip-over-total.zip",
                                      valid + [dataclasses.replace(block, name=f"z{i}.png") for i in range(40)]),
        "zip-lying-header": C.write_zip(root / "zip-lying-header.zip", valid + [liar]),
        "zip-many-entries": C.write_zip(root / "zip-many-entries.zip",
                                        [C.stored(f"e{i}.png", b"") for i in range(100_001)]),
        "npz-3gib": C.npz_bomb(root / "npz-3gib.npz", 3072),
        "npz-1gib-ratio": C.npz_bomb(root / "npz-1gib-ratio.npz", 1024),
        "npz-lying-header": C.write_zip(root / "npz-lying-header.npz",
                                        [C.stored("features.npy", header + bytes(1024))]),
        "npy-lying-header": npy,
        "megapixels": folder,
    }


@pytest.fixture
def cache_env(tmp_path, monkeypatch) -> Path:
    """OOD_CACHE_DIR in a fresh temporary folder (the dashboard's loading path reads it)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("OOD_CACHE_DIR", str(cache))
    return cache
