"""Every ``st.session_state`` key of the dashboard, named here once, with its scope.

One naming scheme, by scope:

- **session**: one browser session, every page and run (the current analysis, the thresholds the
  pages share, hand-overs between pages). A plain name; a leading ``_`` for what no widget shows.
- **scorer**: session scope, one per scorer: ``{scorer}_{name}`` (:func:`scorer_key`).
- **run**: state that belongs to one run, ``{name}:{run_id}`` (:func:`run_key`): loading another run
  starts it afresh, with no list of keys to clear.
- **page**: a page's widgets, ``{page}_{name}`` (:func:`page_key`), the page being one of
  :data:`PAGE_SCOPES` (the score pages are named by their scorer). A widget keeps its value across
  page switches through ``session.persistent``, under :func:`kept_key`.

Pages and helpers take their keys from here; no other module writes a key string of its own.
"""
from __future__ import annotations

from typing import Protocol

from ood_core.issues import list_issue_types

# ---- session scope
ANALYSIS = "analysis"  # the current ood_core.Analysis
RUN_SETTINGS = "run_settings"  # the RunSettings the current analysis came from
PENDING_RUN = "pending_run"  # RunSettings asked for on the Data page, not loaded yet
URL_PERCENTILE = "_url_percentile"  # the percentile last written to the page's link (?p=)
EXPLAIN_POSITION = "explain_position"  # the item a grid's "Why?" sends to the neighbours page
PERCENTILE_MEMO = "_percentile_thresholds"  # (scores_id, percentile) -> threshold, the last few
ROC_FIGURES = "_roc_figures"  # ROC figures by scores, built once (only the operating point moves)
HISTOGRAM_PENDING_DRAG = "_threshold_histogram_pending_drag"  # component key -> dragged x not yet returned
HISTOGRAM_BASE_FIGURE = "_threshold_histogram_base_figure"  # component key -> the figure without its line
BATCH_RESULT = "_batch_result"  # the Batches page's last check: (reference folder, its digest, BatchResult)
BATCH_VIEW = "_batch_view"  # the flagged batch image open in the large view: (batch digest, position), until closed
URL_ISSUE_TYPE = "_url_issue_type"  # the issue type last written to the issue page's link (?type=)
MARK_ERROR = "_mark_error"  # why the last mark could not be saved: shown atop every page until dismissed or a
#                              mark is saved (a failed mark is never shown as saved, issue 18.5)
MARK_ERROR_DISMISS = "mark_error_dismiss"  # the button that dismisses it

# ---- scorer scope (session): the threshold every page shares, per scorer (and per issue type,
# whose score page is named by the type: ood_core.issues.list_issue_types())
PERCENTILE, THRESHOLD, SCORES_ID = "percentile", "threshold", "scores_id"

# ---- page scope: the prefixes of the pages' widget keys
PAGE_SCOPES = ("data", "feature", "prediction", "neighbours", "table", "compare", "map", "per_class", "models",
               "batches",
               "view",  # "view": the large view of one image (a dialog any page opens)
               "issues",  # the Issues overview and the issue score page's own widgets (its type selector)
               *list_issue_types())  # an issue type's score page (shared body of score_page), as a scorer's


class _HasRunId(Protocol):
    run_id: str


def scorer_key(scorer: str, name: str) -> str:
    """The session key of ``name`` for ``scorer`` (e.g. its percentile)."""
    return f"{scorer}_{name}"


def run_key(analysis: _HasRunId, name: str) -> str:
    """The key of ``name`` for this run: a new run starts with a fresh value."""
    return f"{name}:{analysis.run_id}"


def page_key(page: str, name: str) -> str:
    """The key of widget ``name`` on ``page`` (one of :data:`PAGE_SCOPES`)."""
    if page not in PAGE_SCOPES:
        raise ValueError(f"unknown page scope {page!r}; the scopes are {', '.join(PAGE_SCOPES)}")
    return f"{page}_{name}"


def part_key(key: str, part: str) -> str:
    """The key of one widget of a group named ``key`` (a page key): a grid's buttons, bulk marks."""
    return f"{key}_{part}"


def grid_key(key: str) -> str:
    """The key of the container of a grid of thumbnails (``key``: a page key), which ``grid.GRID_CSS``
    styles by its ``thumbgrid`` prefix."""
    return f"thumbgrid_{key}"


def kept_key(key: str) -> str:
    """Where ``session.persistent`` keeps widget ``key``'s value while its page is not shown."""
    return f"_kept_{key}"
