"""The outlier explorer's dashboard (Streamlit), one module per job (see ARCHITECTURE.md): ``app``
(the main script: navigation, starting dataset), ``navigation`` + ``views/`` (the pages), ``state``
(every session-state key), ``runs`` (runs computed once per server), ``session`` (one browser
session's state), ``uploads`` (uploads and the folder sandbox), ``figures`` / ``explain_views``
(pure figure builders), ``thumbnails`` and ``grid`` (image grids), ``review`` (marks),
``threshold_histogram`` (the draggable-line component) and ``score_page``. This package re-exports
nothing, so importing ``ood_dashboard.figures`` does not pull in Streamlit.
"""
