"""Embedding map: the images laid out in 2-D by their embeddings, coloured by score, class, split, known truth or
review mark; click a point to see its image, or select a region to see and mark every image inside it."""
import warnings

import numpy as np
import streamlit as st

import ood_core
from ood_dashboard import review
from ood_dashboard.explain_views import MAX_MAP_POINTS, embedding_map_figure
from ood_dashboard.grid import caption, image_grid
from ood_dashboard.groups import available_groupings, item_groups
from ood_dashboard.map_selection import MapSelection, figure_token
from ood_dashboard.markup import escape
from ood_dashboard.session import persistent, require_analysis, sync_threshold
from ood_dashboard.state import grid_key, page_key, run_key
from ood_dashboard.thumbnails import thumbnail

CHART_KEY, METHOD_KEY, SCORER_KEY, COLOUR_KEY = (page_key("map", name) for name in ("chart", "method", "scorer", "colour"))
GRID_MAX = 48

st.title("Embedding map")
st.write("Every image placed by a 2-D projection of its embedding, flagged images ringed in red: click a point to "
         "see its image beside the map, or draw a box or a lasso to see and mark the images inside it.")

analysis = require_analysis()

try:  # read fresh on every run: a mark set below, on another page or by the CLI shows at once
    item_marks, marks_error = review.marks(analysis), None
except ood_core.ReviewStoreError as exc:
    item_marks, marks_error = {}, str(exc)
colourings = {"score": "Score", **available_groupings(analysis, with_marks=marks_error is None)}

c1, c2, c3, c4 = st.columns([1.2, 1, 1, 1.3])
method = c1.radio("Projection", list(ood_core.PROJECTION_TITLES), format_func=ood_core.PROJECTION_TITLES.get,
                  horizontal=True, key=METHOD_KEY, on_change=persistent(METHOD_KEY, "pca"))
# A kept choice this dataset lacks (prediction scores, truth) falls back to the default.
scorer = c2.selectbox("Score", analysis.scorers, format_func=lambda s: ood_core.SCORERS[s].title, key=SCORER_KEY,
                      on_change=persistent(SCORER_KEY, "feature", options=analysis.scorers),
                      help="Flags the images (red rings) at its threshold on its score page and orders the "
                           "selection.")
colour = c3.selectbox("Colour by", list(colourings), format_func=colourings.get, key=COLOUR_KEY,
                      on_change=persistent(COLOUR_KEY, "score", options=list(colourings)))
shown = "both"
if not analysis.same_set:
    shown = c4.radio("Images", ["both", "query", "fit"], horizontal=True, key=page_key("map", "items"),
                     on_change=persistent(page_key("map", "items"), "both"),
                     format_func={"both": "all", "query": "test (query)", "fit": "train (fit)"}.get)
if marks_error:
    st.caption(f"Review marks cannot be read, so the map cannot be coloured by them: {escape(marks_error)}")

threshold = sync_threshold(analysis, scorer)

in_any = np.zeros(len(analysis.ids), bool)  # items in either set (a count, without sorting a million positions)
in_any[np.asarray(analysis.fit_index, dtype=np.int64)] = True
in_any[np.asarray(analysis.query_index, dtype=np.int64)] = True
n_items = int(np.count_nonzero(in_any))
bar = st.empty()  # filled only while a projection is computed (once per run and method, then read from disk)


def report(stage: str, done: int, total: int) -> None:
    text = (f"Computing the t-SNE map of {min(n_items, MAX_MAP_POINTS):,} images: iteration {done:,} / {total:,}…"
            if stage == "tsne" else "Computing the PCA map…")
    bar.progress(done / total if total else 0.0, text=text)


with warnings.catch_warnings(record=True) as caught:  # a damaged kept map is computed again, and said so
    warnings.simplefilter("always", RuntimeWarning)
    coords, positions = analysis.projection(method, max_points=MAX_MAP_POINTS, progress=report)  # kept per run
bar.empty()
for warning in caught:
    st.warning(escape(str(warning.message)), icon=":material/warning:")
n_drawn = len(positions)

keep = np.ones(len(positions), bool)
if shown != "both":
    keep = np.isin(positions, analysis.query_index if shown == "query" else analysis.fit_index)
