"""Benchmark: server-side time from a threshold change to the end of the rerun.

What is timed: the score pages' fragment (``ui.score_page.threshold_section``: counts, metrics,
the histogram component, the ROC curve, both image grids and the export buttons) run by
``streamlit.testing.v1.AppTest`` after the percentile input is set, as Streamlit reruns it when a
user types a percentile or drags the line. Two numbers per row:

- *fragment*: wall time inside the script, from the start of the fragment to its end (the
  on_change callback that turns the percentile into a threshold runs just before it, well under
  a millisecond), i.e. the server's share of the latency;
- *AppTest rerun*: the whole ``AppTest.run()`` round trip, which adds AppTest's own bookkeeping
  (an upper bound).

Not included: the websocket hop and the browser redrawing the chart and images.

Datasets: the CIFAR-10 demo split (5,000 fit / 1,000 query; embeddings from the disk cache after
the first embedding; skipped with a note when OOD_CIFAR10 is unset), and 50,000 synthetic items
(40,000 fit / 10,000 query, 20% of the queries out of distribution) with synthetic scores and
32 x 32 noise images, built directly as an ``Analysis`` (the fragment reads only scores, indices,
labels and images).

    python bench/dashboard.py                  # both datasets, 15 threshold changes per row
    python bench/dashboard.py --repeats 5 --skip-cifar
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/dashboard.py` puts only bench/ on sys.path
    sys.path.insert(0, str(ROOT))


def bench_page() -> None:
    """The AppTest script: one score fragment on the analysis in session state, timed."""
    import time

    import streamlit as st

    from ui.score_page import threshold_section

    start = time.perf_counter()
    threshold_section(st.session_state["analysis"], st.session_state["bench_scorer"])
    st.session_state["bench_seconds"] = time.perf_counter() - start


class NoiseImages:
    """Reader of an ImageSet of seeded 32 x 32 noise images (one per key)."""

    def load(self, key, draft_size=None):
        from PIL import Image

        rng = np.random.default_rng(int(key))
        return Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))


def synthetic_analysis(n_fit: int = 40_000, n_query: int = 10_000, seed: int = 0):
    """An Analysis with beta-distributed scores for both scorers and noise images."""
    from ood_core import Analysis, FeatureScorer, ImageSet, ScoreConfig

    rng = np.random.default_rng(seed)
    n = n_fit + n_query
    is_ood = rng.random(n_query) < 0.2
    labels = rng.integers(0, 10, n)
    ids = [f"synthetic/{i:05d}" for i in range(n)]
    items = ImageSet(ids=ids, paths=ids, labels=labels, class_names=[f"class {c}" for c in range(10)],
                     split=np.array(["train"] * n_fit + ["test"] * n_query), is_ood=np.r_[np.zeros(n_fit, bool), is_ood],
                     skipped=[], description="synthetic", identity=f"synthetic-{n}-{seed}",
                     _reader=NoiseImages(), _keys=list(range(n)), size_hint=32)

    def scores(size, ood=None):
        s = rng.beta(6, 2, size)
        if ood is not None:
            s[ood] = rng.beta(2, 5, int(ood.sum()))
        return s

    fit_feature, fit_pred = scores(n_fit), scores(n_fit)
    return Analysis(
        run_id=f"synthetic-{n}-{seed}", data_id=items.data_id, source=f"synthetic ({n_fit:,} fit / {n_query:,} query)", embed_config={}, items=items, ids=ids, paths=ids,
        labels=labels, class_names=items.class_names, fit_index=np.arange(n_fit), query_index=np.arange(n_fit, n),
        features=np.zeros((n, 1), np.float32), is_ood=is_ood, score_config=ScoreConfig(),
        feature_scorer=FeatureScorer(), fit_feature_scores=fit_feature, query_feature_scores=scores(n_query, is_ood),
        fit_pred_scores=fit_pred, query_pred_scores=scores(n_query, is_ood),
    )


def cifar_analysis():
    """The CIFAR-10 demo analysis (features from the disk cache once embedded), or None."""
    if not os.environ.get("OOD_CIFAR10"):
        return None
    from ood_core import analyze

    return analyze("cifar10-demo")


def time_threshold_changes(analysis, scorer: str, listing: str, repeats: int) -> tuple[list[float], list[float]]:
    """Per threshold change: (fragment seconds, AppTest rerun seconds), after one warm-up run."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(bench_page, default_timeout=120)
    at.session_state["analysis"] = analysis
    at.session_state["bench_scorer"] = scorer
    at.run()
    at.segmented_control(key=f"{scorer}_listing").set_value(listing).run()
    if at.exception:
        raise RuntimeError(at.exception[0].value)
    fragment, rerun = [], []
    percentiles = np.linspace(1.0, 30.0, repeats)
    for p in percentiles:
        t0 = time.perf_counter()
        at.number_input(key=f"{scorer}_percentile_input").set_value(float(round(p, 2))).run()
        rerun.append(time.perf_counter() - t0)
        fragment.append(at.session_state["bench_seconds"])
        if at.exception:
            raise RuntimeError(at.exception[0].value)
    return fragment, rerun


def ms(values: list[float]) -> str:
    return f"{1000 * statistics.median(values):.0f}"


def p90(values: list[float]) -> str:
    return f"{1000 * float(np.percentile(values, 90)):.0f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15, help="threshold changes timed per row (default: 15)")
    parser.add_argument("--skip-cifar", action="store_true", help="only the synthetic dataset")
    args = parser.parse_args(argv)
    import logging

    logging.getLogger("streamlit").setLevel(logging.ERROR)

    datasets = []
    if not args.skip_cifar:
        t0 = time.perf_counter()
        cifar = cifar_analysis()
        if cifar is None:
            print("CIFAR-10 demo: skipped (set OOD_CIFAR10 to the CIFAR-10 zip or folder)\n")
        else:
            print(f"CIFAR-10 demo loaded in {time.perf_counter() - t0:.1f} s (embeddings from the cache: "
                  f"{cifar.cache_hit})\n")
            datasets.append(("CIFAR-10 demo", cifar))
    datasets.append(("synthetic", synthetic_analysis()))

    print(f"Median (p90) of {args.repeats} threshold changes (percentile 1 -> 30), 16 images per grid, "
          f"{os.cpu_count()} CPU cores.\n")
    print("| dataset | items (fit / query) | scorer | grid | fragment rerun, ms | AppTest rerun, ms |")
    print("|---|---:|---|---|---:|---:|")
    for name, analysis in datasets:
        size = f"{len(analysis.fit_index) + len(analysis.query_index):,} ({len(analysis.fit_index):,} / " \
               f"{len(analysis.query_index):,})"
        for scorer in analysis.scorers:
            for listing in ("Top outliers", "Borderline"):
                fragment, rerun = time_threshold_changes(analysis, scorer, listing, args.repeats)
                print(f"| {name} | {size} | {scorer} | {listing.lower()} | {ms(fragment)} ({p90(fragment)}) | "
                      f"{ms(rerun)} ({p90(rerun)}) |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
