"""Plotly figure builders for the dashboard: plain arrays in, figures out.

Pure functions (no Streamlit), so pages stay thin and the figures can be
tested or reused from a notebook. Histograms are binned here with numpy and
drawn as bars, so a figure for 50,000 scores carries a few hundred numbers,
not the raw arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from ood_dashboard.groups import DEFAULT_GROUP_COLORS, group_order
from ood_dashboard.groups import group_colors as fill_group_colors

__all__ = [
    "DEFAULT_LABELS",
    "THRESHOLD_SHAPE_NAME",
    "histogram_x_range",
    "roc_figure",
    "score_histogram_figure",
    "shared_bin_edges",
    "threshold_line_shape",
]

#: Legend names of the two score sets, in the order (fit, query).
DEFAULT_LABELS: tuple[str, str] = ("train (fit)", "test (query)")
#: ``name`` of the threshold line in ``layout.shapes``; the component's
#: JavaScript finds the draggable line by this name.
THRESHOLD_SHAPE_NAME = "threshold"

# Colours and margins shared with ood_dashboard.explain_views (their one home).
_SET_COLORS = ("#4C78A8", "#F58518")  # fit / in distribution, query / out of distribution
_THRESHOLD_COLOR = "#D62728"
_GRID_COLOR = "rgba(128, 128, 128, 0.25)"  # readable on light and dark themes
_MARGIN = dict(l=56, r=16, t=40, b=48)
# Axes never zoom (a drag on a chart means "move the line"), with a light grid and no zero line.
_AXIS = dict(fixedrange=True, showgrid=True, gridcolor=_GRID_COLOR, zeroline=False)


def _scores_1d(values, name: str, *, allow_empty: bool = False, finite: bool = True) -> np.ndarray:
    """Return ``values`` as a 1-D float64 array (finite unless ``finite=False``) or raise naming
    ``name``. Shared with :mod:`ood_dashboard.explain_views`."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{name} must be a 1-D array of numbers, got {type(values).__name__}"
        ) from exc
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got an array of shape {array.shape}")
    if array.size == 0 and not allow_empty:
        raise ValueError(f"{name} is empty; it needs at least one score")
    n_bad = int(np.count_nonzero(~np.isfinite(array))) if finite else 0
    if n_bad:
        raise ValueError(
            f"{name} has {n_bad} non-finite value(s) (NaN or inf) out of {array.size}; "
            "drop or fix them before plotting"
        )
    return array


def _finite_float(value, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a number, got {value!r}") from exc
    if not np.isfinite(number):
        raise ValueError(f"{name} must be finite, got {number}")
    return number


def shared_bin_edges(*score_arrays: np.ndarray, bins: int = 50) -> np.ndarray:
    """Equal-width bin edges spanning every array given (so all share one x grid).

    A degenerate range (all scores equal) is widened to one unit around the value.
    """
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    nonempty = [a for a in score_arrays if a.size]
    if not nonempty:
        raise ValueError("shared_bin_edges needs at least one non-empty score array")
    lo = min(float(a.min()) for a in nonempty)
    hi = max(float(a.max()) for a in nonempty)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, int(bins) + 1)


def _threshold_label(threshold: float, percentile: float | None) -> str:
    text = f"threshold {threshold:.4g}"
    if percentile is not None:
        text += f" (p{percentile:.4g})"
    return text


def _label_side(threshold: float, x_lo: float, x_hi: float) -> str:
    return "left" if threshold <= (x_lo + x_hi) / 2 else "right"