coords, positions = coords[keep], positions[keep]
scores = analysis.item_scores(scorer)[positions]
hover = [analysis.ids[p] + (f" · {analysis.class_name(p)}" if analysis.class_name(p) else "") for p in positions]
grouped = {}
if colour != "score":
    groups = item_groups(analysis, positions, colour, item_marks)
    grouped = dict(groups=groups.names, group_colors=groups.colors, background=groups.background)

# What the map shows, said in its title and under it: all the items, or a sample of them.
method_name = ood_core.PROJECTION_TITLES[method]
shown_sets = {"both": "", "query": "test (query) ", "fit": "train (fit) "}[shown]
if n_drawn < n_items:
    what = f"a seeded sample of {n_drawn:,} of {n_items:,} items"
    map_title = f"{method_name} map of {what}"
    st.caption(f"The map shows {what} (the same sample each time, projected once per run), to keep it fast"
               + (f"; of them, the {len(positions):,} {shown_sets}items." if shown != "both" else ".")
               + " Selections, counts and grids below are of the items drawn.")
else:
    map_title = f"{method_name} map of all {n_items:,} items"
    if shown != "both":
        map_title += f" ({len(positions):,} {shown_sets}items shown)"
# The selection outlives the chart (a new figure is a new chart, with none): see ood_dashboard.map_selection.
selection = MapSelection(run_key(analysis, "map_selection"), CHART_KEY)
selected, draw_selected = selection.update(figure_token(method, coords, scores, positions, threshold, scorer,
                                                        colour, grouped))

left, right = st.columns([3, 1], gap="medium")
with left:
    figure = embedding_map_figure(coords, scores, positions, threshold, score_label=scorer + " score",
                                  method_title=method_name, hover=hover, selected=draw_selected, **grouped)
    figure.update_layout(title=dict(text=map_title, x=0, xanchor="left", y=0.99, yanchor="top", font=dict(size=14)),
                         margin=dict(t=72))  # room for the title above the legend
    st.plotly_chart(
        figure,
        key=CHART_KEY, on_select="rerun", selection_mode=("points", "box", "lasso"),
        config={"displayModeBar": True})

# ---- the selection: the side panel shows one image (the clicked one, else the most atypical selected)
all_scores = analysis.item_scores(scorer)
order = selected[np.lexsort((selected, all_scores[selected]))]  # most atypical first
with right.container(key=grid_key(page_key("map", "selected"))):  # the grids' caption style: one line per fact
    st.markdown("**Selected image**")
    if len(order) == 0:
        st.caption("Click a point on the map to see its image here (hovering shows its id and score).")
    else:
        position = int(order[0])
        item_id = analysis.ids[position]
        text = caption(analysis, position, float(all_scores[position]), review.badge(item_marks, item_id))
        if analysis.items is not None:
            st.image(thumbnail(analysis, position), caption=text, width="stretch", output_format="PNG")
        else:
            st.caption(text.replace("\n", "  \n"))  # caption(): Markdown already
        mark = item_marks.get(item_id)
        st.caption(escape(item_id) + (f"  \nnote: {escape(mark.note)}" if mark and mark.note else ""))
        if len(order) > 1:
            st.caption(f"The most atypical of the {len(order):,} selected; click a single point to see another.")
        if st.button("View and mark", key=page_key("map", "view"), icon=":material/open_in_full:", width="stretch"):
            review.item_view(analysis, position)

head, clear = st.columns([4, 1], vertical_alignment="bottom")
head.subheader("Selected images")
clear.button("Clear selection", key=page_key("map", "clear"), icon=":material/deselect:", disabled=len(selected) == 0,
             on_click=selection.clear, width="stretch")
if len(selected) == 0:
    st.caption("Draw a box or a lasso on the map (the tools are in the chart's top-right toolbar) to list the "
               "images inside it.")
else:
    flagged = int(np.count_nonzero(all_scores[selected] < threshold))
    review.bulk_buttons(analysis, order, key=page_key("map", "selection"), what="selected images")
    if marks_error is None and review.marks(analysis) != item_marks:  # marked just now: redraw the map and panel
        st.rerun()
    st.caption(f"{len(selected):,} selected, {flagged:,} of them flagged; showing the "
               f"{min(len(order), GRID_MAX)} most atypical (captions: position, {scorer} score, class).")
    image_grid(analysis, order[:GRID_MAX], all_scores[order[:GRID_MAX]])
