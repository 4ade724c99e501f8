"""Figure builders and small pure helpers for the explain pages (why this one, compare,
embedding map, per class): plain arrays in, plotly figures or plain values out. No Streamlit.

Every scatter stores the item's position (into ``analysis.ids``) as the point's ``customdata``,
so a box or lasso selection maps back to items with :func:`selection_positions`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ood_dashboard.figures import _MARGIN, _SET_COLORS, _THRESHOLD_COLOR, _scores_1d
from ood_dashboard.groups import DEFAULT_GROUP_COLORS, group_order
from ood_dashboard.groups import group_colors as fill_group_colors
from ood_dashboard.markup import plotly_text

__all__ = [
    "MAX_MAP_POINTS",
    "QUADRANT_TITLES",
    "class_histograms_figure",
    "embedding_map_figure",
    "neighbour_distance_figure",
    "score_scatter_figure",
    "selection_positions",
    "verdict",
]

#: Most points the embedding map draws; larger sets are subsampled (and the page says so).
MAX_MAP_POINTS = 5_000
#: Above this many points a scatter is drawn with WebGL.
_WEBGL_ABOVE = 5_000

QUADRANT_TITLES = {
    "both": "Flagged by both",
    "feature_only": "Features only",
    "prediction_only": "Predictions only",
    "neither": "Neither",
}

_IN_COLOR, _OUT_COLOR = _SET_COLORS
_FIT_COLOR = "rgba(140, 140, 140, 0.45)"
_GLOBAL_COLOR = "#555555"


def _vector(values, name: str) -> np.ndarray:
    """A 1-D float64 array; empty and NaN allowed (a map's items in neither set score NaN)."""
    return _scores_1d(values, name, allow_empty=True, finite=False)


def _scatter(n: int):
    return go.Scattergl if n > _WEBGL_ABOVE else go.Scatter


# ---------------------------------------------------------------- why this one
def verdict(result: Mapping[str, Any]) -> str:
    """One sentence saying whether the item explained by ``Analysis.explain`` is flagged, and why.

    Flagged means score < threshold, which is the same as a mean distance to the ``k_score``
    nearest train (fit) images larger than the threshold's distance.
    """
    k = result["k_score"]
    own = " (itself excluded)" if result.get("is_fit") else ""
    d, s = result["mean_distance"], result["score"]
    if result.get("threshold") is None:
        return f"Mean distance to its {k} nearest train (fit) images{own}: {d:.4f} (score {s:.4f})."
    td, t = result["threshold_distance"], result["threshold"]
    if result["flagged"]:
        return (f"Flagged: its mean distance to its {k} nearest train (fit) images{own}, {d:.4f}, is larger "
                f"than the threshold's distance {td:.4f} (score {s:.4f} < threshold {t:.4f}).")
    return (f"Not flagged: its mean distance to its {k} nearest train (fit) images{own}, {d:.4f}, is within "
            f"the threshold's distance {td:.4f} (score {s:.4f} ≥ threshold {t:.4f}).")


def neighbour_distance_figure(distances, mean_distance: float, threshold_distance: float | None = None,
                              k_score: int | None = None, labels: Sequence[str] | None = None) -> go.Figure:
    """Bars of the distance to each neighbour (nearest first), with the item's mean distance over
    its ``k_score`` nearest and the threshold's distance as horizontal lines."""
    d = _vector(distances, "distances")
    ranks = np.arange(1, len(d) + 1)
    k_score = len(d) if k_score is None else int(k_score)
    colors = np.where(ranks <= k_score, _IN_COLOR, "rgba(76, 120, 168, 0.35)")
    fig = go.Figure(go.Bar(x=ranks, y=d, marker_color=colors.tolist(), name="distance",
                           text=None if labels is None else [plotly_text(t) for t in labels],
                           hovertemplate="neighbour %{x}: distance %{y:.4f}<extra></extra>"))
    fig.add_hline(y=float(mean_distance), line=dict(color=_IN_COLOR, width=2),
                  annotation_text=f"its mean distance (k={k_score}): {mean_distance:.4f}",
                  annotation_position="top left", annotation=dict(bgcolor="rgba(255,255,255,0.85)"))
    if threshold_distance is not None:
        fig.add_hline(y=float(threshold_distance), line=dict(color=_THRESHOLD_COLOR, width=2, dash="dash"),
                      annotation_text=f"threshold's distance: {threshold_distance:.4f}",
                      annotation_position="bottom right",
                      annotation=dict(bgcolor="rgba(255,255,255,0.85)", font=dict(color=_THRESHOLD_COLOR)))
    top = max([float(d.max()) if len(d) else 0.0, float(mean_distance), float(threshold_distance or 0.0)])
    fig.update_layout(height=260, margin=_MARGIN, showlegend=False, bargap=0.15,
                      xaxis=dict(title="neighbour (nearest first)", dtick=1),
                      yaxis=dict(title="distance", range=[0, top * 1.15 or 1.0]))
    return fig


# ---------------------------------------------------------------- compare
def score_scatter_figure(
    feature_scores, pred_scores, feature_threshold: float, pred_threshold: float, *,
    positions=None, is_ood=None, fit_feature_scores=None, fit_pred_scores=None, fit_positions=None,
    counts: Mapping[str, int] | None = None,
) -> go.Figure:
    """Feature score (x) against prediction score (y) of the query items, coloured by ``is_ood``
    when given, optionally over the fit items in grey; both thresholds as dashed lines and the
    quadrant names (with ``counts``) in the corners. Lower = more atypical on both axes, so the
    items flagged by both sit bottom-left."""
    x, y = _vector(feature_scores, "feature_scores"), _vector(pred_scores, "pred_scores")
    if len(x) != len(y):
        raise ValueError(f"feature_scores has {len(x)} values but pred_scores has {len(y)}; they must match")
    positions = np.arange(len(x)) if positions is None else np.asarray(positions, dtype=np.int64)
    fig = go.Figure()
    hover = "feature %{x:.4f}<br>prediction %{y:.4f}<br>#%{customdata}<extra>%{fullData.name}</extra>"
    if fit_feature_scores is not None and fit_pred_scores is not None:
        fx, fy = _vector(fit_feature_scores, "fit_feature_scores"), _vector(fit_pred_scores, "fit_pred_scores")
        fpos = np.arange(len(fx)) if fit_positions is None else np.asarray(fit_positions, dtype=np.int64)
        fig.add_trace(_scatter(len(fx))(x=fx, y=fy, mode="markers", name="train (fit)", customdata=fpos,
                                        marker=dict(size=5, color=_FIT_COLOR), hovertemplate=hover))
    if is_ood is None:
        groups = [("test (query)", np.ones(len(x), bool), _IN_COLOR)]
    else:
        truth = np.asarray(is_ood, dtype=bool)
        groups = [("test: in distribution", ~truth, _IN_COLOR), ("test: out of distribution", truth, _OUT_COLOR)]
    for name, mask, color in groups:
        fig.add_trace(_scatter(int(mask.sum()))(
            x=x[mask], y=y[mask], mode="markers", name=name, customdata=positions[mask],
            marker=dict(size=6, color=color, opacity=0.75, line=dict(width=0)), hovertemplate=hover))
    line = dict(color=_THRESHOLD_COLOR, width=2, dash="dash")
    fig.add_vline(x=float(feature_threshold), line=line)
    fig.add_hline(y=float(pred_threshold), line=line)
    corners = {"both": (0.01, 0.01, "left", "bottom"), "feature_only": (0.01, 0.99, "left", "top"),
               "prediction_only": (0.99, 0.01, "right", "bottom"), "neither": (0.99, 0.99, "right", "top")}
    for q, (ax, ay, xa, ya) in corners.items():
        text = QUADRANT_TITLES[q] + ("" if counts is None else f": {counts[q]:,}")
        fig.add_annotation(x=ax, y=ay, xref="paper", yref="paper", xanchor=xa, yanchor=ya, text=text,
                           showarrow=False, font=dict(size=12, color="#333"), bgcolor="rgba(255,255,255,0.7)")
    # Both axes from 0 to a little past the largest score or threshold drawn (scores lie in [0, 1]).
    def top(values, threshold: float) -> float:
        return min(1.02, max([float(threshold)] + [float(np.max(v)) for v in values if len(v)]) * 1.08 + 0.02)

    fig.update_layout(height=460, margin=_MARGIN, legend=dict(orientation="h", y=1.08, x=0),
                      xaxis=dict(title="feature score (KNN)",
                                 range=[-0.02, top([t.x for t in fig.data], feature_threshold)]),
                      yaxis=dict(title="prediction score (pred_probs)",
                                 range=[-0.02, top([t.y for t in fig.data], pred_threshold)]),
                      dragmode="zoom")
    return fig


# ---------------------------------------------------------------- embedding map
def embedding_map_figure(coords, scores, positions, threshold: float, *, score_label: str = "score",
                         method_title: str = "PCA", groups: Sequence[str] | None = None,
                         group_colors: Mapping[str, str] | None = None, background: Sequence[str] = (),
                         hover: Sequence[str] | None = None, selected=None) -> go.Figure:
    """The 2-D map: one point per item at ``coords``. Each point's ``customdata`` is its position;
    a click, a box or a lasso selects (drag zooms; the box and lasso tools are in the toolbar).

    Without ``groups``: coloured by score (low = atypical = dark), flagged items (score <
    threshold) drawn on top as larger diamonds with a red outline. With ``groups`` (one name per
    point, e.g. :func:`ood_dashboard.groups.item_groups`): one trace per group in ``group_colors`` (legend in
    its order; groups it lacks get palette colours; default: truth and review marks), the ``background`` groups
    small and faint
    underneath, the others drawn in reverse order so the first (e.g. ``outlier``) is on top, and
    the flagged items ringed by open red diamonds (a trace of their own, hidden by a legend click).
    ``hover``: one line per point (text, shown as text) above its score in the hover label.
    ``selected``: positions drawn as selected (the others dimmed), e.g. a selection kept by the page."""
    xy = np.asarray(coords, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"coords must have shape (n, 2); got {xy.shape}")
    s = _vector(scores, "scores")
    pos = np.asarray(positions, dtype=np.int64)
    if not len(s) == len(pos) == len(xy):
        raise ValueError(f"coords, scores and positions must have one row per point; got {len(xy)}, "
                         f"{len(s)} and {len(pos)}")
    for name, values in (("groups", groups), ("hover", hover)):
        if values is not None and len(values) != len(pos):
            raise ValueError(f"{name} has {len(values)} entries but there are {len(pos)} points; give one per point")
    flagged = s < float(threshold)
    label = None if hover is None else np.array([plotly_text(h) for h in hover], dtype=object)
    first = "#%{customdata}" + ("" if label is None else " · %{text}")
    fig = go.Figure()

    chosen = None if selected is None or not len(selected) else np.asarray(selected, dtype=np.int64)

    def points(mask, name, marker, text, dim: float = 0.25, **extra):
        """One trace of the points in ``mask``; unselected ones (when some are selected) at opacity ``dim``."""
        extra["unselected"] = dict(marker=dict(opacity=dim))
        if chosen is not None:
            extra["selectedpoints"] = np.flatnonzero(np.isin(pos[mask], chosen))
        return _scatter(int(mask.sum()))(
            x=xy[mask, 0], y=xy[mask, 1], mode="markers", name=name, customdata=pos[mask], marker=marker,
            text=None if text is None else text[mask], **extra)

    legend = dict(orientation="h", y=1.06, x=0)  # "typical" and "flagged", left of the toolbar
    if groups is None:
        lo, hi = (float(np.nanmin(s)), float(np.nanmax(s))) if len(s) else (0.0, 1.0)
        color = dict(colorscale="Viridis", cmin=lo, cmax=hi if hi > lo else lo + 1e-9)
        template = f"{first}<br>{score_label} %{{marker.color:.4f}}<extra>%{{fullData.name}}</extra>"
        for name, mask, marker in (
            ("typical", ~flagged, dict(size=6, opacity=0.8, **color)),
            ("flagged", flagged, dict(size=10, symbol="diamond", line=dict(color=_THRESHOLD_COLOR, width=1.5),
                                      **color)),
        ):
            marker = dict(marker, color=s[mask])
            if name == "typical":
                marker["colorbar"] = dict(title=dict(text=score_label, side="right"), thickness=14)
            fig.add_trace(points(mask, name, marker, label, hovertemplate=template))
    else:
        names = np.asarray(list(groups), dtype=object)
        group_colors = DEFAULT_GROUP_COLORS if group_colors is None else group_colors
        order = group_order(names.tolist(), group_colors)
        colors = fill_group_colors(order, group_colors)
        # one text per point: its line, then its score (the marker colour is the group's here)
        text = np.array([(f"{label[i]}<br>" if label is not None else "")
                         + (f"{score_label} {v:.4f}" if np.isfinite(v) else "") for i, v in enumerate(s)],
                        dtype=object)
        template = "#%{customdata} · %{text}<extra>%{fullData.name}</extra>"
        drawn = [g for g in order if g in background] + [g for g in reversed(order) if g not in background]
        for group in drawn:
            mask = names == group
            faint = group in background
            marker = dict(size=5 if faint else 7, opacity=0.35 if faint else 0.9, color=colors[group])
            fig.add_trace(points(mask, f"{plotly_text(group)} ({int(mask.sum()):,})", marker, text, 0.1 if faint else 0.3,
                                 hovertemplate=template, legendrank=order.index(group) + 1))
        ring = dict(size=11, symbol="diamond-open", color=_THRESHOLD_COLOR, opacity=0.6, line=dict(width=1))
        fig.add_trace(points(flagged, f"flagged ({int(flagged.sum()):,})", ring, text, 0.15,
                             hovertemplate=template, legendrank=len(order) + 1))
        legend = dict(x=1.01, y=1, xanchor="left", yanchor="top", itemsizing="constant")  # a list on the right
    # Zoom by default: Streamlit lets a click select a point only outside box and lasso mode.
    fig.update_layout(height=560, margin=_MARGIN, dragmode="zoom", legend=legend,
                      xaxis=dict(title=f"{method_title} 1", zeroline=False, showticklabels=False),
                      yaxis=dict(title=f"{method_title} 2", zeroline=False, showticklabels=False))
    return fig


def selection_positions(event: Mapping[str, Any] | None) -> np.ndarray:
    """Positions (into ``analysis.ids``) of the points held by a plotly selection event, as
    ``st.plotly_chart(..., on_select="rerun")`` returns it: unique, ascending, int64.

    Each point's ``customdata`` is its position (the builders above store it there on every
    trace); a point without one is skipped. An empty or missing event gives an empty array.
    """
    if not event:
        return np.empty(0, dtype=np.int64)
    selection = event.get("selection") or {}
    found: list[int] = []
    for point in selection.get("points") or []:
        custom = point.get("customdata")
        if isinstance(custom, (list, tuple)):
            custom = custom[0] if custom else None
        if custom is not None:
            found.append(int(custom))
    return np.unique(np.asarray(found, dtype=np.int64))


# ---------------------------------------------------------------- per class
def class_histograms_figure(classes: Sequence[Mapping[str, Any]], global_threshold: float, *,
                            columns: int = 3, bins: int = 30, score_label: str = "score") -> go.Figure:
    """Small multiples, one panel per class: the fit items of that class and the query items
    predicted as it (each as a share of its own count, on one shared x range), the class's
    threshold (solid red) and the global threshold (dashed grey).

    ``classes``: dicts with ``name``, ``fit_scores``, ``query_scores`` and ``threshold`` (or
    None when class-conditional thresholds are off).
    """
    if not classes:
        raise ValueError("classes is empty; pass at least one class to draw")
    arrays = [_vector(c["fit_scores"], "fit_scores") for c in classes] + \
             [_vector(c["query_scores"], "query_scores") for c in classes]
    nonempty = [a for a in arrays if len(a)]
    lo = min([float(a.min()) for a in nonempty] + [float(global_threshold)])
    hi = max([float(a.max()) for a in nonempty] + [float(global_threshold)])
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    centres, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
    columns = max(1, min(int(columns), len(classes)))
    rows = -(-len(classes) // columns)
    fig = make_subplots(rows=rows, cols=columns, shared_xaxes=True, vertical_spacing=0.12 if rows > 1 else 0.1,
                        horizontal_spacing=0.05,
                        subplot_titles=[f"{plotly_text(c['name'])} ({len(c['fit_scores'])} train, {len(c['query_scores'])} test)"
                                        for c in classes])
    for i, c in enumerate(classes):
        r, col = i // columns + 1, i % columns + 1
        for j, (key, name, color) in enumerate((("fit_scores", "train (fit), by label", _IN_COLOR),
                                                ("query_scores", "test (query), by predicted class", _OUT_COLOR))):
            values = _vector(c[key], key)
            share = np.histogram(values, edges)[0] / max(len(values), 1)
            fig.add_trace(go.Bar(x=centres, y=share, width=width, name=name, marker_color=color, opacity=0.6,
                                 legendgroup=key, showlegend=i == 0,
                                 hovertemplate=f"{name}<br>{score_label} %{{x:.3f}}: %{{y:.1%}}<extra></extra>"),
                          row=r, col=col)
        fig.add_vline(x=float(global_threshold), line=dict(color=_GLOBAL_COLOR, width=1.5, dash="dash"), row=r, col=col)
        if c.get("threshold") is not None:
            fig.add_vline(x=float(c["threshold"]), line=dict(color=_THRESHOLD_COLOR, width=2), row=r, col=col)
    fig.update_layout(barmode="overlay", height=max(260, 210 * rows + 60), margin=dict(l=40, r=16, t=60, b=40),
                      legend=dict(orientation="h", y=1.0 + 40 / max(260, 210 * rows + 60), x=0, yanchor="bottom"),
                      bargap=0)
    fig.update_yaxes(tickformat=".0%")
    fig.update_annotations(font_size=12)
    return fig
