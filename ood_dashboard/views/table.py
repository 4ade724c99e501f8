"""Every item in one table: scores, flags, class, set and review mark; select rows to open or mark them.

The table is paged: the items are filtered and sorted here, over all of them (the orders by score are
computed once per run), and only the page shown is sent to the browser."""
import numpy as np
import streamlit as st

import ood_core
from ood_dashboard import review
from ood_dashboard.grid import REVIEW_CODES, item_ranking, review_codes, run_cached
from ood_dashboard.session import persistent, require_analysis, sync_threshold
from ood_dashboard.state import page_key

PAGE_ROWS = 1_000  # rows sent to the browser at once; the rest are a page away

st.title("All items")
st.write("Every scored image with both scores, whether the current thresholds flag it, and your review mark. "
         "Choose the order with **Sort by** (it sorts all the items, then shows them a page at a time); select "
         "rows to open one large or to mark them all.")

analysis = require_analysis()
thresholds = {scorer: sync_threshold(analysis, scorer) for scorer in analysis.scorers}
item_marks = review.marks(analysis)

# ---- filters and order
sorts = {"position": "Position (the data's order)"}
for scorer in analysis.scorers:
    sorts[f"{scorer}_asc"] = f"{scorer.capitalize()} score, lowest first"
    sorts[f"{scorer}_desc"] = f"{scorer.capitalize()} score, highest first"
keep_sort = persistent(page_key("table", "sort"), "feature_asc", options=list(sorts))  # a kept order this data lacks: default

c1, c2, c3, c4 = st.columns([1, 1.5, 1, 1.2], vertical_alignment="bottom")
sets = {"all": "all items", "fit": "train (fit)", "query": "test (query)"}
which_set = c1.selectbox("Items", list(sets), format_func=sets.get, key=page_key("table", "set"),
                         on_change=persistent(page_key("table", "set"), "all"))
flagged_only = c2.toggle("Only flagged by the feature score", key=page_key("table", "flagged"),
                         on_change=persistent(page_key("table", "flagged"), False))
shown_review = c3.selectbox("Review", list(review.FILTERS), format_func=review.FILTERS.get, key=page_key("table", "review"),
                            on_change=persistent(page_key("table", "review"), "all"))
number_key = page_key("table", f"page_{which_set}_{flagged_only}_{shown_review}")  # other filters: another page number


def on_sort() -> None:
    keep_sort()
    if number_key in st.session_state:
        st.session_state[number_key] = 1  # a new order starts at its first page


sort = c4.selectbox("Sort by", list(sorts), format_func=sorts.get, key=page_key("table", "sort"), on_change=on_sort,
                    help="Sorts all the items, then shows them a page at a time (lowest = most atypical). A click on "
                         "a column header sorts only the rows of the page shown.")


def membership() -> tuple[np.ndarray, np.ndarray]:
    """(in the fit set, in the query set), one flag per item of ids."""
    fit, query = np.zeros(len(analysis.ids), bool), np.zeros(len(analysis.ids), bool)
    fit[np.asarray(analysis.fit_index, dtype=np.int64)] = True
    query[np.asarray(analysis.query_index, dtype=np.int64)] = True
    return fit, query


in_fit, in_query = run_cached(("table_membership", analysis.run_id), (analysis.fit_index, analysis.query_index),
                              membership)
scores = {scorer: item_ranking(analysis, scorer).scores for scorer in analysis.scorers}  # one per item of ids
keep = {"all": in_fit | in_query, "fit": in_fit, "query": in_query}[which_set]
if flagged_only:
    keep = keep & (scores["feature"] < thresholds["feature"])
if shown_review != "all":
    keep = keep & (review_codes(analysis, item_marks) == REVIEW_CODES[shown_review])

if sort == "position":
    order = np.flatnonzero(keep)
else:
    scorer, direction = sort.rsplit("_", 1)
    ranked = item_ranking(analysis, scorer)  # equal scores in position order
    ordered = ranked.ascending if direction == "asc" else ranked.descending
    order = ordered[keep[ordered]]

total = len(order)
pages = max(1, -(-total // PAGE_ROWS))
if st.session_state.get(number_key, 1) > pages:  # fewer items than when the page was chosen
    st.session_state[number_key] = pages
page = st.number_input(f"Page (of {pages:,}; {PAGE_ROWS:,} rows each)", min_value=1, max_value=pages, step=1,
                       key=number_key) if pages > 1 else 1
rows = np.asarray(order[(page - 1) * PAGE_ROWS: page * PAGE_ROWS], dtype=np.int64)
table = {"position": rows, "id": [analysis.ids[p] for p in rows],
         "class": [analysis.class_name(p) for p in rows],
         "set": np.where(in_fit[rows], "train", "test")}
for scorer in analysis.scorers:
    table[f"{scorer} score"] = scores[scorer][rows]
    table[f"{scorer} flagged"] = scores[scorer][rows] < thresholds[scorer]
table["review"] = [item_marks[analysis.ids[p]].verdict if analysis.ids[p] in item_marks else "" for p in rows]
table["note"] = [item_marks[analysis.ids[p]].note if analysis.ids[p] in item_marks else "" for p in rows]

st.caption(f"{total:,} items" + (f"; showing rows {(page - 1) * PAGE_ROWS + 1:,} to {min(page * PAGE_ROWS, total):,}"
                                 if pages > 1 else ""))
event = st.dataframe(table, hide_index=True, on_select="rerun", selection_mode="multi-row", key=page_key("table", "rows"),
                     column_config={f"{s} score": st.column_config.NumberColumn(format="%.4f") for s in scores})
picked = np.asarray(event.selection.rows, dtype=np.int64).reshape(-1)
selected = rows[picked[picked < len(rows)]]  # row numbers of this page (a selection may outlive a page change)

# ---- what to do with the selection
if len(selected):
    if st.button(f"Open #{selected[0]} large", icon=":material/open_in_full:", key=page_key("table", "open")):
        review.item_view(analysis, int(selected[0]))
    review.bulk_buttons(analysis, selected, key=page_key("table", "selection"), what="selected rows")
else:
    st.caption("Select rows (the boxes on the left) to open one large or mark them.")
