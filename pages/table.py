"""Every item in one table: scores, flags, class, set and review mark; select rows to open or mark them."""
import numpy as np
import streamlit as st

import ood_core
from ui import review
from ui.session import persistent, require_analysis, sync_threshold

PAGE_ROWS = 1_000  # rows drawn at once; the rest are a page away

st.title("All items")
st.write("Every scored image with both scores, whether the current thresholds flag it, and your review mark. "
         "Sort by a column header; select rows to open one large or to mark them all.")

analysis = require_analysis()
thresholds = {scorer: sync_threshold(analysis, scorer) for scorer in analysis.scorers}
item_marks = review.marks(analysis)

# ---- filters
c1, c2, c3 = st.columns(3)
sets = {"all": "all items", "fit": "train (fit)", "query": "test (query)"}
which_set = c1.selectbox("Items", list(sets), format_func=sets.get, key="table_set",
                         on_change=persistent("table_set", "all"))
flagged_only = c2.toggle(f"Only flagged by the {ood_core.SCORERS['feature'].lower()}", key="table_flagged",
                         on_change=persistent("table_flagged", False))
shown_review = c3.selectbox("Review", list(review.FILTERS), format_func=review.FILTERS.get, key="table_review",
                            on_change=persistent("table_review", "all"))

positions = np.union1d(analysis.fit_index, analysis.query_index)
if which_set != "all":
    positions = analysis.fit_index if which_set == "fit" else analysis.query_index
scores = {scorer: analysis.item_scores(scorer) for scorer in analysis.scorers}
if flagged_only:
    positions = positions[scores["feature"][positions] < thresholds["feature"]]
positions = positions[review.shown(positions, item_marks, analysis.ids, shown_review)]
positions = positions[np.lexsort((positions, scores["feature"][positions]))]  # most atypical first

pages = max(1, -(-len(positions) // PAGE_ROWS))
page = st.number_input(f"Page (of {pages:,}; {PAGE_ROWS:,} rows each)", min_value=1, max_value=pages, value=1,
                       key=f"table_page_{which_set}_{flagged_only}_{shown_review}") if pages > 1 else 1
rows = positions[(page - 1) * PAGE_ROWS: page * PAGE_ROWS]
fit = set(analysis.fit_index.tolist())
table = {"position": rows, "id": [analysis.ids[p] for p in rows],
         "class": [analysis.class_name(p) for p in rows],
         "set": ["train" if p in fit else "test" for p in rows]}
for scorer in analysis.scorers:
    table[f"{scorer} score"] = scores[scorer][rows]
    table[f"{scorer} flagged"] = scores[scorer][rows] < thresholds[scorer]
table["review"] = [item_marks[analysis.ids[p]].verdict if analysis.ids[p] in item_marks else "" for p in rows]
table["note"] = [item_marks[analysis.ids[p]].note if analysis.ids[p] in item_marks else "" for p in rows]

st.caption(f"{len(positions):,} items" + (f"; showing rows {(page - 1) * PAGE_ROWS + 1:,} to "
                                          f"{min(page * PAGE_ROWS, len(positions)):,}" if pages > 1 else ""))
event = st.dataframe(table, hide_index=True, on_select="rerun", selection_mode="multi-row", key="table_rows",
                     column_config={f"{s} score": st.column_config.NumberColumn(format="%.4f") for s in scores})
selected = rows[np.asarray(event.selection.rows, dtype=np.int64)] if event.selection.rows else rows[:0]

# ---- what to do with the selection
if len(selected):
    if st.button(f"Open #{selected[0]} large", icon=":material/open_in_full:", key="table_open"):
        review.item_view(analysis, int(selected[0]))
    review.bulk_buttons(analysis, selected, key="table", what="selected rows")
else:
    st.caption("Select rows (the boxes on the left) to open one large or mark them.")
