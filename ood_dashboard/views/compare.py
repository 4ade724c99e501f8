"""Compare: do the feature score and the prediction score flag the same images?"""
import numpy as np
import streamlit as st

import ood_core
from ood_dashboard.explain_views import QUADRANT_TITLES, score_scatter_figure
from ood_dashboard.grid import image_grid
from ood_dashboard.session import persistent, require_analysis, sync_threshold
from ood_dashboard.state import page_key

AUROC_TITLES = {"feature": "Feature score", "prediction": "Prediction score", "rank_average": "Rank average of both"}

st.title("Compare the two scores")
st.write("Each test (query) image placed by its feature score and its prediction score, with both current "
         "thresholds: the corners hold the images both scorers flag, only one flags, or neither flags.")

analysis = require_analysis()
if "prediction" not in analysis.scorers:
    st.info("This dataset has only the feature score: the prediction score needs class labels on the train "
            "(fit) items (or precomputed pred_probs), so there is nothing to compare.")
    st.stop()

show_fit = False
if not analysis.same_set:
    show_fit = st.toggle("Show the train (fit) images too (grey)", key=page_key("compare", "show_fit"),
                         on_change=persistent(page_key("compare", "show_fit"), False))

thresholds = {scorer: sync_threshold(analysis, scorer) for scorer in ("feature", "prediction")}
st.caption("Thresholds from the score pages (move them there): " + " · ".join(
    f"{scorer} {t:.4f} (flags {ood_core.percentile_of(analysis.scores(scorer)[0], t):.1f}% of train)"
    for scorer, t in thresholds.items()))

q = ood_core.quadrants(analysis.query_feature_scores, analysis.query_pred_scores,
              thresholds["feature"], thresholds["prediction"])
_, combined = ood_core.rank_average_fit_query([analysis.fit_feature_scores, analysis.fit_pred_scores],
                                     [analysis.query_feature_scores, analysis.query_pred_scores])
auroc = None
if analysis.is_ood is not None:
    auroc = ood_core.compare_auroc(analysis.is_ood, feature=analysis.query_feature_scores,
                          prediction=analysis.query_pred_scores, rank_average=combined)

# ---- counts and the scatter
cols = st.columns(5)
for col, name in zip(cols, ood_core.QUADRANTS):
    col.metric(QUADRANT_TITLES[name], f"{q['counts'][name]:,}")
cols[4].metric("Spearman correlation", "—" if np.isnan(q["spearman"]) else f"{q['spearman']:.3f}")
st.plotly_chart(
    score_scatter_figure(
        analysis.query_feature_scores, analysis.query_pred_scores, thresholds["feature"], thresholds["prediction"],
        positions=analysis.query_index, is_ood=analysis.is_ood, counts=q["counts"],
        fit_feature_scores=analysis.fit_feature_scores if show_fit else None,
        fit_pred_scores=analysis.fit_pred_scores if show_fit else None, fit_positions=analysis.fit_index),
    key=page_key("compare", "scatter"), config={"displayModeBar": False})

# ---- which score to trust, when the truth is known
if auroc is not None:
    st.subheader("Which score to trust on this data")
    st.caption("AUROC on the test (query) images against the known truth (out of distribution = positive, "
               "lower score = more atypical). The rank average gives each image the mean of its two scores' "
               "ranks among the train (fit) scores.")
    best = max(auroc, key=auroc.get)
    cols = st.columns(3)
    for col, (name, value) in zip(cols, auroc.items()):
        col.metric(f"AUROC · {AUROC_TITLES[name]}", f"{value:.4f}",
                   delta="best" if name == best else None, delta_color="normal", delta_arrow="off")

# ---- the images in each quadrant
st.subheader("Images in each corner")
c1, c2 = st.columns([3, 1])
chosen = c1.segmented_control("Corner", ood_core.QUADRANTS, format_func=QUADRANT_TITLES.get,
                              key=page_key("compare", "quadrant"),
                              on_change=persistent(page_key("compare", "quadrant"), "both")) or "both"
n_show = c2.number_input("Images per grid", min_value=4, max_value=96, step=4, key=page_key("compare", "grid_size"),
                         on_change=persistent(page_key("compare", "grid_size"), 16))
# Each corner is ordered by the score that flags it: the rank average where both or neither do.
ranking, ranking_name = {
    "feature_only": (analysis.query_feature_scores, "feature score"),
    "prediction_only": (analysis.query_pred_scores, "prediction score"),
}.get(chosen, (combined, "rank average"))
members = q["indices"][chosen]
order = members[np.lexsort((members, ranking[members]))][: int(n_show)]  # most atypical first
st.caption(f"{q['counts'][chosen]:,} test images; showing the {len(order)} most atypical by the {ranking_name} "
           f"(captions: position, {ranking_name}, class)."
           + (" The rank average is the mean share of train images scoring lower, over the two scores "
              "(0: below every train image on both)." if ranking_name == "rank average" else ""))
image_grid(analysis, analysis.query_index[order], ranking[order], empty_text="No test image in this corner.")
