"""Shared dashboard state: which run is loaded, and the runs kept in this server process.

An analysis (features, fitted scorers, scores) is computed once per :class:`RunSettings` and
kept in a ``st.cache_resource`` store shared by every session (two sessions asking for the same
run wait for one computation); the session holds its current :class:`Analysis` and the settings
it came from. Moving a threshold or switching a view never goes through here.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import streamlit as st

from ood_core.analysis import Analysis, ScoreConfig, rescore, run_analysis
from ood_core.cache import default_cache_dir

logger = logging.getLogger(__name__)

ANALYSIS_KEY = "analysis"  # session_state: the current Analysis
RUN_KEY = "run_settings"  # session_state: the RunSettings it came from
PENDING_KEY = "pending_run"  # session_state: RunSettings asked for on the Data page, not yet loaded
DEFAULT_SOURCE = "digits"
MAX_RUNS = 6  # runs kept in memory by the server process (least recently used dropped first)
UPLOAD_SUFFIXES = (".zip", ".npz", ".npy")
# Widgets whose value only makes sense for one dataset: cleared when another run is loaded.
PER_RUN_WIDGET_KEYS = ("feature_k", "feature_t", "prediction_method", "prediction_adjust")


def _leave_pages_directory_mode() -> None:
    """Make app.py run first even when a fresh server's first visitor opens a deep link.

    With a ``pages/`` folder beside app.py, Streamlit starts each process in its old
    "pages directory" mode and stays there until some script calls ``st.navigation``; in that
    mode a link such as ``/feature_scores`` runs ``pages/feature_scores.py`` alone, without
    app.py (no navigation, no default dataset). Every page imports this module, so on the first
    import in such a run switch the mode off and rerun. (Renaming ``pages/`` makes this moot.)
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager
        from streamlit.runtime.scriptrunner import get_script_run_ctx
    except ImportError:  # a Streamlit without this machinery has nothing to work around
        return
    if getattr(PagesManager, "uses_pages_directory", None) and get_script_run_ctx() is not None:
        PagesManager.uses_pages_directory = False
        st.rerun()


STAGE_LABELS = {"embed": "Embedding images", "classifier": "Cross-validating the classifier",
                "neighbours": "Searching neighbours"}


@dataclass(frozen=True)
class RunSettings:
    """What identifies a run: the source and the embedding settings (scorer settings are applied after)."""

    source: str = DEFAULT_SOURCE  # a built-in name or a path
    model: str = "tf_efficientnet_lite0"
    weights: str = "bundled"
    image_size: int | None = None  # None: the model's default for the images' size
    label: str = "Built-in digits"  # the kind of source, as the Data page names it
    name: str | None = None  # an upload's own file name, shown instead of its stored (content-hash) name


class RunJob:
    """One run being computed in a background thread (so a page rerun or a second session never
    interrupts or repeats it); the script polls it to draw the progress bar."""

    def __init__(self, settings: RunSettings):
        self.settings = settings
        self.stage, self.done, self.total = "open", 0, 0
        self.result: Analysis | None = None
        self.error: BaseException | None = None
        self.finished = threading.Event()

    def progress(self, stage: str, done: int, total: int) -> None:
        self.stage, self.done, self.total = stage, done, total

    @property
    def fraction(self) -> float:
        return min(self.done / self.total, 1.0) if self.total else 0.0

    @property
    def text(self) -> str:
        if self.stage == "open":
            return f"Opening {self.settings.label}…"
        return f"{STAGE_LABELS.get(self.stage, self.stage)}: {self.done:,} / {self.total:,}"


