"""Benchmark: the first CIFAR-10 demo run end to end, per inference backend, as a new user meets it.

Each round runs ``ood-explorer demo`` as a separate process with an empty cache folder (so the
embedding, the backend's one-time export and check, the neighbour search and the classifier's
cross-validation are all part of it), once with ``--backend torch`` (the default before the inference
backends existed) and once with the default (``auto``). Rounds alternate and the median of each is
kept, so background load hits both alike. Prints a markdown table with the wall time, the ratio to
torch, and the stage times the command logged.

    python bench/first_run.py               # 2 rounds, about 5 minutes on 2 cores
    python bench/first_run.py --rounds 3

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


def cifar_path() -> str:
    path = os.environ.get("OOD_CIFAR10") or str(ROOT.parent / "shared" / "data" / "cifar10-jpeg.zip")
    if not Path(path).exists():
        sys.exit(f"CIFAR-10 not found at {path}; set OOD_CIFAR10")
    return path


def first_run(backend: str, cifar: str) -> tuple[float, str]:
    """Wall seconds of one ``demo`` with an empty cache, and its output CSV's text."""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, OOD_CACHE_DIR=str(Path(tmp) / "cache"), OOD_DATA_DIR=str(Path(tmp) / "data"))
        out = Path(tmp) / "demo.csv"
        cmd = [sys.executable, "-m", "ood_core", "demo", "--cifar10", cifar, "--out", str(out), "--backend", backend]
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode:
            sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
        return wall, out.read_text()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (default: 2)")
    parser.add_argument("--backends", default="torch,auto", help="comma-separated; the first is the baseline")
    args = parser.parse_args(argv)
    cifar = cifar_path()
    backends = args.backends.split(",")
    times: dict[str, list[float]] = {b: [] for b in backends}
    rows: dict[str, int] = {}
    for r in range(args.rounds):
        for backend in backends:
            wall, csv = first_run(backend, cifar)
            times[backend].append(wall)
            rows[backend] = csv.count("\n") - 1
            print(f"round {r + 1}: {backend} {wall:.1f} s (load average {os.getloadavg()[0]:.1f})", flush=True)
    base = statistics.median(times[backends[0]])
    print()
    print(f"`python bench/first_run.py --rounds {args.rounds}`: `ood-explorer demo` with an empty cache, "
          f"{os.cpu_count()} cores, median of {args.rounds} alternating rounds")
    print()
    print("| backend | first run (s) | rounds (s) | speed-up vs torch | rows in the CSV |")
    print("|---|---:|---:|---:|---:|")
    for backend in backends:
        med = statistics.median(times[backend])
        label = "auto (the default)" if backend == "auto" else backend
        print(f"| {label} | {med:.1f} | {', '.join(f'{t:.1f}' for t in times[backend])} | {base / med:.2f}x | {rows[backend]:,} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
