"""The first page loads after a server start, in a real browser: three tabs opened at once on three
deep links of a fresh server (issue 18.7: one of them showed "cannot import name 'render' from
'ood_dashboard.score_page'"), both for ``streamlit run app.py`` from a checkout and for the package's own
``ood_dashboard/app.py`` started as the installed ``ood-explorer app`` starts it (its folder holds the
page scripts, which must not put Streamlit in its legacy "pages directory" mode)."""

from __future__ import annotations

import os

import pytest
from browser_support import ROOT, chromium, skip_without_browser, streamlit_server, wait_until_idle

pytestmark = pytest.mark.browser
skip_without_browser()

DEEP_LINKS = {"feature_scores": "Feature scores", "table": "All items", "prediction_scores": "Prediction scores"}


@pytest.mark.parametrize("script", ["app.py", "ood_dashboard/app.py"])
def test_three_pages_opened_at_once_on_a_fresh_server(tmp_path, tmp_path_factory, script):
    cache = os.environ.get("OOD_CACHE_DIR") or str(tmp_path_factory.getbasetemp() / "ood_app_cache")
    with streamlit_server(ROOT / script, tmp_path / "server.log", env={"OOD_CACHE_DIR": cache}) as url, \
            chromium() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        tabs = {path: context.new_page() for path in DEEP_LINKS}
        for tab in tabs.values():
            tab.set_default_timeout(180_000)  # a cold cache embeds digits first
        for path, tab in tabs.items():  # started together: each goto returns once its page is requested
            tab.goto(f"{url}/{path}", wait_until="commit")
        seen = {}
        for path, tab in tabs.items():
            # its heading, or an exception in its place
            tab.locator("[data-testid=stMain] h1, [data-testid=stException]").first.wait_for()
            wait_until_idle(tab, timeout=180)
            exceptions, heading = tab.locator("[data-testid=stException]"), tab.locator("[data-testid=stMain] h1")
            seen[path] = (heading.first.inner_text() if heading.count() else None,
                          [exceptions.nth(i).inner_text() for i in range(exceptions.count())])
        context.close()
    assert {path: errors for path, (_, errors) in seen.items() if errors} == {}
    titles = {path: title for path, (title, _) in seen.items()}
    assert titles["table"] == "All items", titles
    assert "feature" in titles["feature_scores"].lower() and "prediction" in titles["prediction_scores"].lower(), titles
