"""The user data folder: the one place its location is decided (CIFAR-10 downloads, review marks)."""
from __future__ import annotations

from pathlib import Path

from . import settings

DATA_DIR_ENV = settings.SETTINGS["data_dir"].env


def user_data_dir() -> Path:
    """The ``data_dir`` setting (:mod:`ood_core.settings`): ``$OOD_DATA_DIR``, else ``data_dir`` in the
    config file, else ``platformdirs.user_data_dir("ood-explorer")``."""
    return settings.value("data_dir")
