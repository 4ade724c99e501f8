"""Shared by the browser tests: a ``streamlit run`` server on a free localhost port, Debian's
Chromium driven by Playwright (never ``playwright install``), polling and screenshots."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from ood_dashboard.navigation import PAGES as NAVIGATION  # noqa: E402
SCREENSHOTS = ROOT / "screenshots"  # gitignored
CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# The threshold histogram component's iframe.
HISTOGRAM_IFRAME = 'iframe[title="ood_dashboard.threshold_histogram.threshold_histogram"]'


def skip_without_browser() -> None:
    """Skip the calling test module (at import) without Playwright, Streamlit or Debian's Chromium:
    the browser tests never download a browser."""
    import pytest

    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    pytest.importorskip("streamlit", reason="streamlit is not installed (pip install streamlit)")
    if CHROMIUM is None:
        pytest.skip("no `chromium` on PATH (apt-get install chromium); the browser test never downloads one",
                    allow_module_level=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(script: Path, log_path: Path, env: dict[str, str] | None = None, start_timeout: float = 60):
    """``streamlit run script`` on 127.0.0.1; yields its URL once healthy, stops it afterwards.
    Fails (AssertionError with the server log) if it exits or stays unhealthy."""
    port = free_port()
    argv = [
        sys.executable, "-m", "streamlit", "run", str(script),
        "--server.headless", "true",
        "--server.port", str(port),
        "--server.address", "127.0.0.1",
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
    ]
    with server(argv, port, log_path, env=env, cwd=ROOT, start_timeout=start_timeout) as url:
        yield url


@contextlib.contextmanager
def server(argv: list[str], port: int, log_path: Path, env: dict[str, str] | None = None, cwd: Path = ROOT,
           start_timeout: float = 60, base_env: dict[str, str] | None = None):
    """Start ``argv`` (a Streamlit server that will listen on 127.0.0.1:``port``) in ``cwd``; yield
    its URL once ``/_stcore/health`` answers, stop it afterwards. Fails (AssertionError with the
    server log) if it exits or stays unhealthy. ``env`` is added to ``base_env`` (default: this
    process's environment)."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**(os.environ if base_env is None else base_env), "PYTHONUNBUFFERED": "1", **(env or {})},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"{argv[0]} exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{argv[0]} not healthy after {start_timeout} s:\n{log_path.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def dashboard_server(tmp_path_factory, name: str):
    """``streamlit run app.py`` (the dashboard) for one test module, logging to a fresh folder
    ``name``. It uses the embedding cache of the other app tests (``OOD_CACHE_DIR``, else one
    folder per test session), so one of them pays for embedding digits."""
    cache = os.environ.get("OOD_CACHE_DIR") or str(tmp_path_factory.getbasetemp() / "ood_app_cache")
    log = tmp_path_factory.mktemp(name) / "server.log"
    with streamlit_server(ROOT / "app.py", log, env={"OOD_CACHE_DIR": cache}) as url:
        yield url


@contextlib.contextmanager
def chromium():
    """A headless Chromium browser (Playwright's sync API)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def wait_for(read, accept, what: str, timeout: float = 30):
    """Poll ``read()`` until ``accept(value)``; return the value (or fail showing it)."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last seen: {value!r}")
        time.sleep(0.1)


def script_running(page) -> bool:
    """Whether Streamlit is running the page's script (the app root's ``data-test-script-state``;
    the header's "Running..." widget only shows once a run has taken half a second)."""
    state = page.get_attribute("[data-testid=stApp]", "data-test-script-state")
    running = state in (None, "initial", "running", "rerunRequested", "stopRequested")
    return running or page.locator('[data-testid="stStatusWidget"]').count() > 0


def wait_until_idle(page, timeout: float = 60) -> None:
    """Wait until Streamlit has not been running the script for half a second."""
    idle_since = None
    deadline = time.monotonic() + timeout
    while True:
        running = script_running(page)
        now = time.monotonic()
        if running:
            idle_since = None
        elif idle_since is None:
            idle_since = now
        elif now - idle_since > 0.5:
            return
        if now > deadline:
            raise AssertionError(f"the app was still running after {timeout} s")
        time.sleep(0.1)


