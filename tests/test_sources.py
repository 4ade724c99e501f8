"""Data sources: folders, zips, CIFAR-10 (both layouts), demo split, digits, arrays."""

from __future__ import annotations

import hashlib
import io
import os
import pickle

import numpy as np
import pytest
from PIL import Image

from ood_core import sources
from ood_core.sources import (
    ANIMALS, CIFAR10_CLASSES, ArraySet, ImageSet, cifar10, demo_split, digits, image_folder,
    image_zip, load_arrays,
)
from tests.conftest import encode

RED, BLUE = (200, 30, 30), (20, 40, 220)


def noise_jpeg(size=64) -> bytes:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def two_frame_gif() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), RED).save(buf, format="GIF", save_all=True,
                                       append_images=[Image.new("RGB", (8, 8), BLUE)])
    return buf.getvalue()


@pytest.fixture(scope="module")
def cifar(cifar_zip):
    return cifar10(cifar_zip)


# --------------------------------------------------------------------------- folders
def test_folder_class_subfolders_give_labels(write_tree):
    root = write_tree({"dog/b.png": RED, "cat/a.png": BLUE, "cat/deeper/c.png": RED, "loose.png": RED})
    s = image_folder(root)
    assert s.ids == ["cat/a.png", "cat/deeper/c.png", "dog/b.png", "loose.png"]
    assert s.paths == s.ids
    assert s.class_names == ["cat", "dog"]
    assert s.labels.tolist() == [0, 0, 1, -1]
    assert s.labels.dtype == np.int64
    assert s.split is None and s.is_ood is None and s.skipped == []
    assert len(s) == 4 and s.size_hint == 12
    assert s.load_image(2).getpixel((0, 0)) == RED


def test_flat_folder_has_no_labels(write_tree):
    s = image_folder(write_tree({"a.png": RED, "b.bmp": BLUE}))
    assert s.labels.tolist() == [-1, -1] and s.class_names == []


def test_train_test_layout_gives_split(write_tree):
    s = image_folder(write_tree({"train/cat/a.png": RED, "train/dog/b.png": RED, "test/cat/c.png": BLUE,
                                 "test/bird/d.png": BLUE}))
    assert s.ids == ["test/bird/d.png", "test/cat/c.png", "train/cat/a.png", "train/dog/b.png"]
    assert s.split.tolist() == ["test", "test", "train", "train"]
    assert s.class_names == ["bird", "cat", "dog"]
    assert s.labels.tolist() == [0, 1, 1, 2]


def test_train_folder_beside_other_folders_is_a_class(write_tree):
    s = image_folder(write_tree({"train/a.png": RED, "other/b.png": RED}))
    assert s.split is None and s.class_names == ["other", "train"]


