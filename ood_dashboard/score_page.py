"""The body shared by the two score pages: histogram with a draggable threshold, counts,
evaluation, image grids and export. Pages call :func:`render` with their scorer's name.

The threshold lives in the session (``ood_dashboard.session``: each scorer's percentile and
threshold, read by the other pages too); the percentile input is refilled from it on
every run.
"""
from __future__ import annotations

import json

import numpy as np
import streamlit as st

import ood_core
from ood_core.issues import get_issue_type
from ood_dashboard.figures import roc_figure
from ood_dashboard.grid import image_grid, listing_page, ranking, review_codes, run_cached
from ood_dashboard.groups import available_groupings, item_groups
from ood_dashboard.issue_views import unscored_reasons
from ood_dashboard import review
from ood_dashboard.markup import escape
from ood_dashboard.session import (adopt_url_percentile, apply_score_config, persistent, require_analysis,
                                   set_percentile, set_threshold, share_in_url, sync_threshold, threshold_keys)
from ood_dashboard.state import PERCENTILE_MEMO, ROC_FIGURES, page_key, run_key
from ood_dashboard.threshold_histogram import threshold_histogram

DEFAULT_GRID_SIZE = 16
ROC_MAX_POINTS = 500  # points of the drawn ROC curve
LISTINGS = {
    "Top outliers": ("top", "lowest scores first"),
    "Borderline": ("borderline", "flagged, closest to the threshold"),
    "Most typical": ("bottom", "highest scores first"),
}


def scorer_controls(analysis: ood_core.Analysis, scorer: str) -> ood_core.Analysis:
    """The scorer's own settings (widgets keyed by the run); a change refits that scorer only."""
    cfg = analysis.score_config
    with st.expander("Scorer settings", icon=":material/tune:"):
        if scorer == "feature":
            n_fit = len(analysis.fit_index)
            c1, c2, c3, c4 = st.columns([1, 1, 1, 2])
            k = c1.number_input("k (neighbours)", min_value=1, max_value=max(1, n_fit - 1),
                                value=int(analysis.feature_scorer.k_), step=1, key=run_key(analysis, "feature_k"))
            t = c2.number_input("t (temperature)", min_value=0.05, value=float(cfg.t), step=0.25,
                                key=run_key(analysis, "feature_t"))
            searches = list(ood_core.INDEX_CHOICES)
            index = c3.selectbox(
                "Neighbour search", searches, index=searches.index(cfg.index), key=run_key(analysis, "feature_index"),
                help=f"exact: every train item is compared (minutes above ~{ood_core.AUTO_APPROXIMATE_ROWS:,} train "
                     "items); approximate: a faiss index that may miss a few of the k nearest; auto: exact up to "
                     f"{ood_core.AUTO_APPROXIMATE_ROWS:,} train items, approximate above (when faiss is installed).")
            if index == "approximate" and not ood_core.faiss_available():
                c3.error("The approximate index needs faiss: `pip install 'ood-explorer[scale]'`.")
                index = cfg.index
            keep_default = cfg.k is None and int(k) == analysis.feature_scorer.k_
            new = ood_core.ScoreConfig(k=None if keep_default else int(k), t=float(t), method=cfg.method,
                                       adjust=cfg.adjust, index=index)
            result = apply_score_config(new) if new != cfg else analysis  # the caption tells of the new fit
            c4.caption(f"Score = exp(−mean distance to the k nearest train items / (t · scale)). "
                       f"Metric: {result.feature_scorer.metric_}; scale (median train distance): "
                       f"{result.feature_scorer.scale_:.4g}; neighbour search: {result.feature_scorer.search_}.")
            return result
        else:
            c1, c2, c3 = st.columns([1, 1, 2], vertical_alignment="center")
            methods = list(ood_core.PRED_SCORE_METHODS)
            method = c1.selectbox("Method", methods, index=methods.index(cfg.method),
                                  key=run_key(analysis, "prediction_method"))
            adjust = c2.checkbox("Adjust per class", value=cfg.adjust, key=run_key(analysis, "prediction_adjust"),
                                 help="Subtract each class's confident threshold (the mean predicted probability of "
                                      "the class over its own train items) before scoring, so that classes the "
                                      "model is less sure of are not flagged wholesale.")
            new = ood_core.ScoreConfig(k=cfg.k, t=cfg.t, method=method, adjust=adjust, index=cfg.index)
            C = getattr(analysis.classifier, "C", None)
            select = getattr(analysis.classifier, "selected_by", None)
            c3.caption("pred_probs: " + ("given with the data." if C is None else
                                         f"out-of-sample (stratified k-fold) logistic regression, C={C:g}"
                                         + (f" chosen by the cross-validated criterion `{select}`." if select
                                            else ".")))
    return apply_score_config(new) if new != cfg else analysis