class RunStore:
    """Analyses by RunSettings, at most ``max_runs`` (least recently used dropped first), each
    computed once in a background thread even when several sessions ask at the same time."""

    def __init__(self, max_runs: int = MAX_RUNS):
        self.max_runs = max_runs
        self._jobs: OrderedDict[RunSettings, RunJob] = OrderedDict()
        self._guard = threading.Lock()

    def get(self, settings: RunSettings) -> Analysis | None:
        """The finished analysis for ``settings``, or None."""
        with self._guard:
            job = self._jobs.get(settings)
            if job is None or job.result is None:
                return None
            self._jobs.move_to_end(settings)
            return job.result

    def start(self, settings: RunSettings, compute: Callable[[RunSettings, Callable], Analysis]) -> RunJob:
        """The job for ``settings``: finished, running, or started now as ``compute(settings, progress)``."""
        with self._guard:
            job = self._jobs.get(settings)
            if job is not None:
                self._jobs.move_to_end(settings)
                return job
            job = self._jobs[settings] = RunJob(settings)
            finished = [s for s, j in self._jobs.items() if j.finished.is_set()]
            for old in finished[:max(0, len(self._jobs) - self.max_runs)]:
                del self._jobs[old]
        threading.Thread(target=self._work, args=(job, compute), name="ood-run", daemon=True).start()
        return job

    def _work(self, job: RunJob, compute) -> None:
        try:
            job.result = compute(job.settings, job.progress)
        except BaseException as exc:  # handed to the session that waits on the job
            logger.warning("run %s failed: %s", job.settings, exc)
            job.error = exc
            with self._guard:  # a failed run is not kept: asking again retries
                if self._jobs.get(job.settings) is job:
                    del self._jobs[job.settings]
        finally:
            job.finished.set()

    def running(self, settings: RunSettings) -> bool:
        """Whether the run for ``settings`` is being computed now."""
        with self._guard:
            job = self._jobs.get(settings)
            return job is not None and not job.finished.is_set()

    def clear(self) -> None:
        with self._guard:
            self._jobs.clear()


@st.cache_resource(show_spinner=False)
def run_store() -> RunStore:
    """The runs computed in this server process (shared by all sessions)."""
    return RunStore()


def compute_run(settings: RunSettings, progress=None) -> Analysis:
    """Open the source and run the analysis (embeddings from the disk cache when present)."""
    from ood_core.catalog import open_source
    from ood_core.embedder import Embedder
    from ood_core.sources import ArraySet

    source = open_source(settings.source)
    embedder = None
    if not isinstance(source, ArraySet):
        embedder = Embedder(model=settings.model, weights=settings.weights, image_size=settings.image_size)
    analysis = run_analysis(source, embedder, ScoreConfig(), progress=progress)
    if settings.name:
        analysis.source = analysis.source.replace(Path(settings.source).name, settings.name)
    return analysis


def load_run(settings: RunSettings, poll_s: float = 0.25) -> Analysis:
    """The analysis for ``settings``: from the in-process store, else computed in the background
    while a progress bar follows it. Raises the computation's error."""
    job = run_store().start(settings, compute_run)
    if not job.finished.is_set():
        bar = st.progress(0.0, text=job.text)
        try:
            while not job.finished.wait(poll_s):
                bar.progress(job.fraction, text=job.text)
        finally:
            bar.empty()
    if job.error is not None:
        raise job.error
    return job.result


def set_analysis(settings: RunSettings, analysis: Analysis) -> None:
    """Make ``analysis`` the session's current one; thresholds start again from their percentiles
    and the scorer settings from the new run's."""
    if st.session_state.get(RUN_KEY) != settings:
        for key in PER_RUN_WIDGET_KEYS:
            st.session_state.pop(key, None)
    st.session_state[RUN_KEY] = settings
    st.session_state[ANALYSIS_KEY] = analysis


def run_and_select(settings: RunSettings) -> Analysis:
    """Load the run for ``settings`` (with a progress bar) and make it the session's current one.
    If the user leaves the page meanwhile, the run goes on in the background and
    :func:`adopt_finished_run` selects it once it is done."""
    st.session_state[PENDING_KEY] = settings
    try:
        analysis = load_run(settings)
    finally:
        st.session_state.pop(PENDING_KEY, None)
    set_analysis(settings, analysis)
    return analysis


def adopt_finished_run() -> None:
    """Select a run asked for on the Data page that finished while the user was elsewhere."""
    settings = st.session_state.get(PENDING_KEY)
    if settings is None:
        return
    analysis = run_store().get(settings)
    if analysis is not None:
        st.session_state.pop(PENDING_KEY)
        set_analysis(settings, analysis)
        st.toast(f"Loaded {analysis.source}", icon=":material/check_circle:")
    elif not run_store().running(settings):  # it failed: the Data page says why when run again
        st.session_state.pop(PENDING_KEY)


def current_analysis() -> Analysis | None:
    """The session's current analysis (None before the first run)."""
    return st.session_state.get(ANALYSIS_KEY)


