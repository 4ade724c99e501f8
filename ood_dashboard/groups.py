"""What items can be coloured by besides their score (known truth, review mark, class, train/test
split): the group of each item and one colour per group, shared by the threshold histogram (its
stacked test bars), the embedding map and anything else that shows a mark's colour.

Pure: an ``Analysis`` (or anything with its ``ids``, ``labels``, ``class_names``, ``fit_index``,
``query_index``, ``is_ood`` and ``same_set``) and the review marks in, plain lists and dicts out.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_GROUP_COLORS",
    "GROUPINGS",
    "MARK_COLORS",
    "NOT_REVIEWED",
    "Groups",
    "available_groupings",
    "group_colors",
    "group_order",
    "item_groups",
]

NOT_REVIEWED = "not reviewed"
TRUTH_OUT, TRUTH_IN = "out of distribution", "in distribution"
TRAIN, TEST = "train (fit)", "test (query)"
UNKNOWN_CLASS = "unknown class"
_GREY = "#BAB0AC"

#: How items can be grouped (key: title), in the order a page offers them.
GROUPINGS: dict[str, str] = {"truth": "Known truth", "mark": "Review mark", "class": "Class",
                             "split": "Train / test"}
#: One colour per review verdict (``ood_core.VERDICTS``) and for items without a mark; in this
#: order the histogram stacks them (bottom first) and legends list them.
MARK_COLORS: dict[str, str] = {"outlier": "#F58518", "fine": "#54A24B", "unsure": "#B279A2", NOT_REVIEWED: _GREY}
# Outliers share the marks' outlier colour; items without truth (train) are grey.
_TRUTH_COLORS = {TRUTH_OUT: "#F58518", TRUTH_IN: "#54A24B", TRAIN: _GREY}
_SPLIT_COLORS = {TEST: "#F58518", TRAIN: "#4C78A8"}  # as the histogram's two sets
#: Colours (and order) of the groups of test items a figure knows without being told: truth, marks.
DEFAULT_GROUP_COLORS: dict[str, str] = {TRUTH_OUT: _TRUTH_COLORS[TRUTH_OUT], TRUTH_IN: _TRUTH_COLORS[TRUTH_IN],
                                        **MARK_COLORS}
# Colours of groups no mapping names (classes, custom groups): Tableau 10 without its grey (the
# colour of "the rest"), then Alphabet's more saturated ones.
_PALETTE = ("#4C78A8", "#F58518", "#E45756", "#72B7B2", "#54A24B", "#EECA3B", "#B279A2", "#FF9DA6",
            "#9D755D", "#AA0DFE", "#3283FE", "#85660D", "#782AB6", "#1C8356", "#16FF32", "#1CBE4F",
            "#C4451C", "#DEA0FD", "#FE00FA", "#325A9B", "#FEAF16", "#90AD1C", "#F6222E", "#1CFFCE",
            "#2ED9FF", "#B10DA1", "#C075A6", "#FC1CBF", "#B00068", "#FBE426", "#FA0087")


@dataclass(frozen=True)
class Groups:
    """The group of each item and how to draw the groups."""

    names: list[str]  # one group name per item, in the order of the positions asked for
    colors: dict[str, str]  # group -> colour, in legend and stacking order (bottom first)
    background: tuple[str, ...] = ()  # groups that are "the rest" (no mark, no truth): drawn faint


def group_order(names: Iterable[str], colors: Mapping[str, str] | None = None) -> list[str]:
    """The distinct groups among ``names``: those ``colors`` lists first, in its order, then the
    others sorted."""
    present = set(names)
    known = [g for g in (colors or {}) if g in present]
    return known + sorted(present - set(known))


def group_colors(order: Sequence[str], colors: Mapping[str, str] | None = None) -> dict[str, str]:
    """A colour for each group of ``order``: from ``colors`` where it has one, else the next unused
    colour of a qualitative palette (31 colours, cycling beyond)."""
    colors = dict(colors or {})
    used = set(colors.values())
    spare = [c for c in _PALETTE if c not in used] or list(_PALETTE)
    out, i = {}, 0
    for group in order:
        if group in colors:
            out[group] = colors[group]
        else:
            out[group] = spare[i % len(spare)]
            i += 1
    return out


def available_groupings(analysis: Any, with_marks: bool = True) -> dict[str, str]:
    """The groupings that say something for ``analysis``: truth only when it is known, class only
    when some item has one, the split only when train and test are different items, the marks when
    they can be read (``with_marks``)."""
    offered = {
        "truth": analysis.is_ood is not None,
        "mark": with_marks,
        "class": bool(len(analysis.class_names)) and bool(np.any(np.asarray(analysis.labels) >= 0)),
        "split": not analysis.same_set,
    }
    return {key: title for key, title in GROUPINGS.items() if offered[key]}


def item_groups(analysis: Any, positions, by: str, marks: Mapping[str, Any] | None = None) -> Groups:
    """The group of each item at ``positions`` (into ``analysis.ids``) under the grouping ``by``:

    - ``"truth"``: ``out of distribution`` / ``in distribution`` for test (query) items,
      ``train (fit)`` for the others (no truth; background);
    - ``"mark"``: the review verdict (``marks``: item id -> ``ood_core.Mark``) or ``not reviewed``
      (background);
    - ``"class"``: the class name, ``unknown class`` without one; one colour per class of the data;
    - ``"split"``: ``test (query)`` / ``train (fit)``.
    """
    pos = np.asarray(positions, dtype=np.int64).reshape(-1)
    if by == "truth":
        if analysis.is_ood is None:
            raise ValueError("this data has no known truth (is_ood); colour by something else")
        truth = np.full(len(analysis.ids), -1, dtype=np.int8)
        truth[np.asarray(analysis.query_index, dtype=np.int64)] = np.asarray(analysis.is_ood, dtype=bool)
        names = [(TRAIN, TRUTH_IN, TRUTH_OUT)[t + 1] for t in truth[pos]]
        return Groups(names, _present(names, _TRUTH_COLORS), (TRAIN,))
    if by == "mark":
        marks = marks or {}
        names = [_verdict(marks.get(analysis.ids[p])) for p in pos]
        return Groups(names, _present(names, MARK_COLORS), (NOT_REVIEWED,))
    if by == "class":
        labels = np.asarray(analysis.labels)[pos]
        classes = list(analysis.class_names)
        names = [classes[i] if 0 <= i < len(classes) else UNKNOWN_CLASS for i in labels.tolist()]
        by_class = {c: _PALETTE[i % len(_PALETTE)] for i, c in enumerate(classes)} | {UNKNOWN_CLASS: _GREY}
        return Groups(names, _present(names, by_class), (UNKNOWN_CLASS,))
    if by == "split":
        is_query = np.zeros(len(analysis.ids), dtype=bool)
        is_query[np.asarray(analysis.query_index, dtype=np.int64)] = True
        names = [TEST if q else TRAIN for q in is_query[pos]]
        return Groups(names, _present(names, _SPLIT_COLORS))
    raise ValueError(f"by must be one of {tuple(GROUPINGS)}; got {by!r}")


def _verdict(mark: Any) -> str:
    return NOT_REVIEWED if mark is None else str(mark.verdict)


def _present(names: list[str], colors: Mapping[str, str]) -> dict[str, str]:
    return group_colors(group_order(names, colors), colors)
