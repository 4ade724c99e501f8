"""One browser session's state: its current analysis, its thresholds, and widget values that
outlive a page switch. The keys are named in :mod:`ood_dashboard.state`, with their scopes:

- ``ANALYSIS`` / ``RUN_SETTINGS``: the current :class:`ood_core.Analysis` and the RunSettings it
  came from; ``PENDING_RUN``: settings asked for on the Data page, not yet loaded.
- each scorer's percentile and threshold, shared by every page; the threshold follows the scores
  (a new run or new scorer settings) through :func:`sync_threshold`.
- state that belongs to one run is keyed by ``analysis.run_id`` (``state.run_key``).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import streamlit as st

import ood_core
from ood_dashboard import state
from ood_dashboard.markup import escape
from ood_dashboard.runs import RunSettings, run_store, wait_for
from ood_dashboard.state import ANALYSIS, PENDING_RUN, RUN_SETTINGS, URL_PERCENTILE
from ood_dashboard.uploads import check_folder, started_with

DEFAULT_PERCENTILE = 5.0


# ------------------------------------------------------------------ the current analysis
def current_analysis() -> ood_core.Analysis | None:
    """The session's current analysis (None before the first run)."""
    return st.session_state.get(ANALYSIS)


def current_settings() -> RunSettings | None:
    """The RunSettings of the session's current analysis."""
    return st.session_state.get(RUN_SETTINGS)


def require_analysis() -> ood_core.Analysis:
    """A page's guard: the session's analysis, or a pointer to the Data page and a stop."""
    analysis = current_analysis()
    if analysis is None:
        st.info("Load a dataset on the **Data & model** page first.")
        st.stop()
    return analysis


def set_analysis(settings: RunSettings, analysis: ood_core.Analysis) -> None:
    """Make ``analysis`` the session's current one."""
    st.session_state[RUN_SETTINGS] = settings
    st.session_state[ANALYSIS] = analysis


def run_and_select(settings: RunSettings) -> ood_core.Analysis:
    """Load the run for ``settings`` (with a progress bar) and make it the session's current one.
    If the user leaves the page meanwhile, the run goes on in the background and
    :func:`adopt_finished_run` selects it once it is done."""
    st.session_state[PENDING_RUN] = settings
    try:
        analysis = wait_for(settings)
    finally:
        st.session_state.pop(PENDING_RUN, None)
    set_analysis(settings, analysis)
    return analysis


def adopt_finished_run() -> None:
    """Select a run asked for on the Data page that finished while the user was elsewhere."""
    settings = st.session_state.get(PENDING_RUN)
    if settings is None:
        return
    analysis = run_store().get(settings)
    if analysis is not None:
        st.session_state.pop(PENDING_RUN)
        set_analysis(settings, analysis)
        st.toast(f"Loaded {escape(analysis.source)}", icon=":material/check_circle:")
    elif not run_store().running(settings):  # it failed: the Data page says why when run again
        st.session_state.pop(PENDING_RUN)


def ensure_default_analysis(start_source: str | None = None) -> None:
    """On a session's first run, load the dataset the link names (``?source=...``), else the one the
    server was started with (``start_source``, from ``--source``), else the built-in digits, so
    every page has something to show."""
    if ANALYSIS in st.session_state:
        return
    settings = RunSettings()
    if start_source is not None:
        settings = RunSettings(source=start_source, label="the dataset given at start (--source)")
    try:
        settings = settings_from_url() or settings
    except ValueError as exc:
        st.warning(f"This link's dataset cannot be opened here ({escape(str(exc))}); showing the built-in digits.")
    note = st.empty()
    if run_store().get(settings) is None:
        note.info(f"Preparing {escape(settings.source)}: embedding its images and fitting both scorers (seconds "
                  "once its embeddings are in the disk cache).")
    try:
        analysis = wait_for(settings)
    except Exception as exc:  # data that no longer loads: say why, and show the digits
        st.warning(f"Could not open {escape(settings.source)} ({escape(str(exc))}); showing the built-in digits.")
        settings = RunSettings()
        analysis = wait_for(settings)
    finally:
        note.empty()
    set_analysis(settings, analysis)