def full_page_screenshot(page, path: Path, width: int = 1400) -> None:
    """Screenshot of the whole app page: Streamlit scrolls inside its main block, so the viewport is
    grown to the content's height first (and the images given a moment to load)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height = page.evaluate("() => document.querySelector('[data-testid=stMain]').scrollHeight")
    page.set_viewport_size({"width": width, "height": min(int(height) + 40, 8000)})
    page.wait_for_timeout(300)
    page.wait_for_function("() => [...document.images].every(img => img.complete)", timeout=10_000)
    page.screenshot(path=str(path), full_page=True)


# The dashboard's pages as its navigation lists them: (URL path, sidebar title).
APP_PAGES = [(spec.name, spec.title) for spec in NAVIGATION]


def is_local(url: str) -> bool:
    """True for URLs that stay on this machine (inline ``data:``/``blob:``/``about:`` included)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    return parts.scheme in ("http", "https", "ws", "wss") and parts.hostname in {"127.0.0.1", "localhost", "::1"}


def settle(page, timeout: float = 60) -> None:
    """Wait until the page is drawn: the script idle, then no spinner or skeleton left, every image
    loaded, every plotly chart rendered."""
    wait_until_idle(page, timeout)
    page.wait_for_function(
        """() => !document.querySelector('[data-testid=stSpinner], [data-testid=stSkeleton]')
              && [...document.images].every(img => img.complete)
              && [...document.querySelectorAll('[data-testid=stPlotlyChart]')]
                   .every(chart => chart.querySelector('.main-svg'))""",
        timeout=timeout * 1000,
    )


def open_app_page(page, path: str, title: str, timeout: float = 60) -> None:
    """Click ``title`` in the sidebar and wait until that page has replaced the previous one."""
    heading = page.locator("[data-testid=stMain] h1").first
    before = heading.inner_text() if heading.count() else None
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title).click()
    page.wait_for_url(re.compile(r"/(\?.*)?$" if path == "data" else rf"/{path}(\?.*)?$"))
    wait_for(lambda: heading.inner_text() if heading.count() else None,
             lambda text: text is not None and text != before, f"the {title!r} page's heading", timeout)
    settle(page, timeout)


# In the page: where the text under an element lies once laid out (its text nodes' line boxes,
# ellipsis or not), and its content box.
_TEXT_EXTENT_JS = """
const textExtent = el => {
  const range = document.createRange(), tops = new Set();
  let left = Infinity, right = -Infinity;
  const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    range.selectNodeContents(node);
    for (const r of range.getClientRects()) {
      if (r.width === 0) continue;
      left = Math.min(left, r.left); right = Math.max(right, r.right); tops.add(Math.round(r.top));
    }
  }
  const style = getComputedStyle(el), box = el.getBoundingClientRect();
  const boxLeft = box.left + parseFloat(style.borderLeftWidth) + parseFloat(style.paddingLeft);
  const boxRight = box.right - parseFloat(style.borderRightWidth) - parseFloat(style.paddingRight);
  return {text: el.innerText, text_px: right - left, box_px: boxRight - boxLeft, lines: tops.size,
          overflows: left < boxLeft - 0.05 || right > boxRight + 0.05};
};
"""

# Text the browser shortens with an ellipsis: every element (main area and sidebar) whose
# text-overflow is ellipsis and whose text runs past its content box.
CUT_OFF_TEXT_JS = "() => {" + _TEXT_EXTENT_JS + """
  return [...document.querySelectorAll('[data-testid=stMain] *, [data-testid=stSidebar] *')]
    .filter(el => getComputedStyle(el).textOverflow === 'ellipsis' && el.innerText.trim())
    .map(el => ({where: (el.closest('[data-testid]') || el).dataset.testid || el.tagName, ...textExtent(el)}))
    .filter(extent => extent.overflows);
}"""

# Every headline metric value (st.metric): its text, the width it takes and has, how many lines.
METRIC_VALUES_JS = "() => {" + _TEXT_EXTENT_JS + """
  return [...document.querySelectorAll('[data-testid=stMetricValue]')].map(textExtent);
}"""