def score_histogram_figure(
    fit_scores,
    query_scores=None,
    threshold: float | None = None,
    *,
    percentile: float | None = None,
    labels: Sequence[str] = DEFAULT_LABELS,
    bins: int = 50,
    normalize: bool = True,
    height: int = 320,
    x_title: str = "score (lower = more atypical)",
    query_groups: Sequence[str] | None = None,
    group_colors: Mapping[str, str] | None = None,
) -> go.Figure:
    """Overlaid histograms of fit and query scores on shared bins, with a threshold line.

    Parameters
    ----------
    fit_scores, query_scores : 1-D arrays of finite scores. ``query_scores`` may be
        ``None`` (or empty) when fit and query are the same items: one histogram.
    threshold : x of the vertical threshold line (``None``: no line). The line is
        ``layout.shapes[0]``, named :data:`THRESHOLD_SHAPE_NAME`, spanning the
        plot height in paper coordinates (y 0..1).
    percentile : shown in the line's label when given.
    labels : legend names for (fit, query).
    bins : number of equal-width bins over the range of both arrays.
    normalize : bar height as percent of its own set (comparable when the sets
        differ in size) instead of raw counts; hover shows both.
    query_groups : one group name per query score (e.g. known truth or review mark; see
        :func:`ood_dashboard.groups.item_groups`), or per fit score when there are no query scores (fit and
        query the same items). The query bars are then stacked by group, one legend entry each
        (percent of the whole set, so the stack's outline is the ungrouped histogram), and the fit
        scores are drawn as a step outline on top. ``None``: one histogram per set.
    group_colors : colour per group; its order is the stacking order (bottom first). Groups it
        lacks get palette colours and come after it, sorted. Default:
        :data:`ood_dashboard.groups.DEFAULT_GROUP_COLORS` (known truth, then review marks).

    The x axis spans the scores and the threshold, and zoom is off (``fixedrange``)
    so that a mouse drag on the chart means "move the line", never "zoom".
    """
    fit = _scores_1d(fit_scores, "fit_scores")
    query = (
        np.empty(0)
        if query_scores is None
        else _scores_1d(query_scores, "query_scores", allow_empty=True)
    )
    groups = None if query_groups is None else _group_names(query_groups, query if query.size else fit)
    if isinstance(labels, str) or len(labels) != 2:
        raise ValueError(f"labels must be two names (fit, query), got {labels!r}")
    if isinstance(height, bool) or not isinstance(height, (int, np.integer)) or height < 100:
        raise ValueError(f"height must be an integer of at least 100 pixels, got {height!r}")
    if threshold is not None:
        threshold = _finite_float(threshold, "threshold")
    if percentile is not None:
        percentile = _finite_float(percentile, "percentile")

    edges = shared_bin_edges(fit, query, bins=bins)
    centers = (edges[:-1] + edges[1:]) / 2
    width = float(edges[1] - edges[0])
    lows, highs = edges[:-1], edges[1:]

    fig = go.Figure()
    if groups is not None:
        _stacked_bars(fig, edges, query if query.size else fit, groups, group_colors,
                      labels[1] if query.size else labels[0], normalize)
        if query.size:
            _step_outline(fig, edges, fit, labels[0], normalize)
    for scores, name, color in zip((fit, query), labels, _SET_COLORS):
        if scores.size == 0 or groups is not None:
            continue
        counts, _ = np.histogram(scores, bins=edges)
        heights = counts * (100.0 / scores.size) if normalize else counts
        fig.add_trace(
            go.Bar(
                x=centers,
                y=heights,
                width=width,
                name=f"{name} (n={scores.size:,})",
                marker=dict(color=color, line=dict(width=0)),
                opacity=0.6,
                customdata=np.column_stack([lows, highs, counts]),
                hovertemplate=(
                    f"{name}<br>score %{{customdata[0]:.4f}} to %{{customdata[1]:.4f}}"
                    "<br>%{customdata[2]:,} items"
                    + (" (%{y:.2f}%)" if normalize else "")
                    + "<extra></extra>"
                ),
            )
        )

    bin_lo, bin_hi = float(edges[0]), float(edges[-1])
    x_lo, x_hi = histogram_x_range(bin_lo, bin_hi, threshold)
    fig.update_layout(
        template="none",  # keeps the JSON small; styling below is explicit
        height=int(height),
        margin=_MARGIN,
        barmode="overlay",
        bargap=0,
        dragmode=False,
        hovermode="closest",
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)",
        legend=dict(orientation="h", x=0, y=1.02, xanchor="left", yanchor="bottom"),
        xaxis=dict(_AXIS, title=dict(text=x_title), range=[x_lo, x_hi]),
        yaxis=dict(_AXIS, title=dict(text="% of set" if normalize else "count"), rangemode="tozero"),
        # the bins' span, so that a threshold can be moved on a copy of this figure
        meta=dict(bin_range=[bin_lo, bin_hi]),
    )
    if threshold is not None:
        fig.add_shape(**threshold_line_shape(threshold, percentile, x_lo, x_hi))
    return fig


