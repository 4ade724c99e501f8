"""The body shared by the two score pages: histogram with a draggable threshold, counts,
evaluation, image grids and export. Pages call :func:`render` with their scorer's name.

State per scorer (session_state): ``{scorer}_percentile`` and ``{scorer}_threshold`` hold the
current threshold (plain keys, read by the other pages through :func:`sync_threshold`); the
widgets have keys of their own, refilled from those on every run, because Streamlit forgets a
widget's value when its page is left.
"""
from __future__ import annotations

import json

import numpy as np
import streamlit as st

from ood_core import percentile_of, percentile_threshold, rank_outliers, roc_points
from ood_core.analysis import SCORER_TITLES, Analysis, ScoreConfig, scores_table, threshold_card, threshold_view, to_csv
from ui.figures import roc_figure
from ui.grid import image_grid, listing_positions
from ui.state import apply_score_config, require_analysis
from ui.threshold_histogram import threshold_histogram

DEFAULT_PERCENTILE = 5.0
DEFAULT_GRID_SIZE = 16
ROC_MAX_POINTS = 500  # points of the drawn ROC curve
LISTINGS = {
    "Top outliers": ("top", "lowest scores first"),
    "Borderline": ("borderline", "flagged, closest to the threshold"),
    "Most typical": ("bottom", "highest scores first"),
}


def _keys(scorer: str) -> dict[str, str]:
    names = ("percentile", "percentile_input", "threshold", "scores_token", "histogram", "listing", "grid_size")
    return {name: f"{scorer}_{name}" for name in names}


def sync_threshold(scorer: str, fit_scores: np.ndarray) -> None:
    """Keep the session's threshold consistent with the current scores: when the scores change
    (a new run or new scorer settings) the threshold is recomputed from the kept percentile."""
    k = _keys(scorer)
    st.session_state.setdefault(k["percentile"], DEFAULT_PERCENTILE)
    # The scores array itself is the token (held, so its id cannot be reused by a new array).
    if st.session_state.get(k["scores_token"]) is not fit_scores or k["threshold"] not in st.session_state:
        st.session_state[k["scores_token"]] = fit_scores
        st.session_state[k["threshold"]] = percentile_threshold(fit_scores, st.session_state[k["percentile"]])


def set_percentile(scorer: str, fit_scores: np.ndarray, percentile: float) -> None:
    """Move the threshold to ``percentile`` of the fit scores (what typing a percentile does)."""
    k = _keys(scorer)
    st.session_state[k["percentile"]] = float(percentile)
    st.session_state[k["threshold"]] = percentile_threshold(fit_scores, float(percentile))


def set_threshold(scorer: str, fit_scores: np.ndarray, threshold: float) -> None:
    """Move the threshold to the value ``threshold`` (what dragging the line does)."""
    k = _keys(scorer)
    st.session_state[k["threshold"]] = float(threshold)
    st.session_state[k["percentile"]] = round(percentile_of(fit_scores, float(threshold)), 2)
    st.session_state[k["percentile_input"]] = st.session_state[k["percentile"]]


def _kept(key: str, default):
    """Refill widget ``key`` from its kept copy (Streamlit drops widget values on other pages) and
    return the on_change callback that keeps the copy current."""
    kept = f"{key}__kept"
    if key not in st.session_state:
        st.session_state[key] = st.session_state.get(kept, default)
    return lambda: st.session_state.__setitem__(kept, st.session_state[key])


