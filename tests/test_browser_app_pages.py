"""The dashboard in a real browser: ``streamlit run app.py`` on the digits default, driven by
Debian's Chromium through Playwright. Drags the threshold line on the Feature scores page with
the mouse and checks that the percentile input and the flagged counts follow; saves a screenshot
of every page into screenshots/ (gitignored).
"""

from __future__ import annotations

import re

import pytest
from browser_support import (APP_PAGES, HISTOGRAM_IFRAME, SCREENSHOTS, chromium, dashboard_server, full_page_screenshot,
                             skip_without_browser, wait_for, wait_until_idle)

pytestmark = pytest.mark.browser
skip_without_browser()

N_FIT = 450  # digits default: train (fit) items
N_QUERY = 1347
PERCENTILE = "Percentile of the train (fit) scores"


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    with dashboard_server(tmp_path_factory, "streamlit_app") as url:
        yield url


@pytest.fixture(scope="module")
def page(app_url):
    """One browser session on the feature scores page, once the default dataset is drawn."""
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(120_000)  # the first visit embeds digits when the cache is cold
        page.goto(f"{app_url}/feature_scores")
        page.frame_locator(HISTOGRAM_IFRAME).locator(".shapelayer path[data-index='0']").wait_for(state="attached")
        wait_until_idle(page, timeout=120)
        page.set_default_timeout(30_000)
        yield page
        context.close()


def metric(page, label: str) -> str:
    box = page.locator('[data-testid="stMetric"]').filter(
        has=page.locator('[data-testid="stMetricLabel"]', has_text=re.compile(f"^{re.escape(label)}$")))
    return box.locator('[data-testid="stMetricValue"]').inner_text()


def state(page) -> dict:
    """What the feature page shows: percentile input, threshold, flagged counts."""
    flagged = {}
    for name in ("Train (fit) flagged", "Test (query) flagged"):
        flagged[name] = int(metric(page, name).split()[0].replace(",", ""))
    return {"percentile": float(page.get_by_role("spinbutton", name=PERCENTILE).input_value()),
            "threshold": float(metric(page, "Threshold (score)")), **flagged}


def line(page) -> dict:
    """The threshold line as plotly holds it, and where it is on the page in pixels."""
    iframe = page.locator(HISTOGRAM_IFRAME)
    box = iframe.bounding_box()
    info = iframe.content_frame.locator("#chart").evaluate(
        """gd => {
            const s = gd.layout.shapes[0], xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
            return {x: s.x0, px: xa._offset + xa.l2p(s.x0), py: ya._offset + ya._length / 2};
        }""")
    return {"x": info["x"], "px": box["x"] + info["px"], "py": box["y"] + info["py"]}


def drag_line(page, dx: float) -> None:
    start = line(page)
    page.mouse.move(start["px"], start["py"])
    page.mouse.down()
    page.mouse.move(start["px"] + dx, start["py"] + 20, steps=8)
    page.mouse.up()


def consistent(shown: dict) -> bool:
    """After a drag the percentile is the share of train scores below the line: the count agrees."""
    return shown["Train (fit) flagged"] == round(shown["percentile"] * N_FIT / 100)


def test_dragging_the_line_moves_the_percentile_and_the_counts(page):
    start = state(page)
    assert start["percentile"] == 5.0 and abs(start["Train (fit) flagged"] - 0.05 * N_FIT) < 1
    assert line(page)["x"] == pytest.approx(start["threshold"], abs=5e-5)

    drag_line(page, 150)  # right: a higher threshold flags more
    after = wait_for(lambda: state(page), lambda s: s["percentile"] != start["percentile"] and consistent(s)
                     and s["threshold"] != start["threshold"], "the page to follow the drag")
    assert after["percentile"] > start["percentile"]
    assert after["Train (fit) flagged"] > start["Train (fit) flagged"]
    assert start["Test (query) flagged"] < after["Test (query) flagged"] <= N_QUERY
    wait_until_idle(page)
    assert line(page)["x"] == pytest.approx(after["threshold"], abs=5e-5)
    full_page_screenshot(page, SCREENSHOTS / "app_feature_scores_dragged.png")

    page.set_viewport_size({"width": 1400, "height": 1000})
    drag_line(page, -60)  # back left: fewer flagged
    back = wait_for(lambda: state(page), lambda s: s["percentile"] < after["percentile"] and consistent(s),
                    "the page to follow the second drag")
    assert back["Test (query) flagged"] < after["Test (query) flagged"]

    page.get_by_role("spinbutton", name=PERCENTILE).fill("5")  # typing moves the line back to p5
    page.get_by_role("spinbutton", name=PERCENTILE).press("Enter")
    wait_for(lambda: state(page), lambda s: s == start, "the page to return to p5")
    wait_until_idle(page)
    assert line(page)["x"] == pytest.approx(start["threshold"], abs=5e-5)


def test_a_screenshot_of_every_page(page):
    for path, title in APP_PAGES:
        page.set_viewport_size({"width": 1400, "height": 1000})
        page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title).click()
        page.wait_for_url(re.compile(r"/(\?.*)?$" if path == "data" else rf"/{path}(\?.*)?$"))
        wait_until_idle(page)
        assert page.locator('[data-testid="stException"]').count() == 0, title
        full_page_screenshot(page, SCREENSHOTS / f"app_{path}.png")
        assert (SCREENSHOTS / f"app_{path}.png").stat().st_size > 10_000


def test_a_shared_link_opens_at_its_percentile_and_follows_changes(app_url, page):
    """Opening ``/feature_scores?p=12.5`` shows the 12.5th percentile; moving it rewrites the link."""
    context = page.context.browser.new_context(viewport={"width": 1400, "height": 1000})  # a new session
    try:
        page = context.new_page()
        page.set_default_timeout(120_000)
        page.goto(f"{app_url}/feature_scores?source=digits&p=12.5")
        box = page.get_by_role("spinbutton", name=PERCENTILE)
        wait_for(lambda: box.input_value(), lambda v: v == "12.50", "the link's percentile in the input")
        wait_until_idle(page, timeout=120)
        assert 50 <= state(page)["Train (fit) flagged"] <= 62  # 12.5% of 450 train items
        box.fill("20")
        box.press("Enter")
        wait_for(lambda: state(page)["Train (fit) flagged"], lambda n: 85 <= n <= 95, "20% of the train items flagged")
        wait_for(lambda: page.url, lambda url: "p=20" in url, "the new percentile in the link")
        assert "source=digits" in page.url
    finally:
        context.close()
