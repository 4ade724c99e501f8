"""The embedding map's selection, kept by the page rather than by the chart.

``st.plotly_chart`` identifies a chart by its figure, so any change of the figure (a colouring, a
review mark, a threshold, a projection) makes a new chart whose selection is empty. The page
wants the selection to outlive that, so :class:`MapSelection` keeps it in the session:

- before the chart is drawn it reads the chart's state (``st.session_state[chart_key]``, what the
  browser sent last) and adopts a new box, lasso or click; an emptied selection of an unchanged
  chart (a double-click on the map) clears it;
- it says which points to draw as selected: the kept ones when the figure changes anyway (the
  new chart then shows them), else what was drawn last time, so an unchanged figure stays the
  same chart and keeps the user's zoom, tool and own selection.
"""
from __future__ import annotations

import hashlib

import numpy as np
import streamlit as st

from ood_dashboard.explain_views import selection_positions

_EMPTY = np.empty(0, dtype=np.int64)


def figure_token(*parts) -> str:
    """A digest naming a figure by what it is drawn from (arrays by their bytes, the rest by repr)."""
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        data = part.tobytes() if isinstance(part, np.ndarray) else repr(part).encode()
        digest.update(len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()


class MapSelection:
    """The positions selected on one map, kept under ``state_key`` (e.g. a ``run_key``, so a new run
    starts with none) for the chart drawn with ``chart_key``."""

    def __init__(self, state_key: str, chart_key: str):
        self.state_key, self.chart_key = state_key, chart_key

    def _state(self) -> dict:
        return st.session_state.setdefault(self.state_key, {
            "kept": _EMPTY, "seen": _EMPTY, "token": None, "drawn": None, "generation": 0})

    def update(self, token: str) -> tuple[np.ndarray, np.ndarray | None]:
        """Call once per run before drawing the chart whose figure ``token`` names. Returns the
        selection (positions, ascending) and what to pass as the figure's selected points."""
        state = self._state()
        token = f"{token}:{state['generation']}"
        same_chart = token == state["token"]
        latest = selection_positions(st.session_state.get(self.chart_key))
        if not np.array_equal(latest, state["seen"]):
            if len(latest):
                state["kept"] = latest  # a new box, lasso or click
            elif same_chart:
                state["kept"] = _EMPTY  # the user emptied this chart's selection
            state["seen"] = latest
        if not same_chart:  # a new chart: it starts empty and shows the kept selection
            state["token"], state["seen"] = token, _EMPTY
            state["drawn"] = state["kept"] if len(state["kept"]) else None
        return state["kept"], state["drawn"]

    def clear(self) -> None:
        """Forget the selection (a button's ``on_click``); the next chart is drawn afresh."""
        state = self._state()
        state.update(kept=_EMPTY, generation=state["generation"] + 1)