def scorer_controls(analysis: Analysis, scorer: str) -> Analysis:
    """The scorer's own settings; a change refits that scorer only."""
    cfg = analysis.score_config
    with st.expander("Scorer settings", icon=":material/tune:"):
        if scorer == "feature":
            n_fit = len(analysis.fit_index)
            c1, c2, c3 = st.columns([1, 1, 2])
            k = c1.number_input("k (neighbours)", min_value=1, max_value=max(1, n_fit - 1),
                                value=int(analysis.feature_scorer.k_), step=1, key="feature_k")
            t = c2.number_input("t (temperature)", min_value=0.05, value=float(cfg.t), step=0.25, key="feature_t")
            new = ScoreConfig(k=int(k), t=float(t), method=cfg.method, adjust=cfg.adjust)
            if cfg.k is None and int(k) == analysis.feature_scorer.k_:
                new = ScoreConfig(k=None, t=float(t), method=cfg.method, adjust=cfg.adjust)
            c3.caption(f"Score = exp(−mean distance to the k nearest train items / (t · scale)). "
                       f"Metric: {analysis.feature_scorer.metric_}; scale (median train distance): "
                       f"{analysis.feature_scorer.scale_:.4g}; exact search.")
        else:
            c1, c2, c3 = st.columns([1, 1, 2], vertical_alignment="center")
            method = c1.selectbox("Method", ["entropy", "least_confidence"],
                                  index=["entropy", "least_confidence"].index(cfg.method), key="prediction_method")
            adjust = c2.checkbox("Adjust per class", value=cfg.adjust, key="prediction_adjust",
                                 help="Subtract each class's confident threshold (the mean predicted probability of "
                                      "the class over its own train items) before scoring, so that classes the "
                                      "model is less sure of are not flagged wholesale.")
            new = ScoreConfig(k=cfg.k, t=cfg.t, method=method, adjust=adjust)
            C = getattr(analysis.classifier, "C", None)
            select = getattr(analysis.classifier, "cv_select_", None)
            c3.caption("pred_probs: " + ("given with the data." if C is None else
                                         f"out-of-sample (stratified k-fold) logistic regression, C={C:g}"
                                         + (f" chosen by the cross-validated criterion `{select}`." if select
                                            else ".")))
    return apply_score_config(new) if new != cfg else analysis


@st.fragment
def threshold_section(analysis: Analysis, scorer: str) -> None:
    """Everything that follows the threshold; reruns alone when the threshold or a view changes."""
    k = _keys(scorer)
    fit_scores, query_scores = analysis.scores(scorer)
    sync_threshold(scorer, fit_scores)
    st.session_state[k["percentile_input"]] = st.session_state[k["percentile"]]

    def on_percentile() -> None:
        set_percentile(scorer, fit_scores, st.session_state[k["percentile_input"]])

    def on_drag(x: float) -> None:
        set_threshold(scorer, fit_scores, x)

    threshold = float(st.session_state[k["threshold"]])
    view = threshold_view(analysis, scorer, threshold=threshold)
    row = st.columns([1.4, 1, 1, 1], vertical_alignment="bottom")
    row[0].number_input("Percentile of the train (fit) scores", min_value=0.0,
                        max_value=100.0, step=0.5, format="%.2f", key=k["percentile_input"],
                        on_change=on_percentile,
                        help="Items scoring below this percentile of the train (fit) scores are flagged. "
                             "Or drag the red line on the chart.")
    row[1].metric("Threshold (score)", f"{view.threshold:.4f}")
    row[2].metric("Train (fit) flagged", f"{view.fit_flagged:,} ({view.fit_flagged_pct:.1f}%)")
    row[3].metric("Test (query) flagged", "same items" if analysis.same_set
                  else f"{view.query_flagged:,} ({view.query_flagged_pct:.1f}%)")
    threshold_histogram(fit_scores, None if analysis.same_set else query_scores, threshold,
                        key=k["histogram"], percentile=st.session_state[k["percentile"]],
                        labels=("train (fit)", "test (query)"), on_change=on_drag)
    if view.metrics is not None:
        evaluation(analysis, scorer, view.metrics)
    grids(analysis, scorer, fit_scores, query_scores, threshold)
    export(analysis, scorer, view)


def evaluation(analysis: Analysis, scorer: str, m: dict) -> None:
    """Metrics against the known truth at the current threshold, and the ROC curve."""
    st.subheader("Evaluation against the known truth")
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
        st.plotly_chart(_roc_figure(analysis, scorer, m), key=f"{scorer}_roc", config={"displayModeBar": False})


