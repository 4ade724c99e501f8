"""Reviewing what was flagged: marks kept for good, what they say about a threshold, and exports.

:class:`ReviewStore` keeps ``outlier`` / ``fine`` / ``unsure`` marks (and a note) per dataset key
(:func:`dataset_key`: the data's content, not its path) and item id in one SQLite file.
:func:`review_summary` turns the marks of the flagged items into review progress and an estimate
of the precision at a threshold (:func:`precision_estimate`, a Wilson interval) when no ground
truth exists; :func:`reviewed_truth` makes the marks truth for :func:`ood_core.ood_metrics`.
:func:`review_table` / :func:`review_csv` export marks with scores; :func:`copy_items` copies the
original image files of chosen items into a folder for curation.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np

from ._curation import copy_items
from ._export import to_csv
from ._review_store import VERDICTS, DatasetMarks, Mark, ReviewStore, ReviewStoreError, check_verdict

if TYPE_CHECKING:
    from .analysis import Analysis

_Z95 = 1.959963984540054  # two-sided 95% normal quantile


def dataset_key(data: Any) -> str:
    """The key review marks are kept under for the data of ``data`` (an :class:`~ood_core.Analysis`,
    ``ImageSet`` or ``ArraySet``): the identity of the whole data it was drawn from, by content
    (files' bytes and relative paths; a features file's bytes), not by where it lies. It is the same
    for every fit/query split or class choice of that data and every model, embedding or scorer
    setting, so marks come back whenever the same data is opened again."""
    key = getattr(data, "data_id", None)
    if not isinstance(key, str) or not key:
        raise TypeError(f"dataset_key takes an Analysis, ImageSet or ArraySet; got {type(data).__name__}")
    return key


def split_key(analysis: Analysis) -> str:
    """The fit/query split ``analysis`` was made under, as the text a mark keeps (``ReviewStore.mark(...,
    split=split_key(analysis))``): :func:`key_of_split` of ``analysis.class_split``. Marks are scored
    under the same split later (``export-review``, ``copy-items``)."""
    return key_of_split(analysis.class_split)


def key_of_split(drawn: Mapping[str, Any] | None) -> str:
    """The text a mark keeps for a split: the classes drawn as in-distribution (sorted), the fit
    fraction and the seed (``{"in_classes": [...], "fit_fraction": f, "seed": s}``), or None for the
    source's own split."""
    if drawn is None:
        return json.dumps({"in_classes": None})
    return json.dumps({"in_classes": sorted(str(c) for c in drawn["in_classes"]),
                       "fit_fraction": float(drawn["fit_fraction"]), "seed": int(drawn["seed"])}, sort_keys=True)


def reference_split_key(reference_digest: str | None, batch_digest: str) -> str:
    """The text a mark made on a batch checked against a saved reference keeps instead of a split
    (the Batches page): the reference's digest and the batch's, so exports tell these marks apart
    from marks made under a split of an analysis (:func:`reference_of_split`)."""
    return json.dumps({"reference": reference_digest or "", "batch": str(batch_digest)}, sort_keys=True)


def reference_of_split(key: str) -> dict[str, str] | None:
    """``{"reference": digest, "batch": digest}`` of a :func:`reference_split_key`, None for any other text."""
    try:
        found = json.loads(key)
    except (ValueError, TypeError):
        return None
    return {"reference": str(found["reference"]), "batch": str(found["batch"])} \
        if isinstance(found, dict) and "reference" in found and "batch" in found else None


def split_settings(key: str) -> dict[str, Any] | None:
    """The split of a :func:`split_key`: ``{"in_classes": [...], "fit_fraction": f, "seed": s}``, None
    for the source's own split; a ValueError for text that is not a split key (a mark made against a
    reference, :func:`reference_split_key`, has none)."""
    made = reference_of_split(key)
    if made is not None:
        raise ValueError(f"made on a batch checked against reference {made['reference'][:12]}, not under a split")
    try:
        drawn = json.loads(key)
        if drawn["in_classes"] is None:
            return None
        return {"in_classes": [str(c) for c in drawn["in_classes"]], "fit_fraction": float(drawn["fit_fraction"]),
                "seed": int(drawn["seed"])}
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"not a split key: {key!r}") from None


