"""Models: which embedding model suits this dataset? The same images embedded and scored by several models."""
import dataclasses

import numpy as np
import streamlit as st

import ood_core
from ood_dashboard.figures import score_histogram_figure
from ood_dashboard.markup import escape
from ood_dashboard.session import persistent, require_analysis
from ood_dashboard.state import page_key

MAX_COMPARISONS = 4  # comparisons kept in memory by the server process
PER_ROW = 3  # histograms side by side

st.title("Which model for my data?")
st.write("The current dataset's images embedded by several models (read from the disk cache when they were "
         "embedded before) and scored the same way, so you can pick a model with evidence: how well each one "
         "separates the known outliers, or, without that truth, how far the models agree.")

analysis = require_analysis()
if analysis.items is None:
    st.info("This dataset is precomputed features: no model runs on it, so there is nothing to compare.")
    st.stop()


@st.cache_resource(show_spinner=False)
def comparisons() -> dict:
    """Comparisons computed in this server process, by (run_id, models)."""
    return {}


current = analysis.embed_config.get("model", "")
default = list(dict.fromkeys([current, *ood_core.DEFAULT_COMPARE_MODELS]))[:3]
keep_models = persistent(page_key("models", "choice"), default)  # before the options: a kept choice stays an option
choices = list(dict.fromkeys([*ood_core.MODEL_CHOICES, current, *st.session_state[page_key("models", "choice")]]))
c1, c2 = st.columns([3, 1])
models = c1.multiselect("Models to compare", choices, key=page_key("models", "choice"), on_change=keep_models,
                        help="`lite0`-`lite2`: EfficientNet-Lite ImageNet networks (bundled weights). `pixels`: the "
                             "images' own pixels, centred on the train images' mean; `pixels-raw`: not centred. "
                             "`auto`: what a run picks by default for these images.")
percentile = c2.number_input("Flag below percentile", min_value=0.0, max_value=100.0, step=0.5,
                             key=page_key("models", "percentile"), on_change=persistent(page_key("models", "percentile"), 5.0),
                             help="Each model flags the items scoring below this percentile of its own train "
                                  "(fit) scores.")
key = (analysis.run_id, tuple(models))
store = comparisons()
if len(models) < 2:
    st.info("Pick at least two models.")
    st.stop()
if key not in store and not st.button("Compare", type="primary", key=page_key("models", "run")):
    st.caption(f"Embedding {len(analysis.items):,} images with each model not yet in the cache takes a while on a "
               "CPU (about a minute per model for a few thousand images); cached ones take seconds.")
    st.stop()
if key not in store:
    bar = st.progress(0.0, text="Starting…")

    def report(stage: str, done: int, total: int) -> None:
        bar.progress(min(done / total, 1.0) if total else 0.0, text=f"{stage}: {done:,} / {total:,}")

    try:
        result = ood_core.compare_models(analysis.items, models, progress=report)
    except (ValueError, RuntimeError, OSError) as exc:
        bar.empty()
        st.error(f"Could not compare these models: {escape(str(exc))}")
        st.stop()
    bar.empty()
    while len(store) >= MAX_COMPARISONS:
        store.pop(next(iter(store)))
    store[key] = result
comparison = dataclasses.replace(store[key], percentile=float(percentile))

# ---- per model
st.subheader("Per model")
rows = comparison.table()
columns = ["model", "resolved", "input size", "features", "seconds", "cached"]
if comparison.has_truth:
    columns += ["feature AUROC", "FPR@95%TPR", "prediction AUROC", "FPR at threshold", "TPR at threshold"]
    best = max(rows, key=lambda r: r["feature AUROC"])
    st.caption(f"AUROC and FPR at 95% TPR of the feature score on the test (query) images against the known "
               f"truth; the rates at the threshold flag below the {percentile:g}th percentile of each model's train "
               f"scores. Best feature AUROC here: **{escape(best['model'])}** ({best['feature AUROC']:.3f}).")
else:
    columns += ["median query score"]
    st.caption("No out-of-distribution truth for these images: compare how the models agree (below) and look at "
               "what each one flags on the score pages.")
columns += ["query flagged", "query flagged %"]
st.dataframe([{c: r.get(c) for c in columns} for r in rows], hide_index=True, key=page_key("models", "table"))

# ---- agreement
st.subheader("Do the models agree?")
st.caption("Spearman correlation of the feature scores of the test (query) images, and the overlap of the images "
           "each model flags (flagged by both / flagged by either).")
st.dataframe(comparison.agreement(), hide_index=True, key=page_key("models", "agreement"))

# ---- score histograms
st.subheader("Feature scores by model")
st.caption("Test (query) images, split by the known truth when there is one, else train (fit) against test, "
           "with each model's threshold.")
for start in range(0, len(comparison.models), PER_ROW):
    for col, model in zip(st.columns(PER_ROW), comparison.models[start:start + PER_ROW]):
        result = comparison.analyses[model]
        view = result.threshold_view("feature", percentile=float(percentile))
        fit, query = result.scores("feature")
        if result.is_ood is not None:
            shown, labels = (query[~result.is_ood], query[result.is_ood]), ("in (test)", "out (test)")
        else:
            shown, labels = (fit, None if result.same_set else query), ("train (fit)", "test (query)")
        col.markdown(f"**{escape(model)}** ({escape(str(result.embed_config.get('model')))})")
        col.plotly_chart(score_histogram_figure(*shown, view.threshold, percentile=float(percentile),
                                                labels=labels, height=260),
                         key=page_key("models", f"hist_{model}"), config={"displayModeBar": False})
if not np.isfinite([r["spearman"] for r in comparison.agreement()]).all():
    st.caption("A Spearman correlation is blank when a model gives every image the same score.")
