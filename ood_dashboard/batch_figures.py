"""Figures of the Batches page: plain records in, plotly figures out (no Streamlit)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from ood_dashboard.markup import plotly_text
from ood_dashboard.figures import _GRID_COLOR, _MARGIN, _SET_COLORS, _THRESHOLD_COLOR

_BAND_COLOR = "rgba(76, 120, 168, 0.18)"


def batch_history_figure(history: Sequence[Mapping[str, Any]], scorer: str, *, height: int = 320) -> go.Figure:
    """The flagged rate (%) of every past check of a reference for ``scorer``, oldest first, over the
    band ``level`` of in-distribution batches of each check's size fall in, and the expected rate.

    ``history``: the rows of ``ood_core.reference.read_history`` (``checked_at``, ``batch_name``,
    ``n``, ``alarm``, ``p_value``, ``{scorer}_flagged_rate``, ``_expected_rate``, ``_interval``).
    Checks that alarmed are drawn red; checks without ``scorer`` are left out. One x position per
    check, labelled by its number and time, so checks minutes apart stay apart."""
    rows = [r for r in history if r.get(f"{scorer}_flagged_rate") is not None and r.get(f"{scorer}_interval")]
    x = [f"#{r['id']} {str(r['checked_at'])[:16].replace('T', ' ')}" for r in rows]
    lo = [100 * r[f"{scorer}_interval"][0] for r in rows]
    hi = [100 * r[f"{scorer}_interval"][1] for r in rows]
    rate = [100 * r[f"{scorer}_flagged_rate"] for r in rows]
    expected = [100 * r[f"{scorer}_expected_rate"] for r in rows]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=hi, mode="lines", line=dict(width=0, shape="hvh"), hoverinfo="skip",
                             showlegend=False))
    fig.add_trace(go.Scatter(x=x, y=lo, mode="lines", line=dict(width=0, shape="hvh"), fill="tonexty",
                             fillcolor=_BAND_COLOR, name="95% of in-distribution batches", hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=x, y=expected, mode="lines", line=dict(color=_SET_COLORS[0], dash="dash"),
                             name="expected rate", hoverinfo="skip"))
    fig.add_trace(go.Scatter(
        x=x, y=rate, mode="markers+lines", name="flagged rate",
        line=dict(color="rgba(128, 128, 128, 0.6)", width=1),
        marker=dict(size=10, color=[_THRESHOLD_COLOR if r["alarm"] else _SET_COLORS[0] for r in rows],
                    symbol=["x" if r["alarm"] else "circle" for r in rows]),
        customdata=[[plotly_text(r["batch_name"]), r["n"], lo_, hi_, r["p_value"], "ALARM" if r["alarm"] else "no alarm"]
                    for r, lo_, hi_ in zip(rows, lo, hi)],
        hovertemplate=("%{customdata[0]}<br>%{y:.1f}% of %{customdata[1]:,} flagged "
                       "(expected %{customdata[2]:.1f}% to %{customdata[3]:.1f}%)<br>"
                       "p = %{customdata[4]:.3g}: %{customdata[5]}<extra></extra>")))
    fig.update_layout(height=height, margin=_MARGIN, legend=dict(orientation="h", y=1.12, x=0),
                      xaxis=dict(title="check", type="category", showgrid=False),
                      yaxis=dict(title=f"{scorer} score: flagged (%)", rangemode="tozero", gridcolor=_GRID_COLOR))
    return fig


__all__ = ["batch_history_figure"]