def _group_names(query_groups, scores: np.ndarray) -> np.ndarray:
    """The groups as an array of str, one per score, or a ValueError/TypeError naming the problem."""
    if isinstance(query_groups, (str, bytes)):
        raise TypeError("query_groups must be a sequence of group names, one per score, not one string")
    names = list(query_groups)
    if len(names) != scores.size:
        raise ValueError(f"query_groups has {len(names)} names but there are {scores.size} scores to group; "
                         "give one group name per score")
    bad = next((n for n in names if not isinstance(n, str)), None)
    if bad is not None:
        raise TypeError(f"query_groups must hold group names (str); got {bad!r} ({type(bad).__name__})")
    return np.asarray(names, dtype=object)


def _bin_hover(name: str, normalize: bool, share_of: str) -> str:
    """Hover text of one bin; ``customdata`` is (low edge, high edge, count), y the height."""
    return (f"{name}<br>score %{{customdata[0]:.4f}} to %{{customdata[1]:.4f}}<br>%{{customdata[2]:,}} items"
            + (f" (%{{y:.2f}}% of {share_of})" if normalize else "") + "<extra></extra>")


def _stacked_bars(fig: go.Figure, edges: np.ndarray, scores: np.ndarray, groups: np.ndarray,
                  colors: Mapping[str, str] | None, set_name: str, normalize: bool) -> None:
    """One bar trace per group, each stacked on the ones before it (explicit ``base``: the figure
    stays in overlay mode, so the fit outline is not stacked too). Counts per bin, not points."""
    colors = DEFAULT_GROUP_COLORS if colors is None else colors
    order = group_order(groups.tolist(), colors)
    palette = fill_group_colors(order, colors)
    centers, width = (edges[:-1] + edges[1:]) / 2, float(edges[1] - edges[0])
    base = np.zeros(len(centers))
    scale = 100.0 / scores.size if normalize else 1.0
    for rank, group in enumerate(order, start=2):
        counts, _ = np.histogram(scores[groups == group], bins=edges)
        heights = counts * scale
        fig.add_trace(go.Bar(
            x=centers, y=heights, base=base.copy(), width=width, legendrank=rank,
            name=f"{set_name} · {group} (n={int(counts.sum()):,})",
            marker=dict(color=palette[group], line=dict(width=0)), opacity=0.85,
            customdata=np.column_stack([edges[:-1], edges[1:], counts]),
            hovertemplate=_bin_hover(f"{set_name} · {group}", normalize, set_name),
        ))
        base += heights


def _step_outline(fig: go.Figure, edges: np.ndarray, scores: np.ndarray, name: str, normalize: bool) -> None:
    """The fit histogram as a step line (drawn over the stacked query bars, which fill the space)."""
    counts, _ = np.histogram(scores, bins=edges)
    heights = counts * (100.0 / scores.size) if normalize else counts.astype(np.float64)
    x = np.concatenate([edges[:1], edges[:-1], edges[-1:], edges[-1:]])
    y = np.concatenate([[0.0], heights, heights[-1:], [0.0]])
    custom = np.column_stack([edges[:-1], edges[1:], counts])
    custom = np.vstack([custom[:1], custom, custom[-1:], custom[-1:]])
    fig.add_trace(go.Scatter(
        x=x, y=y, mode="lines", line=dict(shape="hv", color=_SET_COLORS[0], width=2), legendrank=1,
        name=f"{name} (n={scores.size:,})", customdata=custom, hovertemplate=_bin_hover(name, normalize, name),
    ))