def describe_split(key: str) -> str:
    """A :func:`split_key` in words: "in-classes cat,dog (fit fraction 0.5, seed 0)" or "the source's
    own split", or "the batch def456… checked against reference abc123…" for a :func:`reference_split_key`."""
    made = reference_of_split(key)
    if made is not None:
        return f"the batch {made['batch'][:12]} checked against reference {made['reference'][:12] or '(unsaved)'}"
    drawn = split_settings(key)
    if drawn is None:
        return "the source's own split"
    return f"in-classes {','.join(drawn['in_classes'])} (fit fraction {drawn['fit_fraction']:g}, seed {drawn['seed']})"


# ---------------------------------------------------------------------- what the marks say
class PrecisionEstimate(NamedTuple):
    """Share of reviewed items marked ``outlier`` with its Wilson 95% interval; NaN when ``n`` is 0."""

    precision: float
    low: float
    high: float
    n: int  # items marked outlier or fine (unsure ones do not count)


def _verdicts(marks: Mapping[str, Mark] | Iterable[Mark | str]) -> list[str]:
    values = marks.values() if isinstance(marks, Mapping) else marks
    return [check_verdict(m.verdict if isinstance(m, Mark) else m) for m in values]


def precision_estimate(marks_of_flagged: Mapping[str, Mark] | Iterable[Mark | str]) -> PrecisionEstimate:
    """Precision of a flag rule estimated from the review marks of (a sample of) the items it flags:
    ``outlier`` counts as a true positive, ``fine`` as a false one, ``unsure`` is left out.

    Returns ``(precision, low, high, n)`` with the Wilson score 95% interval, which stays inside
    [0, 1] and is honest for few marks (e.g. 8 of 10: 0.80, interval 0.49 to 0.94). The estimate
    holds for the flagged items when the reviewed ones are a fair sample of them (review the
    borderline items too, not only the most extreme)."""
    verdicts = _verdicts(marks_of_flagged)
    k, n = verdicts.count("outlier"), verdicts.count("outlier") + verdicts.count("fine")
    if n == 0:
        return PrecisionEstimate(math.nan, math.nan, math.nan, 0)
    p = k / n
    denominator = 1 + _Z95**2 / n
    centre = (p + _Z95**2 / (2 * n)) / denominator
    half = _Z95 * math.sqrt(p * (1 - p) / n + _Z95**2 / (4 * n**2)) / denominator
    return PrecisionEstimate(p, max(0.0, centre - half), min(1.0, centre + half), n)


def flagged_positions(analysis: Analysis, scorer: str, threshold: float, which: str = "query") -> np.ndarray:
    """Positions (into ``analysis.ids``) of the ``which`` ("query" or "fit") items that ``scorer``
    flags at ``threshold`` (score strictly below it), most atypical first."""
    if which not in ("query", "fit"):
        raise ValueError(f"which must be 'query' or 'fit'; got {which!r}")
    fit_scores, query_scores = analysis.scores(scorer)
    scores, index = (query_scores, analysis.query_index) if which == "query" else (fit_scores, analysis.fit_index)
    order = np.argsort(scores, kind="stable")
    order = order[np.asarray(scores)[order] < float(threshold)]
    return np.asarray(index, dtype=np.int64)[order]


def marked_positions(ids: Sequence[str], marks: Mapping[str, Mark], verdicts: Iterable[str] = VERDICTS) -> np.ndarray:
    """Positions (into ``ids``) of the items whose mark is one of ``verdicts``."""
    wanted = {check_verdict(v) for v in verdicts}
    return np.array([i for i, item in enumerate(ids) if item in marks and marks[item].verdict in wanted],
                    dtype=np.int64)


@dataclass(frozen=True)
class ReviewSummary:
    """Review progress over the items one threshold flags, and the precision the marks imply."""

    flagged: int  # query items flagged
    reviewed: int  # of those, how many carry a mark
    verdicts: dict[str, int]  # marks of the flagged items, per verdict
    precision: PrecisionEstimate


