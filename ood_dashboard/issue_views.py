"""What the two issue pages share (``views/issues.py``, the overview, and ``views/issue_scores.py``,
one issue type's score page): the issue scores computed once with a progress bar, each type's
threshold in the session, counts, the overlap of issue types with each other and with the outlier
scores, and duplicate sets drawn as rows of images.

An issue type's threshold is kept like a scorer's (``session.threshold_keys(issue)``), but it
starts at the type's own default (whose reason ``ood_core.issues`` gives), not at a percentile:
issue scores have a fixed meaning (e.g. a brightness ratio), so a new run starts at the default.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import streamlit as st

import ood_core
from ood_core.issues import DuplicateSet, get_issue_type, list_issue_types
from ood_core.issues import unscored_items as find_unscored
from ood_dashboard import review
from ood_dashboard.grid import run_cached
from ood_dashboard.markup import escape
from ood_dashboard.session import sync_threshold, threshold_keys
from ood_dashboard.state import SCORES_ID, grid_key, part_key, scorer_key
from ood_dashboard.thumbnails import grid_thumbnail

DUPLICATE_TYPES = ("exact_duplicate", "near_duplicate")


def compute_issues(analysis: ood_core.Analysis) -> list[str]:
    """Every issue type's scores (the first time with a progress bar; afterwards from the run's kept
    files or memory) and the names of the types this analysis can score, in registration order."""
    bar = None

    def report(stage: str, done: int, total: int) -> None:
        nonlocal bar
        text = f"Finding data issues: {stage} ({done:,} of {total:,})"
        if bar is None:
            bar = st.progress(0.0, text=text)
        bar.progress(min(1.0, done / max(total, 1)), text=text)

    with st.spinner("Finding data issues (duplicates, label issues, image properties)…"):
        try:
            for name in list_issue_types():
                analysis.issue_scores(name, progress=report)
        finally:
            if bar is not None:
                bar.empty()
    return [name for name in list_issue_types() if analysis.issue_scores(name).scored.any()]


def issue_threshold(analysis: ood_core.Analysis, issue: str) -> float:
    """The session's threshold of ``issue``: its default for a run it has not been set for, then
    whatever the user set on its score page (``session.sync_threshold`` keeps it with the scores)."""
    p_key, t_key = threshold_keys(issue)
    token_key, token = scorer_key(issue, SCORES_ID), analysis.scores_id(issue)
    if st.session_state.get(token_key) != token or t_key not in st.session_state:
        default = float(analysis.issue_scores(issue).threshold)
        fit = analysis.scores(issue)[0]
        scored = fit[~np.isnan(fit)]  # the percentile it reaches is of the scored train items
        st.session_state[token_key] = token
        st.session_state[t_key] = default
        st.session_state[p_key] = round(float(100.0 * np.count_nonzero(scored < default) / max(len(scored), 1)), 2)
    return sync_threshold(analysis, issue)


def issue_counts(analysis: ood_core.Analysis, names: Sequence[str]) -> list[dict]:
    """One row per issue type: flagged at the session's threshold (and at its default), scored,
    unscored (never flagged) and why, the default and its reason."""
    rows = []
    for name in names:
        spec, found = get_issue_type(name), analysis.issue_scores(name)
        threshold = issue_threshold(analysis, name)
        rows.append({"issue": spec.title, "type": name, "flagged": int(found.flagged(threshold).sum()),
                     "scored": int(found.scored.sum()), "unscored": int((~found.scored).sum()), "threshold": threshold,
                     "flagged at default": int(found.flagged().sum()), "default": float(found.threshold),
                     "why the default": spec.reason, "why unscored": unscored_reasons(analysis, name)})
    return rows


def unscored_items(analysis: ood_core.Analysis, issue: str) -> dict[int, str]:
    """``ood_core.issues.unscored_items``: the items ``issue`` leaves unscored, each with why (once per run)."""
    return run_cached(("unscored", analysis.scores_id(issue)), (analysis.issue_scores(issue).scores,),
                      lambda: find_unscored(analysis, issue))


def unscored_reasons(analysis: ood_core.Analysis, issue: str) -> str:
    """Why ``issue`` leaves items unscored: the reason, or each reason with its count when there are
    several ("" when it scores every item)."""
    why = list(unscored_items(analysis, issue).values())
    reasons = list(dict.fromkeys(why))
    return reasons[0] if len(reasons) == 1 else "; ".join(f"{why.count(r):,}: {r}" for r in reasons)


def flag_matrix(analysis: ood_core.Analysis, names: Sequence[str]) -> dict[str, np.ndarray]:
    """One boolean per item of ``ids`` for each outlier score (at the session's threshold) and each
    issue type in ``names`` (at its session threshold): True where flagged."""
    flags = {}
    for scorer in analysis.scorers:
        with np.errstate(invalid="ignore"):
            flags[ood_core.SCORERS[scorer].title] = analysis.item_scores(scorer) < sync_threshold(analysis, scorer)
    for name in names:
        flags[get_issue_type(name).title] = analysis.issue_scores(name).flagged(issue_threshold(analysis, name))
    return flags


def overlap_table(flags: dict[str, np.ndarray], columns: Sequence[str]) -> dict[str, list]:
    """A table (column -> values) of how many items two flags share: one row per flag, one column per
    name in ``columns``; a flag against itself is its own count."""
    table: dict[str, list] = {"flagged by": list(flags)}
    for column in columns:
        table[column] = [int(np.count_nonzero(mask & flags[column])) for mask in flags.values()]
    return table


def sets_at(analysis: ood_core.Analysis) -> list[DuplicateSet]:
    """The duplicate sets at the session's near-duplicate threshold (once per run and threshold)."""
    near = analysis.issue_scores("near_duplicate")
    threshold = issue_threshold(analysis, "near_duplicate") if near.scored.any() else None
    return run_cached(("duplicate_sets", analysis.run_id, threshold), (analysis.ids,),
                      lambda: analysis.duplicate_sets(threshold))


def duplicate_rows(analysis: ood_core.Analysis, sets: Sequence[DuplicateSet], key: str, item_marks: dict,
                   columns: int = 8) -> None:
    """Each set as one row of images, the representative (the copy to keep) first, each labelled
    train (fit) or test (query); a set in both (leakage between train and test) is called out. "View"
    opens an image's large view with its mark buttons."""
    fit = set(np.asarray(analysis.fit_index).tolist())
    query = set(np.asarray(analysis.query_index).tolist())
    viewed = None
    container = st.container(key=grid_key(key))  # styled as the image grids (grid.GRID_CSS)
    for number, s in enumerate(sets):
        members = [s.representative] + [m for m in s.members if m != s.representative]
        kind = "exact copies" if s.exact else "near duplicates"
        head = f"**Set {number + 1}** · {len(members)} {kind}"
        if s.in_fit_and_query:
            head += " · :red[**leakage: in both train and test**]"
        container.markdown(head)
        cols = container.columns(columns)
        for i, position in enumerate(members[:columns]):
            where = " + ".join(name for name, index in (("train (fit)", fit), ("test (query)", query))
                               if position in index) or "neither set"
            lines = [f"#{position} · {where}", "kept copy" if i == 0 else "", escape(analysis.class_name(position)),
                     review.badge(item_marks, analysis.ids[position])]
            with cols[i]:
                if analysis.items is not None:
                    png, width = grid_thumbnail(analysis, position)
                    st.image(png, width=width, output_format="PNG", caption="\n".join(x for x in lines if x))
                else:
                    st.caption("\n".join(x for x in lines if x))
                if st.button("View", key=part_key(key, f"view_{number}_{position}"), type="tertiary",
                             icon=":material/open_in_full:"):
                    viewed = int(position)
        if len(members) > columns:
            container.caption(f"… and {len(members) - columns} more in this set")
    if viewed is not None:
        review.item_view(analysis, viewed)
