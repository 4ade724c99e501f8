"""Data sources: image folders, zip archives, CIFAR-10, the demo split, digits, arrays.

Every image source returns an :class:`ImageSet` (ids, display paths, labels, optional
split and out-of-distribution truth, skipped files, a stable identity for caching)
whose images are decoded lazily with :meth:`ImageSet.load_image`. Precomputed
features come back as an :class:`ArraySet` from :func:`load_arrays`.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Sequence

import numpy as np
from PIL import Image

from ood_core import _sources_io as sio

logger = logging.getLogger(__name__)

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
# The seed's in-distribution classes: the six animals (vehicles are out).
ANIMALS = ("bird", "cat", "deer", "dog", "frog", "horse")
CIFAR10_ENV = "OOD_CIFAR10"
# Zip-bomb caps (image_zip defaults): number of files and declared uncompressed bytes.
MAX_ZIP_FILES = 100_000
MAX_ZIP_BYTES = 2 * 1024**3


def _sha256(*chunks: str | bytes) -> str:
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk.encode() if isinstance(chunk, str) else chunk)
        h.update(b"\0")
    return h.hexdigest()


# =========================================================================== ImageSet
@dataclass(eq=False)
class ImageSet:
    """Images with ids, labels and optional split / truth, decoded lazily.

    ``labels`` index ``class_names`` (-1 when unknown); ``split`` holds "train" /
    "test" per item (None when the source has none); ``is_ood`` is known
    out-of-distribution truth (None when unknown); ``skipped`` lists files left out
    as (path, reason); ``identity`` changes whenever the items' pixels could.
    """

    ids: list[str]
    paths: list[str]
    labels: np.ndarray
    class_names: list[str]
    split: np.ndarray | None
    is_ood: np.ndarray | None
    skipped: list[tuple[str, str]]
    description: str
    identity: str
    _reader: Any = field(default=None, repr=False)  # object with .load(key, draft_size)
    _keys: list | None = field(default=None, repr=False)  # reader key per item
    size_hint: int | None = None  # typical longer side in pixels, when known

    def __post_init__(self):
        n = len(self.ids)
        self.ids = [str(i) for i in self.ids]
        self.paths = list(self.paths)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.class_names = [str(c) for c in self.class_names]
        if self._keys is None:
            self._keys = list(self.paths)
        lengths = {"paths": len(self.paths), "labels": len(self.labels), "_keys": len(self._keys)}
        if self.split is not None:
            self.split = np.asarray(self.split, dtype=object).reshape(-1)
            lengths["split"] = len(self.split)
        if self.is_ood is not None:
            self.is_ood = np.asarray(self.is_ood, dtype=bool).reshape(-1)
            lengths["is_ood"] = len(self.is_ood)
        for name, length in lengths.items():
            if length != n:
                raise ValueError(f"ImageSet: {name} has {length} entries but ids has {n}")
        if len(set(self.ids)) != n:
            raise ValueError("ImageSet: ids must be unique")
        if n and (self.labels.min() < -1 or self.labels.max() >= len(self.class_names)):
            raise ValueError(
                f"ImageSet: labels must be -1 or in [0, {len(self.class_names)}), "
                f"got values in [{self.labels.min()}, {self.labels.max()}]"
            )

    def __len__(self) -> int:
        return len(self.ids)

    def load_image(self, i: int) -> Image.Image:
        """Decode item ``i`` as an RGB image (raises OSError/ValueError if unreadable)."""
        return self._load(i)

    def _load(self, i: int, draft_size: int | None = None) -> Image.Image:
        i = int(i)
        if not 0 <= i < len(self):
            raise IndexError(f"image index {i} out of range for {len(self)} items")
        return self._reader.load(self._keys[i], draft_size)

    def subset(self, index) -> "ImageSet":
        """The items at ``index`` (int positions or a boolean mask), in that order."""
        idx = np.asarray(index)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise ValueError(
                    f"subset: boolean mask has shape {idx.shape}, expected ({len(self)},)"
                )
            idx = np.flatnonzero(idx)
        elif idx.size == 0:
            idx = idx.astype(np.int64)
        elif not np.issubdtype(idx.dtype, np.integer):
            raise TypeError(f"subset: index must be integers or a boolean mask, got {idx.dtype}")
        idx = idx.reshape(-1)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"subset: index out of range for {len(self)} items")
        ids = [self.ids[i] for i in idx]
        return ImageSet(
            ids=ids,
            paths=[self.paths[i] for i in idx],
            labels=self.labels[idx],
            class_names=list(self.class_names),
            split=None if self.split is None else self.split[idx],
            is_ood=None if self.is_ood is None else self.is_ood[idx],
            skipped=list(self.skipped),
            description=f"{self.description} [subset of {len(ids)}]",
            identity=_sha256("subset", self.identity, "\n".join(ids)),
            _reader=self._reader,
            _keys=[self._keys[i] for i in idx],
            size_hint=self.size_hint,
        )


# =========================================================================== folders / zips
class _Listing:
    """What a folder or zip scan admitted (and skipped), turned into an ImageSet."""

    def __init__(self):
        self.found: list[tuple[str, object, str]] = []  # (relative path, reader key, stat line)
        self.skipped: list[tuple[str, str]] = []
        self.sizes: list[tuple[int, int]] = []

    def admit(self, rel: str, verify: bool, open_stream: Callable[[], BinaryIO]) -> bool:
        """True for an image file that decodes (checked only when ``verify``)."""
        if not sio.has_image_extension(rel):
            suffix = os.path.splitext(rel)[1]
            self.skipped.append((rel, f"not an image file (extension {suffix or 'none'!r})"))
            return False
        if verify:
            try:
                with open_stream() as stream:
                    self.sizes.append(sio.probe_image(stream))
            except Exception as exc:  # noqa: BLE001 - any failure means "skip this file"
                self.skipped.append((rel, sio.describe_error(exc)))
                return False
        return True

    def add(self, rel: str, key, stat: str) -> None:
        self.found.append((rel, key, stat))

    def build(self, kind: str, name: str, reader) -> ImageSet:
        found = sorted(self.found, key=lambda item: item[0])
        rels = [rel for rel, _, _ in found]
        labels, class_names, split = sio.layout(rels)
        sides = [max(size) for size in self.sizes]
        return ImageSet(
            ids=rels,
            paths=rels,
            labels=labels,
            class_names=class_names,
            split=split,
            is_ood=None,
            skipped=sorted(self.skipped),
            description=f"{kind} {name} ({len(rels)} images, {len(class_names)} classes)",
            identity=_sha256(kind, "\n".join(f"{rel}\t{stat}" for rel, _, stat in found)),
            _reader=reader,
            _keys=[key for _, key, _ in found],
            size_hint=int(np.median(sides)) if sides else None,
        )


def image_folder(path: str | os.PathLike, *, verify: bool = True) -> ImageSet:
    """Images below ``path``, recursively.

    Class sub-folders give labels (files directly in ``path``: label -1); top-level
    ``train/`` and ``test/`` folders give the split. Non-image and unreadable files
    are skipped and listed with the reason. ``verify`` decodes each file once while
    listing (JPEG at 1/8 scale); turn it off only for trusted layouts.
    """
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"image_folder: path={str(path)!r} is not a folder")
    root_real = root.resolve()
    listing = _Listing()
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            if sio.is_hidden(rel):
                continue
            if full.is_symlink() and not full.resolve().is_relative_to(root_real):
                listing.skipped.append((rel, "symbolic link pointing outside the folder"))
            elif listing.admit(rel, verify, lambda: open(full, "rb")):
                st = full.stat()
                listing.add(rel, rel, f"{st.st_size}\t{st.st_mtime_ns}")
    return listing.build("image folder", root.name, sio.FolderReader(root))


def image_zip(
    source: str | os.PathLike | bytes | BinaryIO,
    *,
    verify: bool = True,
    max_files: int = MAX_ZIP_FILES,
    max_total_bytes: int = MAX_ZIP_BYTES,
) -> ImageSet:
    """Images inside a zip archive, read in place (nothing is extracted).

    Same layout rules as :func:`image_folder`; one folder wrapping everything (as
    zipping a folder makes) is ignored. Entries with absolute paths or ``..`` make
    the whole archive refused; more than ``max_files`` files or more than
    ``max_total_bytes`` declared uncompressed bytes too (zip-bomb guard).
    ``source`` may be a path, the archive's bytes, or a binary file object.
    """
    name = source if isinstance(source, (str, os.PathLike)) else getattr(source, "name", "upload.zip")
    name = Path(str(name)).name
    reader = sio.ZipReader(source)
    try:
        zf = reader.open_archive()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ValueError(f"image_zip: {name!r} is not a readable zip archive ({exc})") from exc
    infos = [info for info in zf.infolist() if not info.is_dir()]
    for info in zf.infolist():
        if sio.unsafe_member_name(info.filename):
            raise ValueError(
                f"image_zip: entry {info.filename!r} in {name!r} has an absolute path or a '..' "
                "component; the archive is refused"
            )
    if len(infos) > max_files:
        raise ValueError(
            f"image_zip: {name!r} holds {len(infos)} files, more than max_files={max_files}; "
            "raise max_files if the archive is trusted"
        )
    total = sum(info.file_size for info in infos)
    if total > max_total_bytes:
        raise ValueError(
            f"image_zip: {name!r} would inflate to {total} bytes, more than "
            f"max_total_bytes={max_total_bytes}; raise max_total_bytes if the archive is trusted"
        )
    members = [info for info in infos if not sio.is_hidden(info.filename)]
    _, rels = sio.strip_wrapper([info.filename for info in members])
    listing = _Listing()
    for info, rel in zip(members, rels):
        if info.flag_bits & 0x1:
            listing.skipped.append((rel, "encrypted zip entry"))
        elif listing.admit(rel, verify, lambda: io.BytesIO(reader.read(info.filename))):
            listing.add(rel, info.filename, f"{info.CRC}\t{info.file_size}")
    return listing.build("zip archive", name, reader)


# =========================================================================== CIFAR-10
def _cifar_path(path: str | os.PathLike | None, download: bool) -> Path:
    if path is None:
        path = os.environ.get(CIFAR10_ENV) or None
    if path is None and download:
        import platformdirs

        path = Path(platformdirs.user_cache_dir("ood-explorer")) / "cifar10"
    if path is None:
        raise ValueError(
            f"cifar10: no path given and the {CIFAR10_ENV} environment variable is not set; pass "
            "path= (cifar10-jpeg.zip, a folder with cifar10/{train,test}/{class}/*.jpg, or "
            "torchvision's cifar-10-batches-py) or download=True"
        )
    return Path(path)


def _check_cifar(images: ImageSet, where: Path) -> ImageSet:
    if tuple(images.class_names) != CIFAR10_CLASSES or images.split is None:
        raise ValueError(
            f"cifar10: {str(where)!r} does not look like CIFAR-10 (expected {{train,test}}/"
            f"{{class}}/*.jpg with the 10 CIFAR classes, found classes {images.class_names[:12]})"
        )
    n_train = int(np.sum(images.split == "train"))
    images.description = (
        f"CIFAR-10 ({n_train} train / {len(images) - n_train} test) from {where.name}"
    )
    images.size_hint = 32
    return images


def _file_digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _cifar_from_batches(batches: Path) -> ImageSet:
    """torchvision's ``cifar-10-batches-py``: unpickled only after an md5 check."""
    from torchvision.datasets import CIFAR10

    expected = [*CIFAR10.train_list, *CIFAR10.test_list, [CIFAR10.meta["filename"], CIFAR10.meta["md5"]]]
    for filename, md5 in expected:
        file = batches / filename
        if not file.is_file():
            raise ValueError(f"cifar10: {str(file)!r} is missing from torchvision's CIFAR-10 folder")
        if _file_digest(file, "md5") != md5:
            raise ValueError(
                f"cifar10: {str(file)!r} does not match torchvision's known md5 checksum; refusing "
                "to unpickle it (re-download with download=True or use the jpeg zip)"
            )
    parts, pixels, labels, split = [], [], [], []
    for name, train in (("train", True), ("test", False)):
        ds = CIFAR10(str(batches.parent), train=train, download=False)
        pixels.append(np.asarray(ds.data, dtype=np.uint8))
        labels.append(np.asarray(ds.targets, dtype=np.int64))
        parts += [f"{name}/{i:05d}" for i in range(len(ds.targets))]
        split += [name] * len(ds.targets)
    class_names = list(ds.classes)
    data = np.concatenate(pixels)
    return ImageSet(
        ids=parts,
        paths=parts,
        labels=np.concatenate(labels),
        class_names=class_names,
        split=np.array(split, dtype=object),
        is_ood=None,
        skipped=[],
        description="",
        identity=_sha256("cifar10-batches", *(md5 for _, md5 in expected)),
        _reader=sio.ArrayReader(data),
        _keys=list(range(len(parts))),
    )


