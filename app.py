"""Outlier explorer: entry point. Sets up navigation and the session's starting dataset.

    streamlit run app.py
"""
import streamlit as st

st.set_page_config(page_title="Outlier explorer", page_icon=":material/query_stats:", layout="wide")

from ui.grid import GRID_CSS  # noqa: E402  (after set_page_config)
from ui.session import adopt_finished_run, ensure_default_analysis, sidebar_summary  # noqa: E402

pages = [
    st.Page("pages/data.py", title="Data & model", icon=":material/dataset:", default=True),
    st.Page("pages/feature_scores.py", title="Feature scores", icon=":material/hub:"),
    st.Page("pages/prediction_scores.py", title="Prediction scores", icon=":material/psychology:"),
    st.Page("pages/neighbours.py", title="Why this one?", icon=":material/travel_explore:"),
    st.Page("pages/compare.py", title="Compare scores", icon=":material/compare_arrows:"),
    st.Page("pages/embedding_map.py", title="Embedding map", icon=":material/scatter_plot:"),
    st.Page("pages/per_class.py", title="Per class", icon=":material/category:"),
]
navigation = st.navigation(pages)
st.html(GRID_CSS)  # crisp thumbnails, compact grid cells
ensure_default_analysis()
adopt_finished_run()
sidebar_summary()
navigation.run()
