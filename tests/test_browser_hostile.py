"""Issue 18.4 and 18.10 in a real browser (1280x720): hostile file and class names never become a
link in the DOM (the grid, the large view, "Why this one?", the map), the 8-wide grid stays inside
the content and its buttons in line under a badge, the in-classes placeholder is not cut off, and an
oversize upload says why as text."""
from __future__ import annotations

import re
import sys
import urllib.parse

import pytest
from browser_support import (CUT_OFF_TEXT_JS, ROOT, SCREENSHOTS, chromium, free_port, open_app_page, server, settle,
                             skip_without_browser, wait_for)

pytestmark = pytest.mark.browser
skip_without_browser()

from tests.hostile.test_hostile_dashboard import CLASS_NAMES, hostile_folder  # noqa: E402

# Every link in the page (HTML and SVG): an outside address or a javascript: one is a defect.
LINKS_JS = """() => [...document.querySelectorAll('a')]
  .map(a => a.getAttribute('href') || a.getAttribute('xlink:href') || '')
  .filter(h => /evil|javascript:|mailto:/i.test(h))"""
# Strong/emphasis/code elements whose text comes from the hostile names.
MARKUP_JS = """() => [...document.querySelectorAll('[data-testid=stMain] :is(strong, em, b, code, del)')]
  .map(e => e.innerText).filter(t => /^(b|bold|x|a|n)$/.test(t.trim()))"""

# Inputs whose placeholder is wider than the room the input gives it (the browser cuts it off).
CUT_OFF_PLACEHOLDERS_JS = """() => [...document.querySelectorAll('[data-testid=stMain] input[placeholder]')]
  .filter(i => i.placeholder && i.offsetParent).map(i => {
    const cs = getComputedStyle(i), ctx = document.createElement('canvas').getContext('2d');
    ctx.font = cs.font;
    return {placeholder: i.placeholder, text_px: ctx.measureText(i.placeholder).width,
            box_px: i.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight)};
  }).filter(p => p.text_px > p.box_px)"""


@pytest.fixture(scope="module")
def hostile_app(tmp_path_factory):
    """``streamlit run app.py`` (upload limit 1 MB) with a folder of hostile names in its allowed roots,
    marks in a fresh data folder; yields (url, link opening that folder with the pixels model)."""
    base = tmp_path_factory.mktemp("browser-hostile")
    folder = hostile_folder(base / "images", {"train": 6, "test": 3})
    env = {"OOD_CACHE_DIR": str(base / "cache"), "OOD_DATA_DIR": str(base / "data"), "OOD_DATA_ROOTS": str(base)}
    port = free_port()
    argv = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
            "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none", "--server.maxUploadSize", "1"]
    with server(argv, port, base / "server.log", env=env) as url:
        yield url, "?" + urllib.parse.urlencode({"source": str(folder), "model": "pixels"}), base


def no_live_links(page, where: str) -> None:
    assert page.evaluate(LINKS_JS) == [], where
    assert page.evaluate(MARKUP_JS) == [], where