@st.fragment
def threshold_section(analysis: ood_core.Analysis, scorer: str) -> None:
    """Everything that follows the threshold; reruns alone when the threshold or a view changes."""
    p_key, _ = threshold_keys(scorer)
    input_key, error_key = page_key(scorer, "percentile_input"), page_key(scorer, "percentile_error")
    fit_scores, query_scores = analysis.scores(scorer)
    # The fit scores sorted once per run: a percentile, a flagged count or a listing is then a
    # lookup (same values, to the bit, as ood_core's functions on the unsorted scores).
    fit_sorted = ranking(analysis, scorer, "fit").values
    adopt_url_percentile(analysis, scorer)
    view = threshold_view(analysis, scorer)
    threshold = view.threshold
    st.session_state[input_key] = st.session_state[p_key]

    def on_percentile() -> None:
        typed = st.session_state[input_key]
        if typed is None or not 0 <= typed <= 100:
            st.session_state[error_key] = (f"The percentile must be a number from 0 to 100; got {typed}. The threshold "
                                           f"stays at the {st.session_state[p_key]:g}th percentile.")
            return
        st.session_state.pop(error_key, None)
        set_percentile(scorer, fit_sorted, typed)
        _remember_percentile(analysis, scorer, typed, st.session_state[threshold_keys(scorer)[1]])
        _threshold_moved(scorer)

    def on_drag(x: float) -> None:
        st.session_state.pop(error_key, None)
        set_threshold(scorer, fit_sorted, x)
        st.session_state[input_key] = st.session_state[p_key]
        _threshold_moved(scorer)

    if st.session_state.pop(page_key(scorer, "grid_stale"), False):
        st.rerun()  # the borderline grid (its own fragment, below) follows the threshold: redraw the page

    row = st.columns([1.4, 0.8, 1.2, 1.2], vertical_alignment="bottom")  # room for "1,347 (100.0%)"
    row[0].number_input("Percentile of the train (fit) scores", step=0.5, format="%.2f", key=input_key,
                        on_change=on_percentile,
                        help="Items scoring below this percentile of the train (fit) scores are flagged. "
                             "Or drag the red line on the chart.")
    row[1].metric("Threshold (score)", f"{view.threshold:.4f}")
    row[2].metric("Train (fit) flagged", f"{view.fit_flagged:,} ({view.fit_flagged_pct:.1f}%)")
    row[3].metric("Test (query) flagged", "same items" if analysis.same_set
                  else f"{view.query_flagged:,} ({view.query_flagged_pct:.1f}%)")
    if view.fit_unscored or view.query_unscored:  # an issue type's unscored items: counted apart, never flagged
        st.caption(unscored_counts(analysis, view))
    expected = analysis.expected_flag_rate(view)  # the threshold's own uncertainty (issue 20.5)
    if expected is not None:
        st.caption(f"{expected['text']}.")
    if error_key in st.session_state:
        st.error(st.session_state[error_key], icon=":material/error:")
    share_in_url(scorer)
    item_marks = review.marks(analysis)
    stacks = {"none": "nothing", **{k: v for k, v in available_groupings(analysis).items() if k in ("truth", "mark")}}
    stack_key = page_key(scorer, "stack_by")
    keep_stack = persistent(stack_key, "none", options=list(stacks))  # a kept grouping this data lacks: none
    stack = st.segmented_control("Stack the test bars by", list(stacks), format_func=stacks.get, key=stack_key,
                                 on_change=keep_stack) or "none"
    groups = None if stack == "none" else stack_groups(analysis, stack, item_marks)
    scored = np.isfinite(query_scores)  # an issue type leaves items it cannot score NaN: not drawn
    drawn = query_scores if scored.all() else query_scores[scored]
    names = None if groups is None else groups.names if scored.all() else list(np.asarray(groups.names)[scored])
    fit_drawn = fit_scores if not view.fit_unscored else fit_scores[np.isfinite(fit_scores)]
    threshold_histogram(fit_drawn, None if analysis.same_set else drawn, threshold,
                        key=page_key(scorer, "histogram"), percentile=st.session_state[p_key],
                        labels=("train (fit)", "test (query)"), on_change=on_drag,
                        query_groups=names, group_colors=None if groups is None else groups.colors)
    if view.metrics is not None:
        evaluation(analysis, scorer, view.metrics)
    review.progress(analysis, scorer, threshold, item_marks)
    if analysis.is_ood is None and not analysis.same_set and item_marks:
        rows, truth = ood_core.reviewed_truth(analysis, item_marks)
        if truth.any() and not truth.all() and st.toggle(
                "Evaluate against my marks", key=page_key(scorer, "marks_as_truth"),
                help="Use the test images you marked outlier (out) or fine (in) as the truth; the metrics then "
                     "describe the reviewed images only."):
            evaluation(analysis, scorer, ood_core.ood_metrics(query_scores[rows], truth, threshold),
                       scores=query_scores[rows], truth=truth, title="Evaluation against your marks")
    export(analysis, scorer, view)
    review.export_panel(analysis, scorer, threshold, item_marks)