# ------------------------------------------------------------------ shareable links
def settings_from_url() -> RunSettings | None:
    """The run a link names: ``?source=`` (a built-in name, an allowed folder, or a stored upload),
    the dataset the server was started with), ``&in=`` (in-distribution classes) and ``&model=``; None
    when it names none."""
    params = st.query_params
    source = params.get("source")
    if not source:
        return None
    if source not in ood_core.list_sources() and not started_with(source):
        path = Path(source)
        if path.parent.resolve() != Path(ood_core.default_cache_dir(), "uploads").resolve():
            source = str(check_folder(source))  # raises when the folder is not allowed here
    in_classes = tuple(c for c in params.get("in", "").split(",") if c) or None
    config = ood_core.RunConfig(in_classes=in_classes)
    if params.get("model"):
        config = dataclasses.replace(config, model=params.get("model"))
    return RunSettings(source=source, label="Shared link", config=config)


def share_in_url(scorer: str) -> None:
    """Put the current dataset and ``scorer``'s percentile in the page's link, so it can be shared
    and reloaded."""
    settings, percentile = current_settings(), st.session_state.get(threshold_keys(scorer)[0])
    if settings is None or percentile is None:
        return
    values = {"source": settings.source, "p": f"{percentile:g}"}
    if settings.config.in_classes:
        values["in"] = ",".join(map(str, settings.config.in_classes))
    if settings.config.model != ood_core.RunConfig().model:
        values["model"] = settings.config.model
    if {k: st.query_params.get(k) for k in values} != values:
        st.query_params.update(values)
    st.session_state[URL_PERCENTILE] = values["p"]


def adopt_url_percentile(analysis: ood_core.Analysis, scorer: str) -> None:
    """A percentile typed into the link (``?p=12.5``) moves the threshold once; a bad one is said."""
    text = st.query_params.get("p")
    if text is None or text == st.session_state.get(URL_PERCENTILE):
        return
    st.session_state[URL_PERCENTILE] = text
    try:
        percentile = float(text)
    except ValueError:
        percentile = float("nan")
    if not 0 <= percentile <= 100:
        st.warning(f"The link's percentile “{escape(text)}” is not a number from 0 to 100; the threshold stays "
                   "where it was.")  # not !r: the repr of the escaped text doubles its backslashes
        return
    set_percentile(scorer, analysis.scores(scorer)[0], percentile)


def apply_score_config(config: ood_core.ScoreConfig) -> ood_core.Analysis:
    """Refit only the scorers whose settings changed (features and pred_probs are reused)."""
    analysis = st.session_state[ANALYSIS]
    if analysis.score_config != config:
        with st.spinner("Refitting the scorer…"):
            analysis = analysis.rescore(config)
        st.session_state[ANALYSIS] = analysis
    return analysis


# ------------------------------------------------------------------ thresholds
def threshold_keys(scorer: str) -> tuple[str, str]:
    """The session-state keys of a scorer's percentile and threshold."""
    return state.scorer_key(scorer, state.PERCENTILE), state.scorer_key(scorer, state.THRESHOLD)


def fit_scored(scorer: str, fit_scores: np.ndarray) -> np.ndarray:
    """The fit scores a percentile is taken over: an issue type's scored items only (its unscored
    items, NaN, are counted apart and never flagged: ``ood_core.scored_values``); a scorer's all."""
    if scorer in ood_core.SCORERS:
        return fit_scores
    return ood_core.scored_values(fit_scores, f"the train (fit) scores of {scorer!r}")


