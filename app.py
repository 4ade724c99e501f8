"""Outlier explorer: entry point. Sets up navigation and the session's starting dataset.

    streamlit run app.py
"""
import streamlit as st

st.set_page_config(page_title="Outlier explorer", page_icon="🔎", layout="wide")

from ui.state import ensure_default_analysis  # noqa: E402  (after set_page_config)

pages = [
    st.Page("pages/data.py", title="Data & model", icon="🗂️", default=True),
    st.Page("pages/feature_scores.py", title="Feature scores", icon="📏"),
    st.Page("pages/prediction_scores.py", title="Prediction scores", icon="🎯"),
]
navigation = st.navigation(pages)
ensure_default_analysis()
navigation.run()
