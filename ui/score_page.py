"""The body shared by the two score pages: histogram with a draggable threshold, counts,
evaluation, image grids and export. Pages call :func:`render` with their scorer's name."""
from __future__ import annotations

import json

import numpy as np
import streamlit as st

from ood_core import percentile_of, percentile_threshold, rank_outliers, roc_points
from ood_core.analysis import SCORER_TITLES, Analysis, ScoreConfig, scores_table, threshold_card, threshold_view, to_csv
from ui.figures import roc_figure
from ui.grid import image_grid, listing_positions
from ui.state import apply_score_config, current_analysis
from ui.threshold_histogram import threshold_histogram

DEFAULT_PERCENTILE = 5.0
LISTINGS = {
    "Top outliers": ("top", "lowest scores first"),
    "Borderline": ("borderline", "flagged, closest to the threshold"),
    "Most typical": ("bottom", "highest scores first"),
}


def _keys(scorer: str) -> dict[str, str]:
    return {name: f"{scorer}_{name}" for name in ("percentile", "threshold", "scores_token", "histogram",
                                                  "listing", "grid_size")}


def sync_threshold(scorer: str, fit_scores: np.ndarray) -> None:
    """Keep the session's threshold consistent with the current scores: when the scores change
    (a new run or new scorer settings) the threshold is recomputed from the kept percentile."""
    k = _keys(scorer)
    st.session_state.setdefault(k["percentile"], DEFAULT_PERCENTILE)
    token = (id(fit_scores), len(fit_scores))
    if st.session_state.get(k["scores_token"]) != token or k["threshold"] not in st.session_state:
        st.session_state[k["scores_token"]] = token
        st.session_state[k["threshold"]] = percentile_threshold(fit_scores, st.session_state[k["percentile"]])


def scorer_controls(analysis: Analysis, scorer: str) -> Analysis:
    """The scorer's own settings; a change refits that scorer only."""
    cfg = analysis.score_config
    with st.expander("Scorer settings", expanded=False):
        if scorer == "feature":
            n_fit = len(analysis.fit_index)
            c1, c2 = st.columns(2)
            k = c1.number_input("k (neighbours)", min_value=1, max_value=max(1, n_fit - 1),
                                value=int(analysis.feature_scorer.k_), step=1, key="feature_k")
            t = c2.number_input("t (temperature)", min_value=0.05, value=float(cfg.t), step=0.25, key="feature_t")
            new = ScoreConfig(k=int(k), t=float(t), method=cfg.method, adjust=cfg.adjust)
            if cfg.k is None and int(k) == analysis.feature_scorer.k_:
                new = ScoreConfig(k=None, t=float(t), method=cfg.method, adjust=cfg.adjust)
            st.caption(f"metric: {analysis.feature_scorer.metric_} · scale (median fit distance): "
                       f"{analysis.feature_scorer.scale_:.4g} · exact search")
        else:
            c1, c2 = st.columns(2)
            method = c1.selectbox("Method", ["entropy", "least_confidence"],
                                  index=["entropy", "least_confidence"].index(cfg.method), key="prediction_method")
            adjust = c2.checkbox("Adjust by per-class confident thresholds", value=cfg.adjust,
                                 key="prediction_adjust")
            new = ScoreConfig(k=cfg.k, t=cfg.t, method=method, adjust=adjust)
            C = getattr(analysis.classifier, "C", None)
            if C is not None:
                st.caption(f"pred_probs: out-of-sample (stratified 5-fold) logistic regression, C={C:g} "
                           "chosen by cross-validated log loss")
    return apply_score_config(new) if new != cfg else analysis


@st.fragment
def threshold_section(analysis: Analysis, scorer: str) -> None:
    """Everything that follows the threshold; reruns alone when the threshold or a view changes."""
    k = _keys(scorer)
    fit_scores, query_scores = analysis.scores(scorer)
    sync_threshold(scorer, fit_scores)

    def on_percentile() -> None:
        st.session_state[k["threshold"]] = percentile_threshold(fit_scores, st.session_state[k["percentile"]])

    def on_drag(x: float) -> None:
        st.session_state[k["threshold"]] = float(x)
        st.session_state[k["percentile"]] = round(percentile_of(fit_scores, x), 2)

    st.number_input("Percentile of the train (fit) scores: items scoring below it are flagged",
                    min_value=0.0, max_value=100.0, step=0.5, format="%.2f", key=k["percentile"],
                    on_change=on_percentile)
    threshold = float(st.session_state[k["threshold"]])
    labels = ("train (fit)", "test (query)")
    threshold_histogram(fit_scores, None if analysis.same_set else query_scores, threshold,
                        key=k["histogram"], percentile=st.session_state[k["percentile"]],
                        labels=labels, on_change=on_drag)
    view = threshold_view(analysis, scorer, threshold=threshold)
    c = st.columns(4)
    c[0].metric("Threshold", f"{view.threshold:.4f}")
    c[1].metric("Percentile", f"{st.session_state[k['percentile']]:.2f}")
    c[2].metric("Train flagged", f"{view.fit_flagged:,} ({view.fit_flagged_pct:.1f}%)")
    if analysis.same_set:
        c[3].metric("Test flagged", "same items")
    else:
        c[3].metric("Test flagged", f"{view.query_flagged:,} ({view.query_flagged_pct:.1f}%)")

    if view.metrics is not None:
        evaluation(analysis, scorer, view.metrics)

    grids(analysis, scorer, fit_scores, query_scores, threshold)
    export(analysis, scorer, view)


