"""What the issues of one analysis add up to: counts per type, thresholds and their reasons, duplicate
sets, as one JSON-ready record (the CLI's ``.json`` card, the HTML report) and as printable lines."""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from ._registry import get_issue_type
from ._run import TABLE_DTYPE, unscored_items

SUMMARY_FORMAT = "ood-explorer-issues-card-v1"


def _json_number(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def issue_summary(analysis, table: np.ndarray, thresholds: dict[str, float] | None = None) -> dict[str, Any]:
    """A JSON-ready record of ``table`` (:meth:`~ood_core.analysis.Analysis.issues` of ``analysis``): the
    run's settings, and per issue type in ``table`` its threshold (``thresholds`` overrides the
    default) and why, how many items it flags of those it scores and how many it leaves unscored, each
    named with why (fit and query apart); the
    number of duplicate sets and of those with items in both fit and query (leakage), when the
    duplicate types are in ``table``."""
    if table.dtype != TABLE_DTYPE:
        raise ValueError(f"table must be Analysis.issues()'s structured array; got dtype {table.dtype}")
    fit = np.zeros(len(analysis.ids), dtype=bool)
    fit[np.asarray(analysis.fit_index, dtype=np.int64)] = True
    types: dict[str, Any] = {}
    for name in dict.fromkeys(table["issue"]):  # registration order, as the table holds them
        spec, scores = get_issue_type(name), analysis.issue_scores(name)
        rows = table[table["issue"] == name]
        flagged_pos = rows["position"][rows["flagged"]]
        threshold = (thresholds or {}).get(name, scores.threshold)
        types[name] = {
            "title": spec.title, "description": spec.description,
            "threshold": _json_number(threshold),
            "threshold_reason": spec.reason if name not in (thresholds or {}) else "set by the user",
            "flagged": int(rows["flagged"].sum()), "scored": int(len(rows)),
            "flagged_fit": int(fit[flagged_pos].sum()),
            "flagged_query": int((~fit[flagged_pos]).sum()) if not analysis.same_set else 0,
            **_unscored(analysis, name, fit),
            "info": scores.info,
        }
    card: dict[str, Any] = {
        "format": SUMMARY_FORMAT, "run_id": analysis.run_id, "source": analysis.source,
        "embedding": analysis.embed_config, "scoring": dataclasses.asdict(analysis.score_config),
        "class_split": analysis.class_split, "items": len(analysis.ids), "fit_items": len(analysis.fit_index),
        "query_items": len(analysis.query_index), "same_set": analysis.same_set,
        "skipped_files": len(analysis.skipped), "flagged_rule": "score < threshold", "types": types,
        "duplicate_sets": None,
    }
    if "exact_duplicate" in types or "near_duplicate" in types:
        near = (thresholds or {}).get("near_duplicate")
        sets = analysis.duplicate_sets(near_threshold=near)
        card["duplicate_sets"] = {"sets": len(sets), "items": int(sum(len(s.members) for s in sets)),
                                  "in_fit_and_query": int(sum(s.in_fit_and_query for s in sets))}
    return card


def _unscored(analysis, name: str, fit: np.ndarray) -> dict[str, Any]:
    """How many items ``name`` leaves unscored (never flagged; fit and query apart) and why, each named."""
    why = unscored_items(analysis, name)
    positions = np.fromiter(why, dtype=np.int64, count=len(why))
    return {"unscored": len(why), "unscored_fit": int(fit[positions].sum()),
            "unscored_query": int((~fit[positions]).sum()) if not analysis.same_set else 0,
            "unscored_reasons": {r: sum(1 for w in why.values() if w == r) for r in dict.fromkeys(why.values())},
            "unscored_items": [{"id": analysis.ids[p], "why": w} for p, w in why.items()]}


def summary_lines(card: dict[str, Any]) -> list[str]:
    """:func:`issue_summary`'s counts as a short table of text lines."""
    lines = [f"{'issue':<18}{'flagged':>8}{'scored':>8}{'unscored':>9}{'threshold':>11}"]
    for name, t in card["types"].items():
        thr = "-" if t["threshold"] is None else f"{t['threshold']:.4g}"
        lines.append(f"{name:<18}{t['flagged']:>8}{t['scored']:>8}{t.get('unscored', 0):>9}{thr:>11}")
    for name, t in card["types"].items():
        for reason, count in t.get("unscored_reasons", {}).items():
            lines.append(f"not scored for {name}: {count} item(s): {reason}")
    dup = card["duplicate_sets"]
    if dup is not None:
        lines.append(f"duplicate sets: {dup['sets']} ({dup['items']} items); "
                     f"with items in both fit and query (leakage): {dup['in_fit_and_query']}")
    return lines
