"""Streamlit component: score histograms with a threshold line dragged by mouse.

``st.plotly_chart`` does not send shape drags back to Python, so this is a
small components-v1 component (``declare_component(path=...)``): a static
``index.html`` + hand-written ``main.js`` (no npm build) that draws the figure
from :func:`ood_dashboard.figures.score_histogram_figure` with plotly.js, lets the user
drag the vertical line (``config.edits.shapePosition``; the JS pins it back to
vertical and full height after every drag) and posts the new x to Python.

Why v1 and not ``st.components.v2``: v2 runs in the app page itself and can
only serve asset files for components installed as packages (an ``asset_dir``
declared in a component manifest); otherwise every asset is an inline
string resent with the page. A checkout runs ``ood_dashboard`` uninstalled and
plotly.js is 4.8 MB, so v1's static-folder serving (HTTP-cached, loaded once
into the iframe) is the robust choice here.

How the static files are served (offline, no CDN): on first use, not at import,
:func:`_prepare_static_dir` copies ``index.html`` and ``main.js`` from
``components/threshold_histogram/`` and ``plotly/package_data/plotly.min.js``
from the *installed* plotly into one folder of the cache
(``ood_core.default_cache_dir()/components``), named by the plotly version and
a digest of the two source files. So the JS always matches the Python plotly
that wrote the figure JSON, an upgrade or an edit gets a new folder, and the
package tree is never written (a read-only install works). The folder is built
next to its final place and renamed into it, so no process ever serves half of
it. Files are copied, not linked: Streamlit resolves symlinks and refuses any
that lead outside the component folder. When the cache cannot be written, a
temporary folder removed at exit is served instead.

Use inside a page, in a fragment, with a percentile input kept in sync both
ways (``percentile_threshold`` is ``ood_core.thresholds.percentile_threshold``)::

    import numpy as np
    import streamlit as st
    from ood_core import percentile_of, percentile_threshold
    from ood_dashboard.threshold_histogram import threshold_histogram

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

import atexit
import functools
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import plotly
import streamlit as st
import streamlit.components.v1 as components

from ood_dashboard.figures import (
    DEFAULT_LABELS,
    THRESHOLD_SHAPE_NAME,
    histogram_x_range,
    score_histogram_figure,
    threshold_line_shape,
)
from ood_dashboard.state import HISTOGRAM_BASE_FIGURE, HISTOGRAM_PENDING_DRAG

__all__ = ["threshold_histogram"]

logger = logging.getLogger(__name__)

_NAME = "threshold_histogram"
_SOURCE_DIR = Path(__file__).resolve().parent / "components" / _NAME
_SOURCE_FILES = ("index.html", "main.js")
_PLOTLY_JS = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
_SERVED_PLOTLY_JS = "plotly.min.js"  # where index.html loads it from, beside itself
# session_state slots (ood_dashboard.state): per component key, the x of a drag that the script
# has not yet returned (filled by the component's on_change); the figure without its line.
_PENDING_KEY, _BASE_KEY = HISTOGRAM_PENDING_DRAG, HISTOGRAM_BASE_FIGURE

_served: Path | None = None  # the folder this process serves, prepared on first use
_served_lock = threading.Lock()


def _static_dir_name(source_dir: Path, plotly_version: str) -> str:
    """``threshold_histogram-plotly-<version>-<digest of index.html + main.js>``."""
    digest = hashlib.sha256()
    for name in _SOURCE_FILES:
        content = (source_dir / name).read_bytes()
        digest.update(f"{name}\0{len(content)}\0".encode() + content)
    return f"{_NAME}-plotly-{plotly_version}-{digest.hexdigest()[:16]}"


def _is_complete(folder: Path, plotly_js: Path) -> bool:
    try:
        return (all((folder / name).is_file() for name in _SOURCE_FILES)
                and (folder / _SERVED_PLOTLY_JS).stat().st_size == plotly_js.stat().st_size)
    except OSError:
        return False


def _fill(folder: Path, source_dir: Path, plotly_js: Path) -> None:
    copies = {name: source_dir / name for name in _SOURCE_FILES} | {_SERVED_PLOTLY_JS: plotly_js}
    for name, source in copies.items():
        shutil.copyfile(source, folder / name)  # copies: Streamlit refuses symlinks leading outside


def _publish(target: Path, source_dir: Path, plotly_js: Path) -> None:
    """Build the folder in a temporary sibling, then rename it to ``target``; when another
    process got there first, keep theirs. The temporary sibling never outlives the call."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        _fill(staging, source_dir, plotly_js)
        staging.chmod(0o755)  # mkdtemp makes it private to this user; the files are public anyway
        if target.exists() and not _is_complete(target, plotly_js):
            shutil.rmtree(target, ignore_errors=True)  # damaged by hand: rebuild it
        try:
            os.rename(staging, target)
        except OSError:
            if not _is_complete(target, plotly_js):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _prepare_static_dir(
    cache_dir: str | os.PathLike | None = None,
    *,
    source_dir: Path = _SOURCE_DIR,
    plotly_js: Path = _PLOTLY_JS,
    plotly_version: str = plotly.__version__,
) -> Path:
    """The folder Streamlit serves the component from: ``index.html``, ``main.js`` and
    ``plotly.min.js``, in ``cache_dir/components`` (default: ``ood_core.default_cache_dir()``),
    built there once; or, when that cannot be written, in a temporary folder removed at exit."""
    if not plotly_js.is_file():
        raise FileNotFoundError(
            f"plotly.js not found at {plotly_js}; the threshold histogram needs the "
            "plotly Python package with its bundled package_data (pip install plotly)"
        )
    if cache_dir is None:
        import ood_core  # only here: the component itself needs nothing else from it

        cache_dir = ood_core.default_cache_dir()
    parent = Path(cache_dir) / "components"
    target = parent / _static_dir_name(source_dir, plotly_version)
    if _is_complete(target, plotly_js):
        return target
    try:
        _publish(target, source_dir, plotly_js)
        return target
    except OSError as exc:
        cache_error = exc
    try:
        private = Path(tempfile.mkdtemp(prefix=f"ood-explorer-{_NAME}-"))
        atexit.register(shutil.rmtree, private, ignore_errors=True)
        _fill(private, source_dir, plotly_js)
    except OSError as exc:
        raise OSError(
            f"cannot write the threshold histogram's static files to {parent} ({cache_error}) "
            f"nor to a temporary folder ({exc}); set OOD_CACHE_DIR to a writable folder"
        ) from exc
    logger.warning("cannot write %s (%s); serving the threshold histogram from %s (removed at exit)",
                   parent, cache_error, private)
    return private


