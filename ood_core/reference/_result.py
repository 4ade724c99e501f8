"""What checking a batch returns: :class:`BatchResult`, per item its scores and flags, per scorer (and
per predicted class) the flagged count tested against in-distribution batches."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._binomial import RateTest
from .._export import to_csv
from .._reference_store import HISTORY_FILE, CheckHistory
from ..analysis import SCORERS
from ..sources import ImageSet
from ._folder import CARD_FORMAT, MANIFEST_FILE, ReferenceError

@dataclass(frozen=True, eq=False)
class BatchResult:
    """One batch checked against a reference: per image its scores, flags and predicted class; per
    scorer (and per predicted class) the flagged count tested against in-distribution batches.

    ``alarm`` is the headline: the smallest scorer p-value, Bonferroni-adjusted for the number of
    scorers (``p_value``), below ``alpha``; so over many in-distribution batches it sounds at most
    about ``alpha`` of the time. Each scorer's own ``tests[scorer].alarm`` compares its p-value
    with ``alpha`` unadjusted; the per-class tests are for reading, not for the headline.
    """

    name: str  # what the batch is called (the name given, else the source's description)
    batch_digest: str  # identity of the batch's content (images' bytes and paths, or the arrays file)
    reference_digest: str | None  # the reference's manifest digest (None for a reference never saved)
    checked_at: str  # UTC, ISO 8601
    ids: list[str]
    paths: list[str]
    labels: list[str]  # the batch's own class name of each item ("" when it has none)
    scores: dict[str, np.ndarray]  # scorer -> score per item
    flagged: dict[str, np.ndarray]  # scorer -> score strictly below the frozen threshold
    thresholds: dict[str, float]
    predicted: list[str] | None  # the classifier's class name per item (None without a prediction scorer)
    tests: dict[str, RateTest]
    class_tests: dict[str, dict[str, RateTest]]  # scorer -> predicted class name -> test
    percentile: float
    alpha: float
    level: float
    p_value: float  # min over scorers of their p-values, times the number of scorers (capped at 1)
    alarm: bool  # p_value < alpha
    skipped: list[tuple[str, str]] = field(default_factory=list)  # batch files that could not be decoded
    items: ImageSet | None = None  # the batch's images, to show them (None for features)
    history_id: int | None = None  # its row in the reference's history (None when not logged)
    backend: str | None = None  # the inference backend that embedded the batch (None for features)

    @property
    def n(self) -> int:
        """Items scored."""
        return len(self.ids)

    @property
    def scorers(self) -> tuple[str, ...]:
        return tuple(self.scores)

    def table(self) -> list[dict[str, Any]]:
        """One row per item: id, path, label, predicted class, and per scorer its score and flag."""
        out = []
        for i, item in enumerate(self.ids):
            row: dict[str, Any] = {"id": item, "path": self.paths[i], "label": self.labels[i]}
            if self.predicted is not None:
                row["predicted_class"] = self.predicted[i]
            for scorer in self.scores:
                row[f"{scorer}_score"] = float(self.scores[scorer][i])
                row[f"{scorer}_flagged"] = bool(self.flagged[scorer][i])
            out.append(row)
        return out

    def to_csv(self) -> str:
        """:meth:`table` as CSV text (scores with full float precision)."""
        return to_csv(self.table())

    def card(self) -> dict[str, Any]:
        """A JSON-ready summary: the headline alarm, and per scorer (and per predicted class) the
        count, flagged and expected rates, the in-distribution interval, the p-value and the alarm."""
        scorers = {}
        for scorer, test in self.tests.items():
            entry = {"title": SCORERS[scorer].title, "threshold": self.thresholds[scorer], **test.as_dict()}
            if scorer in self.class_tests:
                entry["per_class"] = {name: t.as_dict() for name, t in self.class_tests[scorer].items()}
            scorers[scorer] = entry
        return {
            "format": CARD_FORMAT,
            "batch": {"name": self.name, "digest": self.batch_digest, "n": self.n, "skipped": len(self.skipped),
                      "checked_at": self.checked_at, "backend": self.backend},
            "reference": {"digest": self.reference_digest, "percentile": self.percentile},
            "n": self.n, "alpha": self.alpha, "level": self.level, "p_value": self.p_value, "alarm": self.alarm,
            "alarm_rule": (f"smallest scorer p-value x {len(self.tests)} scorer(s) < alpha (Bonferroni); each "
                           "p-value: P(an in-distribution batch of this size flags at least as many), "
                           "Beta-binomial (the threshold's own uncertainty included)"),
            "flagged_rule": "score < threshold",
            "scorers": scorers,
        }



def read_history(folder: str | Path) -> list[dict[str, Any]]:
    """Every logged check of the reference saved in ``folder``, oldest first: ``id``, ``checked_at``,
    ``batch_name``, ``batch_digest``, ``n``, ``alarm``, ``p_value``, ``alpha``, and per scorer
    ``{scorer}_flagged_rate``, ``_expected_rate``, ``_interval`` ([lo, hi]), ``_p_value``, ``_alarm``;
    ``card`` is the full :meth:`BatchResult.card`. Reads the history only (the reference's arrays are
    not verified); :class:`ReferenceError` when ``folder`` is not a saved reference."""
    folder = Path(folder).expanduser()
    if not (folder / MANIFEST_FILE).is_file():
        raise ReferenceError(f"{folder / MANIFEST_FILE} is missing: {folder} is not a saved reference")
    out = []
    for row_id, checked_at, batch_name, batch_digest, n, alarm, p_value, card_json in \
            CheckHistory(folder / HISTORY_FILE).rows():
        card = json.loads(card_json)
        entry = {"id": row_id, "checked_at": checked_at, "batch_name": batch_name, "batch_digest": batch_digest,
                 "n": n, "alarm": bool(alarm), "p_value": p_value, "alpha": card.get("alpha")}
        for scorer, test in card.get("scorers", {}).items():
            for key in ("flagged_rate", "expected_rate", "interval", "p_value", "alarm"):
                entry[f"{scorer}_{key}"] = test.get(key)
        entry["card"] = card
        out.append(entry)
    return out


__all__ = ["BatchResult", "read_history"]
