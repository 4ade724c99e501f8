"""Load benchmark: N real Chromium sessions against one dashboard server.

Starts ``streamlit run app.py`` (digits default) on a free 127.0.0.1 port, opens N headless
Chromium browsers (Debian's ``chromium`` through Playwright, the flags of
``tests/browser_support.py``) on the Feature scores page, and in each session types percentiles
into the page's percentile box (then Enter), timing from the key press until the
"Train (fit) flagged" count on screen changes. Every 4 changes the session switches between the
Feature scores and Prediction scores pages (timed until the new page's count is shown).

The sessions move in step (a barrier after each phase of 4 changes and after each page switch),
so the server process's own CPU time (``/proc/PID/stat``: user + system), sampled at each barrier,
splits into CPU-seconds per threshold change and per page switch even with 8 sessions. Before a
barrier each session waits for its page to be idle, so work the server does after the count
appears (the image grids, the chart) is counted with the change that caused it.

Reported per run (one markdown row): browser-side p50 / p95 / max of a threshold change and of a
page switch; the server's CPU-seconds per change and per switch; its peak RSS (``VmHWM``); the
bytes the server sent over the websocket per change; and stalls: inputs that could not be filled
(not visible or not editable) or given Enter within ``--stall`` seconds (``LOAD_DEBUG=1`` prints
each fill's wait).

    python bench/load.py                          # 1 and 8 sessions, 40 changes each
    python bench/load.py --sessions 1 --changes 24
    python bench/load.py --sessions 1 --app /tmp/before/app.py --app app.py   # before / after

``--app`` may name another checkout's ``app.py`` (e.g. ``git archive REV | tar -x -C /tmp/before``):
its server runs from that checkout, so two versions are compared in one invocation, one after the
other, under the same load. Everything stays on 127.0.0.1.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [p for p in (str(ROOT), str(ROOT / "tests")) if p not in sys.path]

from browser_support import CHROMIUM, CHROMIUM_ARGS, free_port, server, wait_until_idle  # noqa: E402

PERCENTILE = "Percentile of the train (fit) scores"
COUNT = "Train (fit) flagged"
PAGES = (("feature_scores", "Feature scores"), ("prediction_scores", "Prediction scores"))
CHANGES_PER_PAGE = 4
HEADING_JS = "() => { const h = document.querySelector('[data-testid=stMain] h1'); return h ? h.innerText.trim() : ''; }"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# The count's text, read in the page: the value of the metric labelled COUNT ('' while absent).
COUNT_JS = """() => {
  for (const m of document.querySelectorAll('[data-testid=stMetric]')) {
    const label = m.querySelector('[data-testid=stMetricLabel]');
    if (label && label.innerText.trim() === %r) {
      const value = m.querySelector('[data-testid=stMetricValue]');
      return value ? value.innerText : '';
    }
  }
  return '';
}""" % COUNT


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (its threads included), from ``/proc/PID/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime: fields 14 and 15


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size (``VmHWM``) of process ``pid`` in MB."""
    match = re.search(r"^VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    return int(match.group(1)) / 1024 if match else float("nan")


@dataclass
class Session:
    """What one browser session measured."""

    changes: list[float] = field(default_factory=list)  # seconds, press -> count changed
    switches: list[float] = field(default_factory=list)  # seconds, click -> new page's count shown
    fill_waits: list[float] = field(default_factory=list)  # seconds until the box took the text
    stalls: int = 0
    ws_bytes: list[int] = field(default_factory=list)  # websocket bytes received per change
    error: str | None = None


def percentiles(seed: int, n: int) -> list[float]:
    """``n`` whole percentiles from 1 to 60, each different from the one its page shows when it is typed
    (so the count changes): the one before, and for the first change after a page switch, the last one
    typed on that page (the pages alternate every ``CHANGES_PER_PAGE`` changes and keep their own)."""
    import random

    rng, out = random.Random(seed), []
    while len(out) < n:
        p = float(rng.randint(1, 60))
        i = len(out)
        shown = out[-1] if out and i % CHANGES_PER_PAGE else (
            out[i - CHANGES_PER_PAGE - 1] if i >= 2 * CHANGES_PER_PAGE else None)
        if p != shown and (not out or p != out[-1]):
            out.append(p)
    return out


class Phases:
    """A barrier for the sessions; at each phase's end the server's CPU time is sampled and
    charged to that phase's kind ("change" or "switch"), and whether the time is up is decided
    once for all sessions (``stop``)."""

    def __init__(self, sessions: int, pid: int, seconds: float):
        self.pid, self.seconds, self.deadline = pid, seconds, float("inf")
        self.cpu = {"change": 0.0, "switch": 0.0}
        self.kind = self.next = ""
        self.last, self.stop = 0.0, False
        self.barrier = threading.Barrier(sessions, action=self._sample)

    def _sample(self) -> None:
        now = cpu_seconds(self.pid)
        if self.kind:
            self.cpu[self.kind] += now - self.last
        else:  # the first phase starts: the clock of --seconds too
            self.deadline = min(self.deadline, time.monotonic() + self.seconds)
        self.last, self.kind = now, self.next
        self.stop = self.stop or time.monotonic() > self.deadline

    def end(self, kind_next: str, timeout: float = 600) -> None:
        """Wait for every session to end its phase; the next phase is ``kind_next`` ("" for none)."""
        self.next = kind_next  # every session writes the same value
        self.barrier.wait(timeout)


def run_session(index: int, url: str, changes: int, stall: float, phases: Phases,
                result: Session, start_timeout: float) -> None:
    """One Chromium session: open the feature page, then rounds of 4 changes and a page switch."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    pending = percentiles(index, changes)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            received = [0]

            def on_ws(ws):
                ws.on("framereceived", lambda payload: received.__setitem__(0, received[0] + len(payload)))

            page.on("websocket", on_ws)
            page.set_default_timeout(start_timeout * 1000)
            page.goto(f"{url}/{PAGES[0][0]}")
            page.wait_for_function(f"({COUNT_JS})() !== ''")
            wait_until_idle(page, timeout=start_timeout)
            page.set_default_timeout(max(30.0, 3 * stall) * 1000)
            phases.end("change", start_timeout)
            on_page = 0
            while pending and not phases.stop:
                for p in pending[:CHANGES_PER_PAGE]:
                    before = page.evaluate(COUNT_JS)
                    box = page.get_by_role("spinbutton", name=PERCENTILE)
                    t = time.perf_counter()
                    try:
                        box.fill(f"{p:g}", timeout=stall * 1000)
                    except PlaywrightError:
                        result.stalls += 1
                        box.fill(f"{p:g}")  # goes on once it can (or fails the session)
                    result.fill_waits.append(time.perf_counter() - t)
                    if os.environ.get("LOAD_DEBUG"):
                        print(f"session {index} change {len(result.changes)} fill {result.fill_waits[-1]:.2f} s", file=sys.stderr)
                    received[0] = 0
                    t = time.perf_counter()
                    try:
                        box.press("Enter", timeout=stall * 1000)
                    except PlaywrightError:  # not actionable (e.g. redrawn away) for --stall seconds
                        result.stalls += 1
                        box.press("Enter")
                    page.wait_for_function(f"prev => ({COUNT_JS})() !== prev && ({COUNT_JS})() !== ''", arg=before,
                                           polling=10)
                    result.changes.append(time.perf_counter() - t)
                    wait_until_idle(page)
                    result.ws_bytes.append(received[0])
                del pending[:CHANGES_PER_PAGE]
                phases.end("switch" if pending else "")
                if pending and not phases.stop:
                    on_page = 1 - on_page
                    path, title = PAGES[on_page]
                    before = page.evaluate(HEADING_JS)
                    t = time.perf_counter()
                    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title).click()
                    page.wait_for_function(f"prev => {{ const h = ({HEADING_JS})(); return h && h !== prev"
                                           f" && ({COUNT_JS})() !== ''; }}", arg=before, polling=10)
                    result.switches.append(time.perf_counter() - t)
                    if not page.url.split("?")[0].endswith("/" + path):
                        raise AssertionError(f"session {index}: not on /{path}: {page.url}")
                    wait_until_idle(page)
                phases.end("change" if pending else "")
            browser.close()
    except Exception as exc:  # reported in the table; the barrier is broken so the others stop too
        result.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        phases.barrier.abort()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))]


def run(app: Path, sessions: int, changes: int, seconds: float, stall: float, cache_dir: str | None,
        start_timeout: float) -> dict:
    """One server, ``sessions`` browsers; the measured numbers as one table row."""
    port = free_port()
    argv = [sys.executable, "-m", "streamlit", "run", str(app), "--server.headless", "true",
            "--server.port", str(port), "--server.address", "127.0.0.1",
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    env = {"OOD_CACHE_DIR": cache_dir} if cache_dir else {}
    with tempfile.TemporaryDirectory(prefix="ood-load-") as tmp:
        log = Path(tmp) / "server.log"
        with server(argv, port, log, env=env, cwd=app.parent, start_timeout=start_timeout) as url:
            pid = _server_pid(port)
            phases = Phases(sessions, pid, seconds)
            results = [Session() for _ in range(sessions)]
            threads = [threading.Thread(target=run_session, args=(i, url, changes, stall, phases, r,
                                                                  start_timeout), daemon=True)
                       for i, r in enumerate(results)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            rss = peak_rss_mb(pid)
    changes_all = [c for r in results for c in r.changes]
    switches_all = [s for r in results for s in r.switches]
    errors = [f"session {i}: {r.error}" for i, r in enumerate(results) if r.error]
    return {
        "app": str(app), "sessions": sessions, "changes": len(changes_all), "switches": len(switches_all),
        "p50": pct(changes_all, 50), "p95": pct(changes_all, 95), "max": max(changes_all, default=float("nan")),
        "switch_p50": pct(switches_all, 50), "switch_max": max(switches_all, default=float("nan")),
        "cpu_change": phases.cpu["change"] / max(1, len(changes_all)),
        "cpu_switch": phases.cpu["switch"] / max(1, len(switches_all)),
        "rss_mb": rss, "ws_kb": statistics.mean([b for r in results for b in r.ws_bytes] or [0]) / 1024,
        "fill_max": max((w for r in results for w in r.fill_waits), default=float("nan")),
        "stalls": sum(r.stalls for r in results), "errors": errors,
    }


def _server_pid(port: int) -> int:
    """The pid of the process listening on 127.0.0.1:``port`` (the Streamlit server), from /proc."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if int(parts[1].rsplit(":", 1)[1], 16) == port and parts[3] == "0A":  # LISTEN
                inodes.add(parts[9])
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return int(proc.name)
        except OSError:
            continue
    raise RuntimeError(f"no process listens on port {port}")


def table(rows: list[dict], stall: float) -> str:
    head = ("| app | sessions | changes | p50 s | p95 s | max s | switch p50 s | switch max s | server CPU s / change "
            f"| server CPU s / switch | peak RSS MB | ws kB / change | slowest fill s | stalls > {stall:g} s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r['app']} | {r['sessions']} | {r['changes']} | {r['p50']:.3f} | {r['p95']:.3f} | "
                     f"{r['max']:.3f} | {r['switch_p50']:.3f} | {r['switch_max']:.3f} | {r['cpu_change']:.3f} | "
                     f"{r['cpu_switch']:.3f} | {r['rss_mb']:.0f} | {r['ws_kb']:.1f} | {r['fill_max']:.2f} | "
                     f"{r['stalls']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 8],
                        help="session counts, one server run each (default: 1 8)")
    parser.add_argument("--changes", type=int, default=40, help="threshold changes per session (default: 40)")
    parser.add_argument("--seconds", type=float, default=600,
                        help="stop starting new changes after this many seconds per run (default: 600)")
    parser.add_argument("--stall", type=float, default=10,
                        help="a fill of the percentile box waiting longer than this is a stall (default: 10)")
    parser.add_argument("--app", type=Path, action="append",
                        help="the app.py to serve, repeatable to compare checkouts (default: this checkout's)")
    parser.add_argument("--cache-dir", default=None,
                        help="OOD_CACHE_DIR for the server (default: the environment's, else the user cache)")
    parser.add_argument("--start-timeout", type=float, default=180,
                        help="seconds allowed for the server and the first page (default: 180)")
    args = parser.parse_args(argv)
    if CHROMIUM is None:
        parser.error("no `chromium` on PATH (apt-get install chromium)")
    apps = [a.resolve() for a in (args.app or [ROOT / "app.py"])]
    for app in apps:
        if not app.is_file():
            parser.error(f"--app {app}: no such file")
    rows = []
    for sessions in args.sessions:
        for app in apps:
            row = run(app, sessions, args.changes, args.seconds, args.stall, args.cache_dir, args.start_timeout)
            rows.append(row)
            print(table([row], args.stall).splitlines()[-1], file=sys.stderr, flush=True)
            for error in row["errors"]:
                print(f"  {error}", file=sys.stderr)
    print(table(rows, args.stall))
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
