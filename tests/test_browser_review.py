"""Review marks in a real browser (issue 10): click an image's "View", mark it from the large view, see
its badge in the grid; restart ``streamlit run`` and the badge is still there."""
from __future__ import annotations

import os
import re

import pytest
from browser_support import (ROOT, SCREENSHOTS, chromium, full_page_screenshot, skip_without_browser,
                             streamlit_server, wait_for, wait_until_idle)

pytestmark = pytest.mark.browser
skip_without_browser()


def first_test_grid_caption(page) -> str:
    grid = page.locator('[class*="st-key-thumbgrid_feature_query"]')
    return grid.locator('[data-testid="stImageCaption"]').first.inner_text()


def open_feature_scores(page, url: str) -> None:
    page.goto(f"{url}/feature_scores")
    page.locator('[class*="st-key-thumbgrid_feature_query"] [data-testid="stImage"]').first.wait_for()
    wait_until_idle(page, timeout=120)


def test_a_mark_from_the_large_view_shows_as_a_badge_and_survives_a_restart(tmp_path):
    cache = os.environ.get("OOD_CACHE_DIR") or str(tmp_path / "cache")
    env = {"OOD_CACHE_DIR": cache, "OOD_DATA_DIR": str(tmp_path / "data")}  # the marks' SQLite file lives here
    with chromium() as browser:
        with streamlit_server(ROOT / "app.py", tmp_path / "first.log", env=env) as url:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(120_000)
            open_feature_scores(page, url)
            caption = first_test_grid_caption(page)
            position = re.match(r"#(\d+)", caption).group(1)
            assert "outlier" not in caption
            page.locator(f".st-key-feature_query_view_{position} button").first.click()
            dialog = page.get_by_role("dialog")
            dialog.get_by_text("not reviewed").wait_for()
            dialog.get_by_label("Note (optional)").fill("a seven with a bar")
            dialog.get_by_role("button", name="outlier").click()
            wait_for(lambda: first_test_grid_caption(page), lambda c: "⚑ outlier" in c, "the badge in the grid")
            full_page_screenshot(page, SCREENSHOTS / "review_badges.png")
            page.close()
        assert (tmp_path / "data" / "reviews.sqlite3").is_file()
        with streamlit_server(ROOT / "app.py", tmp_path / "second.log", env=env) as url:  # a restarted server
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(120_000)
            open_feature_scores(page, url)
            caption = first_test_grid_caption(page)
            assert caption.startswith(f"#{position} ") and "⚑ outlier" in caption
            page.locator(f".st-key-feature_query_view_{position} button").first.click()
            dialog = page.get_by_role("dialog")
            dialog.get_by_text(re.compile("outlier: a seven with a bar")).wait_for()
            page.close()
