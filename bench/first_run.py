"""Benchmark: the first CIFAR-10 demo run end to end, per inference backend, as a new user meets it.

Each round runs ``ood-explorer demo`` as a separate process with an empty cache folder (so the
embedding, the backend's one-time export and check, the neighbour search and the classifier's
cross-validation are all part of it): the code of ``--baseline`` (default 29aab4e, main when the
inference backends were asked for: torch only), this checkout with ``--backend torch``, and this
checkout with the default (``auto``). Rounds alternate and the median of each is kept, so
background load hits all alike. Prints a markdown table with the wall times and the ratios to the
baseline.

    python bench/first_run.py               # 2 rounds, about 10 minutes on 2 cores
    python bench/first_run.py --rounds 3 --baseline none     # this checkout only

Needs OOD_CIFAR10 or ../shared/data/cifar10-jpeg.zip.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


from _cifar_features import cifar_path  # noqa: E402 - bench/ is on sys.path when run as a script


def first_run(variant: str, cifar: str, baseline_dir: Path | None) -> tuple[float, str]:
    """Wall seconds of one ``demo`` with an empty cache, and its output CSV's text. ``variant``: a
    backend of this checkout, or "baseline" (the code in ``baseline_dir``)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, OOD_CACHE_DIR=str(Path(tmp) / "cache"), OOD_DATA_DIR=str(Path(tmp) / "data"),
                   PYTHONPATH=str(baseline_dir if variant == "baseline" else ROOT))
        out = Path(tmp) / "demo.csv"
        cmd = [sys.executable, "-m", "ood_core", "demo", "--cifar10", cifar, "--out", str(out)]
        if variant != "baseline":
            cmd += ["--backend", variant]
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode:
            sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
        return wall, out.read_text()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (default: 2)")
    parser.add_argument("--baseline", default="29aab4e", help="git revision to compare with, or 'none' (default: 29aab4e)")
    args = parser.parse_args(argv)
    cifar = cifar_path()
    variants = (["baseline"] if args.baseline != "none" else []) + ["torch", "auto"]
    times: dict[str, list[float]] = {v: [] for v in variants}
    rows: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        baseline_dir = None
        if args.baseline != "none":
            baseline_dir = Path(tmp) / "baseline"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(baseline_dir), args.baseline],
                           check=True)
        try:
            for r in range(args.rounds):
                for variant in variants:
                    wall, csv = first_run(variant, cifar, baseline_dir)
                    times[variant].append(wall)
                    rows[variant] = csv.count("\n") - 1
                    print(f"round {r + 1}: {variant} {wall:.1f} s (load average {os.getloadavg()[0]:.1f})", flush=True)
        finally:
            if baseline_dir is not None:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline_dir)], check=False)
    base = statistics.median(times[variants[0]])
    print()
    print(f"`python bench/first_run.py --rounds {args.rounds}`: `ood-explorer demo` with an empty cache, "
          f"{os.cpu_count()} cores, median of {args.rounds} alternating rounds")
    print()
    print(f"| code, backend | first run (s) | rounds (s) | speed-up vs {variants[0]} | rows in the CSV |")
    print("|---|---:|---:|---:|---:|")
    labels = {"baseline": f"{args.baseline} (torch)", "torch": "this checkout, --backend torch",
              "auto": "this checkout, default (auto)"}
    for variant in variants:
        med = statistics.median(times[variant])
        print(f"| {labels[variant]} | {med:.1f} | {', '.join(f'{t:.1f}' for t in times[variant])} | "
              f"{base / med:.2f}x | {rows[variant]:,} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
