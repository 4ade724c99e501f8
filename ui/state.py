"""Shared dashboard state: which run is loaded, and the runs kept in this server process.

An analysis (features, fitted scorers, scores) is computed once per run settings and kept in a
``st.cache_resource`` store shared by every session; the session only holds the key of its
current run. Moving a threshold or switching a view never goes through here.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from ood_core.analysis import Analysis, ScoreConfig, rescore, run_analysis
from ood_core.cache import default_cache_dir

ANALYSIS_KEY = "analysis"  # session_state: the current Analysis
RUN_KEY = "run_settings"  # session_state: the RunSettings it came from
DEFAULT_SOURCE = "digits"

STAGE_LABELS = {"embed": "Embedding images", "classifier": "Cross-validating the classifier",
                "neighbours": "Searching neighbours"}


@dataclass(frozen=True)
class RunSettings:
    """What identifies a run: the source and the embedding settings (scorer settings are applied after)."""

    source: str = DEFAULT_SOURCE  # a built-in name or a path
    model: str = "tf_efficientnet_lite0"
    weights: str = "bundled"
    image_size: int | None = None
    label: str = "Built-in digits"  # how the source is shown


@st.cache_resource(show_spinner=False)
def _run_store() -> dict:
    """Runs computed in this server process, by RunSettings (shared by all sessions)."""
    return {}


def load_run(settings: RunSettings) -> Analysis:
    """The analysis for ``settings``: from the in-process store, else computed with a progress bar
    (embeddings come from the disk cache when present)."""
    from ood_core.catalog import open_source
    from ood_core.embedder import Embedder
    from ood_core.sources import ArraySet

    store = _run_store()
    if settings in store:
        return store[settings]
    bar = st.progress(0.0, text="Opening the source…")
    try:
        source = open_source(settings.source)
        embedder = None
        if not isinstance(source, ArraySet):
            embedder = Embedder(model=settings.model, weights=settings.weights, image_size=settings.image_size)

        def progress(stage: str, done: int, total: int) -> None:
            bar.progress(min(done / max(total, 1), 1.0),
                         text=f"{STAGE_LABELS.get(stage, stage)}: {done:,} / {total:,}")

        analysis = run_analysis(source, embedder, ScoreConfig(), progress=progress)
    finally:
        bar.empty()
    store[settings] = analysis
    return analysis


def set_analysis(settings: RunSettings, analysis: Analysis) -> None:
    """Make ``analysis`` the session's current one; thresholds start again from their percentiles."""
    st.session_state[RUN_KEY] = settings
    st.session_state[ANALYSIS_KEY] = analysis


def current_analysis() -> Analysis | None:
    return st.session_state.get(ANALYSIS_KEY)


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
    if ANALYSIS_KEY not in st.session_state:
        settings = RunSettings()
        set_analysis(settings, load_run(settings))


def upload_dir() -> Path:
    """Private folder for uploaded files, inside the cache dir."""
    path = Path(default_cache_dir()) / "uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_upload(data: bytes, suffix: str) -> Path:
    """Store an upload under a name made of its content hash, so no user-given name reaches the disk."""
    if suffix not in (".zip", ".npz", ".npy"):
        raise ValueError(f"uploads must be .zip, .npz or .npy files; got {suffix!r}")
    path = upload_dir() / f"{hashlib.sha256(data).hexdigest()}{suffix}"
    if not path.exists():
        tmp = path.with_suffix(path.suffix + ".part")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return path


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