def sync_threshold(analysis: ood_core.Analysis, scorer: str) -> float:
    """The scorer's current threshold. When its scores changed (a new run or new scorer settings)
    the threshold is recomputed from the kept percentile."""
    p_key, t_key = threshold_keys(scorer)
    st.session_state.setdefault(p_key, DEFAULT_PERCENTILE)
    token_key, token = state.scorer_key(scorer, state.SCORES_ID), analysis.scores_id(scorer)
    if st.session_state.get(token_key) != token or t_key not in st.session_state:
        st.session_state[token_key] = token
        st.session_state[t_key] = ood_core.percentile_threshold(fit_scored(scorer, analysis.scores(scorer)[0]),
                                                                st.session_state[p_key])
    return float(st.session_state[t_key])


def current_view(analysis: ood_core.Analysis, scorer: str) -> ood_core.ThresholdView:
    """Counts at the session's threshold; it records the percentile the user typed when the
    threshold came from it (after a drag: the percentile the threshold reaches)."""
    threshold = sync_threshold(analysis, scorer)
    percentile = st.session_state[threshold_keys(scorer)[0]]
    if ood_core.percentile_threshold(fit_scored(scorer, analysis.scores(scorer)[0]), percentile) == threshold:
        return analysis.threshold_view(scorer, percentile=percentile)
    return analysis.threshold_view(scorer, threshold=threshold)


def set_percentile(scorer: str, fit_scores: np.ndarray, percentile: float) -> None:
    """Move the threshold to ``percentile`` of the (scored) fit scores (what typing a percentile does)."""
    p_key, t_key = threshold_keys(scorer)
    st.session_state[p_key] = float(percentile)
    st.session_state[t_key] = ood_core.percentile_threshold(fit_scored(scorer, fit_scores), float(percentile))


def set_threshold(scorer: str, fit_scores: np.ndarray, threshold: float) -> None:
    """Move the threshold to the value ``threshold`` (what dragging the line does); the percentile it
    reaches is of the scored fit items."""
    p_key, t_key = threshold_keys(scorer)
    st.session_state[t_key] = float(threshold)
    st.session_state[p_key] = round(ood_core.percentile_of(fit_scored(scorer, fit_scores), float(threshold)), 2)


# ------------------------------------------------------------------ widgets across pages
def persistent(key: str, default: Any, options: Sequence[Any] | None = None) -> Callable[[], None]:
    """Give widget ``key`` the value it had when last drawn (Streamlit drops a widget's value while
    its page is not shown), else ``default``; pass the returned callback as the widget's
    ``on_change`` so the kept copy follows the widget. With ``options`` (the widget's choices), a
    value that is not among them (kept from a dataset that had another choice) gives ``default``.

    The value is written on every run, not only the first: Streamlit then sends it with the widget,
    so a browser that holds no state for the widget (a tab reloaded into its session, a first run
    cut short by a rerun) shows it, instead of the widget's built-in default (an empty text box)
    that it would then send back as the user's input (issue 18.8)."""
    kept = state.kept_key(key)
    value = st.session_state[key] if key in st.session_state else st.session_state.get(kept, default)
    if options is not None and value not in options:
        value = default
    st.session_state[key] = value
    return lambda: st.session_state.__setitem__(kept, st.session_state[key])


# ------------------------------------------------------------------ sidebar
def sidebar_summary() -> None:
    """The loaded dataset, in two lines at the bottom of the sidebar."""
    analysis, pending = current_analysis(), st.session_state.get(PENDING_RUN)
    if pending is not None:
        st.sidebar.caption(f":material/hourglass_top: Computing: {pending.label}…")
    if analysis is None:
        return
    with st.sidebar:
        st.caption(f"**Loaded:** {escape(analysis.source)}")
        st.caption(f"{len(analysis.fit_index):,} train (fit) · {len(analysis.query_index):,} test (query)"
                   + (" · same items" if analysis.same_set else "")
                   + (" · truth known" if analysis.is_ood is not None else ""))

