"""Dashboard helpers: plotly figure builders and Streamlit components.

``ui.figures`` holds pure functions from plain arrays to plotly figures;
``ui.threshold_histogram`` the custom component with a draggable threshold
line. Nothing here is imported by ``ood_core``; import the submodules
directly (this package re-exports nothing, so importing ``ui.figures`` does
not pull in Streamlit).
"""