def test_formats_decode_to_rgb(write_tree):
    files = {f"x.{ext}": RED for ext in ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff")}
    files["anim.gif"] = two_frame_gif()
    s = image_folder(write_tree(files))
    assert s.skipped == [] and len(s) == 8
    for i, path in enumerate(s.paths):
        img = s.load_image(i)
        assert img.mode == "RGB", path
        px = np.array(img.getpixel((2, 2)), dtype=int)
        tolerance = 8 if path.endswith((".jpg", ".jpeg", ".webp")) else 0
        assert np.abs(px - RED).max() <= tolerance, (path, px)  # GIF: the first (red) frame


@pytest.mark.parametrize("img, name, expected", [
    (Image.new("L", (4, 4), 100), "gray.png", (100, 100, 100)),
    (Image.new("RGB", (4, 4), RED).convert("P", palette=Image.Palette.ADAPTIVE), "palette.png", RED),
    (Image.new("RGBA", (4, 4), (10, 20, 30, 0)), "clear.png", (255, 255, 255)),
    (Image.new("RGBA", (4, 4), (10, 20, 30, 255)), "opaque.png", (10, 20, 30)),
    (Image.new("LA", (4, 4), (0, 128)), "gray_alpha.png", (127, 127, 127)),
    (Image.new("CMYK", (4, 4), (0, 255, 255, 0)), "cmyk.tif", (255, 0, 0)),
    (Image.fromarray(np.full((4, 4), 25700, np.uint16)), "sixteen.png", (100, 100, 100)),
    (Image.fromarray(np.full((4, 4), 65535, np.uint16)), "sixteen_max.tif", (255, 255, 255)),
    (Image.fromarray(np.full((4, 4), 0.5, np.float32)), "float.tif", (128, 128, 128)),
    (Image.new("1", (4, 4), 1), "bits.bmp", (255, 255, 255)),
])
def test_modes_convert_to_rgb(write_tree, img, name, expected):
    s = image_folder(write_tree({name: encode(img, name)}))
    out = s.load_image(0)
    assert out.mode == "RGB" and out.getpixel((1, 1)) == expected


def test_unreadable_files_are_skipped_with_reason(write_tree):
    good = noise_jpeg()
    root = write_tree({"ok.jpg": good, "broken.jpg": good[: len(good) // 2], "garbage.png": b"not an image",
                       "notes.txt": b"hello", "empty.gif": b"", ".DS_Store": b"\0\0", ".hidden/x.png": RED})
    s = image_folder(root)
    assert s.ids == ["ok.jpg"]
    reasons = dict(s.skipped)
    assert sorted(reasons) == ["broken.jpg", "empty.gif", "garbage.png", "notes.txt"]
    assert reasons["notes.txt"] == "not an image file (extension '.txt')"
    assert reasons["garbage.png"] == "not a readable image (Pillow cannot identify the file)"
    assert reasons["broken.jpg"].startswith("cannot decode: image file is truncated")


def test_decompression_bomb_guard_stays_on(write_tree, monkeypatch):
    assert Image.MAX_IMAGE_PIXELS is not None  # importing ood_core did not switch the guard off
    root = write_tree({"small.png": Image.new("RGB", (5, 5)), "big.png": Image.new("RGB", (20, 20)),
                       "warned.png": Image.new("RGB", (15, 10))})
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 400 px > 2 x 100 -> Pillow's error
    with pytest.warns(Image.DecompressionBombWarning):  # 150 px: Pillow only warns; ood_core refuses
        s = image_folder(root)
    assert s.ids == ["small.png"]
    assert s.skipped == [
        ("big.png", "refused by Pillow's decompression-bomb guard: Image size (400 pixels) exceeds limit of 200 "
                    "pixels, could be decompression bomb DOS attack."),
        ("warned.png", "refused by Pillow's decompression-bomb guard: 15x10 image (150 pixels) is over the "
                       "100-pixel limit"),
    ]
    with pytest.warns(Image.DecompressionBombWarning), pytest.raises(Image.DecompressionBombError):
        image_folder(root, verify=False).load_image(2)  # at embedding time too


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_says_so(write_tree):
    root = write_tree({"a.png": RED, "b.png": BLUE})
    (root / "b.png").chmod(0)
    assert image_folder(root).skipped == [("b.png", "cannot read the file (Permission denied)")]


def test_folder_identity_tracks_files(write_tree):
    root = write_tree({"a.png": RED, "b.png": BLUE})
    first = image_folder(root).identity
    assert image_folder(root).identity == first
    (root / "b.png").write_bytes(encode(RED, "b.png") + b"\0")
    assert image_folder(root).identity != first


def test_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="image_folder: path=.* is not a folder"):
        image_folder(tmp_path / "missing")


def test_subset_and_index_errors(write_tree):
    s = image_folder(write_tree({"cat/a.png": RED, "cat/b.png": BLUE, "dog/c.png": RED}))
    sub = s.subset([2, 0])
    assert sub.ids == ["dog/c.png", "cat/a.png"] and sub.labels.tolist() == [1, 0]
    assert sub.identity != s.identity and sub.load_image(1).getpixel((0, 0)) == RED
    assert s.subset(np.array([False, True, False])).ids == ["cat/b.png"]
    with pytest.raises(ValueError, match=r"boolean mask has shape \(2,\), expected \(3,\)"):
        s.subset(np.array([True, False]))
    with pytest.raises(IndexError, match="out of range for 3 items"):
        s.load_image(3)
    with pytest.raises(TypeError, match="integers or a boolean mask"):
        s.subset([0.5])


# --------------------------------------------------------------------------- zips
def test_zip_matches_folder_layout(write_zip, write_tree):
    files = {"train/cat/a.png": RED, "train/dog/b.png": BLUE, "test/cat/c.png": RED, "readme.md": b"#"}
    wrapped = {f"mydata/{k}": v for k, v in files.items()}
    z = image_zip(write_zip(wrapped))
    f = image_folder(write_tree(files))
    assert z.ids == f.ids == ["test/cat/c.png", "train/cat/a.png", "train/dog/b.png"]
    assert z.split.tolist() == f.split.tolist() and z.labels.tolist() == f.labels.tolist()
    assert z.skipped == [("readme.md", "not an image file (extension '.md')")]
    assert z.load_image(2).getpixel((0, 0)) == BLUE
    assert "zip archive data.zip (3 images, 2 classes)" == z.description


def test_zip_from_bytes_has_content_identity(write_zip):
    path = write_zip({"cat/a.png": RED, "dog/b.png": BLUE})
    from_path, from_bytes = image_zip(path), image_zip(path.read_bytes())
    assert from_bytes.identity == from_path.identity
    assert from_bytes.load_image(1).getpixel((0, 0)) == BLUE
    assert image_zip(io.BytesIO(path.read_bytes())).ids == ["cat/a.png", "dog/b.png"]


@pytest.mark.parametrize("bad", ["../evil.png", "/abs/evil.png", "ok/../../evil.png", "C:/evil.png"])
def test_zip_refuses_escaping_entries(write_zip, bad):
    path = write_zip({"cat/a.png": RED, bad: RED})
    with pytest.raises(ValueError, match="absolute path or a '..' component; the archive is refused"):
        image_zip(path)


def test_zip_caps_files_and_bytes(write_zip):
    path = write_zip({"a.png": RED, "b.png": RED, "c.png": RED})
    with pytest.raises(ValueError, match=r"'data.zip' holds more than max_files=2 entries \(folders count too\)"):
        image_zip(path, max_files=2)
    with pytest.raises(ValueError, match="more than max_total_bytes=100 "):
        image_zip(path, max_total_bytes=100)
    assert len(image_zip(path, max_files=3)) == 3
    total = sum(len(encode(RED, f"{n}.png")) for n in "abc")
    assert len(image_zip(path, max_total_bytes=total)) == 3  # at most max_total_bytes is allowed
    with pytest.raises(ValueError, match=f"would inflate to {total} bytes"):
        image_zip(path, max_total_bytes=total - 1)


def test_zip_skips_corrupt_members_and_rejects_non_zip(write_zip, tmp_path):
    path = write_zip({"ok.png": RED, "bad.png": b"\x89PNG junk"})
    s = image_zip(path)
    assert s.ids == ["ok.png"] and s.skipped[0][0] == "bad.png"
    not_zip = tmp_path / "x.zip"
    not_zip.write_bytes(b"hello")
    with pytest.raises(ValueError, match="'x.zip' is not a readable zip archive"):
        image_zip(not_zip)


def test_zip_keeps_one_handle_and_survives_threads(write_zip):
    from concurrent.futures import ThreadPoolExecutor

    s = image_zip(write_zip({f"c/{i}.png": (i, i, i) for i in range(20)}))
    with ThreadPoolExecutor(4) as pool:
        pixels = list(pool.map(lambda i: s.load_image(i).getpixel((0, 0))[0], range(20)))
    assert sorted(pixels) == list(range(20))
    assert s._reader._zf is s.subset([1])._reader._zf  # one ZipFile shared, never reopened


# --------------------------------------------------------------------------- CIFAR-10
def test_cifar10_jpeg_zip(cifar, cifar_zip):
    assert len(cifar) == 60000 and tuple(cifar.class_names) == CIFAR10_CLASSES
    assert int((cifar.split == "train").sum()) == 50000
    assert cifar.ids[0] == "test/airplane/0000.jpg" and cifar.ids[10000] == "train/airplane/0000.jpg"
    assert cifar.labels[0] == 0 and cifar.split[0] == "test"
    assert cifar.description == "CIFAR-10 (50000 train / 10000 test) from cifar10-jpeg.zip"
    img = cifar.load_image(59999)
    assert img.size == (32, 32) and img.mode == "RGB" and cifar.labels[59999] == 9


def tiny_cifar_files(prefix="cifar10/"):
    return {f"{prefix}{split}/{c}/{i:04d}.jpg": (k * 20, 0, 0)
            for split in ("train", "test") for k, c in enumerate(CIFAR10_CLASSES) for i in range(2)}


def test_cifar10_folder_layout_and_env(write_tree, monkeypatch):
    root = write_tree(tiny_cifar_files())
    monkeypatch.setenv("OOD_CIFAR10", str(root))
    s = cifar10()
    assert len(s) == 40 and s.split.tolist().count("test") == 20
    assert s.labels.tolist()[:4] == [0, 0, 1, 1]


def test_cifar10_missing_path_errors(monkeypatch, tmp_path, write_tree):
    monkeypatch.delenv("OOD_CIFAR10", raising=False)
    with pytest.raises(ValueError, match="no path given and the OOD_CIFAR10 environment variable is not set"):
        cifar10()
    with pytest.raises(ValueError, match=r"nowhere. \(from the path argument\) does not exist; pass download=True"):
        cifar10(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="does not look like CIFAR-10"):
        cifar10(write_tree({"train/cat/a.png": RED}))


def write_batches(root, rng):
    """A fake torchvision cifar-10-batches-py folder (2 images per batch)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]
    for k, name in enumerate(names):
        data = rng.integers(0, 256, (2, 3072), dtype=np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": [k, 9 - k]}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": list(CIFAR10_CLASSES)}, f)
    return folder, names


def test_cifar10_batches_refused_without_known_md5(tmp_path):
    folder, _ = write_batches(tmp_path, np.random.default_rng(0))
    with pytest.raises(ValueError, match="does not match torchvision's known md5 checksum; refusing to unpickle"):
        cifar10(tmp_path)


def test_cifar10_batches_load_after_md5_check(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    folder, names = write_batches(tmp_path, np.random.default_rng(0))
    md5 = {n: hashlib.md5((folder / n).read_bytes()).hexdigest() for n in [*names, "batches.meta"]}
    monkeypatch.setattr(CIFAR10, "train_list", [[n, md5[n]] for n in names[:5]])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5["batches.meta"]})
    s = cifar10(folder)
    assert len(s) == 12 and s.split.tolist().count("train") == 10
    assert s.labels.tolist() == [0, 9, 1, 8, 2, 7, 3, 6, 4, 5, 5, 4]
    with open(folder / "test_batch", "rb") as f:
        first = pickle.load(f)["data"][0].reshape(3, 32, 32).transpose(1, 2, 0)
    assert np.array_equal(np.asarray(s.load_image(10)), first)


# --------------------------------------------------------------------------- demo split / digits
def test_demo_split_defaults(cifar):
    d = demo_split(cifar)
    fit, query = d.split == "train", d.split == "test"
    assert (fit.sum(), query.sum()) == (5000, 1000)
    assert fit[:5000].all() and query[5000:].all()  # fit rows first, then query rows
    animals = [cifar.class_names.index(c) for c in ANIMALS]
    assert np.isin(d.labels[fit], animals).all() and not d.is_ood[fit].any()
    assert d.is_ood[query].tolist() == (~np.isin(d.labels[query], animals)).tolist()
    assert int(d.is_ood.sum()) == 393
    assert all(i.startswith("train/") for i in d.ids[:5000]) and all(i.startswith("test/") for i in d.ids[5000:])
    assert d.description.startswith("CIFAR-10 demo split (5,000 fit / 1,000 query; in: bird, cat, deer")
    assert demo_split(cifar).ids == d.ids and demo_split(cifar, seed=1).ids != d.ids


def test_demo_split_parameters_and_errors(cifar):
    d = demo_split(cifar, in_classes=("cat", "dog"), fit_fraction=0.01, query_fraction=0.005, seed=3)
    assert len(d) == 100 + 50 and set(np.unique(d.labels[:100])) == {3, 5}
    with pytest.raises(ValueError, match="unknown class 'unicorn'; valid classes are"):
        demo_split(cifar, in_classes=("unicorn",))
    with pytest.raises(ValueError, match="fit_fraction must be in \\(0, 1\\], got 0"):
        demo_split(cifar, fit_fraction=0)
    with pytest.raises(ValueError, match="query_fraction=1e-06 selects no image out of 10000"):
        demo_split(cifar, query_fraction=1e-6)
    no_split = cifar.subset([0])
    no_split.split = None
    with pytest.raises(ValueError, match="must be an ImageSet with a train/test split"):
        demo_split(no_split)


def test_digits():
    d = digits()
    assert len(d) == 1797 and (d.split == "train").sum() == 450
    assert int(d.is_ood.sum()) == 896 and not d.is_ood[:450].any()
    assert np.isin(d.labels[:450], [0, 1, 2, 3, 4]).all()
    assert d.class_names == [str(i) for i in range(10)] and d.size_hint == 8
    from sklearn.datasets import load_digits

    raw = load_digits().images[int(d.ids[0].split("/")[1])]
    img = d.load_image(0)
    assert img.size == (8, 8) and img.mode == "RGB"
    assert np.array_equal(np.asarray(img)[..., 0], np.rint(raw * 255 / 16).astype(np.uint8))
    assert digits(in_classes=(7,), seed=1).is_ood.sum() == 1797 - 179
    with pytest.raises(ValueError, match="unknown class 10"):
        digits(in_classes=(10,))


# --------------------------------------------------------------------------- arrays
def test_load_arrays_npz_all_keys(tmp_path):
    path = tmp_path / "f.npz"
    np.savez(path, features=np.ones((3, 4), np.float32), pred_probs=np.full((3, 2), 0.5),
             labels=np.array([0, 1, -1]), ids=np.array(["a", "b", "c"]), class_names=np.array(["x", "y"]),
             split=np.array(["train", "train", "test"]), is_ood=np.array([0, 0, 1]))
    a = load_arrays(path)
    assert isinstance(a, ArraySet) and len(a) == 3 and a.features.dtype == np.float32
    assert a.labels.tolist() == [0, 1, -1] and a.ids == ["a", "b", "c"] and a.class_names == ["x", "y"]
    assert a.split.tolist() == ["train", "train", "test"] and a.is_ood.tolist() == [False, False, True]
    assert a.description == "precomputed arrays f.npz (3 rows, 4 features)" and len(a.identity) == 64


def test_load_arrays_bare_npy(tmp_path):
    path = tmp_path / "f.npy"
    np.save(path, np.arange(6).reshape(3, 2))
    a = load_arrays(path)
    assert a.features.dtype == np.float64 and a.labels.tolist() == [-1, -1, -1]
    assert a.ids == ["0", "1", "2"] and a.pred_probs is None and a.split is None and a.class_names == []


@pytest.mark.parametrize("arrays, message", [
    ({"labels": np.zeros(3)}, "has no 'features' key"),
    ({"features": np.ones(3)}, r"features must be 2-D, got shape \(3,\)"),
    ({"features": np.array([[1.0, np.nan]])}, r"only 0 of 1 rows in 'bad.npz' have finite features"),
    ({"features": np.array([[1.0, 2.0], [np.inf, 0.0], [np.nan, np.nan]])},
     "only 1 of 3 rows in 'bad.npz' have finite features and pred_probs .*; at least 2 are needed"),
    ({"features": np.ones((2, 2)), "pred_probs": np.array([[0.5, 0.5], [1.5, np.nan]])},
     r"pred_probs must lie in \[0, 1\]"),
    ({"features": np.ones((3, 2)), "labels": np.zeros(2)}, r"labels must have shape \(3,\) to match features"),
    ({"features": np.ones((2, 2)), "labels": np.array([0.5, 1])}, "labels must be integers"),
    ({"features": np.ones((2, 2)), "labels": np.array([0, 3]), "class_names": np.array(["a", "b"])},
     r"labels must be -1 or in \[0, 2\)"),
    ({"features": np.ones((2, 2)), "pred_probs": np.ones((3, 2)) / 2}, "pred_probs has 3 rows but features has 2"),
    ({"features": np.ones((2, 2)), "pred_probs": np.ones((2, 3)) / 3, "class_names": np.array(["a", "b"])},
     "pred_probs has 3 columns but class_names has 2"),
    ({"features": np.ones((2, 2)), "split": np.array(["train", "val"])}, r"split values must be 'train' or 'test', got \['val'\]"),
    ({"features": np.ones((2, 2)), "ids": np.array(["a", "a"])}, "ids must be unique"),
    ({"features": np.ones((2, 2)), "is_ood": np.array([0, 2])}, "is_ood must be boolean"),
    ({"features": np.ones((2, 2)), "ids": np.array(["a", None], dtype=object)}, "key 'ids' .* holds an object"),
])
def test_load_arrays_errors_name_the_key(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=message):
        load_arrays(path)


def test_load_arrays_drops_non_finite_rows_and_keeps_arrays_aligned(tmp_path):
    path = tmp_path / "f.npz"
    features = np.arange(10, dtype=np.float32).reshape(5, 2)
    features[1, 0] = np.nan
    features[3, 1] = -np.inf
    pred_probs = np.array([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8], [np.nan, 0.5], [np.nan, np.nan]])
    np.savez(path, features=features, pred_probs=pred_probs, labels=np.array([0, 1, 1, 0, 1]),
             ids=np.array(["a", "b", "c", "d", "e"]), split=np.array(["train", "train", "test", "test", "test"]),
             is_ood=np.array([0, 0, 1, 0, 0]))
    with pytest.warns(UserWarning, match=r"dropped 3 of 5 rows in 'f.npz' whose features or pred_probs hold NaN"):
        a = load_arrays(path)
    assert a.skipped == [("b", "features row has NaN/inf"),
                         ("d", "features row has NaN/inf; pred_probs row has NaN/inf"),
                         ("e", "pred_probs row has NaN/inf")]
    assert len(a) == 2 and a.ids == ["a", "c"] and a.labels.tolist() == [0, 1]
    assert a.features.tolist() == [[0.0, 1.0], [4.0, 5.0]] and a.pred_probs.tolist() == [[0.9, 0.1], [0.2, 0.8]]
    assert a.split.tolist() == ["train", "test"] and a.is_ood.tolist() == [False, True]
    assert a.description == "precomputed arrays f.npz (2 rows, 2 features; 3 rows with NaN/inf skipped)"


def test_load_arrays_default_ids_name_the_original_rows(tmp_path):
    path = tmp_path / "f.npy"
    np.save(path, np.array([[1.0], [np.nan], [3.0]]))
    with pytest.warns(UserWarning, match="dropped 1 of 3 rows"):
        a = load_arrays(path)
    assert a.ids == ["0", "2"] and a.skipped == [("1", "features row has NaN/inf")]
    assert a.features.ravel().tolist() == [1.0, 3.0] and a.labels.tolist() == [-1, -1]


def test_arrayset_skipped_defaults_to_empty(tmp_path):
    a = ArraySet(features=np.ones((2, 1)), pred_probs=None, labels=np.array([-1, -1]), ids=["0", "1"],
                 class_names=[], split=None, is_ood=None, description="", identity="")
    b = ArraySet(features=np.ones((2, 1)), pred_probs=None, labels=np.array([-1, -1]), ids=["0", "1"],
                 class_names=[], split=None, is_ood=None, description="", identity="")
    assert a.skipped == [] and a.skipped is not b.skipped
    path = tmp_path / "f.npy"
    np.save(path, np.ones((2, 2)))
    assert load_arrays(path).skipped == []


def test_load_arrays_refuses_pickles_and_junk(tmp_path):
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="holds an object \\(pickled\\) array, which is not loaded"):
        load_arrays(path)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"nope")
    with pytest.raises(ValueError, match="'junk.npz' is not a .npy or .npz file"):
        load_arrays(junk)
    with pytest.raises(ValueError, match="is not a file"):
        load_arrays(tmp_path / "missing.npz")


def test_load_arrays_warns_about_unknown_keys(tmp_path):
    path = tmp_path / "f.npz"
    np.savez(path, features=np.ones((2, 2)), extra=np.zeros(2))
    with pytest.warns(UserWarning, match=r"ignoring unknown keys \['extra'\]"):
        load_arrays(path)


def test_imageset_validates_lengths():
    with pytest.raises(ValueError, match="ImageSet: labels has 1 entries but ids has 2"):
        ImageSet(ids=["a", "b"], paths=["a", "b"], labels=[0], class_names=["c"], split=None, is_ood=None,
                 skipped=[], description="", identity="")
    with pytest.raises(ValueError, match="ids must be unique"):
        ImageSet(ids=["a", "a"], paths=["a", "b"], labels=[0, 0], class_names=["c"], split=None,
                 is_ood=None, skipped=[], description="", identity="")


def test_module_exports():
    assert set(sources.__all__) >= {"ImageSet", "ArraySet", "image_folder", "image_zip", "cifar10",
                                    "demo_split", "digits", "load_arrays"}


def test_arrays_with_nan_rows_still_score(tmp_path):
    from ood_core import analyze

    rng = np.random.default_rng(0)
    features = rng.normal(size=(30, 4))
    features[[4, 27]] = np.nan
    path = tmp_path / "f.npz"
    np.savez(path, features=features, split=np.array(["train"] * 20 + ["test"] * 10))
    with pytest.warns(UserWarning, match="dropped 2 of 30 rows"):
        a = analyze(load_arrays(path))
    assert a.skipped == [("4", "features row has NaN/inf"), ("27", "features row has NaN/inf")]
    assert len(a.fit_index) == 19 and len(a.query_index) == 9
    assert np.isfinite(a.query_feature_scores).all() and len(a.query_feature_scores) == 9


def test_open_source_name_replaces_the_stored_file_name(write_tree, write_zip, tmp_path):
    from ood_core.sources import open_source

    zipped = write_zip({"cat/a.png": RED, "dog/b.png": BLUE})
    stored = tmp_path / "0f3a9c.zip"
    stored.write_bytes(zipped.read_bytes())
    assert open_source(str(stored)).description == "zip archive 0f3a9c.zip (2 images, 2 classes)"
    assert open_source(str(stored), name="my images.zip").description == "zip archive my images.zip (2 images, 2 classes)"
    folder = open_source(write_tree({"cat/a.png": RED}), name="pets")
    assert folder.description == "image folder pets (1 images, 1 classes)"
    arrays = tmp_path / "1b2c.npz"
    np.savez(arrays, features=np.ones((2, 3)))
    assert open_source(arrays, name="feats.npz").description == "precomputed arrays feats.npz (2 rows, 3 features)"
    assert open_source(str(arrays), name="feats.npz").identity == open_source(str(arrays)).identity
    assert open_source("digits", name="ignored").description.startswith("scikit-learn digits")


def test_system_errors_are_not_called_decoding_errors():
    from ood_core.sources._io import describe_error

    denied = PermissionError(13, "Permission denied", "x.png")
    assert describe_error(denied) == "cannot read the file (Permission denied)"
    assert describe_error(OSError("image file is truncated")) == "cannot decode: image file is truncated"
