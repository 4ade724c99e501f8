"""``app``: the dashboard, started from the installed ``ood_dashboard`` package in any folder.

The command line is built by :func:`streamlit_command` (a pure function): ``python -m streamlit run
<ood_dashboard>/app.py``, the settings of ``<ood_dashboard>/streamlit_config.toml`` as ``--section.key=value``
flags, ``--server.port`` / ``--server.address`` from ``--port`` / ``--host``, the user's own Streamlit
flags, then ``-- --source SOURCE``. Neither streamlit nor ood_dashboard is imported here: they are found
with :func:`importlib.util.find_spec`.
"""
from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Sequence

from ._common import BUILTIN_HELP, positive_int

DASHBOARD_PACKAGE = "ood_dashboard"
APP_SCRIPT = "app.py"
STREAMLIT_CONFIG = "streamlit_config.toml"
INSTALL_HINT = "pip install 'ood-explorer[app]'"


def add_parsers(sub) -> None:
    """The ``app`` command."""
    p = sub.add_parser("app", help="open the dashboard (needs the 'app' extra)",
                       description="Start the dashboard. Streamlit's own flags pass through: --section.key=value "
                                   "(e.g. --theme.base=dark), or anything after `--`.")
    p.add_argument("source", nargs="?", default=None,
                   help=f"opened at start: an image folder, .zip, .npz, shard folder or a {BUILTIN_HELP}")
    p.add_argument("--port", type=positive_int, default=None, help="port to serve on (default: Streamlit's, 8501)")
    p.add_argument("--host", default=None,
                   help="address to bind (default: the dashboard's setting, localhost only)")
    p.set_defaults(run=run_app, streamlit_flags=[])


def split_streamlit_flags(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """``argv`` of an ``app`` command split into ours and Streamlit's: every ``--section.key[=value]``
    flag (with its value when given as the next word), and everything after ``--``."""
    ours, theirs = [], []
    words = list(argv)
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--":
            theirs += words[i + 1:]
            break
        name = word.split("=", 1)[0]
        if word.startswith("--") and "." in name:
            theirs.append(word)
            if "=" not in word and i + 1 < len(words) and not words[i + 1].startswith("-"):
                theirs.append(words[i + 1])
                i += 1
        else:
            ours.append(word)
        i += 1
    return ours, theirs


def _flag_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, (int, float, str)) for v in value):
        return ",".join(map(str, value))
    raise ValueError(f"unsupported Streamlit setting value {value!r}")


def config_flags(config: Path) -> list[str]:
    """The ``[section] key = value`` settings of a Streamlit config file as ``--section.key=value``
    flags; a ValueError naming the file when it cannot be read."""
    try:
        with config.open("rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read the dashboard's Streamlit settings {config}: {exc}") from exc
    flags = []
    for section, table in data.items():
        if not isinstance(table, dict):
            raise ValueError(f"{config}: {section} = ... is not inside a [section]")
        for key, value in table.items():
            try:
                flags.append(f"--{section}.{key}={_flag_value(value)}")
            except ValueError as exc:
                raise ValueError(f"{config}: [{section}] {key}: {exc}") from None
    return flags


def streamlit_command(app_dir: Path, *, source: str | None = None, port: int | None = None,
                      host: str | None = None, streamlit_flags: Sequence[str] = (),
                      python: str = sys.executable) -> list[str]:
    """The command line that starts the dashboard in ``app_dir`` (the ood_dashboard package folder)."""
    app_dir = Path(app_dir)
    command = [python, "-m", "streamlit", "run", str(app_dir / APP_SCRIPT)]
    config = app_dir / STREAMLIT_CONFIG
    if config.is_file():
        command += config_flags(config)
    if port is not None:
        command.append(f"--server.port={port}")
    if host is not None:
        command.append(f"--server.address={host}")
    command += list(streamlit_flags)
    if source is not None:
        command += ["--", "--source", source]
    return command


def dashboard_dir() -> Path:
    """The folder of the installed ood_dashboard package, found without importing it or streamlit; a
    RuntimeError naming the install command when either is missing."""
    missing = [name for name in ("streamlit", DASHBOARD_PACKAGE) if importlib.util.find_spec(name) is None]
    if missing:
        raise RuntimeError(f"the dashboard needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                           f"not installed: {INSTALL_HINT}")
    spec = importlib.util.find_spec(DASHBOARD_PACKAGE)
    folders = list(spec.submodule_search_locations or [])
    script = next((Path(f) / APP_SCRIPT for f in folders if (Path(f) / APP_SCRIPT).is_file()), None)
    if script is None:
        raise RuntimeError(f"the installed {DASHBOARD_PACKAGE} package ({', '.join(folders) or spec.origin}) has no "
                           f"{APP_SCRIPT}; reinstall it: {INSTALL_HINT}")
    return script.parent


def check_source(spec: str) -> None:
    """Refuse a source the dashboard could not open, as the other commands would (lists a folder or zip
    without decoding its images)."""
    from ..sources import BUILTIN_SOURCES, open_source

    if spec not in BUILTIN_SOURCES:  # a built-in source is opened by the dashboard (e.g. CIFAR-10 is found there)
        open_source(spec, verify=False)


def run_app(args) -> int:
    """Start Streamlit as a child process; Ctrl-C reaches it (same process group), a SIGTERM sent to this
    process is passed on to it (a service manager stopping us stops the dashboard too, no orphan left
    serving the port), and its exit code is ours."""
    app_dir = dashboard_dir()
    if args.source is not None:
        check_source(args.source)
    command = streamlit_command(app_dir, source=args.source, port=args.port, host=args.host,
                                streamlit_flags=args.streamlit_flags)
    process = subprocess.Popen(command)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: process.send_signal(signum))
    try:
        return process.wait()
    except KeyboardInterrupt:  # the child got the same SIGINT: let it finish shutting down
        try:
            return process.wait(timeout=10)
        except (KeyboardInterrupt, subprocess.TimeoutExpired):
            process.terminate()
            return process.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
