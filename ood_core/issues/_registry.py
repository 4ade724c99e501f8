"""The issue types, their per-item scores and the registry that names them.

Every issue type gives each item a score in [0, 1], lower = more severe (like the outlier
scores), a default threshold with the reason for its value, and ``flagged = score < threshold``.
Types are computed by *families* (one module each): a family computes all of its types in one
pass (both duplicate types from one set of candidate pairs, the seven image properties from one
read of the images). A family registers its types with :func:`issue_family`; the package's ``__init__`` imports every
family module, so the registry is full whenever ``ood_core.issues`` (or any module in it) is imported.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


@dataclass(frozen=True)
class IssueType:
    """One kind of data issue: its name, title, default threshold and why that value."""

    name: str  # e.g. "near_duplicate"
    title: str  # e.g. "Near duplicates"
    family: str  # the module that computes it: "duplicates", "label" or "properties"
    threshold: float  # default threshold: an item is flagged when its score is strictly below it
    reason: str  # why the default threshold has its value
    description: str  # what a low score means, in one sentence


@dataclass(frozen=True, eq=False)
class IssueScores:
    """One issue type's scores over the items of an analysis (aligned with ``Analysis.ids``).

    ``scores`` is NaN for an item this type cannot score (e.g. ``label`` for an item without a
    known class); such items are never flagged. ``detail`` says why an item scores as it does
    ("" when there is nothing to say), e.g. the id of its duplicate or its likely class.
    """

    issue: str
    scores: np.ndarray  # float64 (N,), in [0, 1], lower = more severe; NaN = not scored
    threshold: float  # the default threshold of this type (see IssueType.reason)
    detail: list[str]  # one entry per item
    info: dict[str, Any]  # settings and findings worth keeping with the run (JSON-able)

    @property
    def scored(self) -> np.ndarray:
        """True where the item has a score."""
        return ~np.isnan(self.scores)

    def flagged(self, threshold: float | None = None) -> np.ndarray:
        """``score < threshold`` (the default threshold when None); False where not scored."""
        thr = self.threshold if threshold is None else float(threshold)
        with np.errstate(invalid="ignore"):
            return np.asarray(self.scores < thr)


# name -> IssueType; family name -> the function computing its types
ISSUE_TYPES: dict[str, IssueType] = {}
FAMILIES: dict[str, Callable[..., dict[str, IssueScores]]] = {}


def issue_family(family: str, *types: IssueType):
    """Register ``types`` (all of family ``family``) and the decorated function that computes them:
    ``fn(analysis, **options) -> {type name: IssueScores}``."""
    def register(fn):
        for t in types:
            if t.family != family:
                raise ValueError(f"issue type {t.name!r} belongs to family {t.family!r}, not {family!r}")
            if t.name in ISSUE_TYPES:
                raise ValueError(f"issue type {t.name!r} is registered twice")
            ISSUE_TYPES[t.name] = t
        FAMILIES[family] = fn
        return fn

    return register


def list_issue_types() -> list[str]:
    """Names of every issue type, in registration order."""
    return list(ISSUE_TYPES)


def get_issue_type(name: str) -> IssueType:
    """The :class:`IssueType` called ``name``; ValueError listing the valid names otherwise."""
    try:
        return ISSUE_TYPES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown issue type {name!r}; valid: {', '.join(ISSUE_TYPES)}") from None


def resolve_types(types) -> list[str]:
    """``types`` (None = all, a name, or names) as a list of valid names, in registration order."""
    if types is None:
        return list(ISSUE_TYPES)
    if isinstance(types, str):
        types = [types]
    wanted = [get_issue_type(t).name for t in types]
    return [t for t in ISSUE_TYPES if t in wanted]