def test_hostile_names_are_text_in_the_dom_and_the_grid_fits_at_1280(hostile_app):
    url, link, base = hostile_app
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        page.set_default_timeout(180_000)
        page.goto(f"{url}/feature_scores{link}")
        settle(page, 180)
        grid = page.locator('[class*="st-key-thumbgrid_feature_query"]')
        grid.locator('[data-testid="stImage"]').first.wait_for()
        no_live_links(page, "grid")
        assert "[click](javascript:alert(2))" in grid.inner_text()  # the class names, as text
        # mark one test image from its large view (the dialog): then its caption has a badge
        view = grid.locator('[class*="st-key-feature_query_view_"]').nth(2)
        position = re.search(r"_view_(\d+)", view.get_attribute("class")).group(1)
        view.get_by_role("button").first.click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_text("not reviewed").wait_for()
        no_live_links(page, "large view")
        assert any(c in dialog.inner_text().replace("\u2060", "") for c in CLASS_NAMES)  # (joiners in www.)
        page.screenshot(path=str(SCREENSHOTS / "hostile_large_view.png"))
        dialog.get_by_label("Note (optional)").fill("[note](https://evil.com) **n**")
        dialog.get_by_role("button", name="outlier").click()
        caption = grid.locator('[data-testid="stImageCaption"]', has_text=re.compile(f"^#{position} "))
        wait_for(caption.all_inner_texts, lambda cs: any("⚑ outlier" in c for c in cs), "the badge in the grid")
        settle(page)
        row = page.evaluate("""() => { const g = document.querySelector('[class*="st-key-thumbgrid_feature_query"]');
          const m = document.querySelector('[data-testid=stMainBlockContainer]'), cs = getComputedStyle(m);
          const row = g.querySelector('[data-testid=stHorizontalBlock]');
          return {right: m.getBoundingClientRect().right - parseFloat(cs.paddingRight),
                  images: [...g.querySelectorAll('img')].map(i => i.getBoundingClientRect().right),
                  buttons: [...row.querySelectorAll('[class*="st-key-feature_query_view_"]')].map(b => Math.round(b.getBoundingClientRect().top))}; }""")
        assert max(row["images"]) <= row["right"] + 0.5, row  # the 8-wide grid stays inside the content
        assert len(set(row["buttons"])) == 1, row  # a badge does not push its column's buttons down
        grid.scroll_into_view_if_needed()
        page.screenshot(path=str(SCREENSHOTS / "hostile_grid_1280.png"))
        for path, title in (("neighbours", "Why this one?"), ("per_class", "Per class"), ("table", "All items"),
                            ("embedding_map", "Embedding map")):
            open_app_page(page, path, title, timeout=180)
            no_live_links(page, title)
            page.screenshot(path=str(SCREENSHOTS / f"hostile_{path}.png"))
        page.locator('[data-testid="stSelectbox"]').filter(has_text="Colour by").click()  # the legend: class names
        page.get_by_role("option", name="Class").click()
        settle(page, 180)
        no_live_links(page, "map by class")
        legend = page.locator(".legend").first.text_content()
        assert "[click](javascript:alert(2))" in legend and "<b>x<_b>" in legend
        page.locator(".nsewdrag").first.hover(position={"x": 200, "y": 200})  # a hover label, if one shows
        no_live_links(page, "map hover")


def test_the_data_page_says_everything_whole_and_an_oversize_upload_says_why(hostile_app):
    url, _, base = hostile_app
    big = base / "big.zip"
    big.write_bytes(b"PK" + bytes(1_100_000))
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        page.set_default_timeout(180_000)
        page.goto(url)
        settle(page, 180)
        page.get_by_text("Image folder on this machine").click()  # the in-classes box and its placeholder
        settle(page)
        page.get_by_label("Folder path").fill(str(base / "images" / "train"))
        page.keyboard.press("Enter")
        settle(page)
        page.get_by_test_id("stMultiSelect").wait_for()
        assert page.evaluate(CUT_OFF_TEXT_JS) == []  # nothing ends in an ellipsis
        assert page.evaluate(CUT_OFF_PLACEHOLDERS_JS) == []  # nor an input's placeholder (the in-classes box's)
        page.get_by_text("Upload a zip of images").click()
        settle(page)
        assert "Files up to 1 MB" in page.locator("[data-testid=stMain]").inner_text()
        page.locator("[data-testid=stFileUploaderDropzoneInput]").set_input_files(str(big))
        reason = page.locator("[data-testid=stFileChip] [role=alert]")
        reason.wait_for()
        box = reason.bounding_box()
        assert box["width"] > 100 and box["height"] > 8  # laid out as text, not a 1-pixel screen-reader box
        assert "must be 1.0MB or smaller" in reason.inner_text()
        page.screenshot(path=str(SCREENSHOTS / "oversize_upload.png"))
