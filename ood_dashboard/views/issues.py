"""Data issues overview: counts per issue type, a few examples of each, which types overlap (with
each other and with the outlier scores), and the duplicate sets side by side."""
import numpy as np
import streamlit as st

from ood_core.issues import get_issue_type, list_issue_types
from ood_dashboard import review
from ood_dashboard.grid import image_grid
from ood_dashboard.issue_views import (compute_issues, duplicate_rows, flag_matrix, issue_counts, issue_threshold,
                                       overlap_table, sets_at)
from ood_dashboard.markup import escape
from ood_dashboard.navigation import page_path
from ood_dashboard.session import persistent, require_analysis
from ood_dashboard.state import page_key

EXAMPLES = 8  # images per issue type

st.title("Data issues")
st.write("Besides outliers: copies of one image, images filed under the wrong class, and images that are too "
         "dark, light, blurry, plain, grey or oddly sized. Each type scores every item in [0, 1] (lower = more "
         "severe) and flags those below its threshold; open a type to drag its threshold and review its images.")
analysis = require_analysis()
names = compute_issues(analysis)
missing = [n for n in list_issue_types() if n not in names]
if missing:
    st.caption("Not scored on this data: " + "; ".join(
        f"{escape(get_issue_type(n).title)} ({escape(analysis.issue_scores(n).info.get('unavailable', 'no item'))})"
        for n in missing))
if not names:
    st.info("No issue type can be scored on this data.")
    st.stop()

# ------------------------------------------------------------------ counts
st.subheader("Counts per issue type")
rows = issue_counts(analysis, names)
st.caption("Flagged at each type's current threshold (its default until you move it on the type's score page), "
           f"out of the items it scores ({len(analysis.ids):,} items in all); an item a type cannot score is counted "
           "as unscored, with why, and is never flagged.")
st.dataframe(rows, hide_index=True, key=page_key("issues", "counts"),
             column_config={"threshold": st.column_config.NumberColumn(format="%.4f"),
                            "default": st.column_config.NumberColumn(format="%.4f"),
                            "why the default": st.column_config.TextColumn(width="large"),
                            "why unscored": st.column_config.TextColumn(width="large")})

# ------------------------------------------------------------------ overlaps
st.subheader("Which issues overlap")
flags = flag_matrix(analysis, names)
titles = [get_issue_type(n).title for n in names]
st.caption("Items flagged by both the row and the column (a row against itself: its own count). The outlier "
           "scores count at their thresholds on the score pages, each item by its own set's score.")
st.dataframe(overlap_table(flags, titles), hide_index=True, key=page_key("issues", "overlap"))

# ------------------------------------------------------------------ examples
st.subheader("Examples")
item_marks = review.marks(analysis)
clean = [row["issue"] for row in rows if row["flagged"] == 0]
if clean:
    st.caption("None flagged at its threshold: " + escape(", ".join(clean)) + ".")
for row, name in zip(rows, names):
    if row["flagged"] == 0:
        continue
    found = analysis.issue_scores(name)
    flagged = np.flatnonzero(found.flagged(row["threshold"]))
    head = st.columns([4, 1], vertical_alignment="bottom")
    head[0].markdown(f"**{escape(row['issue'])}** · {row['flagged']:,} flagged · "
                     f"{escape(get_issue_type(name).description)}")
    head[1].page_link(page_path("issue_scores"), label="Open", icon=":material/arrow_forward:",
                      query_params={"type": name})
    worst = flagged[np.argsort(found.scores[flagged], kind="stable")[:EXAMPLES]]  # the most severe first
    image_grid(analysis, worst, found.scores[worst], key=page_key("issues", f"examples_{name}"),
               item_marks=item_marks)

# ------------------------------------------------------------------ duplicate sets
if "exact_duplicate" in names:
    st.subheader("Duplicate sets")
    sets = sets_at(analysis)
    leaks = [s for s in sets if s.in_fit_and_query]
    near = (f" and near duplicates below {issue_threshold(analysis, 'near_duplicate'):.4f}"
            if "near_duplicate" in names else "")
    st.caption(f"{len(sets):,} sets of exact copies{near}; {len(leaks):,} of them have items in both train and "
               "test (leakage). Each row: the copy to keep first, then the others.")
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    only_key, size_key = page_key("issues", "leaks_only"), page_key("issues", "sets_shown")
    only = c1.toggle("Only sets in both train and test", key=only_key, on_change=persistent(only_key, False))
    shown = c2.number_input("Sets shown", min_value=1, max_value=200, step=5, key=size_key,
                            on_change=persistent(size_key, 10))
    chosen = (leaks if only else sets)[:int(shown)]
    if chosen:
        duplicate_rows(analysis, chosen, page_key("issues", "duplicates"), item_marks)
    else:
        st.caption("No duplicate set" + (" spans train and test." if only else " at this threshold."))
