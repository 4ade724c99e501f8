"""The runs this server process keeps: each computed once, in the background, shared by sessions.

A run is identified by :class:`RunSettings`: the source and an :class:`ood_core.RunConfig` (its
embedding and class split, the same description the CLI and ``ood_core.analyze`` use); scorer
settings are applied afterwards with ``Analysis.rescore``. :class:`RunStore` hands out one
:class:`RunJob` per settings: a ``concurrent.futures.Future`` of the :class:`ood_core.Analysis`
plus the progress it reports, so a page rerun or a second session never interrupts or repeats it.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable

import streamlit as st

import ood_core

logger = logging.getLogger(__name__)

DEFAULT_SOURCE = "digits"
MAX_RUNS = 6  # runs kept in memory by the server process (least recently used dropped first)
STAGE_LABELS = {"embed": "Embedding images", "classifier": "Cross-validating the classifier",
                "neighbours": "Searching neighbours"}


@dataclass(frozen=True)
class RunSettings:
    """What identifies a run: the source, how the Data page names it, and the run's settings."""

    source: str = DEFAULT_SOURCE  # a built-in name or a path
    label: str = "Built-in digits"  # the kind of source, as the Data page names it
    name: str | None = None  # an upload's own file name, shown instead of its stored (content-hash) name
    # the embedding (model, weights, input size, backend, ...) and the class split; made when a RunSettings
    # is, so its defaults are ood_core's
    config: ood_core.RunConfig = field(default_factory=ood_core.RunConfig)


Compute = Callable[[RunSettings, Callable[[str, int, int], None]], "ood_core.Analysis"]


def compute_run(settings: RunSettings, progress=None) -> ood_core.Analysis:
    """The analysis of ``settings`` (embeddings from the disk cache when present)."""
    return ood_core.analyze(settings.source, settings=settings.config, progress=progress, name=settings.name)


class RunJob:
    """One run: its future and the progress it last reported (read by the page drawing the bar)."""

    def __init__(self, settings: RunSettings, future: Future):
        self.settings, self.future = settings, future
        self.stage, self.done, self.total = "open", 0, 0
        self.stage_start = time.monotonic()

    def progress(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage:
            self.stage_start = time.monotonic()
        self.stage, self.done, self.total = stage, done, total

    @property
    def fraction(self) -> float:
        return min(self.done / self.total, 1.0) if self.total else 0.0

    @property
    def text(self) -> str:
        if self.stage == "open":
            return f"Opening {self.settings.label}…"
        text = f"{STAGE_LABELS.get(self.stage, self.stage)}: {self.done:,} / {self.total:,}"
        elapsed = time.monotonic() - self.stage_start
        if 0 < self.done < self.total and elapsed > 2:  # an estimate from the rate measured so far
            text += f" · about {_duration(elapsed * (self.total - self.done) / self.done)} left"
        return text


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


class RunStore:
    """Jobs by RunSettings, at most ``max_runs`` finished ones kept (least recently used dropped
    first); a failed run is dropped, so asking again retries it."""

    def __init__(self, max_runs: int = MAX_RUNS, workers: int = 2):
        self.max_runs = max_runs
        self._jobs: OrderedDict[RunSettings, RunJob] = OrderedDict()
        self._guard = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ood-run")

    def start(self, settings: RunSettings, compute: Compute = compute_run) -> RunJob:
        """The job for ``settings``: finished, running, or started now as ``compute(settings, progress)``."""
        with self._guard:
            job = self._jobs.get(settings)
            if job is not None:
                self._jobs.move_to_end(settings)
                return job
            job = self._jobs[settings] = RunJob(settings, Future())
            finished = [s for s, j in self._jobs.items() if j.future.done()]
            for old in finished[:max(0, len(self._jobs) - self.max_runs)]:
                del self._jobs[old]
        self._pool.submit(self._work, job, compute)
        return job

    def _work(self, job: RunJob, compute: Compute) -> None:
        try:
            result = compute(job.settings, job.progress)
        except BaseException as exc:  # handed to the session that waits on the job
            logger.warning("run %s failed: %s", job.settings, exc)
            with self._guard:
                if self._jobs.get(job.settings) is job:
                    del self._jobs[job.settings]
            job.future.set_exception(exc)
        else:
            job.future.set_result(result)

    def get(self, settings: RunSettings) -> ood_core.Analysis | None:
        """The finished analysis for ``settings``, or None."""
        with self._guard:
            job = self._jobs.get(settings)
            if job is None or not job.future.done():
                return None
            self._jobs.move_to_end(settings)
        return job.future.result()

    def running(self, settings: RunSettings) -> bool:
        """Whether the run for ``settings`` is being computed now."""
        with self._guard:
            job = self._jobs.get(settings)
            return job is not None and not job.future.done()


@st.cache_resource(show_spinner=False)
def run_store() -> RunStore:
    """The runs computed in this server process (shared by all sessions)."""
    return RunStore()


def wait_for(settings: RunSettings, poll_s: float = 0.25) -> ood_core.Analysis:
    """The analysis for ``settings``: from the store, else computed in the background while a
    progress bar follows it. Raises the computation's error."""
    job = run_store().start(settings)
    if not job.future.done():
        bar = st.progress(0.0, text=job.text)
        try:
            while not wait([job.future], timeout=poll_s).done:
                bar.progress(job.fraction, text=job.text)
        finally:
            bar.empty()
    return job.future.result()

