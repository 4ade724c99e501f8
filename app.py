"""Outlier explorer: entry point. Sets up navigation and the session's starting dataset.

    streamlit run app.py
"""
import streamlit as st

# The tab icon is drawn here (a histogram with a threshold line), not taken from a ":material/...:"
# name: Streamlit fetches those favicons from fonts.gstatic.com, and nothing may leave localhost.
FAVICON_SVG = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24">
<rect x="2" y="14" width="4" height="8" rx="1" fill="#4c78a8"/>
<rect x="8" y="7" width="4" height="15" rx="1" fill="#4c78a8"/>
<rect x="14" y="4" width="4" height="18" rx="1" fill="#4c78a8"/>
<rect x="20" y="11" width="3" height="11" rx="1" fill="#4c78a8"/>
<rect x="6.5" y="1" width="1.5" height="22" fill="#d6336c"/>
</svg>"""
# Page layout: narrower side margins than Streamlit's wide default (more room at 1280 px), and
# metric labels and values that wrap onto a second line rather than end in an ellipsis.
PAGE_CSS = """<style>
@media (min-width: 640px) {
  [data-testid='stMainBlockContainer'] {padding-left: 3rem; padding-right: 3rem; padding-top: 4rem;}
}
[data-testid='stMetricValue'] {font-size: 2rem;}
[data-testid='stMetricValue'] :is(div, p),
[data-testid='stMetricLabel'] :is(div, p) {white-space: normal; overflow: visible; text-overflow: clip;}
</style>"""

st.set_page_config(page_title="Outlier explorer", page_icon=FAVICON_SVG, layout="wide")

from ui.grid import GRID_CSS  # noqa: E402  (after set_page_config)
from ui.session import adopt_finished_run, ensure_default_analysis, sidebar_summary  # noqa: E402

pages = [
    st.Page("pages/data.py", title="Data & model", icon=":material/dataset:", default=True),
    st.Page("pages/feature_scores.py", title="Feature scores", icon=":material/hub:"),
    st.Page("pages/prediction_scores.py", title="Prediction scores", icon=":material/psychology:"),
    st.Page("pages/neighbours.py", title="Why this one?", icon=":material/travel_explore:"),
    st.Page("pages/table.py", title="All items", icon=":material/table_rows:"),
    st.Page("pages/compare.py", title="Compare scores", icon=":material/compare_arrows:"),
    st.Page("pages/embedding_map.py", title="Embedding map", icon=":material/scatter_plot:"),
    st.Page("pages/per_class.py", title="Per class", icon=":material/category:"),
    st.Page("pages/models.py", title="Which model?", icon=":material/model_training:"),
]
navigation = st.navigation(pages)
st.html(PAGE_CSS + GRID_CSS)  # page margins, metrics; crisp thumbnails, compact grid cells
ensure_default_analysis()
adopt_finished_run()
sidebar_summary()
navigation.run()
