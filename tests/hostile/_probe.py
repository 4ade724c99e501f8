"""Child process of the bomb test: loads each path through the library, the CLI and the
dashboard's loading path, timing each, and prints one JSON object with the results and this
process's peak resident memory (``ru_maxrss``) after each path.

    python -m tests.hostile._probe OUT_DIR PATH [PATH ...]
"""
from __future__ import annotations

import contextlib
import io
import json
import resource
import sys
import time
from pathlib import Path


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _timed(fn) -> dict:
    start = time.perf_counter()
    try:
        result = fn()
    except Exception as exc:  # noqa: BLE001 - the message is what is being tested
        result = {"error": f"{type(exc).__name__}: {exc}"}
    result["seconds"] = time.perf_counter() - start
    return result


def probe(path: str, out: Path) -> dict:
    import ood_core
    import ood_core.cli
    from ood_dashboard.runs import RunSettings, compute_run

    def library() -> dict:
        source = ood_core.open_source(path)
        return {"items": len(source), "skipped": source.skipped}

    def cli() -> dict:
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            rc = ood_core.cli.main(["-q", "run", path, "--out", str(out / f"{Path(path).stem}.csv")])
        return {"rc": rc, "stdout": stdout.getvalue(), "stderr": stderr.getvalue()}

    def dashboard() -> dict:
        analysis = compute_run(RunSettings(source=path))
        return {"items": len(analysis.ids), "skipped": analysis.skipped}

    return {name: {**_timed(fn), "peak_mib": _peak_mib()}
            for name, fn in (("library", library), ("cli", cli), ("dashboard", dashboard))}


def main(argv: list[str]) -> None:
    out, paths = Path(argv[0]), argv[1:]
    results = {"start_peak_mib": _peak_mib()}
    results.update({path: probe(path, out) for path in paths})
    print(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1:])
