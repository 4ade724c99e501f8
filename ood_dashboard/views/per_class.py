"""Per class: each train class's scores, and thresholds taken within each class."""
import warnings

import numpy as np
import streamlit as st

import ood_core
from ood_core import flag_metrics, flag_per_class, per_class_counts, per_class_thresholds, percentile_threshold
from ood_dashboard.explain_views import class_histograms_figure
from ood_dashboard.grid import image_grid
from ood_dashboard.session import persistent, require_analysis, sync_threshold, threshold_keys
from ood_dashboard.state import page_key

st.title("Per class")
st.write("The scores of each class's train (fit) images beside the test (query) images predicted as that class; "
         "optionally a threshold per class, at the same percentile taken within each class.")

analysis = require_analysis()
fit_labels = analysis.labels[analysis.fit_index]
if np.any(fit_labels < 0) or len(np.unique(fit_labels)) < 2:
    st.info("The per-class view needs a class label on every train (fit) image, and at least 2 classes.")
    st.stop()

predicted = analysis.predicted_classes()
c1, c2, c3 = st.columns(3)
scorer = c1.selectbox("Score", analysis.scorers, format_func=lambda s: ood_core.SCORERS[s].title, key=page_key("per_class", "scorer"))
fit_scores, query_scores = analysis.scores(scorer)
threshold = sync_threshold(analysis, scorer)
# Start from the score page's percentile (its threshold's share of train scores when that is gone).
current = st.session_state.get(threshold_keys(scorer)[0])
if current is None or percentile_threshold(fit_scores, current) != threshold:
    current = ood_core.percentile_of(fit_scores, threshold)
percentile = c2.number_input("Percentile (of all train scores, or within each class)", min_value=0.0,
                             max_value=100.0, value=round(current, 2), step=0.5, format="%.2f",
                             key=page_key("per_class", f"percentile_{scorer}"))
conditional = c3.toggle("Class-conditional thresholds", key=page_key("per_class", "conditional"), disabled=predicted is None,
                        on_change=persistent(page_key("per_class", "conditional"), False),
                        help="The percentile is taken within each train class; a test image is judged by the "
                             "threshold of the class the classifier predicts for it.")
if predicted is None:
    st.caption("Test images have no predicted class here (no pred_probs), so only the train images are shown.")
    query_scores, predicted = np.empty(0), np.empty(0, dtype=np.int64)

n_classes = len(analysis.class_names)
global_threshold = percentile_threshold(fit_scores, float(percentile))
global_thresholds = np.full(n_classes, global_threshold)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    class_thresholds = per_class_thresholds(fit_scores, fit_labels, float(percentile), n_classes=n_classes)
global_rows = per_class_counts(fit_scores, fit_labels, query_scores, predicted, global_thresholds,
                               analysis.class_names)
class_rows = per_class_counts(fit_scores, fit_labels, query_scores, predicted, class_thresholds,
                              analysis.class_names)
global_flags = flag_per_class(query_scores, predicted, global_thresholds)
class_flags = flag_per_class(query_scores, predicted, class_thresholds)

# ---- counts per class
if conditional:
    for warning in caught:
        st.warning(str(warning.message))
shown = [c for c in range(n_classes) if global_rows[c]["fit_rows"] or global_rows[c]["query_rows"]]
table = {
    "class": [global_rows[c]["name"] for c in shown],
    "train images": [global_rows[c]["fit_rows"] for c in shown],
    "test images predicted as it": [global_rows[c]["query_rows"] for c in shown],
    "global threshold": [global_threshold] * len(shown),
    "test flagged (global)": [global_rows[c]["query_flagged"] for c in shown],
}
if conditional:
    table.update({
        "class threshold": [class_rows[c]["threshold"] for c in shown],
        "train flagged (class)": [class_rows[c]["fit_flagged"] for c in shown],
        "test flagged (class)": [class_rows[c]["query_flagged"] for c in shown],
    })
st.subheader("Flagged images per class")
cols = st.columns(3)
cols[0].metric("Test flagged, global threshold", f"{int(global_flags.sum()):,} of {len(query_scores):,}")
if conditional:
    cols[1].metric("Test flagged, class thresholds", f"{int(class_flags.sum()):,} of {len(query_scores):,}")
st.dataframe(table, hide_index=True, column_config={
    "global threshold": st.column_config.NumberColumn(format="%.4f"),
    "class threshold": st.column_config.NumberColumn(format="%.4f")})
if conditional and analysis.is_ood is not None and len(query_scores):
    per = {"global threshold": flag_metrics(global_flags, analysis.is_ood),
           "class thresholds": flag_metrics(class_flags, analysis.is_ood)}
    st.caption("Against the known truth (out of distribution = positive), on the test images:")
    st.dataframe({"thresholds": list(per), "flagged": [m["flagged"] for m in per.values()],
                  "TPR (outliers caught)": [m["tpr"] for m in per.values()],
                  "FPR (inliers flagged)": [m["fpr"] for m in per.values()],
                  "precision": [m["precision"] for m in per.values()]}, hide_index=True)

# ---- histograms per class
st.subheader("Score histograms per class")
st.caption("Blue: train images of the class (by label). Orange: test images predicted as it. Dashed grey: the "
           "global threshold" + ("; red: the class's own threshold." if conditional else "."))
classes = [{"name": analysis.class_names[c], "fit_scores": fit_scores[fit_labels == c],
            "query_scores": query_scores[predicted == c],
            "threshold": class_thresholds[c] if conditional else None}
           for c in range(n_classes) if np.any(fit_labels == c)]
st.plotly_chart(class_histograms_figure(classes, global_threshold, score_label=f"{scorer} score"),
                key=page_key("per_class", "histograms"), config={"displayModeBar": False})

# ---- what the class thresholds change
if conditional and len(query_scores):
    st.subheader("What the class thresholds change")
    gained, lost = np.flatnonzero(class_flags & ~global_flags), np.flatnonzero(global_flags & ~class_flags)
    tabs = st.tabs([f"Flagged only with class thresholds ({len(gained):,})",
                    f"Flagged only with the global threshold ({len(lost):,})"])
    for tab, idx in zip(tabs, (gained, lost)):
        with tab:
            idx = idx[np.lexsort((idx, query_scores[idx]))][:32]
            image_grid(analysis, analysis.query_index[idx], query_scores[idx], empty_text="None.")