def review_summary(analysis: Analysis, marks: Mapping[str, Mark], scorer: str, threshold: float) -> ReviewSummary:
    """How many of the query items ``scorer`` flags at ``threshold`` are reviewed, their verdicts, and
    :func:`precision_estimate` from them (for when the data has no known truth). Costs one pass over
    the query scores plus one lookup per mark, whatever the size of the run."""
    query_scores = np.asarray(analysis.scores(scorer)[1])
    flagged = int(np.count_nonzero(query_scores < float(threshold)))
    rows = analysis.query_row_of if marks else {}
    reviewed = [mark for item, mark in marks.items()
                if item in rows and query_scores[rows[item]] < float(threshold)]
    verdicts = {v: sum(m.verdict == v for m in reviewed) for v in VERDICTS}
    return ReviewSummary(flagged, len(reviewed), verdicts, precision_estimate(reviewed))


def reviewed_truth(analysis: Analysis, marks: Mapping[str, Mark]) -> tuple[np.ndarray, np.ndarray]:
    """The review marks as truth for the evaluation: ``(rows, is_ood)`` where ``rows`` index the
    query arrays (``analysis.query_index`` order) of the query items marked ``outlier`` or ``fine``
    (``unsure`` left out) and ``is_ood`` is True for ``outlier``. Feed
    ``ood_metrics(query_scores[rows], is_ood, threshold)``; the metrics then describe the reviewed
    items only (mostly flagged ones, if that is what was reviewed), not the whole query set."""
    found = sorted((analysis.query_row_of[item], mark.verdict == "outlier") for item, mark in marks.items()
                   if mark.verdict != "unsure" and item in analysis.query_row_of) if marks else []
    rows, truth = [j for j, _ in found], [t for _, t in found]
    return np.array(rows, dtype=np.int64), np.array(truth, dtype=bool)


# ---------------------------------------------------------------------- export
def review_table(analysis: Analysis, marks: Mapping[str, Mark], thresholds: dict[str, float],
                 reviewed_only: bool = True) -> list[dict[str, Any]]:
    """The rows of :meth:`Analysis.scores_table` (id, path, set, label (the class), truth when known,
    each scorer's score and flag at ``thresholds``) with the review columns ``verdict``, ``note`` and
    ``updated_at`` (ISO 8601, UTC) and ``made_under`` (:func:`describe_split` of the mark's split, or of
    the reference and batch it was made against; "" when not recorded). ``reviewed_only``: only the marked items. Marked items this run
    did not score (another split of the same data) come last with their set and scores left empty,
    so an export never drops a decision."""
    rows = analysis.scores_table(thresholds)
    columns = list(rows[0]) if rows else ["id", "path", "set", "label"]
    out, seen = [], set()
    for row in rows:
        seen.add(row["id"])
        mark = marks.get(row["id"])
        if mark is not None or not reviewed_only:
            out.append(_with_mark(row, mark))
    for item in sorted(set(marks) - seen):
        out.append(_with_mark({**dict.fromkeys(columns, ""), "id": item}, marks[item]))
    return out


def _with_mark(row: dict[str, Any], mark: Mark | None) -> dict[str, Any]:
    if mark is None:
        return {**row, "verdict": "", "note": "", "updated_at": "", "made_under": ""}
    return {**row, "verdict": mark.verdict, "note": mark.note,
            "updated_at": mark.updated_at.isoformat(timespec="seconds"),
            "made_under": describe_split(mark.split) if mark.split else ""}


def review_csv(analysis: Analysis, marks: Mapping[str, Mark], thresholds: dict[str, float],
               reviewed_only: bool = True) -> str:
    """:func:`review_table` as CSV text (full float precision; text a spreadsheet would run as a
    formula, e.g. a note starting with ``=``, is neutralised)."""
    return to_csv(review_table(analysis, marks, thresholds, reviewed_only))


__all__ = ["VERDICTS", "DatasetMarks", "Mark", "PrecisionEstimate", "ReviewStore", "ReviewStoreError",
           "ReviewSummary", "copy_items", "dataset_key", "describe_split", "key_of_split", "reference_of_split", "reference_split_key", "split_key", "split_settings", "flagged_positions", "marked_positions",
           "precision_estimate", "review_csv", "review_summary", "review_table", "reviewed_truth"]
