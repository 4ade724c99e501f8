"""``config``: every setting (:mod:`ood_core.settings`), its value and where it came from."""
from __future__ import annotations

import json
import os

from .. import settings


def add_parsers(sub) -> None:
    """The ``config`` command."""
    p = sub.add_parser("config", help="show every setting, its value and where it came from (environment, "
                                      "config file, default)")
    p.add_argument("--json", action="store_true", help="print the settings as JSON")
    p.set_defaults(run=run_config)


def _text(value) -> str | list[str] | None:
    if value is None:
        return None
    if isinstance(value, list):
        return [str(v) for v in value]
    return str(value)


def settings_table() -> list[dict]:
    """One row per setting: name, environment variable, config-file key, value, origin, where, meaning, default."""
    return [{"name": r.setting.name, "env": r.setting.env, "config_key": r.setting.name if r.setting.in_file else None,
             "value": _text(r.value), "origin": r.origin, "where": r.where, "meaning": r.setting.meaning,
             "default": r.setting.default_text} for r in settings.resolve_all()]


def run_defaults() -> dict:
    """The defaults of the run flags (embedding, split, scoring), as the commands and ``analyze`` use them."""
    from .. import DEFAULT_MODEL

    return {"model": DEFAULT_MODEL, **{name[len("DEFAULT_"):].lower(): getattr(settings, name)
                                       for name in settings.__all__ if name.startswith("DEFAULT_")}}


def run_config(args) -> int:
    """Print the settings (or ``--json``)."""
    rows, path = settings_table(), settings.config_file()
    if args.json:
        print(json.dumps({"config_file": str(path), "config_file_exists": path.is_file(), "settings": rows,
                          "run_defaults": run_defaults()}, indent=2))
        return 0
    print(f"config file: {path}" + ("" if path.is_file() else " (not there: no setting comes from it)"))
    for row in rows:
        value = row["value"]
        shown = os.pathsep.join(value) if isinstance(value, list) else ("(not set)" if value is None else value)
        key = f", config key {row['config_key']}" if row["config_key"] else ""
        print(f"\n{row['name']} = {shown}\n  from {row['where']}\n  {row['env']}{key}: {row['meaning']}")
    print("\nrun defaults (flags of run, score, embed, ...): "
          + ", ".join(f"{k}={v}" for k, v in run_defaults().items()))
    return 0
