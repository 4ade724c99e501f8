"""Benchmark: server-side time from a threshold change to the end of the rerun.

What is timed: the score pages' fragment (``ood_dashboard.score_page.threshold_section``: counts, metrics,
the histogram component, the ROC curve, both image grids and the export buttons) run by
``streamlit.testing.v1.AppTest`` after the percentile input is set, as Streamlit reruns it when a
user types a percentile or drags the line. Two numbers per row:

- *fragment*: wall time inside the script, from the start of the fragment to its end, i.e. the
  server's share of the latency, with
- *callback*: the on_change callback that turns the typed percentile into a threshold (a
  percentile of the run's sorted fit scores), run by Streamlit just before the fragment;
- *AppTest rerun*: the whole ``AppTest.run()`` round trip, which adds AppTest's own bookkeeping
  (an upper bound: it includes the callback).

Not included: the websocket hop and the browser redrawing the chart and images.

Datasets:

- the CIFAR-10 demo split (5,000 fit / 1,000 query; embeddings from the disk cache after the first
  embedding; skipped with a note when OOD_CIFAR10 is unset);
- synthetic items (``--synthetic``, default 40,000 / 10,000 and 900,000 / 100,000 fit / query, 20%
  of the queries out of distribution) with synthetic scores for both scorers and 32 x 32 noise
  images, built directly as an ``Analysis`` (the fragment reads only scores, indices, labels and
  images);
- a 1,000,000-item arrays file (``--arrays``): 16 float32 features per item (10 Gaussian clusters;
  the out-of-distribution queries lie halfway between two of them), ``split`` 900,000 train / 100,000 test and
  ``is_ood`` (20% of the test rows), written to a temporary folder and opened as a user would
  open it, ``ood_core.analyze(path, scores=ScoreConfig(index="approximate"))``: the time to open
  it (load, neighbour index, scores) is reported, then its threshold changes are timed. Feature
  score only (the file has no labels for a classifier), no images (the grids are tables).

    python bench/dashboard.py                  # every dataset, 15 threshold changes per row
    python bench/dashboard.py --repeats 5 --skip-cifar --synthetic 40000/10000 --arrays 0
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/dashboard.py` puts only bench/ on sys.path
    sys.path.insert(0, str(ROOT))


def bench_page() -> None:
    """The AppTest script: one score fragment on the analysis in session state, timed, and the
    percentile input's callback (its threshold lookup) timed too."""
    import time

    import streamlit as st

    import ood_dashboard.score_page
    from ood_dashboard.score_page import threshold_section

    if not getattr(ood_dashboard.score_page.set_percentile, "bench_timed", False):
        untimed = ood_dashboard.score_page.set_percentile

        def set_percentile(*args, **kwargs):
            t0 = time.perf_counter()
            untimed(*args, **kwargs)
            st.session_state["bench_callback_seconds"] = time.perf_counter() - t0

        set_percentile.bench_timed = True
        ood_dashboard.score_page.set_percentile = set_percentile
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
    """An Analysis with beta-distributed scores for both scorers and noise images (``n_fit`` /
    ``n_query`` items; 20% of the queries out of distribution)."""
    from ood_core import Analysis, FeatureScorer, ImageSet, ScoreConfig

    rng = np.random.default_rng(seed)
    n = n_fit + n_query
    is_ood = rng.random(n_query) < 0.2
    labels = rng.integers(0, 10, n)
    ids = [f"synthetic/{i:07d}" for i in range(n)]
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


def write_arrays(folder: Path, n_fit: int = 900_000, n_query: int = 100_000, dim: int = 16,
                 ood_share: float = 0.2, seed: int = 0) -> Path:
    """An ``.npz`` of precomputed features as a user would bring one: ``features`` (float32, in 10
    Gaussian clusters; the out-of-distribution test rows halfway between two of them), ``split``
    ("train" / "test") and ``is_ood`` (True for ``ood_share`` of the test rows)."""
    rng = np.random.default_rng(seed)
    n = n_fit + n_query
    centres = rng.normal(scale=4.0, size=(10, dim)).astype(np.float32)
    features = centres[rng.integers(0, 10, n)] + rng.standard_normal((n, dim), dtype=np.float32)
    is_ood = np.zeros(n, bool)
    is_ood[n_fit:] = rng.random(n_query) < ood_share
    n_out = int(is_ood.sum())  # halfway between two clusters, plus the clusters' own spread
    pairs = rng.integers(0, 10, (n_out, 2))
    features[is_ood] = (centres[pairs[:, 0]] + centres[pairs[:, 1]]) / 2 + rng.standard_normal((n_out, dim),
                                                                                               dtype=np.float32)
    split = np.where(np.arange(n) < n_fit, "train", "test")
    path = folder / f"features-{n}.npz"
    np.savez(path, features=features, split=split, is_ood=is_ood)
    return path