def histogram_x_range(bin_lo: float, bin_hi: float, threshold: float | None) -> tuple[float, float]:
    """The histogram's x range: the bins plus 2% padding, stretched to a threshold outside them.
    A threshold dragged to (and clamped at) an end leaves the range unchanged."""
    pad = 0.02 * (bin_hi - bin_lo)
    x_lo, x_hi = bin_lo - pad, bin_hi + pad
    if threshold is not None:
        x_lo, x_hi = min(x_lo, threshold), max(x_hi, threshold)
    return x_lo, x_hi


def threshold_line_shape(threshold: float, percentile: float | None, x_lo: float, x_hi: float) -> dict:
    """``layout.shapes[0]`` of the histogram: the full-height threshold line with its label, as a
    plain dict (``fig.add_shape(**shape)`` or straight into the figure JSON)."""
    return dict(
        type="line",
        name=THRESHOLD_SHAPE_NAME,
        xref="x",
        yref="paper",
        x0=threshold,
        x1=threshold,
        y0=0,
        y1=1,
        line=dict(color=_THRESHOLD_COLOR, width=3),
        label=dict(
            text=_threshold_label(threshold, percentile),
            textposition="end",
            textangle=0,
            # text on the roomier side of the line, so it never leaves the plot
            xanchor=_label_side(threshold, x_lo, x_hi),
            yanchor="top",
            padding=6,
            # a light halo keeps the label legible where it crosses the bars
            font=dict(color=_THRESHOLD_COLOR, size=12, shadow="0 0 3px white"),
        ),
    )


def roc_figure(
    fpr,
    tpr,
    point: tuple[float, float] | None = None,
    *,
    auroc: float | None = None,
    height: int = 320,
) -> go.Figure:
    """ROC curve (FPR on x, TPR on y) with the chance diagonal and an operating point.

    ``point`` is the (fpr, tpr) at the current threshold, drawn as a marker;
    ``auroc`` when given goes into the legend name.
    """
    fpr_a = _scores_1d(fpr, "fpr")
    tpr_a = _scores_1d(tpr, "tpr")
    if fpr_a.shape != tpr_a.shape:
        raise ValueError(
            f"fpr and tpr must have the same length, got {fpr_a.size} and {tpr_a.size}"
        )
    for name, arr in (("fpr", fpr_a), ("tpr", tpr_a)):
        if arr.min() < 0 or arr.max() > 1:
            raise ValueError(
                f"{name} must lie in [0, 1], got values from {arr.min()} to {arr.max()}"
            )
    curve_name = "ROC" if auroc is None else f"ROC (AUROC {_finite_float(auroc, 'auroc'):.3f})"

    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[0, 1], y=[0, 1], mode="lines", name="chance",
            line=dict(color="gray", dash="dash", width=1), hoverinfo="skip",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=fpr_a, y=tpr_a, mode="lines", name=curve_name,
            line=dict(color=_SET_COLORS[0], width=2),
            hovertemplate="FPR %{x:.3f}<br>TPR %{y:.3f}<extra></extra>",
        )
    )
    if point is not None:
        if len(point) != 2:
            raise ValueError(f"point must be (fpr, tpr), got {point!r}")
        px = _finite_float(point[0], "point[0] (fpr)")
        py = _finite_float(point[1], "point[1] (tpr)")
        fig.add_trace(
            go.Scatter(
                x=[px], y=[py], mode="markers", name="current threshold",
                marker=dict(color=_THRESHOLD_COLOR, size=11, line=dict(color="white", width=1)),
                hovertemplate="at threshold<br>FPR %{x:.3f}<br>TPR %{y:.3f}<extra></extra>",
            )
        )
    axis = dict(_AXIS, range=[-0.01, 1.01])
    fig.update_layout(
        template="none",
        height=int(height),
        margin=_MARGIN,
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)",
        legend=dict(x=0.98, y=0.02, xanchor="right", yanchor="bottom"),
        # Square plot area: the wider axis shrinks its domain instead of showing FPR < 0 or > 1.
        xaxis=dict(axis, title=dict(text="false positive rate"), constrain="domain"),
        yaxis=dict(axis, title=dict(text="true positive rate"), scaleanchor="x", constrain="domain"),
    )
    return fig
