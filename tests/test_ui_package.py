"""The dashboard as a package: the Streamlit settings it carries, the dataset it is started with
(``--source``), and session-state keys named in one place (``ood_dashboard/state.py``)."""
from __future__ import annotations

import ast
import os
import sys
import tomllib
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from ood_dashboard.markup import escape  # noqa: E402
from tests.conftest import markdown_text  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "ood_dashboard"
APP = REPO / "app.py"


# ------------------------------------------------------------------ Streamlit settings
def test_the_package_carries_the_checkouts_streamlit_settings():
    """``ood-explorer app`` passes ood_dashboard/streamlit_config.toml to ``streamlit run``: the same
    settings as .streamlit/config.toml (localhost only, XSRF, no file watcher), each a real option."""
    from streamlit import config

    packaged = tomllib.loads((PACKAGE / "streamlit_config.toml").read_text())
    checkout = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert packaged == checkout
    assert packaged["server"]["address"] == "127.0.0.1" and packaged["server"]["enableXsrfProtection"] is True
    for section, values in packaged.items():
        for key in values:
            config.get_option(f"{section}.{key}")  # raises for an option Streamlit does not know


# ------------------------------------------------------------------ --source
def started_with(monkeypatch, *args: str) -> AppTest:
    """A session of the app started by ``streamlit run app.py -- ARGS`` (Streamlit sets sys.argv so)."""
    monkeypatch.setattr(sys, "argv", [str(APP), *args])
    return AppTest.from_file(str(APP), default_timeout=240).run()


@pytest.fixture
def sandbox(tmp_path, monkeypatch, write_tree):
    """A folder of images outside the allowed roots (which hold only an empty folder)."""
    import ood_dashboard.uploads as uploads

    roots = tmp_path / "allowed"
    roots.mkdir()
    monkeypatch.setenv("OOD_DATA_ROOTS", str(roots))
    monkeypatch.setenv("OOD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(uploads, "_STARTED_WITH", set())  # trusted paths are per server process
    colours = {"cat": (200, 40, 40), "dog": (40, 200, 40), "car": (40, 40, 200)}
    files = {f"{split}/{name}/{i}.png": tuple(min(255, c + 9 * i) for c in colour)
             for split in ("train", "test") for name, colour in colours.items() for i in range(6)}
    return write_tree(files, root="outside")


def test_the_source_the_server_was_started_with_opens_in_every_new_session(monkeypatch, sandbox):
    for _ in range(2):  # two sessions of the same server
        at = started_with(monkeypatch, "--source", str(sandbox))
        assert not at.exception, [e.value for e in at.exception]
        assert not at.warning, [w.value for w in at.warning]
        analysis = at.session_state["analysis"]
        assert analysis.source == "image folder outside (36 images, 3 classes)"
        assert at.session_state["run_settings"].source == str(sandbox.resolve())
        assert (len(analysis.fit_index), len(analysis.query_index)) == (18, 18)
        assert at.sidebar.caption[1].value.startswith("18 train (fit) · 18 test (query)")


def test_the_started_folder_joins_the_roots_but_typed_paths_stay_sandboxed(monkeypatch, sandbox, tmp_path):
    at = started_with(monkeypatch, "--source", str(sandbox))
    at.radio(key="data_source_choice").set_value("Image folder on this machine").run()
    assert "and the folder the dashboard was started with (--source)" in " ".join(markdown_text(c.value) for c in at.caption)
    at.text_input(key="data_folder_path").set_value(str(sandbox / "train")).run()  # under the started folder
    assert not at.error, [e.value for e in at.error]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    at.text_input(key="data_folder_path").set_value(str(elsewhere)).run()
    assert at.error[0].value.startswith("Cannot use this folder: " + escape(
        f"{elsewhere} is outside the folders this dashboard may read"))


def test_without_source_the_session_opens_the_digits(monkeypatch, sandbox):
    at = started_with(monkeypatch)
    assert not at.exception
    assert at.session_state["analysis"].source.startswith("scikit-learn digits")


def test_a_bad_source_is_named(monkeypatch, sandbox, tmp_path):
    missing = tmp_path / "no_such_folder"
    at = started_with(monkeypatch, "--source", str(missing))
    assert not at.exception
    assert at.error[0].value.startswith("The dashboard's own arguments are wrong: "
                                        + escape(f"--source {missing}: no such folder or file"))
    at = started_with(monkeypatch, "--sauce", "digits")
    assert escape("unrecognized arguments: --sauce digits") in at.error[0].value


# ------------------------------------------------------------------ session-state keys
def _literal_keys(path: Path) -> list[str]:
    """Where ``path`` writes a session-state key or a widget key as a string of its own (a
    ``key="..."`` argument or ``st.session_state["..."]``), as ``file:line``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        literal = None
        if isinstance(node, ast.Call):
            literal = next((kw.value for kw in node.keywords if kw.arg == "key"), None)
        elif isinstance(node, ast.Subscript) and "session_state" in ast.unparse(node.value):
            literal = node.slice
        if isinstance(literal, (ast.Constant, ast.JoinedStr)) and not (
                isinstance(literal, ast.Constant) and not isinstance(literal.value, str)):
            found.append(f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node)[:80]}")
    return found


def test_session_state_keys_are_named_only_in_state_py():
    found = [hit for path in sorted(PACKAGE.rglob("*.py")) if path.name != "state.py" for hit in _literal_keys(path)]
    assert found == []


# ------------------------------------------------------------------ issue 18.8
def test_kept_widget_values_reach_a_browser_that_lost_them(monkeypatch, tmp_path):
    """A tab reloaded into its session (or a first run cut short by a rerun) holds no widget state:
    it draws what the server sends with the widget. On every run, not only the first, the Data
    page's fields must carry their values; else the browser shows the widgets' built-in defaults
    (an empty "timm model" and "Weights") and sends them back as typed."""
    monkeypatch.setenv("OOD_CACHE_DIR", os.environ.get("OOD_CACHE_DIR") or str(tmp_path / "cache"))
    at = AppTest.from_file(str(APP), default_timeout=240).run()
    for _ in range(3):  # the first run, then reruns (a reload, a click elsewhere)
        assert not at.exception
        fields = {w.proto.label: w.proto for w in (at.text_input(key="data_model"), at.text_input(key="data_weights"))}
        assert {label: (p.set_value, p.value) for label, p in fields.items()} == {
            "timm model": (True, "auto"), "Weights": (True, "bundled")}
        size = at.number_input(key="data_image_size").proto
        assert (size.set_value, size.value) == (True, 0)
        at.run()
