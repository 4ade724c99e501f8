"""Outlier explorer: the dashboard, from a checkout. The app itself is ``ood_dashboard/app.py``.

    streamlit run app.py
    streamlit run app.py -- --source path/to/images   # open a dataset in every new session
"""
from ood_dashboard.app import main

main()
