"""Tiny Streamlit app for the browser test of ood_dashboard.threshold_histogram.

Run by hand: ``streamlit run tests/browser_app.py``. Shows the component on
seeded synthetic scores inside an ``st.fragment`` (as the dashboard pages do),
with a percentile number input kept in sync both ways with the line:
percentile -> threshold by ``numpy.percentile`` of the fit scores, threshold ->
percentile by the share of fit scores strictly below it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
INITIAL_PERCENTILE = 5.0


def synthetic_scores(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fit scores (mostly typical, high) and query scores with 20% atypical (low)."""
    rng = np.random.default_rng(seed)
    fit = rng.beta(6, 2, size=2000)
    query = np.concatenate([rng.beta(6, 2, size=800), rng.beta(2, 5, size=200)])
    return fit, query


def percentile_of(fit: np.ndarray, threshold: float) -> float:
    """Percent of fit scores strictly below ``threshold``, rounded to 2 decimals."""
    return round(float(np.mean(fit < threshold) * 100), 2)


def main() -> None:
    if str(ROOT) not in sys.path:  # `streamlit run` puts only tests/ on sys.path
        sys.path.insert(0, str(ROOT))
    import streamlit as st

    from ood_dashboard.threshold_histogram import threshold_histogram

    st.set_page_config(page_title="threshold histogram test", layout="centered")
    st.title("Threshold histogram")
    fit, query = synthetic_scores()

    if "percentile" not in st.session_state:
        st.session_state.percentile = INITIAL_PERCENTILE
        st.session_state.threshold = float(np.percentile(fit, INITIAL_PERCENTILE))

    def on_percentile() -> None:
        st.session_state.threshold = float(np.percentile(fit, st.session_state.percentile))

    def on_drag(x: float) -> None:
        st.session_state.threshold = x
        st.session_state.percentile = percentile_of(fit, x)

    @st.fragment
    def threshold_area() -> None:
        dragged = threshold_histogram(
            fit,
            query,
            st.session_state.threshold,
            key="histogram",
            percentile=st.session_state.percentile,
            on_change=on_drag,
        )
        st.number_input(
            "Percentile",
            min_value=0.0,
            max_value=100.0,
            step=0.5,
            format="%.2f",
            key="percentile",
            on_change=on_percentile,
        )
        threshold = st.session_state.threshold
        st.write(f"threshold: {threshold!r}")
        st.write(f"test flagged: {int(np.count_nonzero(query < threshold))}")
        st.write(f"train flagged: {int(np.count_nonzero(fit < threshold))}")
        st.write(f"last drag: {dragged!r}")

    threshold_area()


if __name__ == "__main__":  # `streamlit run` executes the script as __main__
    main()
