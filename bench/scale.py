"""Benchmark: the feature score at 100k, 300k and 1M fit rows, exact and approximate.

Data: synthetic clustered 1280-d float32 features written to disk as ``.npy`` shards
(:class:`ood_core.shards.ShardWriter`), N fit rows and N/10 queries. 2,000 clusters of varied
spread live in a 16-d latent space and are mapped to 1280 non-negative columns (a ReLU of a
random projection, like pooled CNN features) plus a little isotropic noise: a low intrinsic
dimension, as image embeddings have.

Each (N, index) is fitted and scored in a fresh child process that reads the shards memory-mapped
a block at a time, so its peak RSS (``ru_maxrss``) is that of the fit + score alone. Reported per
row: fit + score wall time, peak RSS, and for the approximate index its recall@10 against the
exact neighbours of a seeded sample of 1,000 queries (computed by brute force over the shards).
The exact search is run where it finishes within ``--exact-limit`` seconds: its time grows as
N^2, so a size is skipped (with the estimate) when the previous size's time predicts more.

Finally, the AUROC of the feature score on the CIFAR-10 demo split (5,000 fit / 1,000 query),
exact against approximate (needs the CIFAR-10 embeddings: set OOD_CIFAR10 or pass --cifar10).

    python bench/scale.py                              # 100k, 300k, 1M (about 25 minutes)
    python bench/scale.py --sizes 20000 --skip-cifar   # quick
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/scale.py` puts only bench/ on sys.path
    sys.path.insert(0, str(ROOT))

DIM, LATENT, CLUSTERS = 1280, 16, 2000


def write_clustered(folder: Path, n: int, seed: int, block: int = 50_000) -> None:
    """``n`` rows of the synthetic clustered data (see the module docstring) as shards in ``folder``."""
    from ood_core.shards import ShardWriter

    base = np.random.default_rng(0)  # the clusters: the same for fit and query sets
    centres = 2 * base.standard_normal((CLUSTERS, LATENT)).astype(np.float32)
    spread = np.exp(base.normal(0, 0.5, CLUSTERS)).astype(np.float32)
    W = (base.standard_normal((LATENT, DIM)) / np.sqrt(LATENT)).astype(np.float32)
    writer = ShardWriter(folder, n_rows=n, key=f"bench-scale-{n}-{seed}", shard_rows=block)
    for number in writer.pending():  # a folder kept from an earlier run (--workdir) is reused
        start, stop = writer.span(number)
        rng = np.random.default_rng([seed, number])
        which = rng.integers(0, CLUSTERS, stop - start)
        z = centres[which] + spread[which, None] * rng.standard_normal((stop - start, LATENT), dtype=np.float32)
        x = np.maximum(z @ W, 0) + 0.05 * rng.standard_normal((stop - start, DIM), dtype=np.float32)
        writer.write(number, x)
    writer.finish()


def exact_neighbours(fit, Q: np.ndarray, k: int) -> np.ndarray:
    """Indices of the exact k nearest fit rows (cosine) of each row of ``Q``, by brute force over blocks."""
    from ood_core.shards import blocks

    Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    best_s = np.full((len(Q), k), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(Q), k), dtype=np.int64)
    start = 0
    for block in blocks(fit):
        S = Qn @ (block / np.linalg.norm(block, axis=1, keepdims=True)).T
        top = np.argpartition(-S, k - 1, axis=1)[:, :k] if S.shape[1] > k else np.argsort(-S, axis=1)
        s = np.concatenate([best_s, np.take_along_axis(S, top, 1)], 1)
        i = np.concatenate([best_i, top + start], 1)
        keep = np.argsort(-s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(s, keep, 1), np.take_along_axis(i, keep, 1)
        start += len(block)
    return best_i


def child(fit_dir: str, query_dir: str, index: str, recall_queries: int) -> dict:
    """Fit + score in this process; what the parent prints."""
    from ood_core import FeatureScorer
    from ood_core.shards import FeatureShards

    fit, query = FeatureShards.open(fit_dir), FeatureShards.open(query_dir)
    start = time.perf_counter()
    scorer = FeatureScorer(index=index).fit(fit)
    fitted = time.perf_counter()
    scores = scorer.score(query)
    done = time.perf_counter()
    out = {"fit_s": fitted - start, "score_s": done - fitted, "total_s": done - start,
           "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
           "search": scorer.search_, "median_score": float(np.median(scores))}
    if scorer._ann is not None:  # noqa: SLF001 - the phases of the approximate fit
        out["phases_s"] = {name: round(t, 1) for name, t in scorer._ann.timings.items()}
    if index == "approximate" and recall_queries:
        sample = np.sort(np.random.default_rng(1).choice(len(query), min(recall_queries, len(query)), replace=False))
        Q = query.take(sample)
        _, approx = scorer.kneighbors(Q, k=10)
        exact = exact_neighbours(fit, Q, 10)
        out["recall_at_10"] = float(np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)]))
    return out


def run_child(fit_dir: Path, query_dir: Path, index: str, recall_queries: int, limit: float) -> dict | None:
    cmd = [sys.executable, __file__, "--child", str(fit_dir), str(query_dir), index, str(recall_queries)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, check=True)
    except subprocess.TimeoutExpired:
        return None
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"{index} at {fit_dir.name} failed:\n{exc.stderr[-3000:]}") from None
    return json.loads(done.stdout.strip().splitlines()[-1])


def cifar_auroc(cifar10: str | None) -> dict | None:
    from ood_core import ScoreConfig, analyze, cifar10 as open_cifar10, demo_split

    path = cifar10 or os.environ.get("OOD_CIFAR10")
    if not path:
        return None
    exact = analyze(demo_split(open_cifar10(path)), scores=ScoreConfig(index="exact"))
    approx = exact.rescore(ScoreConfig(index="approximate"))
    auroc = {name: a.threshold_view("feature", percentile=5).metrics["auroc"]
             for name, a in (("exact", exact), ("approximate", approx))}
    return {**auroc, "search": approx.feature_scorer.search_}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--exact-limit", type=float, default=600.0,
                        help="seconds an exact fit + score may take (default 600)")
    parser.add_argument("--indexes", nargs="+", choices=("exact", "approximate"), default=["exact", "approximate"])
    parser.add_argument("--recall-queries", type=int, default=1000)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the data in this folder and reuse it on the next run (default: a temp folder)")
    parser.add_argument("--cifar10", default=None, help="CIFAR-10 zip or folder (default: $OOD_CIFAR10)")
    parser.add_argument("--skip-cifar", action="store_true")
    args = parser.parse_args()

    import faiss
    import torch

    print(f"threads: torch {torch.get_num_threads()}, faiss {faiss.omp_get_max_threads()}; "
          f"cores {os.cpu_count()}; faiss {faiss.__version__}", flush=True)
    rows = []
    exact_time = None  # (N, seconds) of the last exact run, to predict the next
    with tempfile.TemporaryDirectory() as tmp:
        tmp = args.workdir or tmp
        for n in sorted(args.sizes):
            fit_dir, query_dir = Path(tmp) / f"fit-{n}", Path(tmp) / f"query-{n}"
            t0 = time.perf_counter()
            write_clustered(fit_dir, n, seed=1)
            write_clustered(query_dir, n // 10, seed=2)
            print(f"N={n:,}: data written in {time.perf_counter() - t0:.0f} s", flush=True)
            for index in args.indexes:
                if index == "exact" and exact_time is not None:
                    predicted = exact_time[1] * (n / exact_time[0]) ** 2
                    if predicted > args.exact_limit:
                        rows.append((n, index, f"skipped: about {predicted / 60:.0f} min predicted", None))
                        continue
                result = run_child(fit_dir, query_dir, index, args.recall_queries, args.exact_limit * 2)
                if result is None:
                    rows.append((n, index, f"over {args.exact_limit * 2:.0f} s", None))
                    continue
                if index == "exact":
                    exact_time = (n, result["total_s"])
                rows.append((n, index, None, result))
                print(f"  {index}: {json.dumps(result)}", flush=True)
            if args.workdir is None:  # free the disk before the next size
                for folder in (fit_dir, query_dir):
                    for f in folder.iterdir():
                        f.unlink()
    print("\n| fit rows | queries | search | fit + score (s) | peak RSS (GB) | recall@10 |")
    print("|---:|---:|---|---:|---:|---:|")
    for n, index, note, r in rows:
        if r is None:
            print(f"| {n:,} | {n // 10:,} | {index} | {note} | | |")
        else:
            recall = f"{r['recall_at_10']:.3f}" if "recall_at_10" in r else "1 (exact)"
            print(f"| {n:,} | {n // 10:,} | {r['search']} | {r['total_s']:.0f} (fit {r['fit_s']:.0f}) "
                  f"| {r['peak_rss_gb']:.1f} | {recall} |")
    if not args.skip_cifar:
        cifar = cifar_auroc(args.cifar10)
        if cifar is None:
            print("\nCIFAR-10 demo AUROC: skipped (set OOD_CIFAR10 or pass --cifar10)")
        else:
            print(f"\nCIFAR-10 demo feature-score AUROC: exact {cifar['exact']:.4f}, approximate "
                  f"{cifar['approximate']:.4f} (difference {cifar['approximate'] - cifar['exact']:+.4f}; "
                  f"{cifar['search']})")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))))
    else:
        main()
