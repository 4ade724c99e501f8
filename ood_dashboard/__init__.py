"""The dashboard's helpers, one module per job (see ARCHITECTURE.md): ``runs`` (runs computed once
per server), ``session`` (one browser session's state), ``uploads`` (uploads and the folder
sandbox), ``figures`` / ``explain_views`` (pure figure builders), ``grid`` (image grids),
``threshold_histogram`` (the draggable-line component) and ``score_page``. This package
re-exports nothing, so importing ``ood_dashboard.figures`` does not pull in Streamlit.
"""