def unscored_counts(analysis: ood_core.Analysis, view: ood_core.ThresholdView) -> str:
    """One line that makes an issue type's counts add up: the percentile is of the scored train (fit)
    items, and the unscored ones (NaN: never flagged, never cleared) are counted apart."""
    fit_scored = view.fit_total - view.fit_unscored
    text = (f"p = {view.percentile:.4g} of {fit_scored:,} scored train (fit) items; {view.fit_unscored:,} unscored, "
            f"neither flagged nor cleared (listed below): {escape(unscored_reasons(analysis, view.scorer))}. "
            f"Train (fit): {view.fit_flagged:,} flagged + {fit_scored - view.fit_flagged:,} not flagged + "
            f"{view.fit_unscored:,} unscored = {view.fit_total:,}")
    if not analysis.same_set:
        query_scored = view.query_total - view.query_unscored
        text += (f" · test (query): {view.query_flagged:,} flagged + {query_scored - view.query_flagged:,} not "
                 f"flagged + {view.query_unscored:,} unscored = {view.query_total:,}")
    return text + "."


def _threshold_moved(scorer: str) -> None:
    """A threshold callback: when the grids show the borderline listing (which follows the threshold),
    the next run of the threshold fragment asks for a whole-page run, so the grids' fragment redraws."""
    if st.session_state.get(page_key(scorer, "listing")) == "Borderline":
        st.session_state[page_key(scorer, "grid_stale")] = True


@st.fragment
def grid_section(analysis: ood_core.Analysis, scorer: str) -> None:
    """The image grids in their own fragment: a threshold change reruns only :func:`threshold_section`
    (32 thumbnails and 64 buttons are most of a page's elements), except under the borderline
    listing, the one that depends on the threshold (:func:`_threshold_moved`)."""
    fit_scores, query_scores = analysis.scores(scorer)
    threshold = sync_threshold(analysis, scorer)
    grids(analysis, scorer, fit_scores, query_scores, threshold, review.marks(analysis))