def cifar10(path: str | os.PathLike | None = None, *, download: bool = False) -> ImageSet:
    """CIFAR-10 (60,000 32x32 images, split train/test).

    ``path`` (or the ``OOD_CIFAR10`` environment variable) is a zip or folder laid
    out ``cifar10/{train,test}/{class}/*.jpg``, or torchvision's
    ``cifar-10-batches-py`` folder (or its parent). ``download=True`` fetches
    torchvision's copy into ``path`` (default: the user cache dir) when it is absent.
    """
    where = _cifar_path(path, download)
    if where.is_file():
        if not zipfile.is_zipfile(where):
            raise ValueError(f"cifar10: {str(where)!r} is a file but not a zip archive")
        return _check_cifar(image_zip(where, verify=False), where)
    batches = where if where.name == "cifar-10-batches-py" else where / "cifar-10-batches-py"
    if not batches.is_dir() and download:
        from torchvision.datasets import CIFAR10

        logger.info("downloading CIFAR-10 into %s", where)
        CIFAR10(str(where), train=True, download=True)
    if batches.is_dir():
        return _check_cifar(_cifar_from_batches(batches), where)
    root = where / "cifar10" if (where / "cifar10").is_dir() else where
    if (root / "train").is_dir() or (root / "test").is_dir():
        return _check_cifar(image_folder(root, verify=False), where)
    origin = "the path argument" if path is not None else CIFAR10_ENV
    state = "holds neither cifar10/{train,test}/ nor cifar-10-batches-py" if where.is_dir() else "does not exist"
    raise ValueError(
        f"cifar10: {str(where)!r} (from {origin}) {state}; pass download=True to fetch torchvision's copy"
    )


