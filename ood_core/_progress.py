"""Progress callbacks: the library reports work as ``progress(stage, done, total)``; a step that
knows its stage takes ``progress(done, total)``."""
from __future__ import annotations

from typing import Callable

Progress = Callable[[str, int, int], None]  # (stage, done, total)
StepProgress = Callable[[int, int], None]  # (done, total) within one stage


def stage(progress: Progress | None, name: str) -> StepProgress | None:
    """``progress`` bound to the stage ``name`` (None stays None)."""
    if progress is None:
        return None
    return lambda done, total: progress(name, done, total)
