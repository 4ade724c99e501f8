"""A shareable report of one analysis: one self-contained HTML file (``ood-explorer report``).

:func:`render_report` gives the page: the source and settings; per outlier score (feature,
prediction) the histogram with the threshold line, the counts and the top flagged images; per issue
type (:mod:`ood_core.issues`) the counts, the histogram and the top examples, duplicate sets side by
side. Histograms are inline SVG (:mod:`.svg`), thumbnails inline PNG; nothing is fetched when the
file is opened, and every string from the data is escaped (:mod:`.html`).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..settings import DEFAULT_PERCENTILE
from .html import esc, item_card, page, table
from .svg import histogram_svg

DUPLICATE_TYPES = ("exact_duplicate", "near_duplicate")


def _lowest(scores: np.ndarray, positions: np.ndarray, flagged: np.ndarray, top: int) -> list[int]:
    """Up to ``top`` flagged positions, lowest score first (ties: lower position first)."""
    pos, s = positions[flagged], scores[flagged]
    return [int(p) for p in pos[np.lexsort((pos, s))][:top]]


def _settings(analysis, percentile: float) -> str:
    rows: list[list[Any]] = [["source", analysis.source], ["run id", analysis.run_id],
                             ["items", f"{len(analysis.ids)} (fit {len(analysis.fit_index)}, query "
                                       f"{len(analysis.query_index)}" + (", the same items" if analysis.same_set else "")
                                       + ")"],
                             ["outlier threshold", f"the {percentile:g}th percentile of the fit scores"]]
    if analysis.class_split:
        rows.append(["in classes", ", ".join(analysis.class_split["in_classes"])
                     + f" (fit fraction {analysis.class_split['fit_fraction']:g}, seed {analysis.class_split['seed']})"])
    rows += [[f"embedding: {k}", v] for k, v in analysis.embed_config.items()]
    rows += [[f"scoring: {k}", v] for k, v in dataclasses.asdict(analysis.score_config).items()]
    out = "<h2>Source and settings</h2>" + table(["setting", "value"], rows)
    if analysis.skipped:
        out += (f"<p>{len(analysis.skipped)} file(s) skipped:</p>"
                + table(["file", "reason"], [[p, r] for p, r in analysis.skipped[:20]]))
    return out


def _outlier_section(analysis, name: str, title: str, percentile: float, top: int) -> str:
    view = analysis.threshold_view(name, percentile=percentile)
    fit, query = analysis.scores(name)
    series = {"items": fit} if analysis.same_set else {"fit": fit, "query": query}
    out = [f'<h3 id="score-{esc(name)}">{esc(title)}</h3>',
           histogram_svg(series, view.threshold, label=title),
           table(["", "flagged", "total", "%"],
                 [["fit", view.fit_flagged, view.fit_total, f"{view.fit_flagged_pct:.1f}"]]
                 + ([] if analysis.same_set else
                    [["query", view.query_flagged, view.query_total, f"{view.query_flagged_pct:.1f}"]]),
                 numeric={1, 2, 3}, row_attrs=[f'data-score="{esc(name)}" data-set="fit"',
                                               f'data-score="{esc(name)}" data-set="query"'])]
    out.append(f'<p class="note">threshold {view.threshold:.6f}: flagged = score &lt; threshold</p>')
    if view.metrics is not None:
        m = view.metrics
        out.append(f'<p class="note">known truth: AUROC {m["auroc"]:.4f}, FPR@95%TPR {m["fpr_at_95_tpr"]:.4f}; at the '
                   f'threshold precision {m["precision"]:.4f}, TPR {m["tpr"]:.4f}</p>')
    out += [f'<p class="note">note: {esc(c)}</p>' for c in analysis.caveats(name)]
    which = np.asarray(analysis.fit_index if analysis.same_set else analysis.query_index, dtype=np.int64)
    scores = fit if analysis.same_set else query
    shown = _lowest(np.asarray(scores, dtype=np.float64), which, np.asarray(scores) < view.threshold, top)
    lookup = dict(zip(which.tolist(), np.asarray(scores, dtype=np.float64).tolist()))
    if shown:
        out.append(f"<p>The {len(shown)} lowest-scoring flagged {'items' if analysis.same_set else 'query items'}:</p>")
        out.append('<div class="items">' + "".join(
            item_card(analysis, p, [analysis.class_name(p), f"score {lookup[p]:.4f}"]) for p in shown) + "</div>")
    return "".join(out)


def _issue_section(analysis, name: str, info: dict[str, Any], top: int) -> str:
    r = analysis.issue_scores(name)
    flagged = r.flagged(info["threshold"]) if info["threshold"] is not None else np.zeros(len(r.scores), bool)
    thr = "none" if info["threshold"] is None else f"{info['threshold']:.4g}"
    out = [f'<h3 id="issue-{esc(name)}">{esc(info["title"])} <small>({esc(name)})</small></h3>',
           f"<p>{esc(info['description'])}. Flagged {info['flagged']} of {info['scored']} scored items "
           f"(fit {info['flagged_fit']}, query {info['flagged_query']}); threshold {esc(thr)}.</p>",
           f'<p class="reason">Why this threshold: {esc(info["threshold_reason"])}</p>',
           histogram_svg({"items": r.scores}, info["threshold"], label=info["title"])]
    if name not in DUPLICATE_TYPES:
        shown = _lowest(r.scores, np.arange(len(r.scores)), flagged, top)
        if shown:
            out.append(f"<p>The {len(shown)} most severe:</p>")
            out.append('<div class="items">' + "".join(
                item_card(analysis, p, [analysis.class_name(p), f"score {r.scores[p]:.4f}", r.detail[p]])
                for p in shown) + "</div>")
    return "".join(out)


def _duplicate_sets_section(analysis, card: dict[str, Any], top: int) -> str:
    dup = card["duplicate_sets"]
    if dup is None:
        return ""
    near = card["types"].get("near_duplicate", {}).get("threshold")
    sets = analysis.duplicate_sets(near_threshold=near)
    out = [f'<h3 id="duplicate-sets">Duplicate sets</h3><p data-duplicate-sets="{dup["sets"]}" '
           f'data-leakage="{dup["in_fit_and_query"]}">{dup["sets"]} duplicate sets ({dup["items"]} items); '
           f'{dup["in_fit_and_query"]} with items in both fit and query (leakage).</p>']
    fit = set(np.asarray(analysis.fit_index).tolist())
    for s in sets[:top]:
        cards = []
        shown = [s.representative] + [m for m in s.members if m != s.representative][:top - 1]
        for m in shown:
            where = "fit" if m in fit else "query"
            cards.append(item_card(analysis, m, [analysis.class_name(m), where],
                                   badge="kept" if m == s.representative else "", badge_class="kept"))
        label = ("exact copies" if s.exact else "near duplicates") + (" — in fit and query" if s.in_fit_and_query else "")
        more = f'<div class="note">and {len(s.members) - len(shown)} more</div>' if len(s.members) > len(shown) else ""
        out.append(f'<div class="set"><div class="note">{len(s.members)} {esc(label)}</div>{"".join(cards)}{more}</div>')
    if len(sets) > top:
        out.append(f'<p class="note">{len(sets) - top} more sets in the issues CSV (ood-explorer issues).</p>')
    return "".join(out)


def render_report(analysis, card: dict[str, Any], percentile: float = DEFAULT_PERCENTILE, top: int = 12) -> str:
    """The HTML text of the report of ``analysis``; ``card`` is :func:`ood_core.issues.issue_summary`
    of its issue table (the counts printed by the CLI); outlier thresholds at ``percentile`` of the
    fit scores; up to ``top`` images per section."""
    from ..analysis import NO_PREDICTION_REASON, SCORERS
    from ..issues import list_issue_types

    body = [f"<h1>Data report: {esc(analysis.source)}</h1>",
            '<p class="note">Made by ood-explorer. Every score lies in [0, 1]; lower = more atypical or more '
            "severe; an item is flagged when its score is below the threshold.</p>",
            _settings(analysis, percentile), "<h2>Outlier scores</h2>"]
    for name in analysis.scorers:
        body.append(_outlier_section(analysis, name, SCORERS[name].title, percentile, top))
    if "prediction" not in analysis.scorers:
        body.append(f"<p>No prediction score: {esc(NO_PREDICTION_REASON)}.</p>")
    body.append("<h2>Data issues</h2>")
    types = card["types"]
    counts = [[n, t["title"], t["flagged"], t["scored"], "-" if t["threshold"] is None else f"{t['threshold']:.4g}"]
              for n, t in types.items()]
    body.append(table(["issue", "title", "flagged", "scored", "threshold"], counts, numeric={2, 3, 4},
                      row_attrs=[f'data-issue="{esc(n)}"' for n in types]))
    for name in list_issue_types():
        if name not in types:
            reason = analysis.issue_scores(name).info.get("unavailable", "no item has a score")
            body.append(f'<p class="note">Not scored: {esc(name)}: {esc(reason)}.</p>')
    for name, t in types.items():
        body.append(_issue_section(analysis, name, t, top))
        if name == DUPLICATE_TYPES[-1] or (name == DUPLICATE_TYPES[0] and DUPLICATE_TYPES[1] not in types):
            body.append(_duplicate_sets_section(analysis, card, top))
    return page(f"Data report: {analysis.source}", "\n".join(body))


__all__ = ["render_report"]
