"""CIFAR-10 from torchvision's archive (downloaded into the user data dir, or a local copy), its
``cifar-10-batches-py`` folder, or a jpeg zip or folder laid out ``{train,test}/{class}/*.jpg``."""

from __future__ import annotations

import logging
import os
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np

from .. import settings
from .._datadir import user_data_dir
from .._download import DEFAULT_TIMEOUT_S, DownloadError, extract_tar, fetch
from .._files import file_digest
from .._progress import StepProgress
from ._imageset import ImageSet, content_digest, pixel_set
from .archive import image_zip
from .folder import image_folder

logger = logging.getLogger(__name__)

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
CIFAR10_ENV = settings.SETTINGS["cifar10"].env
CIFAR10_BATCHES = "cifar-10-batches-py"  # torchvision's CIFAR10.base_folder (no torch import to look for it)
CIFAR10_ARCHIVE_BYTES = 170_498_071  # torchvision's cifar-10-python.tar.gz, when the server sends no length
_download_lock = threading.Lock()  # one download at a time; the next caller finds the verified copy
_LOCAL_COPY = ("torchvision's cifar-10-python.tar.gz, its extracted cifar-10-batches-py folder, or a folder "
               "or zip laid out {train,test}/{class}/*.jpg")


def _torchvision_cifar():
    from torchvision.datasets import CIFAR10

    return CIFAR10


def cifar10_data_dir() -> Path:
    """Where CIFAR-10 is downloaded to: ``$OOD_DATA_DIR/cifar10``, else
    ``platformdirs.user_data_dir("ood-explorer")/cifar10``."""
    return user_data_dir() / "cifar10"


def _configured_copy() -> tuple[Path, str] | None:
    """The ``cifar10`` setting (``$OOD_CIFAR10``, else ``cifar10`` in the config file) and where it was
    set, or None when it is not set."""
    resolved = settings.resolve("cifar10")
    if resolved.value is None:
        return None
    return resolved.value, CIFAR10_ENV if resolved.origin == "environment" else resolved.where


def cifar10_location() -> Path | None:
    """Where :func:`cifar10` without a path would read CIFAR-10: the ``cifar10`` setting (``$OOD_CIFAR10``,
    else ``cifar10`` in the config file), else the
    ``cifar-10-batches-py`` folder downloaded into :func:`cifar10_data_dir`, else None (a download or
    a path is needed). Cheap: nothing is opened or checksummed."""
    configured = _configured_copy()
    if configured is not None:
        return configured[0]
    batches = cifar10_data_dir() / CIFAR10_BATCHES
    return batches if batches.is_dir() else None


def _batches_problem(batches: Path) -> str | None:
    """Why ``batches`` is not torchvision's CIFAR-10 folder (a file missing or not matching its
    known md5), or None."""
    C = _torchvision_cifar()
    for filename, md5 in [*C.train_list, *C.test_list, [C.meta["filename"], C.meta["md5"]]]:
        file = batches / filename
        if not file.is_file():
            return f"{str(file)!r} is missing from torchvision's CIFAR-10 folder"
        if file_digest(file, "md5") != md5:
            return f"{str(file)!r} does not match torchvision's known md5 checksum"
    return None


def download_cifar10(root: str | os.PathLike | None = None, progress: StepProgress | None = None, *,
                     timeout: float = DEFAULT_TIMEOUT_S) -> Path:
    """Download torchvision's CIFAR-10 (``CIFAR10.url``, about 170 MB) into ``root`` (default:
    :func:`cifar10_data_dir`) and return its ``cifar-10-batches-py`` folder; a copy already there
    whose files match torchvision's md5 checksums is returned without a download.

    The archive is written to a ``.part`` file, checked against torchvision's md5 and only then
    renamed and extracted (plain files under ``cifar-10-batches-py/`` only, ``filter="data"``); the
    folder appears complete or not at all, and the archive is deleted afterwards.
    ``progress(done_bytes, total_bytes)`` follows the download (it is not called when a verified copy
    is there). One download runs at a time in a process. Without a network, raises
    ``DownloadError`` within about ``timeout`` seconds, naming the URL and the local alternatives."""
    C = _torchvision_cifar()
    root = Path(root) if root is not None else cifar10_data_dir()
    with _download_lock:
        return _download(C, root, progress, timeout)


def _download(C, root: Path, progress: StepProgress | None, timeout: float) -> Path:
    batches = root / C.base_folder
    if batches.is_dir() and _batches_problem(batches) is None:
        return batches
    archive = root / C.filename
    downloaded = not (archive.is_file() and file_digest(archive, "md5") == C.tgz_md5)
    if downloaded:  # else a verified archive is already there (an extraction that failed before)
        logger.info("downloading CIFAR-10 from %s into %s", C.url, root)
        fetch(C.url, archive, md5=C.tgz_md5, size_hint=CIFAR10_ARCHIVE_BYTES, progress=progress, timeout=timeout,
              hint=f"to use CIFAR-10 without downloading it here, pass a local copy ({_LOCAL_COPY}) "
                   f"as the path argument or in the {CIFAR10_ENV} environment variable")
    extract_tar(archive, root, C.base_folder)
    if downloaded:
        archive.unlink(missing_ok=True)
    problem = _batches_problem(batches)
    if problem is not None:
        raise DownloadError(f"cifar10: the extracted archive is not torchvision's CIFAR-10: {problem}")
    return batches


