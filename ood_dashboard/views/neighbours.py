"""Why this one: an image beside its nearest train (fit) images, and its distance against the threshold's."""
import numpy as np
import streamlit as st

import ood_core
from ood_dashboard import review
from ood_dashboard.explain_views import neighbour_distance_figure, verdict
from ood_dashboard.markup import escape
from ood_dashboard.session import require_analysis, sync_threshold
from ood_dashboard.state import EXPLAIN_POSITION, page_key, run_key
from ood_dashboard.thumbnails import thumbnail, upscale

PICK_KEY = page_key("neighbours", "pick")

st.title("Why this one?")
st.write("The feature score of an image is its mean distance to its nearest train (fit) images in embedding "
         "space: here are those neighbours, and the distance at which the current threshold starts flagging.")

analysis = require_analysis()

# Which item: one sent here by a grid's "Why?" button, else the one picked before in this run, else the
# most atypical test (query) image. The pick survives leaving the page; a new dataset starts again.
n = len(analysis.ids)
selected_key = run_key(analysis, "neighbours_selected")
st.session_state.setdefault(selected_key, int(analysis.query_index[np.argmin(analysis.query_feature_scores)]))
arrived = st.session_state.pop(EXPLAIN_POSITION, None)
if arrived is not None and 0 <= int(arrived) < n:
    st.session_state[selected_key] = int(arrived)
st.session_state[PICK_KEY] = st.session_state[selected_key]

fit_set = set(analysis.fit_index.tolist())
query_set = set(analysis.query_index.tolist())


def describe(p: int) -> str:
    """The item's id, set and class as plain text (the selectbox's options show it as it is)."""
    where = "train" if p in fit_set else "test"
    if p in fit_set and p in query_set:
        where = "train = test"
    name = analysis.class_name(p)
    return f"{analysis.ids[p]} · {where}" + (f" · {name}" if name else "")


def keep_pick() -> None:
    if st.session_state[PICK_KEY] is not None:  # clearing the box keeps the last image
        st.session_state[selected_key] = st.session_state[PICK_KEY]


c1, c2 = st.columns([3, 1])
position = c1.selectbox("Image (type to search by id)", range(n), index=None, format_func=describe, key=PICK_KEY,
                        on_change=keep_pick)
scorer = analysis.feature_scorer
k = c2.number_input("Neighbours to show", min_value=1, max_value=int(min(50, len(analysis.fit_index) - 1)),
                    value=int(min(scorer.k_, 50)), step=1, key=page_key("neighbours", "k"))

threshold = sync_threshold(analysis, "feature")
result = analysis.explain(int(position), k=int(k), threshold=threshold)

# ---- the item and the verdict
left, right = st.columns([1, 3])
with left:
    if analysis.items is not None:
        st.image(upscale(analysis.items.load_image(int(position)), 192), caption=escape(describe(int(position))))
    else:
        st.markdown(f"**{escape(describe(int(position)))}**")
with right:
    (st.warning if result["flagged"] else st.success)(verdict(result))
    m = st.columns(4)
    m[0].metric("Feature score", f"{result['score']:.4f}")
    m[1].metric(f"Mean distance (k={result['k_score']})", f"{result['mean_distance']:.4f}")
    m[2].metric("Threshold's distance", f"{result['threshold_distance']:.4f}")
    m[3].metric("Threshold", f"{threshold:.4f}",
                help=f"Flags {ood_core.percentile_of(analysis.fit_feature_scores, threshold):.1f}% of the train (fit) images; "
                     "move it on the Feature scores page.")
    facts = [f"metric: {result['metric']}", "in the train (fit) set: its own entry is excluded"
             if result["is_fit"] else "a test (query) item"]
    query_row = np.flatnonzero(analysis.query_index == int(position))
    if len(query_row) and analysis.query_pred_probs is not None:
        facts.append(f"predicted class: {escape(analysis.class_names[analysis.predicted_classes()[query_row[0]]])}")
    if len(query_row) and analysis.is_ood is not None:
        facts.append("known truth: " + ("out of distribution" if analysis.is_ood[query_row[0]] else "in distribution"))
    current = review.marks(analysis).get(analysis.ids[int(position)])
    facts.append(f"review: {review.BADGES[current.verdict]}" if current else "not reviewed")
    st.caption(" · ".join(facts))
    if st.button("Open large to mark it", icon=":material/open_in_full:", key=page_key("neighbours", "view")):
        review.item_view(analysis, int(position))

# ---- its neighbours
st.subheader(f"Its {result['k']} nearest train (fit) images")
positions, distances = result["positions"], result["distances"]
neighbour_scores = analysis.fit_feature_scores[result["indices"]]
captions = [f"{r}. {escape(analysis.ids[p])} · {escape(analysis.class_name(p) or '?')} · d {d:.3f} · score {s:.3f}"
            for r, (p, d, s) in enumerate(zip(positions, distances, neighbour_scores), start=1)]
if analysis.items is not None:
    columns = 5
    for start in range(0, len(positions), columns):
        cols = st.columns(columns)
        for col, p, text in zip(cols, positions[start:start + columns], captions[start:start + columns]):
            col.image(thumbnail(analysis, int(p)), caption=text, width="content")
st.plotly_chart(neighbour_distance_figure(distances, result["mean_distance"], result["threshold_distance"],
                                          k_score=result["k_score"]),
                key=page_key("neighbours", "distances"), config={"displayModeBar": False})
st.dataframe({"rank": list(range(1, len(positions) + 1)), "id": [analysis.ids[p] for p in positions],
              "class": [analysis.class_name(p) for p in positions], "distance": distances,
              "score": neighbour_scores}, hide_index=True,
             column_config={"distance": st.column_config.NumberColumn(format="%.4f"),
                            "score": st.column_config.NumberColumn(format="%.4f")})
