"""Streamlit component: score histograms with a threshold line dragged by mouse.

``st.plotly_chart`` does not send shape drags back to Python, so this is a
small components-v1 component (``declare_component(path=...)``): a static
``index.html`` + hand-written ``main.js`` (no npm build) that draws the figure
from :func:`ui.figures.score_histogram_figure` with plotly.js, lets the user
drag the vertical line (``config.edits.shapePosition``; the JS pins it back to
vertical and full height after every drag) and posts the new x to Python.

Why v1 and not ``st.components.v2``: v2 runs in the app page itself and can
only serve asset files for components installed as packages (an ``asset_dir``
declared in a ``pyproject.toml`` manifest); otherwise every asset is an inline
string resent with the page. ``ui`` is not an installed package and plotly.js
is 4.8 MB, so v1's static-folder serving (HTTP-cached, loaded once into the
iframe) is the robust choice here.

How plotly.js is served (offline, no CDN): Streamlit serves only files inside
the component folder and resolves symlinks before checking that, so a symlink
to the plotly package is refused. At import, :func:`_provide_plotly_js` copies
``plotly/package_data/plotly.min.js`` from the *installed* plotly into
``components/threshold_histogram/vendor/`` (gitignored by the folder's own
``.gitignore``), so a fresh clone works after ``pip install``, the copy is
refreshed when plotly is upgraded (size/mtime differ), and the JS always
matches the Python plotly that wrote the figure JSON. If the folder is
read-only (a packaged install), the component folder is copied to a private
temporary directory instead and served from there.

Use inside a page, in a fragment, with a percentile input kept in sync both
ways (``percentile_threshold`` is ``ood_core.thresholds.percentile_threshold``)::

    import numpy as np
    import streamlit as st
    from ood_core import percentile_of, percentile_threshold
    from ui.threshold_histogram import threshold_histogram

    @st.fragment
    def feature_threshold(fit_scores, query_scores):
        if "fs_percentile" not in st.session_state:
            st.session_state.fs_percentile = 5.0
            st.session_state.fs_threshold = percentile_threshold(fit_scores, 5.0)

        def on_percentile():  # number input -> threshold
            st.session_state.fs_threshold = percentile_threshold(
                fit_scores, st.session_state.fs_percentile)

        def on_drag(x):  # line dragged -> threshold and percentile
            st.session_state.fs_threshold = x
            st.session_state.fs_percentile = round(percentile_of(fit_scores, x), 2)

        threshold_histogram(
            fit_scores, query_scores, st.session_state.fs_threshold,
            key="fs_histogram", percentile=st.session_state.fs_percentile,
            on_change=on_drag)
        st.number_input("Percentile of train scores", 0.0, 100.0, step=0.5,
                        format="%.2f", key="fs_percentile", on_change=on_percentile)
        flagged = query_scores < st.session_state.fs_threshold
        st.metric("test flagged", f"{flagged.sum()} ({flagged.mean():.1%})")

Callbacks run before the script, so with ``on_change`` the number input may
sit above or below the chart. Without a callback, use the return value (the
dragged x on the run that follows a drag, else ``None``) and put widgets whose
keys it updates *below* the chart: Streamlit refuses writes to the key of a
widget already drawn in this run.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import plotly
import streamlit as st
import streamlit.components.v1 as components

from ui.figures import (
    DEFAULT_LABELS,
    THRESHOLD_SHAPE_NAME,
    histogram_x_range,
    score_histogram_figure,
    threshold_line_shape,
)

__all__ = ["threshold_histogram"]

logger = logging.getLogger(__name__)

_SOURCE_DIR = Path(__file__).resolve().parent / "components" / "threshold_histogram"
_PLOTLY_JS = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
_VENDOR_JS = Path("vendor") / "plotly.min.js"  # where index.html loads it from
# session_state slot holding, per component key, the x of a drag that the
# script has not yet returned (filled by the component's on_change).
_PENDING_KEY = "_threshold_histogram_pending_drag"
# session_state slot holding, per component key, the figure without its line (see _figure_json).
_BASE_KEY = "_threshold_histogram_base_figure"


def _is_current_copy(target: Path, source: os.stat_result) -> bool:
    try:
        stat = target.stat()
    except FileNotFoundError:
        return False
    # copy2 keeps the source mtime; allow 2 s for coarse filesystem clocks.
    return stat.st_size == source.st_size and abs(stat.st_mtime_ns - source.st_mtime_ns) <= 2e9


def _copy_atomically(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` via a temp file + rename (no half-written file
    is ever served, and concurrent processes do not clash)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".plotly-", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copy2(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _provide_plotly_js(component_dir: Path = _SOURCE_DIR, plotly_js: Path = _PLOTLY_JS) -> Path:
    """Put a current copy of plotly.js at ``component_dir/vendor/plotly.min.js``.

    Returns the folder Streamlit should serve: ``component_dir`` itself, or a
    private temporary copy of it when ``component_dir`` cannot be written.
    """
    if not plotly_js.is_file():
        raise FileNotFoundError(
            f"plotly.js not found at {plotly_js}; the threshold histogram needs the "
            "plotly Python package with its bundled package_data (pip install plotly)"
        )
    source = plotly_js.stat()
    target = component_dir / _VENDOR_JS
    if _is_current_copy(target, source):
        return component_dir
    try:
        _copy_atomically(plotly_js, target)
        return component_dir
    except OSError as exc:
        private = Path(tempfile.mkdtemp(prefix="ood-explorer-threshold-histogram-"))
        shutil.copytree(
            component_dir, private, dirs_exist_ok=True, ignore=shutil.ignore_patterns("vendor")
        )
        _copy_atomically(plotly_js, private / _VENDOR_JS)
        logger.warning(
            "cannot write %s (%s); serving the threshold histogram from %s",
            target, exc, private,
        )
        return private


_component = components.declare_component(
    "threshold_histogram", path=str(_provide_plotly_js())
)


def _event_x(value) -> float | None:
    """The x from the component's value ``{"x": float, "event": str}``, or None."""
    if not isinstance(value, dict):
        return None
    try:
        x = float(value.get("x"))
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _on_component_change(key: str, callback: Callable[[float], None] | None) -> None:
    x = _event_x(st.session_state.get(key))
    if x is None:
        logger.warning("threshold_histogram %r sent an unusable value: %r", key, st.session_state.get(key))
        return
    pending = st.session_state.get(_PENDING_KEY) or {}
    st.session_state[_PENDING_KEY] = {**pending, key: x}
    if callback is not None:
        callback(x)


