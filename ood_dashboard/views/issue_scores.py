"""One issue type's score page (``/issue_scores?type=dark``): the outlier score pages' body
(``score_page.threshold_section`` and ``grid_section``: histogram with the draggable line, counts, grids, large view,
review marks, CSV) on the type's scores, which start at the type's default threshold."""
import numpy as np
import streamlit as st

from ood_core.issues import get_issue_type
from ood_dashboard.issue_views import (DUPLICATE_TYPES, compute_issues, issue_threshold, unscored_items,
                                       unscored_reasons)
from ood_dashboard.markup import escape
from ood_dashboard.navigation import page_path
from ood_dashboard.score_page import grid_section, threshold_section
from ood_dashboard.session import persistent, require_analysis
from ood_dashboard.state import URL_ISSUE_TYPE, page_key

TABLE_ROWS = 50

st.title("Issue scores")
analysis = require_analysis()
names = compute_issues(analysis)
if not names:
    st.info("No issue type can be scored on this data.")
    st.stop()

# the type: from the link (?type=dark) when it names a new one, else the one chosen last
type_key = page_key("issues", "type")
asked = st.query_params.get("type")
if asked is not None and asked != st.session_state.get(URL_ISSUE_TYPE):
    st.session_state[URL_ISSUE_TYPE] = asked
    if asked in names:
        st.session_state[type_key] = asked
    else:
        st.warning(f"The link's issue type {escape(asked)!r} is not scored on this data; the types are "
                   f"{escape(', '.join(names))}.")
keep_type = persistent(type_key, names[0], options=names)
issue = st.columns([1, 2])[0].selectbox("Issue type", names, format_func=lambda n: get_issue_type(n).title, key=type_key)
keep_type()  # kept for the next visit, however it was chosen (here or by a link)
if st.query_params.get("type") != issue:
    st.query_params["type"] = issue
st.session_state[URL_ISSUE_TYPE] = issue

spec, found = get_issue_type(issue), analysis.issue_scores(issue)
issue_threshold(analysis, issue)  # a new run (or type) starts at the type's default threshold
st.write(f"Low score: {escape(spec.description)}. Score in [0, 1], lower = more severe; flagged = score below the "
         "threshold. Drag the red line (or type a percentile of the train scores) and review the images on both "
         "sides of it. Marks are the same as on the outlier pages (one mark per image): mark an image *outlier* "
         "when it has the problem, *fine* when it does not.")
st.caption(f"Default threshold {found.threshold:.4f}: {escape(spec.reason)}.")
why_unscored = unscored_items(analysis, issue)  # position -> why: never flagged, never cleared
if not np.isfinite(analysis.scores(issue)[0]).any():
    st.info(f"No train (fit) item has a score for {escape(spec.title.lower())}, so there is no percentile of train "
            f"scores to set its threshold by: {escape(unscored_reasons(analysis, issue))}.")
    st.stop()

threshold_section(analysis, issue)
if why_unscored:
    st.subheader("Unscored items")
    st.caption(f"{len(why_unscored):,} of {len(analysis.ids):,} items have no {escape(spec.title.lower())} score: "
               "they are left out of the percentile and the histogram, and are neither flagged nor cleared.")
    listed = sorted(why_unscored)[:TABLE_ROWS]
    fit = np.zeros(len(analysis.ids), dtype=bool)
    fit[np.asarray(analysis.fit_index, dtype=np.int64)] = True
    st.dataframe({"position": listed, "id": [analysis.ids[p] for p in listed],
                  "set": ["train (fit)" if fit[p] else "test (query)" for p in listed],
                  "class": [analysis.class_name(p) for p in listed], "why unscored": [why_unscored[p] for p in listed]},
                 hide_index=True, key=page_key("issues", "unscored"),
                 column_config={"why unscored": st.column_config.TextColumn(width="large")})
    if len(why_unscored) > len(listed):
        st.caption(f"The first {len(listed):,} by position; every one is in the CSV below, with why.")
grid_section(analysis, issue)

# why the most severe items score as they do (independent of the threshold, which the section above moves alone)
st.subheader("Most severe items and why")
ranked = np.argsort(found.scores, kind="stable")[:min(TABLE_ROWS, int(found.scored.sum()))]  # NaN sort last
fit = np.zeros(len(analysis.ids), dtype=bool)
fit[np.asarray(analysis.fit_index, dtype=np.int64)] = True
st.dataframe({"position": ranked.tolist(), "id": [analysis.ids[p] for p in ranked],
              "set": ["train (fit)" if fit[p] else "test (query)" for p in ranked],
              "class": [analysis.class_name(p) for p in ranked], "score": found.scores[ranked].tolist(),
              "detail": [found.detail[p] for p in ranked]},
             hide_index=True, key=page_key("issues", "severe"),
             column_config={"score": st.column_config.NumberColumn(format="%.4f")})
if issue in DUPLICATE_TYPES:
    st.page_link(page_path("issues"), label="Duplicate sets side by side, with leakage between train and test",
                 icon=":material/content_copy:")