def require_analysis() -> Analysis:
    """A page's guard: the session's analysis, or a pointer to the Data page and a stop."""
    analysis = current_analysis()
    if analysis is None:
        st.info("Load a dataset on the **Data & model** page first.")
        st.stop()
    return analysis


def current_settings() -> RunSettings | None:
    """The RunSettings of the session's current analysis."""
    return st.session_state.get(RUN_KEY)


def apply_score_config(config: ScoreConfig) -> Analysis:
    """Refit only the scorers whose settings changed (features and pred_probs are reused)."""
    analysis = st.session_state[ANALYSIS_KEY]
    if analysis.score_config != config:
        with st.spinner("Refitting the scorer…"):
            analysis = rescore(analysis, config)
        st.session_state[ANALYSIS_KEY] = analysis
    return analysis


def ensure_default_analysis() -> None:
    """On a session's first run, load the built-in digits so every page has something to show."""
    if ANALYSIS_KEY in st.session_state:
        return
    settings = RunSettings()
    if run_store().get(settings) is None:
        note = st.empty()
        note.info("Preparing the built-in digits dataset: embedding 1,797 small images and fitting both "
                  "scorers (about a minute the first time, seconds afterwards from the disk cache).")
        try:
            analysis = load_run(settings)
        finally:
            note.empty()
    else:
        analysis = load_run(settings)
    set_analysis(settings, analysis)


def sidebar_summary() -> None:
    """The loaded dataset, in two lines at the bottom of the sidebar."""
    analysis, pending = current_analysis(), st.session_state.get(PENDING_KEY)
    if pending is not None:
        st.sidebar.caption(f":material/hourglass_top: Computing: {pending.label}…")
    if analysis is None:
        return
    with st.sidebar:
        st.caption(f"**Loaded:** {analysis.source}")
        st.caption(f"{len(analysis.fit_index):,} train (fit) · {len(analysis.query_index):,} test (query)"
                   + (" · same items" if analysis.same_set else "")
                   + (" · truth known" if analysis.is_ood is not None else ""))


# ------------------------------------------------------------------ uploads and folder paths
def upload_dir() -> Path:
    """Private folder for uploaded files, inside the cache dir ($OOD_CACHE_DIR when set)."""
    path = Path(default_cache_dir()) / "uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_upload(data: bytes, suffix: str) -> Path:
    """Store an upload under a name made of its content hash, so no user-given name reaches the disk."""
    if suffix not in UPLOAD_SUFFIXES:
        raise ValueError(f"uploads must be {', '.join(UPLOAD_SUFFIXES)} files; got {suffix!r}")
    path = upload_dir() / f"{hashlib.sha256(data).hexdigest()}{suffix}"
    if not path.exists():
        tmp = path.with_suffix(path.suffix + f".{os.getpid()}.part")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return path


def upload_source(name: str, data: bytes, allowed: tuple[str, ...] = UPLOAD_SUFFIXES) -> str:
    """What the Data page does with an uploaded file: check its extension against ``allowed``,
    store it by content hash and return the source spec (a path) to run on."""
    suffix = Path(name or "").suffix.lower()
    if suffix not in allowed:
        raise ValueError(f"{name!r} is not a {' / '.join(allowed)} file")
    if not data:
        raise ValueError(f"{name!r} is empty")
    return str(save_upload(data, suffix))


def allowed_roots() -> list[Path]:
    """Folders an image-folder path may lie under: $OOD_DATA_ROOTS (os.pathsep-separated), else the
    working directory and the home folder."""
    env = os.environ.get("OOD_DATA_ROOTS")
    roots = env.split(os.pathsep) if env else [os.getcwd(), str(Path.home())]
    return [Path(r).expanduser().resolve() for r in roots if r]


def check_folder(path_text: str) -> Path:
    """Resolve a typed folder path and refuse one outside the allowed roots."""
    if not path_text.strip():
        raise ValueError("type the path of a folder of images")
    path = Path(path_text.strip()).expanduser().resolve()
    roots = allowed_roots()
    if not any(path == r or r in path.parents for r in roots):
        raise ValueError(
            f"{path} is outside the folders this dashboard may read ({', '.join(map(str, roots))}); "
            "set OOD_DATA_ROOTS to allow another"
        )
    if not path.is_dir():
        raise ValueError(f"{path} is not a folder")
    return path


_leave_pages_directory_mode()
