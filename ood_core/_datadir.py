"""The user data folder: the one place its location is decided (CIFAR-10 downloads, review marks)."""
from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "OOD_DATA_DIR"


def user_data_dir() -> Path:
    """``$OOD_DATA_DIR``, else ``platformdirs.user_data_dir("ood-explorer")``."""
    base = os.environ.get(DATA_DIR_ENV)
    if base:
        return Path(base).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("ood-explorer"))