def _roc_figure(analysis: Analysis, scorer: str, m: dict):
    """The ROC curve with the current operating point. The curve depends only on the scores, so
    the figure is built once per score array (kept in the session) and only the point moves."""
    store = st.session_state.setdefault("_roc_figures", {})
    _, query_scores = analysis.scores(scorer)
    entry = store.get(scorer)
    if entry is None or entry[0] is not query_scores or entry[1] is not analysis.is_ood:
        fpr, tpr = roc_points(query_scores, analysis.is_ood)
        if len(fpr) > ROC_MAX_POINTS:  # drawn, not computed with: a few hundred points trace the curve
            keep = np.unique(np.linspace(0, len(fpr) - 1, ROC_MAX_POINTS).round().astype(np.int64))
            fpr, tpr = fpr[keep], tpr[keep]
        figure = roc_figure(fpr, tpr, point=(m["fpr"], m["tpr"]), auroc=m["auroc"], height=300)
        entry = store[scorer] = (query_scores, analysis.is_ood, figure)
    figure = entry[2]
    figure.data[-1].update(x=[m["fpr"]], y=[m["tpr"]])
    return figure


def grids(analysis: Analysis, scorer: str, fit_scores, query_scores, threshold: float) -> None:
    """Top outliers / borderline / most typical images of the train and test sets."""
    k = _keys(scorer)
    st.subheader("Images on both sides of the threshold")
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    keep_listing = _kept(k["listing"], "Top outliers")
    listing = c1.segmented_control("Show", list(LISTINGS), key=k["listing"], on_change=keep_listing) \
        or "Top outliers"
    keep_size = _kept(k["grid_size"], DEFAULT_GRID_SIZE)
    n = c2.number_input("Images per grid", min_value=4, max_value=96, step=4, key=k["grid_size"],
                        on_change=keep_size)
    which, what = LISTINGS[listing]
    sets = [("Train (fit)", "fit", fit_scores)]
    if not analysis.same_set:
        sets.append(("Test (query)", "query", query_scores))
    for title, name, scores in sets:
        ranked = rank_outliers(scores, threshold=threshold, n=int(n))[which]
        st.markdown(f"**{title}: {listing.lower()}** · {what}")
        image_grid(analysis, listing_positions(analysis, name, ranked), scores[ranked], key=f"{scorer}_{name}",
                   empty_text="No item is flagged at this threshold." if which == "borderline" else "Nothing to show.")


def export_payloads(analysis: Analysis, scorer: str, threshold: float) -> tuple[str, str]:
    """The CSV of every scored item and the JSON threshold card, as the download buttons give them."""
    view = threshold_view(analysis, scorer, threshold=threshold)
    csv_text = to_csv(scores_table(analysis, {scorer: threshold}))
    card = json.dumps(threshold_card(analysis, view), indent=2, default=str)
    return csv_text, card


def export(analysis: Analysis, scorer: str, view) -> None:
    """Download buttons; the files are built only when clicked, so a threshold change never pays for them."""
    st.subheader("Export")
    st.caption(f"Every scored item with its score and whether it is flagged at threshold {view.threshold:.4f}, "
               "and a threshold card recording the data, model, scorer settings and counts.")
    c1, c2, _ = st.columns([1, 1, 2])
    c1.download_button("Scores (CSV)", data=lambda: export_payloads(analysis, scorer, view.threshold)[0],
                       file_name=f"{scorer}_scores.csv", mime="text/csv", on_click="ignore",
                       icon=":material/download:", key=f"{scorer}_export_csv")
    c2.download_button("Threshold card (JSON)",
                       data=lambda: export_payloads(analysis, scorer, view.threshold)[1],
                       file_name=f"{scorer}_threshold.json", mime="application/json", on_click="ignore",
                       icon=":material/download:", key=f"{scorer}_export_json")


def render(scorer: str, intro: str) -> None:
    """A score page, top to bottom."""
    st.title(SCORER_TITLES[scorer])
    st.write(intro)
    analysis = require_analysis()
    if scorer not in analysis.scorers:
        st.info("This dataset has no prediction score: it needs class labels on the train (fit) items "
                "(at least 2 classes with 2 items each), or precomputed pred_probs. The feature score works "
                "without them.")
        st.stop()
    st.caption(f"Dataset: {analysis.source} · {len(analysis.fit_index):,} train (fit) items, "
               f"{len(analysis.query_index):,} test (query) items"
               + (" (the same items: each is scored against the others)" if analysis.same_set else ""))
    analysis = scorer_controls(analysis, scorer)
    threshold_section(analysis, scorer)
