"""`ood-explorer app`: the Streamlit command line it builds, its errors, and a real start on a free port
(against a fake ood_dashboard package: the real one is checked end to end by the wheel test)."""
from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ood_core.cli import _parse, main
from ood_core.cli.app import split_streamlit_flags, streamlit_command

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def fake_dashboard(tmp_path) -> Path:
    """A folder holding an ``ood_dashboard`` package: app.py and its Streamlit settings."""
    package = tmp_path / "site" / "ood_dashboard"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "app.py").write_text("import streamlit as st\nst.write('fake dashboard')\n")
    (package / "streamlit_config.toml").write_text(
        '[server]\naddress = "127.0.0.1"\nheadless = true\nenableXsrfProtection = true\nmaxUploadSize = 500\n'
        '\n[browser]\ngatherUsageStats = false\n')
    return package


def test_the_command_carries_settings_port_host_flags_and_source(fake_dashboard):
    command = streamlit_command(fake_dashboard, source="digits", port=8600, host="0.0.0.0",
                                streamlit_flags=["--theme.base", "dark"], python="py")
    assert command == [
        "py", "-m", "streamlit", "run", str(fake_dashboard / "app.py"),
        "--server.address=127.0.0.1", "--server.headless=true", "--server.enableXsrfProtection=true",
        "--server.maxUploadSize=500", "--browser.gatherUsageStats=false",
        "--server.port=8600", "--server.address=0.0.0.0", "--theme.base", "dark", "--", "--source", "digits"]
    bare = streamlit_command(fake_dashboard, python="py")
    assert bare[-1] == "--browser.gatherUsageStats=false" and "--" not in bare


def test_the_real_settings_file_becomes_flags():
    """The checkout's .streamlit/config.toml (the one the package carries a copy of) as flags."""
    from ood_core.cli.app import config_flags

    flags = config_flags(REPO / ".streamlit" / "config.toml")
    assert "--server.address=127.0.0.1" in flags and "--server.enableXsrfProtection=true" in flags
    assert '--theme.font=sans serif' in flags and "--client.toolbarMode=minimal" in flags


def test_streamlit_flags_pass_through():
    assert split_streamlit_flags(["data/", "--port", "9000", "--theme.base", "dark", "--server.headless=false"]) == (
        ["data/", "--port", "9000"], ["--theme.base", "dark", "--server.headless=false"])
    assert split_streamlit_flags(["--host", "h", "--", "--logger.level", "debug", "x"]) == (
        ["--host", "h"], ["--logger.level", "debug", "x"])
    args = _parse(["-q", "app", "--theme.base", "dark", "digits", "--port", "9000"])
    assert (args.source, args.port, args.host, args.streamlit_flags) == ("digits", 9000, None, ["--theme.base", "dark"])
    with pytest.raises(SystemExit):
        _parse(["run", "digits", "--out", "x.csv", "--theme.base", "dark"])  # only `app` takes Streamlit flags


def test_missing_dashboard_names_the_install_command(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ood_dashboard" else real(name, *a))
    assert main(["app"]) == 2
    assert capsys.readouterr().err == ("error: the dashboard needs ood_dashboard, which is not installed: "
                                       "pip install 'ood-explorer[app]'\n")


def test_a_bad_source_is_refused_before_starting(fake_dashboard, monkeypatch, tmp_path, capsys):
    monkeypatch.syspath_prepend(str(fake_dashboard.parent))
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: pytest.fail("started despite a bad source"))
    assert main(["app", str(tmp_path / "nope")]) == 2
    assert "neither a built-in source (cifar10-demo, digits) nor an existing path" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_app_serves_on_the_port_and_stops_with_its_dashboard(fake_dashboard, tmp_path, stop):
    """Ctrl-C (the whole process group) or a SIGTERM to the command alone (a service manager, a test's
    teardown): either way Streamlit stops with it and the port is free again, no orphan left serving."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake_dashboard.parent), str(REPO)])}
    process = subprocess.Popen([sys.executable, "-m", "ood_core", "app", "digits", "--port", str(port)], cwd=tmp_path,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        deadline, health = time.monotonic() + 60, None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as answer:
                    health = answer.read().decode()
                break
            except OSError:
                time.sleep(0.5)
        assert health == "ok", process.stdout.read() if process.poll() is not None else "no answer in 60 s"
        if stop == "ctrl-c":
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole group
            assert process.wait(timeout=30) == 0
        else:
            process.send_signal(signal.SIGTERM)  # to the command only: it passes the signal on
            process.wait(timeout=30)
        with socket.socket() as s:  # nothing listens on the port any more (closed connections may linger)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
