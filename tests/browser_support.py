"""Shared by the browser tests: a ``streamlit run`` server on a free localhost port, Debian's
Chromium driven by Playwright (never ``playwright install``), polling and screenshots."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
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
HISTOGRAM_IFRAME = 'iframe[title="ui.threshold_histogram.threshold_histogram"]'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(script: Path, log_path: Path, env: dict[str, str] | None = None, start_timeout: float = 60):
    """``streamlit run script`` on 127.0.0.1; yields its URL once healthy, stops it afterwards.
    Fails (AssertionError with the server log) if it exits or stays unhealthy."""
    port = free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "streamlit", "run", str(script),
                "--server.headless", "true",
                "--server.port", str(port),
                "--server.address", "127.0.0.1",
                "--browser.gatherUsageStats", "false",
                "--server.fileWatcherType", "none",
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"streamlit exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"streamlit not healthy after {start_timeout} s:\n{log_path.read_text()}")
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


def wait_until_idle(page, timeout: float = 60) -> None:
    """Wait until Streamlit's "running" indicator has been gone for half a second."""
    idle_since = None
    deadline = time.monotonic() + timeout
    while True:
        running = page.locator('[data-testid="stStatusWidget"]').count() > 0
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
