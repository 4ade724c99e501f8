"""Real-browser test of the draggable threshold line (ood_dashboard.threshold_histogram).

Starts ``streamlit run tests/browser_app.py`` on a free localhost port and
drives Debian's Chromium through Playwright (never ``playwright install``):
drags the line with the mouse and checks the numbers Streamlit shows, then
types a percentile and checks the line moved. Screenshots go to screenshots/.
"""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest

pytestmark = pytest.mark.browser

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
)
pytest.importorskip("streamlit", reason="streamlit is not installed (pip install streamlit)")
from browser_support import (  # noqa: E402
    CHROMIUM,
    HISTOGRAM_IFRAME as IFRAME,
    ROOT,
    SCREENSHOTS,
    chromium,
    streamlit_server,
    wait_for,
)

if CHROMIUM is None:
    pytest.skip(
        "no `chromium` on PATH (apt-get install chromium); the browser test never downloads one",
        allow_module_level=True,
    )

APP = ROOT / "tests" / "browser_app.py"
TIMEOUT_S = 30


def _load_app_module():
    spec = importlib.util.spec_from_file_location("browser_app", APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # main() runs only under `streamlit run`
    return module


browser_app = _load_app_module()
FIT, QUERY = browser_app.synthetic_scores()


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    with streamlit_server(APP, tmp_path_factory.mktemp("streamlit") / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture()
def page(browser, app_url):
    """A fresh browser context (so a fresh Streamlit session) with the app loaded."""
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_S * 1000)
    page.goto(app_url)
    frame = page.wait_for_selector(IFRAME).content_frame()
    # The line is a zero-width path, never "visible" to Playwright: wait for it attached.
    frame.wait_for_selector(".shapelayer path[data-index='0']", state="attached")
    wait_for(lambda: _status(page), lambda s: len(s) == 4, "the app's first run")
    yield page
    context.close()


def _status(page) -> dict[str, str]:
    """The `name: value` lines the app writes below the chart."""
    text = page.locator('[data-testid="stMain"]').inner_text()
    return dict(re.findall(r"^(threshold|test flagged|train flagged|last drag): (.+)$", text, re.M))


def _frame(page):
    return page.frame_locator(IFRAME)


def _line(page) -> dict:
    """The threshold shape as plotly holds it, plus its on-screen x in page pixels."""
    frame = page.wait_for_selector(IFRAME).content_frame()
    box = page.wait_for_selector(IFRAME).bounding_box()
    line = frame.evaluate(
        """() => {
            const gd = document.getElementById('chart');
            const s = gd.layout.shapes[0];
            const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
            return {x0: s.x0, x1: s.x1, y0: s.y0, y1: s.y1, yref: s.yref,
                    px: xa._offset + xa.l2p(s.x0), py: ya._offset + ya._length / 2,
                    px_per_unit: xa._m, range: xa.range};
        }"""
    )
    line["px"] += box["x"]
    line["py"] += box["y"]
    return line


def _expected_status(threshold: float) -> dict[str, str]:
    return {
        "threshold": repr(threshold),
        "test flagged": str(int(np.count_nonzero(QUERY < threshold))),
        "train flagged": str(int(np.count_nonzero(FIT < threshold))),
    }


def _settled_after_drag(page, previous: dict[str, str]) -> dict[str, str]:
    """The status once the rerun after a drag has written all its lines.

    Streamlit replaces the lines one by one (stale ones stay visible meanwhile);
    "last drag" is written last, so when it shows the new threshold all are new.
    """
    return wait_for(
        lambda: _status(page),
        lambda s: s.get("last drag") not in (None, previous["last drag"])
        and s["last drag"] == s["threshold"],
        "the rerun after the drag",
    )


def _drag(page, dx: float) -> None:
    line = _line(page)
    page.mouse.move(line["px"], line["py"])
    page.mouse.down()
    page.mouse.move(line["px"] + dx, line["py"] + 25, steps=8)  # some vertical wobble too
    page.mouse.up()


def test_dragging_the_line_updates_threshold_counts_and_percentile(page):
    start = _status(page)
    t0 = float(start["threshold"])
    assert t0 == float(np.percentile(FIT, browser_app.INITIAL_PERCENTILE))
    assert start == {**_expected_status(t0), "last drag": "None"}
    line0 = _line(page)
    assert line0["x0"] == line0["x1"] == t0

    # Drag right by 120 px: threshold up, more items flagged.
    _drag(page, 120)
    status = _settled_after_drag(page, start)
    t1 = float(status["threshold"])
    assert t1 == pytest.approx(t0 + 120 / line0["px_per_unit"], abs=1.5 / line0["px_per_unit"])
    assert status == {**_expected_status(t1), "last drag": repr(t1)}
    assert int(status["test flagged"]) > int(start["test flagged"])
    assert int(status["train flagged"]) > int(start["train flagged"])
    percentile = page.get_by_label("Percentile")
    wait_for(percentile.input_value, f"{browser_app.percentile_of(FIT, t1):.2f}".__eq__,
              "the percentile input to follow the line")
    assert float(percentile.input_value()) > browser_app.INITIAL_PERCENTILE
    line1 = _line(page)  # the drag moved it 25 px down as well: pinned back to full height
    assert (line1["x0"], line1["x1"], line1["y0"], line1["y1"], line1["yref"]) == (t1, t1, 0, 1, "paper")
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "threshold_histogram_drag.png"), full_page=True)

    # Drag far left, past the axis: clamped to the left end of the x range, nothing flagged.
    previous = status
    _drag(page, -2000)
    status = _settled_after_drag(page, previous)
    t2 = float(status["threshold"])
    assert t2 == line1["range"][0]
    assert status == {**_expected_status(t2), "last drag": repr(t2)}
    assert status["test flagged"] == "0"
    wait_for(percentile.input_value, "0.00".__eq__, "the percentile input to reach 0.00")


def test_percentile_input_moves_the_line(page):
    before = _line(page)
    percentile = page.get_by_label("Percentile")
    percentile.fill("50")
    percentile.press("Enter")
    expected = float(np.percentile(FIT, 50))
    # A rerun caused by the input is not a drag: the component returns None.
    want = {**_expected_status(expected), "last drag": "None"}
    wait_for(lambda: _status(page), want.__eq__, "the status at p50")
    line = wait_for(lambda: _line(page), lambda ln: ln["x0"] == expected, "the line to move to p50")
    assert line["x1"] == expected
    assert line["px"] - before["px"] == pytest.approx(
        (expected - before["x0"]) * before["px_per_unit"], abs=0.5
    )
    assert line["px"] > before["px"] + 50  # p5 -> p50 moves it visibly right
    # What is drawn agrees with what plotly holds: the visible path sits at that x.
    path = _frame(page).locator(".shapelayer path[data-index='0']").last.bounding_box()
    assert path["x"] + path["width"] / 2 == pytest.approx(line["px"], abs=1.0)
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "threshold_histogram_percentile.png"), full_page=True)
