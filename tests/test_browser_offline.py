"""The dashboard works offline and fits a laptop screen: ``streamlit run app.py`` on the digits
default, every page opened in Debian's Chromium (Playwright) at 1280x720 and at 1920x1080.

While the pages load, every request the browser makes (the page, its frames, the threshold
histogram's iframe, fonts, icons, images) is recorded whatever its outcome (this machine may have
no network), and none may leave 127.0.0.1. At each size, no text on any page may end in an
ellipsis, and the score pages' headline counts ("395 (29.3%)") must show whole on one line.
Screenshots of every page at both sizes go to screenshots/ (gitignored): ``offline_<page>_<size>.png``
is what the window shows, ``offline_<page>_<size>_full.png`` the whole page at that width.
"""

from __future__ import annotations

import pytest
from browser_support import (APP_PAGES, CUT_OFF_TEXT_JS, HISTOGRAM_IFRAME, METRIC_VALUES_JS, SCREENSHOTS, chromium,
                             dashboard_server, full_page_screenshot, is_local, open_app_page, settle,
                             skip_without_browser)

pytestmark = pytest.mark.browser
skip_without_browser()

SIZES = {"1280x720": (1280, 720), "1920x1080": (1920, 1080)}
SCORE_PAGES = ("feature_scores", "prediction_scores")
HEADLINE = ("Threshold (score)", "Train (fit) flagged", "Test (query) flagged")


@pytest.fixture(scope="module")
def visits(tmp_path_factory):
    """One browser session opens every page at each window size in turn, recording what the
    browser requests and logs throughout, and what each page shows at each size."""
    record = {"requests": [], "failed": [], "console": [], "websockets": [], "pages": {size: {} for size in SIZES}}
    with dashboard_server(tmp_path_factory, "streamlit_offline") as app_url, chromium() as browser:
        width, height = SIZES["1280x720"]
        context = browser.new_context(viewport={"width": width, "height": height})
        context.on("request", lambda request: record["requests"].append(request.url))
        context.on("requestfailed", lambda request: record["failed"].append((request.url, request.failure)))
        page = context.new_page()
        page.on("console", lambda msg: record["console"].append((msg.type, msg.text, msg.location.get("url", ""))))
        page.on("websocket", lambda ws: record["websockets"].append(ws.url))
        page.set_default_timeout(120_000)  # the first visit embeds digits when the cache is cold
        page.goto(app_url)  # the Data page, which loads the digits default
        page.locator("[data-testid=stSidebar]").get_by_text("Loaded:").wait_for()
        settle(page, timeout=120)
        page.set_default_timeout(30_000)
        record["favicon"] = page.evaluate("() => [...document.querySelectorAll('link[rel*=icon]')].map(l => l.href)")
        current = "data"
        for size, (width, height) in SIZES.items():
            page.set_viewport_size({"width": width, "height": height})
            for path, title in APP_PAGES:
                if path != current:
                    open_app_page(page, path, title)
                    current = path
                if path in SCORE_PAGES:  # the draggable chart: plotly in the component's iframe
                    page.frame_locator(HISTOGRAM_IFRAME).locator(".shapelayer path[data-index='0']").wait_for(
                        state="attached")
                record["pages"][size][path] = {
                    "exceptions": page.locator("[data-testid=stException]").all_inner_texts(),
                    "cut_off": page.evaluate(CUT_OFF_TEXT_JS),
                    "metrics": metric_values(page),
                }
                page.screenshot(path=str(SCREENSHOTS / f"offline_{path}_{size}.png"))
                full_page_screenshot(page, SCREENSHOTS / f"offline_{path}_{size}_full.png", width=width)
                page.set_viewport_size({"width": width, "height": height})
        context.close()
    return record


def metric_values(page) -> dict:
    """{metric label: how its value is laid out} for every st.metric on the page."""
    labels = page.locator("[data-testid=stMetric] [data-testid=stMetricLabel]").all_inner_texts()
    return dict(zip((label.strip() for label in labels), page.evaluate(METRIC_VALUES_JS)))


def test_the_app_loads_and_every_page_is_visited(visits):
    for size, pages in visits["pages"].items():
        assert list(pages) == [path for path, _ in APP_PAGES], size
        errors = {path: shown["exceptions"] for path, shown in pages.items() if shown["exceptions"]}
        assert errors == {}, f"errors shown at {size}: {errors}"
    # Enough was loaded to mean something: the app's scripts, the socket, the histogram's iframe.
    assert any("/static/js/" in url for url in visits["requests"])
    assert any(url.endswith("/_stcore/stream") for url in visits["websockets"])
    assert any("threshold_histogram" in url for url in visits["requests"])


def test_no_request_leaves_localhost(visits):
    outside = sorted({url for url in visits["requests"] + visits["websockets"] if not is_local(url)})
    assert outside == [], f"requests to other hosts: {outside}"
    # The tab icon is drawn inline, not fetched (a ":material/...:" page icon comes from fonts.gstatic.com).
    assert visits["favicon"] and all(href.startswith("data:image/svg+xml") for href in visits["favicon"])


def test_no_console_error_and_no_failed_request(visits):
    errors = [msg for msg in visits["console"] if msg[0] == "error"]
    assert errors == [], f"console errors: {errors}"
    # A request may be aborted by a rerun (net::ERR_ABORTED); one that could not reach its host may not.
    failed = [(url, why) for url, why in visits["failed"] if not is_local(url) or "ERR_ABORTED" not in str(why)]
    assert failed == [], f"failed requests: {failed}"


@pytest.mark.parametrize("size", list(SIZES))
def test_no_text_is_cut_off_on_any_page(visits, size):
    cut = {path: shown["cut_off"] for path, shown in visits["pages"][size].items() if shown["cut_off"]}
    assert cut == {}, f"text shortened with an ellipsis at {size}: {cut}"


@pytest.mark.parametrize("path", SCORE_PAGES)
def test_the_headline_counts_show_whole_at_1280x720(visits, path):
    metrics = visits["pages"]["1280x720"][path]["metrics"]
    assert set(HEADLINE) <= set(metrics), metrics
    for label in HEADLINE:
        value = metrics[label]
        assert value["text_px"] <= value["box_px"], f"{label} {value['text']!r} is wider than its box: {value}"
        assert value["lines"] == 1, f"{label} {value['text']!r} wraps: {value}"
    # They are the numbers, not a placeholder: "23 (5.1%)" of 450 train items at p5.
    count, pct = metrics["Train (fit) flagged"]["text"].split()
    assert round(int(count) / 450 * 100, 1) == float(pct.strip("(%)"))
    # Every other metric on the page (the evaluation row) is whole and on one line too.
    assert all(v["text_px"] <= v["box_px"] and v["lines"] == 1 for v in metrics.values()), metrics


def test_every_page_has_a_screenshot_at_both_sizes(visits):
    for size, (width, height) in SIZES.items():
        for path, _ in APP_PAGES:
            shot = SCREENSHOTS / f"offline_{path}_{size}.png"
            assert shot.stat().st_size > 10_000, shot
            assert png_size(shot) == (width, height), shot


def png_size(path) -> tuple[int, int]:
    """Width and height from a PNG's header."""
    header = path.read_bytes()[16:24]
    return int.from_bytes(header[:4], "big"), int.from_bytes(header[4:], "big")
