"""ood_dashboard.threshold_histogram without a browser: its static folder in the cache, drag events
(the component faked), and the test app under AppTest. The real drag is in
tests/test_browser.py."""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit", reason="streamlit is not installed (pip install streamlit)")
plotly = pytest.importorskip("plotly", reason="plotly is not installed (pip install plotly)")

import ood_dashboard.threshold_histogram as th  # noqa: E402

APP = Path(__file__).resolve().parent / "browser_app.py"


def _tree(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


@pytest.fixture()
def sources(tmp_path):
    """A read-only copy of the component's source folder (checked untouched afterwards) and a
    stand-in plotly.min.js."""
    folder = tmp_path / "component"
    shutil.copytree(th._SOURCE_DIR, folder)
    plotly_js = tmp_path / "plotly.min.js"
    plotly_js.write_text("window.Plotly = {};")
    for path in (*folder.iterdir(), folder):
        path.chmod(0o555 if path.is_dir() else 0o444)
    before = _tree(folder)
    yield folder, plotly_js
    assert _tree(folder) == before
    folder.chmod(0o755)


def test_the_served_folder_holds_the_sources_and_the_installed_plotly_js(tmp_path):
    before = _tree(th._SOURCE_DIR)
    served = th._prepare_static_dir(tmp_path / "cache")
    assert served.parent == tmp_path / "cache" / "components"
    assert served.name.startswith(f"threshold_histogram-plotly-{plotly.__version__}-")
    assert sorted(p.name for p in served.iterdir()) == ["index.html", "main.js", "plotly.min.js"]
    assert (served / "plotly.min.js").read_bytes() == th._PLOTLY_JS.read_bytes()
    for name in ("index.html", "main.js"):
        assert (served / name).read_bytes() == (th._SOURCE_DIR / name).read_bytes()
    assert '<script src="plotly.min.js">' in (served / "index.html").read_text()
    assert _tree(th._SOURCE_DIR) == before  # nothing written into the package tree


def test_the_folder_is_built_once_and_anew_for_another_plotly_or_source(sources, tmp_path):
    folder, plotly_js = sources
    cache = tmp_path / "cache"
    served = th._prepare_static_dir(cache, source_dir=folder, plotly_js=plotly_js, plotly_version="1.0")
    inode = (served / "plotly.min.js").stat().st_ino
    again = th._prepare_static_dir(cache, source_dir=folder, plotly_js=plotly_js, plotly_version="1.0")
    assert again == served and (again / "plotly.min.js").stat().st_ino == inode  # reused, not copied again
    plotly_js.write_text("window.Plotly = {version: 2};")  # plotly upgraded
    upgraded = th._prepare_static_dir(cache, source_dir=folder, plotly_js=plotly_js, plotly_version="2.0")
    assert upgraded != served and (upgraded / "plotly.min.js").read_text() == "window.Plotly = {version: 2};"
    edited = tmp_path / "edited"
    shutil.copytree(folder, edited, copy_function=shutil.copyfile)
    edited.chmod(0o755)
    (edited / "main.js").write_text("// edited")
    assert th._prepare_static_dir(cache, source_dir=edited, plotly_js=plotly_js, plotly_version="2.0") not in (
        served, upgraded)
    assert len(list((cache / "components").iterdir())) == 3  # no temporary folders left behind


def test_a_damaged_folder_is_rebuilt(sources, tmp_path):
    folder, plotly_js = sources
    served = th._prepare_static_dir(tmp_path, source_dir=folder, plotly_js=plotly_js)
    (served / "main.js").unlink()
    assert th._prepare_static_dir(tmp_path, source_dir=folder, plotly_js=plotly_js) == served
    assert (served / "main.js").read_bytes() == (folder / "main.js").read_bytes()
    assert [p.name for p in (tmp_path / "components").iterdir()] == [served.name]


def test_a_folder_published_meanwhile_by_another_process_is_kept(sources, tmp_path, monkeypatch):
    folder, plotly_js = sources
    real_rename = os.rename
    theirs = []

    def lose_the_race(staging, target):
        shutil.copytree(staging, target)  # the other process renames its folder first
        theirs.append(Path(target).stat().st_ino)
        real_rename(staging, target)

    monkeypatch.setattr(th.os, "rename", lose_the_race)
    served = th._prepare_static_dir(tmp_path, source_dir=folder, plotly_js=plotly_js)
    assert served.stat().st_ino == theirs[0]
    assert [p.name for p in (tmp_path / "components").iterdir()] == [served.name]  # ours discarded


def test_an_unwritable_cache_is_replaced_by_a_temporary_folder_removed_at_exit(sources, tmp_path, monkeypatch, caplog):
    folder, plotly_js = sources
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    at_exit = []
    monkeypatch.setattr(th.atexit, "register", lambda fn, *args, **kwargs: at_exit.append((fn, args, kwargs)))
    served = th._prepare_static_dir(blocker, source_dir=folder, plotly_js=plotly_js)
    assert tmp_path not in served.parents and th._SOURCE_DIR not in served.parents
    assert (served / "index.html").read_bytes() == (folder / "index.html").read_bytes()
    assert (served / "plotly.min.js").read_text() == "window.Plotly = {};"
    assert "serving the threshold histogram from" in caplog.text
    ((fn, args, kwargs),) = at_exit
    fn(*args, **kwargs)
    assert not served.exists()


def test_missing_plotly_js_names_the_path(sources, tmp_path):
    folder, _ = sources
    with pytest.raises(FileNotFoundError, match="plotly.js not found at .*nowhere.js"):
        th._prepare_static_dir(tmp_path, source_dir=folder, plotly_js=tmp_path / "nowhere.js")


def test_importing_the_module_writes_nothing(tmp_path):
    before = _tree(th._SOURCE_DIR.parents[1])
    env = {**os.environ, "OOD_CACHE_DIR": str(tmp_path / "cache"), "TMPDIR": str(tmp_path / "tmp"),
           "XDG_CACHE_HOME": str(tmp_path / "xdg"), "PYTHONDONTWRITEBYTECODE": "1"}
    (tmp_path / "tmp").mkdir()
    subprocess.run([sys.executable, "-c", "import ood_dashboard.threshold_histogram"], cwd=th._SOURCE_DIR.parents[2],
                   env=env, check=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmp"] and not any((tmp_path / "tmp").iterdir())
    assert _tree(th._SOURCE_DIR.parents[1]) == before
    assert sorted(p.name for p in th._SOURCE_DIR.iterdir()) == ["index.html", "main.js"]


def test_the_component_is_declared_from_the_prepared_folder_on_first_use(tmp_path, monkeypatch):
    monkeypatch.setenv("OOD_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(th, "_served", None)
    declared = []
    monkeypatch.setattr(th.components, "declare_component",
                        lambda name, path: declared.append((name, path)) or (lambda **kwargs: kwargs["default"]))
    assert th._component(default=1) == 1 and th._component(default=2) == 2
    prepared = th._prepare_static_dir(tmp_path)
    assert declared == [("threshold_histogram", str(prepared))] * 2


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
    from ood_dashboard.figures import score_histogram_figure

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
        "histogram", "ood_dashboard.threshold_histogram.threshold_histogram")
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


def test_groups_stack_the_query_bars_and_an_equal_list_reuses_the_bars(fake, monkeypatch):
    from ood_dashboard.figures import score_histogram_figure

    built = []
    monkeypatch.setattr(th, "score_histogram_figure", lambda *a, **k: built.append(k) or score_histogram_figure(*a, **k))
    fit, query = np.array([0.2, 0.4, 0.9, 0.5]), np.array([0.1, 0.7, 0.8])
    truth = ["out of distribution", "in distribution", "in distribution"]
    th.threshold_histogram(fit, query, 0.3, key="h", percentile=25.0, query_groups=truth)
    sent = json.loads(fake.calls[-1]["figure"])
    assert sent == json.loads(score_histogram_figure(fit, query, 0.3, percentile=25.0, query_groups=truth).to_json())
    assert [t["name"] for t in sent["data"]] == [
        "test (query) · out of distribution (n=1)", "test (query) · in distribution (n=2)", "train (fit) (n=4)"]
    th.threshold_histogram(fit, query, 0.4, key="h", query_groups=list(truth))  # a new, equal list: same bars
    assert len(built) == 1
    marks = ["outlier", "not reviewed", "fine"]  # a mark set (or another grouping): new bars
    th.threshold_histogram(fit, query, 0.4, key="h", query_groups=marks)
    th.threshold_histogram(fit, query, 0.4, key="h", query_groups=marks, group_colors={"fine": "#000000"})
    th.threshold_histogram(fit, query, 0.4, key="h")  # back to one histogram per set
    assert len(built) == 4
    assert [t["name"] for t in json.loads(fake.calls[-1]["figure"])["data"]] == [
        "train (fit) (n=4)", "test (query) (n=3)"]


def decoded(value) -> np.ndarray:
    """An array of figure JSON: a list, or plotly's typed array (1-D ``{"dtype", "bdata": base64}``)."""
    if isinstance(value, dict):
        return np.frombuffer(base64.b64decode(value["bdata"]), value["dtype"])
    return np.asarray(value)


def _stacked_app():
    """A page drawing the component with its test bars stacked by known truth (AppTest.from_function)."""
    import numpy as np

    from ood_dashboard.threshold_histogram import threshold_histogram

    rng = np.random.default_rng(1)
    fit = rng.beta(6, 2, 300)
    query = np.concatenate([rng.beta(6, 2, 80), rng.beta(2, 5, 20)])
    groups = ["in distribution"] * 80 + ["out of distribution"] * 20
    threshold_histogram(fit, query, float(np.percentile(fit, 5)), key="stacked", query_groups=groups)


def test_the_app_sends_the_stacked_groups_to_the_browser():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_stacked_app, default_timeout=30).run()
    assert not at.exception
    (chart,) = at.get("component_instance")
    figure = json.loads(json.loads(chart.proto.json_args)["figure"])
    bars = [t for t in figure["data"] if t["type"] == "bar"]
    assert [t["name"] for t in bars] == ["test (query) · out of distribution (n=20)",
                                         "test (query) · in distribution (n=80)"]
    out, inside = (decoded(t["y"]) for t in bars)
    np.testing.assert_allclose(decoded(bars[1]["base"]), out)  # in-distribution bars sit on the outliers
    assert (out + inside).sum() == pytest.approx(100.0)  # percent of the 100 test items, stacked
    assert [t["name"] for t in figure["data"] if t["type"] == "scatter"] == ["train (fit) (n=300)"]
    assert figure["layout"]["shapes"][0]["name"] == "threshold"
