"""Embedding cache: hit, miss, corrupt / foreign / mismatching files, keys, atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from ood_core import cache as C
from ood_core._embed_config import small_image_size
from ood_core.cache import cache_key, cache_path, cached_embed, default_cache_dir
from ood_core.embedder import Embedder
from ood_core.sources import image_folder
from ood_core.weights import DEFAULT_NETWORK
from tests.conftest import encode

COLOURS = [(200, 30, 30), (20, 40, 220), (30, 200, 30), (240, 240, 240), (0, 0, 0), (90, 90, 10)]


class CountingEmbedder(Embedder):
    """The real embedder, counting how often it actually embeds."""

    calls = 0

    def embed(self, images, progress=None):
        type(self).calls += 1
        return super().embed(images, progress)


@pytest.fixture(scope="module")
def embedder():
    return CountingEmbedder(model="lite0", image_size=32, batch_size=8)


@pytest.fixture
def images(write_tree):
    return image_folder(write_tree({f"c{i % 2}/{i}.png": c for i, c in enumerate(COLOURS)}))


def entry(embedder, images, cache_dir) -> Path:
    return cache_path(cache_key(embedder.config_for(images), images), cache_dir)


def test_miss_then_hit(embedder, images, tmp_path):
    tmp_path = tmp_path / "cache"
    before = CountingEmbedder.calls
    first, hit1 = cached_embed(embedder, images, cache_dir=tmp_path)
    progress = []
    second, hit2 = cached_embed(embedder, images, cache_dir=tmp_path, progress=lambda d, t: progress.append((d, t)))
    assert (hit1, hit2) == (False, True) and CountingEmbedder.calls == before + 1
    assert np.array_equal(first, second) and second.dtype == np.float32 and second.shape == (6, 1280)
    assert progress == [(6, 6)]
    assert [p.name for p in tmp_path.iterdir()] == [entry(embedder, images, tmp_path).name]  # no temp files left


@pytest.mark.parametrize("damage", ["truncate", "garbage", "foreign_npz", "wrong_rows", "wrong_key"])
def test_damaged_file_is_recomputed_not_trusted(embedder, images, tmp_path, damage):
    good, _ = cached_embed(embedder, images, cache_dir=tmp_path)
    path = entry(embedder, images, tmp_path)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\0" * 100)
    elif damage == "foreign_npz":
        np.savez(path, features=np.zeros((6, 1280), np.float32))
    else:
        with np.load(path) as z:
            fields = dict(z)
        if damage == "wrong_rows":
            fields["features"] = fields["features"][:5]
        else:
            fields["key"] = np.array("0" * 64)
        with open(path, "wb") as f:
            np.savez(f, **fields)
    before = CountingEmbedder.calls
    again, hit = cached_embed(embedder, images, cache_dir=tmp_path)
    assert hit is False and CountingEmbedder.calls == before + 1
    np.testing.assert_allclose(again, good, atol=1e-5)
    assert cached_embed(embedder, images, cache_dir=tmp_path)[1] is True  # rewritten, valid again


def test_key_follows_settings_and_files(embedder, images, tmp_path):
    key = cache_key(embedder.config_for(images), images)
    assert len(key) == 64
    assert cache_key(Embedder(model="lite0", image_size=48).config_for(images), images) != key
    assert cache_key(Embedder(model="lite2", image_size=32).config_for(images), images) != key
    # Spellings of the same settings share an entry: the auto model and size on small colour images
    # are the default network at its small-image size; an alias is its timm name.
    size = small_image_size(DEFAULT_NETWORK)
    assert cache_key(Embedder().config_for(images), images) == cache_key(
        Embedder(model=DEFAULT_NETWORK, image_size=size).config_for(images), images)
    assert cache_key(Embedder(model="tf_efficientnet_lite0", image_size=32).config_for(images), images) == key
    touched = Path(images._reader.root) / images.paths[0]
    os.utime(touched, ns=(0, 10**9))  # file times are not content: same key
    assert cache_key(embedder.config_for(images), image_folder(touched.parents[1])) == key
    touched.write_bytes(touched.read_bytes() + b"\0")  # other bytes: another key
    assert cache_key(embedder.config_for(images), image_folder(touched.parents[1])) != key


# --------------------------------------------------------------------------- identity by content
def test_copied_folder_hits_the_cache(embedder, images, tmp_path):
    import shutil

    cache = tmp_path / "cache"
    first, hit = cached_embed(embedder, images, cache_dir=cache)
    copy = shutil.copytree(images._reader.root, tmp_path / "elsewhere" / "copy")
    before = CountingEmbedder.calls
    again, hit2 = cached_embed(embedder, image_folder(copy), cache_dir=cache)
    assert (hit, hit2) == (False, True) and CountingEmbedder.calls == before
    assert np.array_equal(first, again)


def test_zip_and_the_same_zip_unpacked_share_an_entry(embedder, write_zip, tmp_path):
    import zipfile

    from ood_core.sources import image_zip

    zpath = write_zip({f"pets/c{i % 2}/{i}.jpg": c for i, c in enumerate(COLOURS[:3])})
    with zipfile.ZipFile(zpath) as zf:
        zf.extractall(tmp_path / "unpacked")
    zipped, folder = image_zip(zpath), image_folder(tmp_path / "unpacked" / "pets")
    assert folder.ids == zipped.ids and folder.identity == zipped.identity
    cached_embed(embedder, zipped, cache_dir=tmp_path / "cache")
    before = CountingEmbedder.calls
    assert cached_embed(embedder, folder, cache_dir=tmp_path / "cache")[1] is True
    assert CountingEmbedder.calls == before


def test_same_size_and_mtime_but_other_bytes_misses(embedder, write_tree, tmp_path):
    root = write_tree({"a.bmp": COLOURS[0], "b.bmp": COLOURS[1], "c.bmp": COLOURS[2]}, root="bmp")
    target = root / "b.bmp"
    old = image_folder(root)
    first, _ = cached_embed(embedder, old, cache_dir=tmp_path / "cache")
    st = target.stat()
    target.write_bytes(encode(COLOURS[3], "b.bmp"))  # BMP: same dimensions, same byte count
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (target.stat().st_size, target.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    new = image_folder(root)
    assert new.identity != old.identity
    before = CountingEmbedder.calls
    second, hit = cached_embed(embedder, new, cache_dir=tmp_path / "cache")
    assert hit is False and CountingEmbedder.calls == before + 1
    assert np.array_equal(first[[0, 2]], second[[0, 2]]) and not np.allclose(first[1], second[1])


def test_batchnorm_folding_is_part_of_the_key(embedder, images, tmp_path):
    import dataclasses
    import hashlib
    import json

    config = embedder.config_for(images)
    unfolded = Embedder(model="lite0", image_size=32, fold_batchnorm=False).config_for(images)
    assert dataclasses.replace(config, fold_batchnorm=False) == unfolded
    assert cache_key(unfolded, images) != cache_key(config, images)
    # An entry written before folding was in the config (same format, key without the field,
    # unfolded features) is not found for the folded embedder: it embeds again.
    legacy = {k: v for k, v in dataclasses.asdict(config).items() if k != "fold_batchnorm"}
    legacy_key = hashlib.sha256(json.dumps(
        {"format": C.CACHE_FORMAT, "config": legacy, "images": images.identity}, sort_keys=True).encode()).hexdigest()
    tmp_path = tmp_path / "cache"
    C._write(cache_path(legacy_key, tmp_path), legacy_key, config, np.zeros((6, 1280), np.float32), [])
    before = CountingEmbedder.calls
    feats, hit = cached_embed(embedder, images, cache_dir=tmp_path)
    assert hit is False and CountingEmbedder.calls == before + 1 and np.abs(feats).sum() > 0
    assert sorted(p.stem for p in tmp_path.iterdir()) == sorted([legacy_key, cache_key(config, images)])


def test_cache_dir_argument_env_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv("OOD_CACHE_DIR", str(tmp_path / "env"))
    assert default_cache_dir() == tmp_path / "env"
    assert cache_path("abc") == tmp_path / "env" / "abc.npz"
    assert cache_path("abc", tmp_path / "arg") == tmp_path / "arg" / "abc.npz"
    monkeypatch.delenv("OOD_CACHE_DIR")
    assert default_cache_dir().parts[-2:] == ("ood-explorer", "embeddings")


def test_env_var_is_used_by_cached_embed(embedder, images, tmp_path, monkeypatch):
    monkeypatch.setenv("OOD_CACHE_DIR", str(tmp_path / "envcache"))
    cached_embed(embedder, images)
    assert entry(embedder, images, tmp_path / "envcache").is_file()


def test_failed_write_leaves_no_partial_file(embedder, images, tmp_path, monkeypatch):
    def broken_savez(file, **arrays):
        file.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(C.np, "savez", broken_savez)
    feats, hit = cached_embed(embedder, images, cache_dir=tmp_path / "cache")  # the cache is lost, not the result
    assert hit is False and feats.shape == (6, 1280)
    assert list((tmp_path / "cache").iterdir()) == []


def test_failures_survive_a_cache_hit(embedder, write_zip, tmp_path):
    from ood_core.sources import image_zip

    zpath = write_zip({"a.png": COLOURS[0], "b.png": b"not an image", "c.png": COLOURS[1]})
    s = image_zip(zpath, verify=False)
    with pytest.warns(UserWarning, match="1 of 3 images could not be decoded"):
        first, hit = cached_embed(embedder, s, cache_dir=tmp_path)
    embedder.failures_ = []
    second, hit2 = cached_embed(embedder, s, cache_dir=tmp_path)
    assert (hit, hit2) == (False, True) and np.isnan(second[1]).all()
    assert np.array_equal(first, second, equal_nan=True)
    assert embedder.failures_ == [(1, "b.png", "not a readable image (Pillow cannot identify the file)")]


def test_unresolved_config_is_refused(images):
    with pytest.raises(ValueError, match="cache_key needs a resolved EmbedConfig"):
        cache_key(Embedder().config, images)
