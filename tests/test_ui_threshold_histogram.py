"""ui.threshold_histogram without a browser: plotly.js provisioning, drag events
(the component faked), and the test app under AppTest. The real drag is in
tests/test_browser.py."""

from __future__ import annotations

import importlib.util
import json
import os
import types
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit", reason="streamlit is not installed (pip install streamlit)")
pytest.importorskip("plotly", reason="plotly is not installed (pip install plotly)")

import ui.threshold_histogram as th  # noqa: E402

APP = Path(__file__).resolve().parent / "browser_app.py"


@pytest.fixture()
def component_dir(tmp_path):
    folder = tmp_path / "component"
    folder.mkdir()
    (folder / "index.html").write_text("<script src='vendor/plotly.min.js'></script>")
    plotly_js = tmp_path / "plotly.min.js"
    plotly_js.write_text("window.Plotly = {};")
    return folder, plotly_js


def test_import_provides_plotly_js_from_the_installed_package():
    served = th._provide_plotly_js()
    copy = served / "vendor" / "plotly.min.js"
    assert copy.read_bytes()[:200] == th._PLOTLY_JS.read_bytes()[:200]
    assert copy.stat().st_size == th._PLOTLY_JS.stat().st_size
    assert (served / "index.html").is_file() and (served / "main.js").is_file()


def test_plotly_js_is_copied_once_and_refreshed_when_plotly_changes(component_dir):
    folder, plotly_js = component_dir
    assert th._provide_plotly_js(folder, plotly_js) == folder
    copy = folder / "vendor" / "plotly.min.js"
    inode = copy.stat().st_ino
    assert th._provide_plotly_js(folder, plotly_js) == folder
    assert copy.stat().st_ino == inode  # current: not copied again
    plotly_js.write_text("window.Plotly = {version: 2};")  # plotly upgraded
    os.utime(plotly_js, ns=(0, copy.stat().st_mtime_ns + 10**10))
    th._provide_plotly_js(folder, plotly_js)
    assert copy.read_text() == "window.Plotly = {version: 2};"
    assert [p.name for p in copy.parent.iterdir()] == ["plotly.min.js"]  # no temp files left


def test_read_only_component_folder_is_served_from_a_private_copy(component_dir, monkeypatch):
    folder, plotly_js = component_dir
    real_copy = th._copy_atomically

    def refuse_in_folder(source, target):
        if folder in target.parents:
            raise PermissionError(13, "Permission denied")
        real_copy(source, target)

    monkeypatch.setattr(th, "_copy_atomically", refuse_in_folder)
    served = th._provide_plotly_js(folder, plotly_js)
    assert served != folder
    assert (served / "index.html").read_text() == (folder / "index.html").read_text()
    assert (served / "vendor" / "plotly.min.js").read_text() == "window.Plotly = {};"


def test_missing_plotly_js_names_the_path(component_dir, tmp_path):
    folder, _ = component_dir
    with pytest.raises(FileNotFoundError, match="plotly.js not found at .*nowhere.js"):
        th._provide_plotly_js(folder, tmp_path / "nowhere.js")


class _FakeComponent:
    """Stands in for the declared component: records the call, returns its value."""

    def __init__(self, state):
        self.state = state
        self.calls = []

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        return self.state.get(kwargs["key"], kwargs["default"])

    def drag_to(self, x, event):
        """What Streamlit does when the browser sends setComponentValue."""
        self.state[self.calls[-1]["key"]] = {"x": x, "event": event}
        self.calls[-1]["on_change"]()


@pytest.fixture()
def fake(monkeypatch):
    state = {}
    monkeypatch.setattr(th, "st", types.SimpleNamespace(session_state=state))
    component = _FakeComponent(state)
    monkeypatch.setattr(th, "_component", component)
    return component


def test_sends_the_figure_and_returns_none_without_a_drag(fake):
    assert th.threshold_histogram([0.2, 0.4, 0.9], [0.1], 0.3, key="h", percentile=25.0) is None
    (call,) = fake.calls
    assert (call["threshold"], call["height"], call["key"], call["default"]) == (0.3, 320, "h", None)
    figure = json.loads(call["figure"])
    assert figure["layout"]["shapes"][0]["name"] == call["shape_name"] == "threshold"
    assert figure["layout"]["shapes"][0]["label"]["text"] == "threshold 0.3 (p25)"