def _class_indices(images: ImageSet, in_classes: Sequence, arg: str) -> np.ndarray:
    if isinstance(in_classes, (str, int)) or len(in_classes) == 0:
        raise ValueError(f"{arg} must be a non-empty sequence of class names, got {in_classes!r}")
    out = []
    for c in in_classes:
        if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
            ok = 0 <= int(c) < len(images.class_names)
            idx = int(c)
        else:
            ok = str(c) in images.class_names
            idx = images.class_names.index(str(c)) if ok else -1
        if not ok:
            raise ValueError(f"{arg}: unknown class {c!r}; valid classes are {images.class_names}")
        out.append(idx)
    return np.unique(out)


def _sample(rng: np.random.Generator, pool: np.ndarray, fraction: float, arg: str) -> np.ndarray:
    if not (isinstance(fraction, (int, float)) and 0 < fraction <= 1):
        raise ValueError(f"{arg} must be in (0, 1], got {fraction!r}")
    n = int(round(fraction * len(pool)))
    if n < 1:
        raise ValueError(f"{arg}={fraction} selects no image out of {len(pool)}")
    return np.sort(rng.choice(pool, size=n, replace=False))


def _with_split(images: ImageSet, fit: np.ndarray, query: np.ndarray, in_idx: np.ndarray,
                description: str) -> ImageSet:
    out = images.subset(np.concatenate([fit, query]))
    out.split = np.array(["train"] * len(fit) + ["test"] * len(query), dtype=object)
    out.is_ood = np.concatenate([np.zeros(len(fit), bool), ~np.isin(images.labels[query], in_idx)])
    out.description = description
    return out