def arrays_analysis(n_fit: int, n_query: int):
    """Write the arrays file into a temporary folder and open it; (analysis, seconds to open, MB)."""
    from ood_core import ScoreConfig, analyze

    with tempfile.TemporaryDirectory(prefix="ood-bench-") as folder:
        path = write_arrays(Path(folder), n_fit, n_query)
        size = path.stat().st_size / 1e6
        t0 = time.perf_counter()
        analysis = analyze(path, scores=ScoreConfig(index="approximate"))
        return analysis, time.perf_counter() - t0, size


def time_threshold_changes(analysis, scorer: str, listing: str,
                           repeats: int) -> tuple[list[float], list[float], list[float]]:
    """Per threshold change: (fragment seconds, callback seconds, AppTest rerun seconds), after one
    warm-up run."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(bench_page, default_timeout=120)
    at.session_state["analysis"] = analysis
    at.session_state["bench_scorer"] = scorer
    at.run()
    if at.exception:
        raise RuntimeError(at.exception[0].value)
    at.segmented_control(key=f"{scorer}_listing").set_value(listing).run()
    if at.exception:
        raise RuntimeError(at.exception[0].value)
    fragment, callback, rerun = [], [], []
    percentiles = np.linspace(1.0, 30.0, repeats)
    for p in percentiles:
        t0 = time.perf_counter()
        at.number_input(key=f"{scorer}_percentile_input").set_value(float(round(p, 2))).run()
        rerun.append(time.perf_counter() - t0)
        fragment.append(at.session_state["bench_seconds"])
        callback.append(at.session_state["bench_callback_seconds"])
        if at.exception:
            raise RuntimeError(at.exception[0].value)
    return fragment, callback, rerun


def ms(values: list[float]) -> str:
    return f"{1000 * statistics.median(values):.0f}"


def p90(values: list[float]) -> str:
    return f"{1000 * float(np.percentile(values, 90)):.0f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15, help="threshold changes timed per row (default: 15)")
    parser.add_argument("--skip-cifar", action="store_true", help="leave out the CIFAR-10 demo")
    parser.add_argument("--synthetic", nargs="*", default=["40000/10000", "900000/100000"], metavar="FIT/QUERY",
                        help="sizes of the synthetic datasets (default: 40000/10000 900000/100000)")
    parser.add_argument("--arrays", default="900000/100000", metavar="FIT/QUERY",
                        help="size of the arrays file opened with analyze(); 0 skips it (default: 900000/100000)")
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
    for sizes in args.synthetic:
        n_fit, n_query = (int(v) for v in sizes.split("/"))
        datasets.append(("synthetic", synthetic_analysis(n_fit, n_query)))
    if args.arrays != "0":
        n_fit, n_query = (int(v) for v in args.arrays.split("/"))
        analysis, seconds, size = arrays_analysis(n_fit, n_query)
        print(f"Arrays file ({n_fit + n_query:,} x 16 float32, {size:.0f} MB) opened with analyze(..., "
              f"ScoreConfig(index=\"approximate\")) in {seconds:.1f} s\n")
        datasets.append(("arrays file", analysis))

    print(f"Median (p90) of {args.repeats} threshold changes (percentile 1 -> 30), 16 images per grid, "
          f"{os.cpu_count()} CPU cores (load average {os.getloadavg()[0]:.1f} when the timing began).\n", flush=True)
    print("| dataset | items (fit / query) | scorer | grid | fragment rerun, ms median (p90) | callback, ms | "
          "AppTest rerun, ms |")
    print("|---|---:|---|---|---:|---:|---:|")
    for name, analysis in datasets:
        size = f"{len(analysis.fit_index) + len(analysis.query_index):,} ({len(analysis.fit_index):,} / " \
               f"{len(analysis.query_index):,})"
        for scorer in analysis.scorers:
            for listing in ("Top outliers", "Borderline"):
                if analysis.items is None and listing == "Borderline":
                    continue  # no images: the grids are small tables whatever they list
                fragment, callback, rerun = time_threshold_changes(analysis, scorer, listing, args.repeats)
                grid = listing.lower() if analysis.items is not None else f"{listing.lower()} (table)"
                print(f"| {name} | {size} | {scorer} | {grid} | {ms(fragment)} ({p90(fragment)}) | "
                      f"{ms(callback)} ({p90(callback)}) | {ms(rerun)} ({p90(rerun)}) |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
