"""Embedding map: the images laid out in 2-D by their embeddings, coloured by score; select a region to see it."""
import numpy as np
import streamlit as st

import ood_core
from ui.explain_views import MAX_MAP_POINTS, embedding_map_figure, selection_positions
from ui.grid import image_grid
from ui.session import persistent, require_analysis, sync_threshold

CHART_KEY = "embedding_map_chart"
GRID_MAX = 48
MAX_MAPS = 8  # maps kept in memory by the server process

st.title("Embedding map")
st.write("Every image placed by a 2-D projection of its embedding, coloured by its score, with flagged images "
         "as red-rimmed diamonds: draw a box or a lasso on the map to see the images inside it.")

analysis = require_analysis()


@st.cache_resource(show_spinner=False)
def projections() -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """Maps computed in this server process, by (run_id, method): each is computed once, with a progress bar."""
    return {}


def projection(analysis: ood_core.Analysis, method: str, progress) -> tuple[np.ndarray, np.ndarray]:
    """2-D coordinates of (a sample of at most MAX_MAP_POINTS) items and their positions."""
    store, key = projections(), (analysis.run_id, method)
    if key not in store:
        items = np.union1d(analysis.fit_index, analysis.query_index)
        coords, drawn = ood_core.project_2d(analysis.features[items], method=method, max_points=MAX_MAP_POINTS,
                                            normalize=analysis.feature_scorer.metric_ == "cosine", progress=progress)
        while len(store) >= MAX_MAPS:
            store.pop(next(iter(store)))
        store[key] = coords, items[drawn]
    return store[key]


c1, c2, c3 = st.columns(3)
method = c1.radio("Projection", list(ood_core.PROJECTION_TITLES), format_func=ood_core.PROJECTION_TITLES.get,
                  horizontal=True, key="map_method", on_change=persistent("map_method", "pca"))
scorer = c2.selectbox("Colour by", analysis.scorers, format_func=ood_core.SCORERS.get, key="map_scorer")
shown = "both"
if not analysis.same_set:
    shown = c3.radio("Images", ["both", "query", "fit"], horizontal=True, key="map_items",
                     on_change=persistent("map_items", "both"),
                     format_func={"both": "all", "query": "test (query)", "fit": "train (fit)"}.get)

threshold = sync_threshold(analysis, scorer)

n_items = len(np.union1d(analysis.fit_index, analysis.query_index))
bar = st.empty()  # filled only while a projection is computed (once per dataset and method)


def report(stage: str, done: int, total: int) -> None:
    text = (f"Computing the t-SNE map of {min(n_items, MAX_MAP_POINTS):,} images: iteration {done:,} / {total:,}…"
            if stage == "tsne" else "Computing the PCA map…")
    bar.progress(done / total if total else 0.0, text=text)


coords, positions = projection(analysis, method, report)
bar.empty()

keep = np.ones(len(positions), bool)
if shown != "both":
    keep = np.isin(positions, analysis.query_index if shown == "query" else analysis.fit_index)
coords, positions = coords[keep], positions[keep]
scores = analysis.item_scores(scorer)[positions]

if len(positions) < n_items:
    st.caption(f"Drawing {len(positions):,} of the images: a random sample of {MAX_MAP_POINTS:,} out of "
               f"{n_items:,} is projected, to keep the map fast.")
event = st.plotly_chart(
    embedding_map_figure(coords, scores, positions, threshold, score_label=scorer + " score",
                         method_title=ood_core.PROJECTION_TITLES[method]),
    key=CHART_KEY, on_select="rerun", selection_mode=("box", "lasso"), config={"displayModeBar": True})

# ---- the selection
selected = selection_positions(event)
all_scores = analysis.item_scores(scorer)
st.subheader("Selected images")
if len(selected) == 0:
    st.caption("Draw a box or a lasso on the map (the tools are in the chart's top-right toolbar) to list the "
               "images inside it.")
else:
    order = selected[np.lexsort((selected, all_scores[selected]))]  # most atypical first
    flagged = int(np.count_nonzero(all_scores[selected] < threshold))
    st.caption(f"{len(selected):,} selected, {flagged:,} of them flagged; showing the "
               f"{min(len(order), GRID_MAX)} most atypical (captions: position, {scorer} score, class).")
    image_grid(analysis, order[:GRID_MAX], all_scores[order[:GRID_MAX]])