def stack_groups(analysis: ood_core.Analysis, stack: str, item_marks: dict):
    """``item_groups`` of the test items (the histogram's stacks), once per run (and marks)."""
    marks_key = None
    if stack == "mark":  # the marks change the groups: name them by their verdicts
        marks_key = frozenset((item, mark.verdict) for item, mark in item_marks.items())
    return run_cached(("stack_groups", analysis.run_id, stack, marks_key), (analysis.query_index, analysis.is_ood),
                      lambda: item_groups(analysis, analysis.query_index, stack, item_marks))


def _remember_percentile(analysis: ood_core.Analysis, scorer: str, percentile: float, threshold: float) -> None:
    memo = st.session_state.setdefault(PERCENTILE_MEMO, {})
    memo[(analysis.scores_id(scorer), float(percentile))] = float(threshold)
    while len(memo) > 64:
        memo.pop(next(iter(memo)))


def _percentile_threshold(analysis: ood_core.Analysis, scorer: str, percentile: float) -> float:
    """``ood_core.percentile_threshold(fit_scores, percentile)``, remembered for the last few percentiles."""
    memo = st.session_state.setdefault(PERCENTILE_MEMO, {})
    key = (analysis.scores_id(scorer), float(percentile))
    if key not in memo:
        threshold = ranking(analysis, scorer, "fit").percentile_threshold(percentile)
        _remember_percentile(analysis, scorer, percentile, threshold)
    return memo[key]


def run_metrics(analysis: ood_core.Analysis, scorer: str) -> dict:
    """AUROC and FPR at 95% TPR of ``scorer`` against the known truth: they depend only on the run,
    so they are computed once per run and scorer settings (``ood_core.ood_metrics``)."""
    _, query_scores = analysis.scores(scorer)
    return run_cached(("metrics", analysis.scores_id(scorer)), (query_scores, analysis.is_ood),
                      lambda: ood_core.ood_metrics(query_scores, analysis.is_ood))


def threshold_view(analysis: ood_core.Analysis, scorer: str) -> ood_core.ThresholdView:
    """The counts and metrics at the session's threshold: what ``ood_dashboard.session.current_view`` gives (the
    percentile the user typed when the threshold came from it, else the one it reaches), equal to
    ``analysis.threshold_view``, but with what depends only on the run (the sorted fit and query
    scores, the AUROC) computed once per run, so a threshold change costs binary searches and one
    pass over the query truth, not sorts."""
    threshold = sync_threshold(analysis, scorer)
    percentile = float(st.session_state[threshold_keys(scorer)[0]])
    fit, query = ranking(analysis, scorer, "fit"), ranking(analysis, scorer, "query")
    fit_flagged = fit.count_below(threshold)
    reached = float(100.0 * fit_flagged / max(fit.scored, 1))  # of the scored items (an issue type's NaN left out)
    if _percentile_threshold(analysis, scorer, percentile) != threshold:
        percentile = reached  # a dragged line: the percentile it reaches
    metrics = None
    if analysis.is_ood is not None and scorer in ood_core.SCORERS:  # an issue type has no OOD truth to meet
        truth = np.asarray(analysis.is_ood).astype(bool, copy=False)
        counts = ood_core.flag_metrics(query.scores < float(threshold), truth)
        metrics = {**run_metrics(analysis, scorer), "threshold": float(threshold),
                   **{key: counts[key] for key in ("tpr", "fpr", "precision", "tp", "fp", "tn", "fn")}}
    return ood_core.ThresholdView(
        scorer=scorer, percentile=percentile, threshold=float(threshold), reached=reached,
        fit_flagged=fit_flagged, fit_total=len(fit), query_flagged=query.count_below(threshold),
        query_total=len(query), metrics=metrics, fit_unscored=len(fit) - fit.scored,
        query_unscored=len(query) - query.scored)