def demo_split(
    cifar: ImageSet,
    in_classes: Sequence[str] = ANIMALS,
    fit_fraction: float = 1 / 6,
    query_fraction: float = 1 / 10,
    seed: int = 0,
) -> ImageSet:
    """The seed's demo split of CIFAR-10 (or any set with a train/test split).

    fit = a seeded random ``fit_fraction`` of the *training* images of
    ``in_classes``; query = a seeded random ``query_fraction`` of the *test* images
    of all classes, with ``is_ood`` True for classes outside ``in_classes``.
    Defaults give 5,000 fit and 1,000 query images.
    """
    if not isinstance(cifar, ImageSet) or cifar.split is None:
        raise ValueError("demo_split: cifar must be an ImageSet with a train/test split, e.g. cifar10()")
    in_idx = _class_indices(cifar, in_classes, "in_classes")
    rng = np.random.default_rng(seed)
    fit_pool = np.flatnonzero((cifar.split == "train") & np.isin(cifar.labels, in_idx))
    query_pool = np.flatnonzero(cifar.split == "test")
    if not len(fit_pool) or not len(query_pool):
        raise ValueError(
            f"demo_split: need training images of {list(in_classes)} and test images; found "
            f"{len(fit_pool)} and {len(query_pool)}"
        )
    fit = _sample(rng, fit_pool, fit_fraction, "fit_fraction")
    query = _sample(rng, query_pool, query_fraction, "query_fraction")
    names = ", ".join(cifar.class_names[i] for i in in_idx)
    return _with_split(
        cifar, fit, query, in_idx,
        f"CIFAR-10 demo split ({len(fit)} fit / {len(query)} query; in: {names}; seed {seed})",
    )