def evaluation(analysis: Analysis, scorer: str, m: dict) -> None:
    st.subheader("Evaluation against the known truth")
    st.caption("Positive class: out of distribution. Detector output: minus the score.")
    left, right = st.columns([1, 1])
    with left:
        a, b = st.columns(2)
        a.metric("AUROC", f"{m['auroc']:.4f}")
        b.metric("FPR at 95% TPR", f"{m['fpr_at_95_tpr']:.4f}")
        a.metric("TPR at threshold", f"{m['tpr']:.4f}")
        b.metric("FPR at threshold", f"{m['fpr']:.4f}")
        a.metric("Precision", "—" if np.isnan(m["precision"]) else f"{m['precision']:.4f}")
        st.table({"": ["flagged", "not flagged"],
                  "out of distribution": [m["tp"], m["fn"]],
                  "in distribution": [m["fp"], m["tn"]]})
    with right:
        fpr, tpr = _roc(analysis, scorer)
        st.plotly_chart(roc_figure(fpr, tpr, point=(m["fpr"], m["tpr"]), auroc=m["auroc"]),
                        key=f"{scorer}_roc", config={"displayModeBar": False})


def _roc(analysis: Analysis, scorer: str) -> tuple[np.ndarray, np.ndarray]:
    """ROC points depend only on the scores: computed once per score array."""
    store = st.session_state.setdefault("_roc_points", {})
    _, query_scores = analysis.scores(scorer)
    key = (scorer, id(query_scores))
    if key not in store:
        store.clear()
        store[key] = roc_points(query_scores, analysis.is_ood)
    return store[key]


def grids(analysis: Analysis, scorer: str, fit_scores, query_scores, threshold: float) -> None:
    k = _keys(scorer)
    st.subheader("Images on both sides of the threshold")
    c1, c2 = st.columns([3, 1])
    listing = c1.segmented_control("Listing", list(LISTINGS), default="Top outliers", key=k["listing"]) \
        or "Top outliers"
    n = c2.number_input("Images per grid", min_value=4, max_value=96, value=16, step=4, key=k["grid_size"])
    which, what = LISTINGS[listing]
    sets = [("Train (fit)", "fit", fit_scores)]
    if not analysis.same_set:
        sets.append(("Test (query)", "query", query_scores))
    for title, name, scores in sets:
        ranked = rank_outliers(scores, threshold=threshold, n=int(n))[which]
        st.markdown(f"**{title}: {listing.lower()}** ({what})")
        image_grid(analysis, listing_positions(analysis, name, ranked), scores[ranked],
                   empty_text="No item is flagged at this threshold." if which == "borderline" else "Nothing to show.")


def export_payloads(analysis: Analysis, scorer: str, threshold: float) -> tuple[str, str]:
    """The CSV of every scored item and the JSON threshold card, as the download buttons give them."""
    view = threshold_view(analysis, scorer, threshold=threshold)
    csv_text = to_csv(scores_table(analysis, {scorer: threshold}))
    card = json.dumps(threshold_card(analysis, view), indent=2, default=str)
    return csv_text, card


def export(analysis: Analysis, scorer: str, view) -> None:
    st.subheader("Export")
    c1, c2 = st.columns(2)
    # Built only when clicked: a threshold change never pays for serialising every row.
    c1.download_button("Scores (CSV)", data=lambda: export_payloads(analysis, scorer, view.threshold)[0],
                       file_name=f"{scorer}_scores.csv", mime="text/csv", on_click="ignore",
                       key=f"{scorer}_export_csv")
    c2.download_button("Threshold card (JSON)",
                       data=lambda: export_payloads(analysis, scorer, view.threshold)[1],
                       file_name=f"{scorer}_threshold.json", mime="application/json", on_click="ignore",
                       key=f"{scorer}_export_json")


def render(scorer: str, intro: str) -> None:
    """A score page, top to bottom."""
    st.title(SCORER_TITLES[scorer])
    st.write(intro)
    analysis = current_analysis()
    if analysis is None:
        st.info("Load a dataset on the **Data & model** page first.")
        st.stop()
    if scorer not in analysis.scorers:
        st.info("This dataset has no prediction score: it needs class labels on the train (fit) items "
                "(or precomputed pred_probs). The feature score works without them.")
        st.stop()
    st.caption(f"Dataset: {analysis.source} · {len(analysis.fit_index):,} train (fit) items, "
               f"{len(analysis.query_index):,} test (query) items"
               + (" (the same items: each is scored against the others)" if analysis.same_set else ""))
    analysis = scorer_controls(analysis, scorer)
    threshold_section(analysis, scorer)
