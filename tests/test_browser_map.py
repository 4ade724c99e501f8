"""The embedding map in a real browser (issue 10): colour by review mark, click a point to see it in the
side panel, lasso a region, mark it, and the map recolours with the selection still there. What AppTest
cannot see: Streamlit selects a clicked point only outside box and lasso mode, and forgets a chart's
selection whenever its figure changes."""
from __future__ import annotations

import os
import re

import pytest
from browser_support import ROOT, SCREENSHOTS, chromium, settle, skip_without_browser, streamlit_server, wait_for

pytestmark = pytest.mark.browser
skip_without_browser()
CHART = "[data-testid=stPlotlyChart]"
PANEL = '[class*="st-key-thumbgrid_map_selected"]'


def legend(page) -> list[str]:
    return page.locator(f"{CHART} .legendtext").all_text_contents()


def selected_caption(page) -> str:
    """The caption under "Selected images" ("N selected, ..."), or "" before a selection."""
    found = re.search(r"([\d,]+) selected, ", page.locator("[data-testid=stMain]").inner_text())
    return found.group(0) if found else ""


def test_click_lasso_and_mark_on_the_map(tmp_path):
    env = {"OOD_CACHE_DIR": os.environ.get("OOD_CACHE_DIR") or str(tmp_path / "cache"),
           "OOD_DATA_DIR": str(tmp_path / "data")}  # marks of this test only
    with streamlit_server(ROOT / "app.py", tmp_path / "server.log", env=env) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        page.goto(f"{url}/embedding_map")
        settle(page, 180)
        page.locator('[data-testid="stSelectbox"]').filter(has_text="Colour by").click()
        page.get_by_role("option", name="Review mark").click()
        wait_for(lambda: legend(page), lambda names: names[:1] == ["not reviewed (1,797)"], "the legend by mark")

        # A click on a point shows it in the side panel (the map's default drag mode is zoom, not lasso).
        point = page.locator(f"{CHART} .scatterlayer .trace").first.locator("path.point").nth(10)
        box = point.bounding_box()
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        wait_for(lambda: page.locator(PANEL).inner_text(), lambda text: re.search(r"#\d+ · ", text),
                 "the clicked image in the side panel")
        assert selected_caption(page) == "1 selected, "

        # A lasso with the toolbar's tool, then "mark all as outlier": the map recolours and keeps the selection.
        page.locator(CHART).hover()
        page.locator(f'{CHART} .modebar-btn[data-title="Lasso Select"]').click()
        area = page.locator(f"{CHART} .nsewdrag").first.bounding_box()
        x0, y0 = area["x"] + area["width"] * 0.45, area["y"] + area["height"] * 0.45
        page.mouse.move(x0, y0)
        page.mouse.down()
        for dx, dy in ((80, 0), (80, 80), (0, 80), (0, 0)):
            page.mouse.move(x0 + dx, y0 + dy, steps=6)
        page.mouse.up()
        lassoed = wait_for(lambda: selected_caption(page), lambda c: c not in ("", "1 selected, "), "the lasso")
        n = int(lassoed.split()[0].replace(",", ""))
        page.locator('[class*="st-key-map_selection_bulk_outlier"] button').click()
        wait_for(lambda: legend(page), lambda names: f"outlier ({n:,})" in names, "the map recoloured by the marks")
        settle(page)
        assert selected_caption(page) == lassoed  # the selection outlived the recoloured (new) chart
        assert page.locator(PANEL).inner_text().count("⚑ outlier") == 1
        page.screenshot(path=str(SCREENSHOTS / "map_by_mark.png"))
        page.locator(".st-key-map_view button").click()  # the panel's image, large, with its mark
        page.get_by_role("dialog").get_by_text(re.compile(r"^outlier \(\d{4}-")).wait_for()