def evaluation(analysis: ood_core.Analysis, scorer: str, m: dict, scores: np.ndarray | None = None,
               truth: np.ndarray | None = None, title: str = "Evaluation against the known truth") -> None:
    """Metrics against the truth (the known one, or ``truth`` for ``scores``) at the current threshold,
    and the ROC curve."""
    st.subheader(title)
    st.caption("Positive = out of distribution (test items only). Flagged = score below the threshold.")
    c = st.columns(5)
    c[0].metric("AUROC", f"{m['auroc']:.4f}", help="Area under the ROC curve of −score; 0.5 = chance.")
    c[1].metric("FPR at 95% TPR", f"{m['fpr_at_95_tpr']:.4f}",
                help="Share of in-distribution items flagged when 95% of the outliers are.")
    c[2].metric("TPR at threshold", f"{m['tpr']:.4f}", help="Share of the outliers that are flagged.")
    c[3].metric("FPR at threshold", f"{m['fpr']:.4f}", help="Share of the in-distribution items that are flagged.")
    c[4].metric("Precision at threshold", "—" if np.isnan(m["precision"]) else f"{m['precision']:.4f}",
                help="Share of the flagged items that are outliers.")
    left, right = st.columns([2, 3], gap="large")
    with left:
        st.markdown("**Confusion counts at the threshold**")
        st.table({"": ["flagged", "not flagged", "total"],
                  "out of distribution": [m["tp"], m["fn"], m["tp"] + m["fn"]],
                  "in distribution": [m["fp"], m["tn"], m["fp"] + m["tn"]]})
    with right:
        figure = _roc_figure(analysis, scorer, m) if truth is None else _roc(scores, truth, m)
        st.plotly_chart(figure, key=page_key(scorer, f"roc_{'truth' if truth is None else 'marks'}"),
                        config={"displayModeBar": False})


def _roc_figure(analysis: ood_core.Analysis, scorer: str, m: dict):
    """The ROC curve with the current operating point. The curve depends only on the scores, so
    the figure is built once per scores (kept in the session) and only the point moves."""
    store = st.session_state.setdefault(ROC_FIGURES, {})
    _, query_scores = analysis.scores(scorer)
    entry = store.get(scorer)
    if entry is None or entry[0] != analysis.scores_id(scorer):
        entry = store[scorer] = (analysis.scores_id(scorer), _roc(query_scores, analysis.is_ood, m))
    figure = entry[1]
    figure.data[-1].update(x=[m["fpr"]], y=[m["tpr"]])
    return figure


def _roc(scores: np.ndarray, truth: np.ndarray, m: dict):
    fpr, tpr = ood_core.roc_points(scores, truth)
    if len(fpr) > ROC_MAX_POINTS:  # drawn, not computed with: a few hundred points trace the curve
        keep = np.unique(np.linspace(0, len(fpr) - 1, ROC_MAX_POINTS).round().astype(np.int64))
        fpr, tpr = fpr[keep], tpr[keep]
    return roc_figure(fpr, tpr, point=(m["fpr"], m["tpr"]), auroc=m["auroc"], height=300)


def grids(analysis: ood_core.Analysis, scorer: str, fit_scores, query_scores, threshold: float,
          item_marks: dict) -> None:
    """Top outliers / borderline / most typical images of the train and test sets, filtered by review."""
    st.subheader("Images on both sides of the threshold")
    c1, c3, c2 = st.columns([2.2, 2.6, 1], vertical_alignment="bottom")
    listing_key, size_key = page_key(scorer, "listing"), page_key(scorer, "grid_size")
    keep_listing = persistent(listing_key, "Top outliers")
    listing = c1.segmented_control("Show", list(LISTINGS), key=listing_key, on_change=keep_listing) \
        or "Top outliers"
    keep_size = persistent(size_key, DEFAULT_GRID_SIZE)
    n = c2.number_input("Images per grid", min_value=4, max_value=96, step=4, key=size_key,
                        on_change=keep_size)
    filter_key = page_key(scorer, "review_filter")
    shown = c3.segmented_control("Review", list(review.FILTERS), format_func=review.FILTERS.get, key=filter_key,
                                 on_change=persistent(filter_key, "all")) or "all"
    which, what = LISTINGS[listing]
    sets = [("Train (fit)", "fit", fit_scores)]
    if not analysis.same_set:
        sets.append(("Test (query)", "query", query_scores))
    codes = None if shown == "all" else review_codes(analysis, item_marks)
    for title, name, scores in sets:
        # the first n of ood_core.rank_outliers' listing (from the run's sorted scores), filtered by review
        ranked, positions = listing_page(analysis, scorer, name, which, threshold, int(n), codes, shown)
        st.markdown(f"**{title}: {listing.lower()}** · {what}"
                    + ("" if shown == "all" else f" · {review.FILTERS[shown].lower()} only"))
        image_grid(analysis, positions, scores[ranked], key=page_key(scorer, name), item_marks=item_marks,
                   empty_text="No item is flagged at this threshold." if which == "borderline" else "Nothing to show.")
        review.bulk_buttons(analysis, positions, key=page_key(scorer, name), what="images above")