def _from_archive(archive: Path) -> Path:
    """A local ``cifar-10-python.tar.gz``: checked against torchvision's md5, extracted once into
    the data dir; returns the ``cifar-10-batches-py`` folder."""
    C = _torchvision_cifar()
    digest = file_digest(archive, "md5")
    if digest != C.tgz_md5:
        raise ValueError(f"cifar10: {str(archive)!r} is a tar archive but not torchvision's "
                         f"cifar-10-python.tar.gz (md5 {digest}, expected {C.tgz_md5}); refusing to unpack it")
    root = cifar10_data_dir()
    if (root / C.base_folder).is_dir() and _batches_problem(root / C.base_folder) is None:
        return root / C.base_folder  # extracted before
    logger.info("extracting %s into %s", archive, root)
    return extract_tar(archive, root, C.base_folder)


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
    CIFAR10 = _torchvision_cifar()
    problem = _batches_problem(batches)
    if problem is not None:
        raise ValueError(f"cifar10: {problem}; refusing to unpickle it (re-download with download=True "
                         "or use a jpeg zip or folder)")
    expected = [*CIFAR10.train_list, *CIFAR10.test_list, [CIFAR10.meta["filename"], CIFAR10.meta["md5"]]]
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


def cifar10(path: str | os.PathLike | None = None, *, download: bool = False,
            progress: StepProgress | None = None) -> ImageSet:
    """CIFAR-10 (60,000 32x32 images, split train/test), from the first of:

    1. ``path``; 2. the ``cifar10`` setting (the ``OOD_CIFAR10`` environment variable, else ``cifar10``
       in the config file, see :mod:`ood_core.settings`); either one a zip or folder laid out
       ``[cifar10/]{train,test}/{class}/*.jpg``, torchvision's ``cifar-10-batches-py`` folder (or
       its parent), or torchvision's ``cifar-10-python.tar.gz`` (md5-checked, extracted into the
       data dir);
    3. a copy downloaded before into :func:`cifar10_data_dir`;
    4. with ``download=True``, :func:`download_cifar10` (into ``path`` when one is given and holds
       no CIFAR-10, else into the data dir); ``progress(done_bytes, total_bytes)`` follows it.
    """
    if path is not None:
        return _cifar_at(Path(path), "the path argument", download, progress)
    configured = _configured_copy()
    if configured is not None:
        return _cifar_at(*configured, download, progress)
    root = cifar10_data_dir()
    batches = download_cifar10(root, progress) if download else cifar10_location()
    if batches is not None:
        return _check_cifar(_cifar_from_batches(batches), batches)
    raise ValueError(
        f"cifar10: no path given and the {CIFAR10_ENV} environment variable is not set, and no downloaded "
        f"copy is in {str(root)!r}. Download it (about 170 MB) with download=True (command line: "
        f"ood-explorer demo --download), or pass a local copy ({_LOCAL_COPY}) as the path argument or in {CIFAR10_ENV}"
    )


def _cifar_at(where: Path, origin: str, download: bool, progress: StepProgress | None) -> ImageSet:
    if where.is_file():
        if zipfile.is_zipfile(where):
            return _check_cifar(image_zip(where, verify=False), where)
        if tarfile.is_tarfile(where):
            return _check_cifar(_cifar_from_batches(_from_archive(where)), where)
        raise ValueError(f"cifar10: {str(where)!r} (from {origin}) is a file but neither a zip archive nor "
                         "torchvision's cifar-10-python.tar.gz")
    batches = where if where.name == CIFAR10_BATCHES else where / CIFAR10_BATCHES
    if not batches.is_dir() and (where / "cifar-10-python.tar.gz").is_file():
        batches = _from_archive(where / "cifar-10-python.tar.gz")
    if batches.is_dir():
        return _check_cifar(_cifar_from_batches(batches), where)
    root = where / "cifar10" if (where / "cifar10").is_dir() else where
    if (root / "train").is_dir() or (root / "test").is_dir():
        return _check_cifar(image_folder(root, verify=False), where)
    if download and (where.is_dir() or not where.suffix):  # not into a missing x.zip
        return _check_cifar(_cifar_from_batches(download_cifar10(batches.parent, progress)), where)
    state = "holds neither cifar10/{train,test}/ nor cifar-10-batches-py" if where.is_dir() else "does not exist"
    raise ValueError(
        f"cifar10: {str(where)!r} (from {origin}) {state}; pass download=True to fetch torchvision's copy "
        f"into it, or point it at {_LOCAL_COPY}"
    )
