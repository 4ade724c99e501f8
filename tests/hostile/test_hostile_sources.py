"""Each hostile file, in a folder and in a zip, through ``ood_core.open_source``: skipped with a
clear reason (or kept, decoded right), the valid items kept, nothing written."""
from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ood_core
from ood_core.sources import image_folder, image_zip
from ood_core.sources._io import describe_error
from tests.hostile import _corpus as C

# Pillow warns about the 144-megapixel file before ood_core refuses it.
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
CASES = {case.name: case for case in C.image_cases()}
KEPT = sorted(name for name, case in CASES.items() if case.skip is None)


def within(seconds: float, fn):
    """``fn()`` run in a daemon thread; fails (instead of hanging the suite) when it blocks."""
    box = {}
    thread = threading.Thread(target=lambda: box.update(value=fn()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s (blocked on a read?)"
    return box["value"]


@pytest.fixture(scope="module")
def from_folder(corpus_folder):
    before = C.tree(corpus_folder.parent)
    start = time.perf_counter()
    images = within(30, lambda: ood_core.open_source(corpus_folder))
    assert time.perf_counter() - start < 5
    assert C.tree(corpus_folder.parent) == before  # nothing written, moved or consumed
    return images


@pytest.fixture(scope="module")
def from_zip(corpus_zip):
    before = C.tree(corpus_zip.parent)
    images = ood_core.open_source(corpus_zip)
    assert C.tree(corpus_zip.parent) == before
    return images


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("kind", ["folder", "zip"])
def test_each_image_case(name, kind, from_folder, from_zip):
    images = from_folder if kind == "folder" else from_zip
    case, skipped = CASES[name], dict(images.skipped)
    if case.skip is None:
        assert name in images.ids
        assert name not in skipped or (kind, name) == ("zip", "red.png")  # the zip repeats red.png
    else:
        assert name not in images.ids
        assert re.match(case.skip, skipped[name]), skipped[name]


@pytest.mark.parametrize("name", sorted(C.FOLDER_ONLY))
def test_folder_only_cases(name, from_folder):
    assert re.match(C.FOLDER_ONLY[name], dict(from_folder.skipped)[name])


@pytest.mark.parametrize("name", sorted(C.ZIP_ONLY))
def test_zip_only_cases(name, from_zip):
    assert re.match(C.ZIP_ONLY[name], dict(from_zip.skipped)[name])


def test_valid_items_kept_and_decoded_right(from_folder, from_zip):
    assert from_folder.ids == from_zip.ids == KEPT
    assert from_folder.identity == from_zip.identity  # same bytes, same paths: one cache entry
    for images in (from_folder, from_zip):
        pixel = {name: images.load_image(images.ids.index(name)) for name in KEPT}
        assert pixel["red.png"].getpixel((0, 0)) == (200, 30, 30)  # the first red.png of the zip
        assert pixel["sixteen-bit.png"].getpixel((0, 0)) == (100, 100, 100)
        assert np.abs(np.subtract(pixel["cmyk.jpg"].getpixel((4, 4)), (255, 0, 0))).max() <= 8
        assert pixel["palette-alpha.png"].getpixel((0, 0)) == (255, 255, 255)  # transparent on white
        assert pixel["exif-rotated.jpg"].size == (10, 20)
        assert pixel["animated.gif"].getpixel((0, 0)) == (200, 30, 30)
        assert all(img.mode == "RGB" for img in pixel.values())


def test_decompression_bomb_refused_at_embedding_time_too(bombs):
    """Unverified listing (as CIFAR-10 uses) lets the file in; decoding it still refuses it."""
    images = image_folder(bombs["megapixels"], verify=False)
    i = images.ids.index("megapixels-144.png")
    with pytest.raises(Image.DecompressionBombError, match=r"144,000,000 pixels\) is over the"):
        images.load_image(i)
    with pytest.raises(Image.DecompressionBombError) as info:
        images._load(i, 224)  # as the embedder decodes it (JPEG drafts; refused before any pixel)
    assert describe_error(info.value) == ("refused by Pillow's decompression-bomb guard: 12000x12000 image "
                                          "(144,000,000 pixels) is over the 89,478,485-pixel limit")


def test_a_pipe_does_not_hang_an_unverified_listing_or_the_embedding(corpus_folder):
    images = within(30, lambda: image_folder(corpus_folder, verify=False))
    assert dict(images.skipped)["pipe.jpg"].startswith("not a regular file")
    assert within(10, lambda: images.load_image(images.ids.index("red.png"))).size == (12, 10)


def test_unreadable_subfolder_is_listed(write_tree, monkeypatch):
    root = write_tree({"ok/a.png": (1, 2, 3), "locked/b.png": (4, 5, 6), "locked/deeper/c.png": (7, 8, 9)})
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    images = image_folder(root)
    assert images.ids == ["ok/a.png"]
    assert images.skipped == [("locked/", "folder cannot be read (Permission denied); its files are left out")]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any folder")
def test_unreadable_subfolder_is_listed_for_real(write_tree):
    root = write_tree({"ok/a.png": (1, 2, 3), "locked/b.png": (4, 5, 6)})
    (root / "locked").chmod(0)
    try:
        assert dict(image_folder(root).skipped)["locked/"].startswith("folder cannot be read")
    finally:
        (root / "locked").chmod(0o755)


def test_zip_slip_refuses_the_archive(tmp_path):
    path = C.write_zip(tmp_path / "slip.zip", [C.stored("ok.png", C.solid("x.png", (1, 2, 3))),
                                               C.stored("../../evil.png", C.solid("x.png", (1, 2, 3)))])
    with pytest.raises(ValueError, match=r"entry '../../evil.png' .* '..' component; the archive is refused"):
        ood_core.open_source(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slip.zip"]


def test_truncated_zip_is_refused_with_a_clear_message(corpus_zip, tmp_path):
    cut = tmp_path / "cut.zip"
    cut.write_bytes(corpus_zip.read_bytes()[: corpus_zip.stat().st_size // 2])
    with pytest.raises(ValueError, match="'cut.zip' looks truncated: it starts like a zip archive but its table"):
        ood_core.open_source(cut)


def test_an_all_encrypted_zip_lists_every_entry(tmp_path):
    data = C.solid("x.png", (1, 2, 3))
    path = C.write_zip(tmp_path / "locked.zip", [C.stored(f"{i}.png", data, flags=0x1) for i in range(3)])
    images = image_zip(path)
    assert len(images) == 0 and [r for _, r in images.skipped] == [
        "encrypted (password-protected) zip entry; not supported"] * 3


def test_folder_entries_count_toward_the_file_cap(tmp_path):
    data = C.solid("x.png", (1, 2, 3))
    path = C.write_zip(tmp_path / "dirs.zip", [C.stored("a/", b""), C.stored("b/", b""), C.stored("a/1.png", data),
                                               C.stored("b/2.png", data)])
    assert len(image_zip(path, max_files=4)) == 2
    with pytest.raises(ValueError, match=r"holds more than max_files=3 entries \(folders count too\)"):
        image_zip(path, max_files=3)