def _figure_json(key, fit_scores, query_scores, threshold, percentile, labels, bins, height) -> str:
    """The figure's JSON. The bars depend only on the scores, so the figure without its line is
    built once per score arrays (plotly's validation is the slow part) and kept in the session;
    each call then adds the line and the x range to a copy of that JSON."""
    threshold = float(threshold)
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold}")
    store = st.session_state.setdefault(_BASE_KEY, {})
    entry = store.get(key)
    params = (labels, bins, height)
    if entry is None or entry[0] is not fit_scores or entry[1] is not query_scores or entry[2] != params:
        base = score_histogram_figure(fit_scores, query_scores, None, labels=labels, bins=bins, height=height)
        entry = store[key] = (fit_scores, query_scores, params, json.loads(base.to_json()))
    base = entry[3]
    layout = base["layout"]
    x_lo, x_hi = histogram_x_range(*layout["meta"]["bin_range"], threshold)
    figure = {
        "data": base["data"],
        "layout": {**layout, "xaxis": {**layout["xaxis"], "range": [x_lo, x_hi]},
                   "shapes": [threshold_line_shape(threshold, percentile, x_lo, x_hi)]},
    }
    return json.dumps(figure)


def threshold_histogram(
    fit_scores,
    query_scores,
    threshold: float,
    *,
    key: str,
    percentile: float | None = None,
    labels: Sequence[str] = DEFAULT_LABELS,
    height: int = 320,
    bins: int = 50,
    on_change: Callable[[float], None] | None = None,
) -> float | None:
    """Draw fit/query score histograms with a mouse-draggable threshold line.

    Parameters
    ----------
    fit_scores, query_scores : 1-D score arrays (``query_scores`` may be ``None``
        when fit and query are the same items). Binned here with numpy; only the
        bar heights travel to the browser, so 50,000 scores cost a few kB.
    threshold : where the line is drawn (the page's current threshold).
    key : Streamlit widget key; required so the chart keeps its identity (and
        the user's drag) while the threshold and figure change between runs.
    percentile : shown in the line's label.
    labels, height, bins : passed to :func:`ui.figures.score_histogram_figure`.
    on_change : called as ``on_change(x)`` before the rerun that follows a drag
        (a Streamlit callback: it may set session-state keys of any widget).

    Returns
    -------
    The x the line was dragged to (clamped to the visible x range) on the run
    that follows a drag; ``None`` on every other run, including runs caused by
    other widgets, so a stale drag never overrides a newer threshold.
    """
    if not isinstance(key, str) or not key:
        raise ValueError(f"key must be a non-empty string, got {key!r}")
    if on_change is not None and not callable(on_change):
        raise TypeError(f"on_change must be callable or None, got {type(on_change).__name__}")
    if threshold is None:
        raise ValueError("threshold must be a finite number, got None")
    _component(
        figure=_figure_json(key, fit_scores, query_scores, threshold, percentile, tuple(labels), bins, height),
        threshold=float(threshold),
        height=int(height),
        shape_name=THRESHOLD_SHAPE_NAME,
        key=key,
        default=None,
        on_change=functools.partial(_on_component_change, key, on_change),
    )
    pending = st.session_state.get(_PENDING_KEY)
    if pending and key in pending:
        remaining = dict(pending)
        x = remaining.pop(key)
        st.session_state[_PENDING_KEY] = remaining
        return x
    return None
