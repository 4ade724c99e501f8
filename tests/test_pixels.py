"""The pixel embedder and the automatic model choice: shapes, values, centring on fit rows only, cache keys."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

import ood_core
from ood_core._embed_config import (MODEL_CHOICES, PIXELS_AUTO_MAX_SIDE, PIXELS_MAX_SIDE, canonical_model,
                                    resolve_embed_config, small_image_size)
from ood_core.cache import cache_key, cached_embed
from ood_core.embedder import Embedder
from ood_core.sources import digits, image_folder
from ood_core.sources._imageset import pixel_set
from ood_core.weights import DEFAULT_MODEL, DEFAULT_NETWORK, bundled_installed


def gray_set(pixels: np.ndarray, split=None) -> ood_core.ImageSet:
    n = len(pixels)
    return pixel_set(pixels, [f"g/{i}" for i in range(n)], np.zeros(n, int), ["g"], split=split,
                     identity=f"gray-{pixels.tobytes().hex()[:32]}-{n}", size_hint=pixels.shape[1])


@pytest.fixture(scope="module")
def digit_set():
    return digits()


def test_pixels_raw_are_the_scaled_grayscale_pixels(digit_set):
    from sklearn.datasets import load_digits

    e = Embedder(model="pixels-raw")
    feats = e.embed(digit_set)
    cfg = e.config_for(digit_set)
    assert (cfg.model, cfg.image_size, cfg.channels, cfg.centre, cfg.weights) == ("pixels-raw", 8, 1, False, "none")
    assert feats.shape == (1797, 64) and feats.dtype == np.float32
    order = [int(i.split("/")[1]) for i in digit_set.ids]
    pixels = np.rint(load_digits().images * (255.0 / 16.0))[order].reshape(len(order), -1)
    np.testing.assert_allclose(feats, (pixels / 255.0 - 0.5) / 0.5, atol=1e-6)
    np.testing.assert_array_equal(Embedder(model="pixels-raw").embed(digit_set), feats)  # deterministic


def test_pixels_are_centred_on_the_fit_rows_only(digit_set):
    raw = Embedder(model="pixels-raw").embed(digit_set)
    fit = digit_set.split == "train"
    centred = Embedder(model="pixels").embed(digit_set)
    np.testing.assert_allclose(centred, raw - raw[fit].mean(axis=0), atol=1e-5)
    # changing a query image moves no other row: the centre comes from the fit rows alone
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(12, 8, 8), dtype=np.uint8)
    split = np.array(["train"] * 6 + ["test"] * 6)
    before = Embedder(model="pixels").embed(gray_set(pixels, split))
    changed = pixels.copy()
    changed[9] = 255 - changed[9]
    after = Embedder(model="pixels").embed(gray_set(changed, split))
    keep = np.arange(12) != 9
    np.testing.assert_array_equal(after[keep], before[keep])
    assert np.abs(after[:6].mean(axis=0)).max() < 1e-5  # the fit rows average to zero
    # without a split, every row is a fit row (as analyze fits on all of them)
    whole = Embedder(model="pixels").embed(gray_set(pixels))
    assert np.abs(whole.mean(axis=0)).max() < 1e-5


def test_colour_and_large_images_for_pixels(write_tree):
    colour = image_folder(write_tree({"a.png": (200, 30, 30), "b.png": (20, 40, 220), "c.png": (9, 9, 9)}))
    e = Embedder(model="pixels-raw")
    cfg = e.config_for(colour)  # 12x10 colour images: 12 px, three channels
    assert (cfg.image_size, cfg.channels) == (12, 3)
    feats = e.embed(colour)
    assert feats.shape == (3, 12 * 12 * 3)
    np.testing.assert_allclose(feats[0].reshape(12, 12, 3)[6, 6], (np.array([200, 30, 30]) / 255 - 0.5) / 0.5,
                               atol=1e-6)
    big = image_folder(write_tree({"big.png": Image.new("L", (300, 200), 128).convert("RGB"),
                                   "big2.png": Image.new("RGB", (300, 200), (128,) * 3)}, root="big"), verify=False)
    cfg = Embedder(model="pixels").config_for(big)
    assert (cfg.image_size, cfg.channels) == (PIXELS_MAX_SIDE, 1)
    assert Embedder(model="pixels").embed(big).shape == (2, PIXELS_MAX_SIDE ** 2)
    assert Embedder(model="pixels-raw", image_size=8).config_for(big).image_size == 8


def test_pixel_cache_key_follows_centring_and_fit_rows(digit_set, tmp_path):
    centred, raw = Embedder(model="pixels"), Embedder(model="pixels-raw")
    key = cache_key(centred.config_for(digit_set), digit_set)
    assert key != cache_key(raw.config_for(digit_set), digit_set)
    other_fit = dataclasses.replace(digit_set, split=np.where(digit_set.split == "train", "test", "train"))
    assert other_fit.identity == digit_set.identity  # same images, other fit rows
    assert cache_key(centred.config_for(other_fit), other_fit) != key
    assert cache_key(raw.config_for(other_fit), other_fit) == cache_key(raw.config_for(digit_set), digit_set)
    first, hit = cached_embed(centred, digit_set, cache_dir=tmp_path)
    again, hit2 = cached_embed(centred, digit_set, cache_dir=tmp_path)
    flipped, hit3 = cached_embed(centred, other_fit, cache_dir=tmp_path)
    assert (hit, hit2, hit3) == (False, True, False)
    assert np.array_equal(first, again) and not np.allclose(first, flipped)


def test_auto_picks_pixels_for_tiny_grayscale_images_only(digit_set, write_tree, cifar_zip):
    assert DEFAULT_MODEL == "auto" and Embedder().config.model == "auto" and not Embedder().config.resolved
    assert Embedder().config_for(digit_set).model == "pixels"
    colour = image_folder(write_tree({"a.png": (200, 30, 30), "b.png": (20, 40, 220)}))  # 12 px, colour
    assert Embedder().config_for(colour).model == DEFAULT_NETWORK
    gray = np.random.default_rng(1).integers(0, 256, size=(4, PIXELS_AUTO_MAX_SIDE * 2, PIXELS_AUTO_MAX_SIDE * 2),
                                             dtype=np.uint8)
    assert Embedder().config_for(gray_set(gray)).model == DEFAULT_NETWORK  # grayscale but not tiny
    cifar = ood_core.cifar10(cifar_zip)
    cfg = Embedder().config_for(cifar)
    assert (cfg.model, cfg.image_size, cfg.crop_pct) == (DEFAULT_NETWORK, small_image_size(DEFAULT_NETWORK),
                                                         cfg.model_crop_pct)
    # auto and the model it resolves to share cache entries
    explicit = Embedder(model=DEFAULT_NETWORK).config_for(cifar)
    assert cache_key(cfg, cifar) == cache_key(explicit, cifar)


def test_model_names_and_errors():
    assert canonical_model("lite2") == "tf_efficientnet_lite2" and canonical_model(" pixels ") == "pixels"
    assert set(MODEL_CHOICES) >= {"auto", "lite0", "lite2", "pixels", "pixels-raw"}
    assert ("lite1" in MODEL_CHOICES) == bundled_installed("tf_efficientnet_lite1")  # an optional package
    with pytest.raises(ValueError, match=r"model='pixles' is not a timm model, \['pixels', 'pixels-raw'\] or 'auto'"):
        Embedder(model="pixles")
    assert resolve_embed_config("pixels", weights="hub").weights == "none"  # pixel models take no weights
    with pytest.raises(ValueError, match="embeds pixels: it has no network"):
        Embedder(model="pixels").network