def _static_dir() -> Path:
    """The prepared folder, once per process (again if it has been removed meanwhile)."""
    global _served
    with _served_lock:
        if _served is None or not _served.is_dir():
            _served = _prepare_static_dir()
        return _served


def _component(**kwargs):
    """Draw the component. Declared on each call, from here, so that it is registered with the
    running Streamlit under the name ``ood_dashboard.threshold_histogram.threshold_histogram``."""
    return components.declare_component(_NAME, path=str(_static_dir()))(**kwargs)


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


def _figure_json(key, fit_scores, query_scores, threshold, percentile, labels, bins, height,
                 query_groups=None, group_colors=None) -> str:
    """The figure's JSON. The bars depend only on the scores (and groups), so the figure without its
    line is built once per score arrays and groups (plotly's validation is the slow part) and kept
    in the session; each call then adds the line and the x range to a copy of that JSON."""
    threshold = float(threshold)
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold}")
    store = st.session_state.setdefault(_BASE_KEY, {})
    entry = store.get(key)
    groups = None if query_groups is None else tuple(query_groups)  # compared by value: a list anew each run
    colors = None if group_colors is None else tuple(dict(group_colors).items())
    params = (labels, bins, height, groups, colors)
    if entry is None or entry[0] is not fit_scores or entry[1] is not query_scores or entry[2] != params:
        base = score_histogram_figure(fit_scores, query_scores, None, labels=labels, bins=bins, height=height,
                                      query_groups=groups, group_colors=None if colors is None else dict(colors))
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
    query_groups: Sequence[str] | None = None,
    group_colors: Mapping[str, str] | None = None,
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
    labels, height, bins : passed to :func:`ood_dashboard.figures.score_histogram_figure`.
    on_change : called as ``on_change(x)`` before the rerun that follows a drag
        (a Streamlit callback: it may set session-state keys of any widget).
    query_groups, group_colors : stack the query bars by group (one name per query score, or
        per fit score when ``query_scores`` is None), e.g. ``ood_dashboard.groups.item_groups(analysis,
        analysis.query_index, "truth").names``; see :func:`ood_dashboard.figures.score_histogram_figure`. Only
        the counts per group and bin travel. ``None``: one histogram per set.

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
        figure=_figure_json(key, fit_scores, query_scores, threshold, percentile, tuple(labels), bins, height,
                            query_groups, group_colors),
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