def test_the_bars_are_built_once_per_score_arrays_and_the_line_moves_on_a_copy(fake, monkeypatch):
    from ui.figures import score_histogram_figure

    built = []
    monkeypatch.setattr(th, "score_histogram_figure", lambda *a, **k: built.append(a) or score_histogram_figure(*a, **k))
    fit, query = np.array([0.2, 0.4, 0.9, 0.5]), np.array([0.1, 0.7])
    for threshold, percentile in ((0.3, 25.0), (0.45, 50.0), (1.4, 100.0), (-0.5, 0.0)):
        th.threshold_histogram(fit, query, threshold, key="h", percentile=percentile)
        sent = json.loads(fake.calls[-1]["figure"])
        direct = json.loads(score_histogram_figure(fit, query, threshold, percentile=percentile).to_json())
        assert sent == direct  # the same figure as building it from scratch, line and x range included
    assert len(built) == 1
    th.threshold_histogram(fit.copy(), query, 0.3, key="h")  # new scores (a new run): new bars
    th.threshold_histogram(fit, query, 0.3, key="h", bins=10)
    assert len(built) == 3


def test_a_drag_is_returned_once_and_passed_to_on_change(fake):
    seen = []
    fit, query = [0.2, 0.4, 0.9], [0.1]
    th.threshold_histogram(fit, query, 0.3, key="h", on_change=seen.append)
    fake.drag_to(0.55, "abc-1")
    assert seen == [0.55]
    assert th.threshold_histogram(fit, query, 0.55, key="h", on_change=seen.append) == 0.55
    # The component keeps its last value, but that drag was already returned.
    assert th.threshold_histogram(fit, query, 0.3, key="h", on_change=seen.append) is None
    fake.drag_to(0.55, "abc-2")  # same x again is a new drag
    assert th.threshold_histogram(fit, query, 0.3, key="h") == 0.55
    assert seen == [0.55, 0.55]


def test_drags_of_two_charts_do_not_mix(fake):
    th.threshold_histogram([0.2, 0.9], None, 0.3, key="a")
    th.threshold_histogram([0.2, 0.9], None, 0.3, key="b")
    fake.drag_to(0.7, "x-1")  # on chart "b", the last one drawn
    assert th.threshold_histogram([0.2, 0.9], None, 0.3, key="a") is None
    assert th.threshold_histogram([0.2, 0.9], None, 0.3, key="b") == 0.7


def test_unusable_component_value_is_ignored(fake, caplog):
    seen = []
    th.threshold_histogram([0.2, 0.9], None, 0.3, key="h", on_change=seen.append)
    fake.drag_to(float("nan"), "x-1")
    assert seen == []
    assert "sent an unusable value" in caplog.text
    assert th.threshold_histogram([0.2, 0.9], None, 0.3, key="h") is None


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(key=""), ValueError, "key must be a non-empty string, got ''"),
        (dict(key="h", on_change=1), TypeError, "on_change must be callable or None, got int"),
        (dict(key="h", threshold=None), ValueError, "threshold must be a finite number, got None"),
        (dict(key="h", threshold=np.inf), ValueError, "threshold must be finite, got inf"),
    ],
)
def test_argument_errors(fake, kwargs, error, match):
    args = dict(fit_scores=[0.2, 0.9], query_scores=None, threshold=0.3) | kwargs
    with pytest.raises(error, match=match):
        th.threshold_histogram(**args)
    assert fake.calls == []


def test_browser_app_runs_and_the_percentile_input_sets_the_threshold():
    from streamlit.testing.v1 import AppTest

    spec = importlib.util.spec_from_file_location("browser_app", APP)
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)  # main() runs only under streamlit
    fit, query = app.synthetic_scores()

    at = AppTest.from_file(str(APP), default_timeout=30).run()
    assert not at.exception
    (chart,) = at.get("component_instance")  # AppTest shows it as an UnknownElement
    assert (chart.key, chart.proto.component_name) == (
        "histogram", "ui.threshold_histogram.threshold_histogram")
    args = json.loads(chart.proto.json_args)
    assert args["threshold"] == float(np.percentile(fit, 5.0))
    assert len(args["figure"]) < 12_000  # bar data, not the 3,000 raw scores
    assert at.markdown[0].value == f"threshold: {float(np.percentile(fit, 5.0))!r}"
    at.number_input(key="percentile").set_value(50.0).run()
    assert not at.exception
    threshold = float(np.percentile(fit, 50))
    assert [m.value for m in at.markdown] == [
        f"threshold: {threshold!r}",
        f"test flagged: {np.count_nonzero(query < threshold)}",
        f"train flagged: {np.count_nonzero(fit < threshold)}",
        "last drag: None",
    ]