def export_payloads(analysis: ood_core.Analysis, scorer: str, threshold: float,
                    percentile: float | None = None) -> tuple[str, str]:
    """The CSV of every scored item and the JSON threshold card, as the download buttons give them;
    ``percentile``: the one the user set, when the threshold came from it."""
    view = (analysis.threshold_view(scorer, percentile=percentile) if percentile is not None
            else analysis.threshold_view(scorer, threshold=threshold))
    csv_text = analysis.scores_csv({scorer: view.threshold})
    card = analysis.threshold_card(view)
    if scorer not in ood_core.SCORERS:  # an issue type: its own default and findings, not a scorer's settings
        spec, found = get_issue_type(scorer), analysis.issue_scores(scorer)
        card["scorer_params"] = {"issue": spec.title, "default_threshold": found.threshold,
                                 "default_threshold_reason": spec.reason,
                                 **{k: v for k, v in found.info.items() if not isinstance(v, (list, dict))}}
    card = json.dumps(card, indent=2, default=str)
    return csv_text, card


def export(analysis: ood_core.Analysis, scorer: str, view) -> None:
    """Download buttons; the files are built only when clicked, so a threshold change never pays for them."""
    st.subheader("Export")
    st.caption(f"Every scored item with its score and whether it is flagged at threshold {view.threshold:.4f}, "
               "and a threshold card recording the data, model, scorer settings and counts.")
    c1, c2, _ = st.columns([1, 1, 2])
    percentile = view.percentile if view.percentile != view.reached else None
    c1.download_button("Scores (CSV)", data=lambda: export_payloads(analysis, scorer, view.threshold, percentile)[0],
                       file_name=f"{scorer}_scores.csv", mime="text/csv", on_click="ignore",
                       icon=":material/download:", key=page_key(scorer, "export_csv"))
    c2.download_button("Threshold card (JSON)",
                       data=lambda: export_payloads(analysis, scorer, view.threshold, percentile)[1],
                       file_name=f"{scorer}_threshold.json", mime="application/json", on_click="ignore",
                       icon=":material/download:", key=page_key(scorer, "export_json"))


def render(scorer: str, intro: str) -> None:
    """A score page, top to bottom."""
    st.title(ood_core.SCORERS[scorer].title)
    st.write(intro)
    analysis = require_analysis()
    if scorer not in analysis.scorers:
        st.info("This dataset has no prediction score: it needs class labels on the train (fit) items "
                "(at least 2 classes with 2 items each), or precomputed pred_probs. The feature score works "
                "without them.")
        st.stop()
    st.caption(f"Dataset: {escape(analysis.source)} · {len(analysis.fit_index):,} train (fit) items, "
               f"{len(analysis.query_index):,} test (query) items"
               + (" (the same items: each is scored against the others)" if analysis.same_set else ""))
    analysis = scorer_controls(analysis, scorer)
    for caveat in analysis.caveats(scorer):  # of the scorer as fitted now, settings included
        st.warning(caveat, icon=":material/warning:")
    threshold_section(analysis, scorer)
    grid_section(analysis, scorer)
