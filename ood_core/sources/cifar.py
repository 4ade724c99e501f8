"""CIFAR-10 from a jpeg zip, a jpeg folder, or torchvision's ``cifar-10-batches-py``."""

from __future__ import annotations

import logging
import os
import zipfile
from pathlib import Path

import numpy as np

from .._files import file_digest
from ._imageset import ImageSet, content_digest, pixel_set
from .archive import image_zip
from .folder import image_folder

logger = logging.getLogger(__name__)

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
CIFAR10_ENV = "OOD_CIFAR10"


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


def _cifar_from_batches(batches: Path) -> ImageSet:
    """torchvision's ``cifar-10-batches-py``: unpickled only after an md5 check."""
    from torchvision.datasets import CIFAR10

    expected = [*CIFAR10.train_list, *CIFAR10.test_list, [CIFAR10.meta["filename"], CIFAR10.meta["md5"]]]
    for filename, md5 in expected:
        file = batches / filename
        if not file.is_file():
            raise ValueError(f"cifar10: {str(file)!r} is missing from torchvision's CIFAR-10 folder")
        if file_digest(file, "md5") != md5:
            raise ValueError(
                f"cifar10: {str(file)!r} does not match torchvision's known md5 checksum; refusing "
                "to unpickle it (re-download with download=True or use the jpeg zip)"
            )
    ids, pixels, labels, split = [], [], [], []
    for name, train in (("train", True), ("test", False)):
        ds = CIFAR10(str(batches.parent), train=train, download=False)
        pixels.append(np.asarray(ds.data, dtype=np.uint8))
        labels.append(np.asarray(ds.targets, dtype=np.int64))
        ids += [f"{name}/{i:05d}" for i in range(len(ds.targets))]
        split += [name] * len(ds.targets)
    return pixel_set(np.concatenate(pixels), ids, np.concatenate(labels), list(ds.classes),
                     split=np.array(split, dtype=object),
                     identity=content_digest("cifar10-batches", *(md5 for _, md5 in expected)))


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