def digits(in_classes: Sequence[int] = (0, 1, 2, 3, 4), seed: int = 0) -> ImageSet:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, no download).

    fit = a seeded half of the images of ``in_classes``; query = every other image
    (all digits), with ``is_ood`` True for digits outside ``in_classes``.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    n = len(pixels)
    ids = [f"digits/{i:04d}" for i in range(n)]
    full = ImageSet(
        ids=ids,
        paths=ids,
        labels=bunch.target,
        class_names=[str(d) for d in range(10)],
        split=None,
        is_ood=None,
        skipped=[],
        description="scikit-learn digits",
        identity=_sha256("digits", pixels.tobytes()),
        _reader=sio.ArrayReader(pixels),
        _keys=list(range(n)),
        size_hint=8,
    )
    in_idx = _class_indices(full, list(in_classes), "in_classes")
    rng = np.random.default_rng(seed)
    in_pool = np.flatnonzero(np.isin(full.labels, in_idx))
    fit = np.sort(rng.choice(in_pool, size=len(in_pool) // 2, replace=False))
    query = np.setdiff1d(np.arange(n), fit)
    names = ", ".join(full.class_names[i] for i in in_idx)
    return _with_split(
        full, fit, query, in_idx,
        f"scikit-learn digits ({len(fit)} fit / {len(query)} query; in: {names}; seed {seed})",
    )


# =========================================================================== arrays
@dataclass(eq=False)
class ArraySet:
    """Precomputed features (and optional predictions / labels) loaded from disk.

    ``skipped`` lists rows left out as (id, reason), e.g. features holding NaN.
    """

    features: np.ndarray  # (N, D) float
    pred_probs: np.ndarray | None  # (N, K) or None
    labels: np.ndarray  # int64 (N,), -1 when unknown
    ids: list[str]
    class_names: list[str]
    split: np.ndarray | None  # "train"/"test" per row, or None
    is_ood: np.ndarray | None  # bool per row, or None
    description: str
    identity: str
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (id, reason) for dropped rows

    def __len__(self) -> int:
        return len(self.features)


_ARRAY_KEYS = ("features", "pred_probs", "labels", "ids", "class_names", "split", "is_ood")


def _read_key(data, key: str, path: Path) -> np.ndarray:
    try:
        return np.asarray(data[key])
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise ValueError(
                f"load_arrays: key {key!r} in {path.name!r} is an object (pickled) array, which is "
                "not loaded for safety; save it as numbers or fixed-width strings, e.g. "
                "np.asarray(values, dtype=str)"
            ) from None
        raise ValueError(f"load_arrays: key {key!r} in {path.name!r} is unreadable ({exc})") from exc
    except Exception as exc:
        raise ValueError(f"load_arrays: key {key!r} in {path.name!r} is unreadable ({exc})") from exc


def _check_float(arr: np.ndarray, key: str, ndim: int) -> np.ndarray:
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) or np.iscomplexobj(arr):
        raise ValueError(f"load_arrays: {key} must be numeric, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"load_arrays: {key} must be {ndim}-D, got shape {arr.shape}")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    return arr


def _check_1d(arr: np.ndarray, key: str, n: int) -> np.ndarray:
    if arr.ndim != 1 or len(arr) != n:
        raise ValueError(f"load_arrays: {key} must have shape ({n},) to match features, got {arr.shape}")
    return arr


def load_arrays(path: str | os.PathLike) -> ArraySet:
    """Load precomputed features from a ``.npz`` (key ``features`` required; optional
    ``pred_probs``, ``labels``, ``ids``, ``class_names``, ``split``, ``is_ood``) or a
    bare ``.npy`` of features. Pickled (object) arrays are refused.

    Rows whose features or pred_probs hold NaN or inf are dropped (every per-row
    array stays aligned), listed in ``skipped`` as (id, reason) and counted in a
    warning; a ValueError is raised only when fewer than 2 rows remain.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"load_arrays: path={str(path)!r} is not a file")
    with open(path, "rb") as f:
        magic = f.read(6)
    if not (magic.startswith(b"PK") or magic == b"\x93NUMPY"):
        raise ValueError(f"load_arrays: {path.name!r} is not a .npy or .npz file (unknown header)")
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise ValueError(
                f"load_arrays: {path.name!r} holds an object (pickled) array, which is not loaded "
                "for safety; save features as a numeric array"
            ) from None
        raise ValueError(f"load_arrays: {path.name!r} is not a .npy or .npz file ({exc})") from exc
    except Exception as exc:
        raise ValueError(f"load_arrays: {path.name!r} is not a .npy or .npz file ({exc})") from exc
    if isinstance(loaded, np.ndarray):
        data = {"features": loaded}
        keys = ["features"]
    else:
        with loaded:
            keys = list(loaded.files)
            if "features" not in keys:
                raise ValueError(
                    f"load_arrays: {path.name!r} has no 'features' key (keys: {keys}); the "
                    f"allowed keys are {list(_ARRAY_KEYS)}"
                )
            data = {k: _read_key(loaded, k, path) for k in keys if k in _ARRAY_KEYS}
        extra = [k for k in keys if k not in _ARRAY_KEYS]
        if extra:
            warnings.warn(f"load_arrays: ignoring unknown keys {extra} in {path.name!r}", stacklevel=2)

    features = _check_float(data["features"], "features", 2)
    n, d = features.shape
    if n == 0 or d == 0:
        raise ValueError(f"load_arrays: features must have at least one row and column, got {features.shape}")
    pred_probs = None
    if "pred_probs" in data:
        pred_probs = _check_float(data["pred_probs"], "pred_probs", 2)
        if len(pred_probs) != n:
            raise ValueError(f"load_arrays: pred_probs has {len(pred_probs)} rows but features has {n}")
        finite = pred_probs[np.isfinite(pred_probs)]
        if finite.size and (finite.min() < 0 or finite.max() > 1):
            raise ValueError("load_arrays: pred_probs must lie in [0, 1]")
    class_names = None
    if "class_names" in data:
        cn = data["class_names"]
        if cn.ndim != 1:
            raise ValueError(f"load_arrays: class_names must be 1-D, got shape {cn.shape}")
        if cn.dtype.kind == "S":
            cn = np.char.decode(cn, "utf-8")
        class_names = [str(c) for c in cn.tolist()]
    labels = np.full(n, -1, dtype=np.int64)
    if "labels" in data:
        raw = _check_1d(data["labels"], "labels", n)
        if not np.issubdtype(raw.dtype, np.number) or (
            raw.size and not np.all(np.isfinite(raw) & (raw == np.round(raw)))
        ):
            raise ValueError(f"load_arrays: labels must be integers (-1 = unknown), got dtype {raw.dtype}")
        labels = raw.astype(np.int64)
    n_classes = len(class_names) if class_names is not None else (
        pred_probs.shape[1] if pred_probs is not None else int(labels.max(initial=-1)) + 1
    )
    if pred_probs is not None and pred_probs.shape[1] != n_classes:
        raise ValueError(
            f"load_arrays: pred_probs has {pred_probs.shape[1]} columns but class_names has {n_classes}"
        )
    if labels.size and (labels.min() < -1 or labels.max() >= n_classes):
        raise ValueError(
            f"load_arrays: labels must be -1 or in [0, {n_classes}), got values in "
            f"[{labels.min()}, {labels.max()}]"
        )
    if class_names is None:
        class_names = [str(c) for c in range(n_classes)]
    ids = [str(i) for i in range(n)]
    if "ids" in data:
        raw = _check_1d(data["ids"], "ids", n)
        ids = [str(i) for i in (np.char.decode(raw, "utf-8") if raw.dtype.kind == "S" else raw).tolist()]
        if len(set(ids)) != n:
            raise ValueError("load_arrays: ids must be unique")
    split = None
    if "split" in data:
        split = _check_1d(data["split"], "split", n).astype(str).astype(object)
        bad = sorted(set(split.tolist()) - {"train", "test"})
        if bad:
            raise ValueError(f"load_arrays: split values must be 'train' or 'test', got {bad[:5]}")
    is_ood = None
    if "is_ood" in data:
        raw = _check_1d(data["is_ood"], "is_ood", n)
        if raw.dtype != bool and not (np.issubdtype(raw.dtype, np.number) and np.isin(raw, (0, 1)).all()):
            raise ValueError(f"load_arrays: is_ood must be boolean (or 0/1), got dtype {raw.dtype}")
        is_ood = raw.astype(bool)
    identity = _file_digest(path, "sha256")
    keep, skipped = _finite_rows(features, pred_probs, ids)
    description = f"precomputed arrays {path.name} ({n} rows, {d} features)"
    if skipped:
        if keep.sum() < 2:
            raise ValueError(
                f"load_arrays: only {int(keep.sum())} of {n} rows in {path.name!r} have finite "
                "features and pred_probs (the others hold NaN or inf); at least 2 are needed"
            )
        warnings.warn(
            f"load_arrays: dropped {len(skipped)} of {n} rows in {path.name!r} whose features or "
            "pred_probs hold NaN or inf; they are listed in .skipped",
            stacklevel=2,
        )
        features, labels = features[keep], labels[keep]
        pred_probs = None if pred_probs is None else pred_probs[keep]
        split = None if split is None else split[keep]
        is_ood = None if is_ood is None else is_ood[keep]
        ids = [i for i, k in zip(ids, keep) if k]
        description = (
            f"precomputed arrays {path.name} ({len(ids)} rows, {d} features; "
            f"{len(skipped)} rows with NaN/inf skipped)"
        )
    return ArraySet(
        features=features,
        pred_probs=pred_probs,
        labels=labels,
        ids=ids,
        class_names=class_names,
        split=split,
        is_ood=is_ood,
        description=description,
        identity=identity,
        skipped=skipped,
    )


def _finite_rows(
    features: np.ndarray, pred_probs: np.ndarray | None, ids: list[str]
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Mask of rows whose features (and pred_probs) are all finite, and (id, reason) for the rest."""
    ok_features = np.isfinite(features).all(axis=1)
    ok_probs = np.ones(len(features), bool) if pred_probs is None else np.isfinite(pred_probs).all(axis=1)
    keep = ok_features & ok_probs
    skipped = []
    for i in np.flatnonzero(~keep):
        reasons = [f"{key} row has NaN/inf" for key, ok in (("features", ok_features), ("pred_probs", ok_probs))
                   if not ok[i]]
        skipped.append((ids[i], "; ".join(reasons)))
    return keep, skipped


__all__ = [
    "ANIMALS",
    "CIFAR10_CLASSES",
    "ArraySet",
    "ImageSet",
    "cifar10",
    "demo_split",
    "digits",
    "image_folder",
    "image_zip",
    "load_arrays",
]
