"""Write the command-line reference (docs/CLI.md) from the parser itself, so it cannot drift.

    python docs/gen_cli_reference.py > docs/CLI.md     # regenerate
    python docs/gen_cli_reference.py --check           # exit 1 when docs/CLI.md is out of date

Walks ``ood_core.cli.build_parser()`` and every sub-command (nested ones too): the usage line, the
description, and each argument group with every flag and its help. The usage lines are written
here from the parser's actions rather than by argparse's formatter, so the output does not depend
on the terminal width or on the Python version's argparse layout.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI_MD = ROOT / "docs" / "CLI.md"
REGENERATE = "python docs/gen_cli_reference.py > docs/CLI.md"


def _metavar(action: argparse.Action) -> str:
    """How an argument's value is written: its metavar, its choices, or its name in capitals."""
    if action.metavar is not None:
        return action.metavar if isinstance(action.metavar, str) else " ".join(action.metavar)
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        return "{" + ",".join(str(c) for c in action.choices) + "}"
    return action.dest.upper().replace("-", "_") if not action.option_strings else action.dest.upper()


def _value(action: argparse.Action) -> str:
    """The value part of an argument as typed: ``SOURCE``, ``[SOURCE]``, ``N [N ...]``; empty for a switch."""
    if action.nargs == 0:
        return ""
    m = _metavar(action)
    if action.nargs is None:
        return m
    if action.nargs == argparse.OPTIONAL:
        return f"[{m}]"
    if action.nargs == argparse.ZERO_OR_MORE:
        return f"[{m} ...]"
    if action.nargs == argparse.ONE_OR_MORE:
        return f"{m} [{m} ...]"
    if action.nargs in (argparse.REMAINDER, argparse.PARSER):
        return "..."
    if isinstance(action.nargs, int):
        return " ".join([m] * action.nargs)
    return m


def _spelling(action: argparse.Action) -> str:
    """``--out OUT`` / ``-q, --quiet`` / ``SOURCE``."""
    value = _value(action)
    if not action.option_strings:
        return value
    return ", ".join(f"{flag} {value}".rstrip() for flag in action.option_strings)


def _help(action: argparse.Action, prog: str) -> str:
    text = action.help or ""
    if "%(" in text:  # argparse's own substitutions, as --help shows them
        params = {k: v for k, v in vars(action).items() if v is not argparse.SUPPRESS}
        text = text % dict(params, prog=prog)
    return " ".join(text.split())


def _shown(action: argparse.Action) -> bool:
    return action.help != argparse.SUPPRESS and not isinstance(action, argparse._HelpAction)


def _usage(name: str, parser: argparse.ArgumentParser) -> str:
    """One usage line: the positionals and the required flags by name, the rest as ``[options]``."""
    parts = [name]
    actions = [a for a in parser._actions if _shown(a)]
    if any(a.option_strings and not a.required for a in actions):
        parts.append("[options]")
    for a in actions:
        if a.option_strings and a.required:
            parts.append(f"{a.option_strings[-1]} {_value(a)}".rstrip())
    for a in actions:
        if not a.option_strings:
            parts.append("COMMAND ..." if isinstance(a, argparse._SubParsersAction) else _value(a))
    return " ".join(parts)


def _commands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """``(name, one-line help, parser)`` of each sub-command, in the order they were added."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            seen = set()
            for name, sub in action.choices.items():
                if id(sub) in seen:  # an alias of a command already listed
                    continue
                seen.add(id(sub))
                found.append((name, helps.get(name, ""), sub))
    return found


def _section(name: str, parser: argparse.ArgumentParser, level: int, summary: str) -> list[str]:
    lines = [f"{'#' * level} `{name}`", ""]
    description = " ".join((parser.description or summary).split())
    if description:
        lines += [description, ""]
    lines += ["```text", _usage(name, parser), "```", ""]
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if _shown(a) and not isinstance(a, argparse._SubParsersAction)]
        if not actions:
            continue
        title = group.title or "arguments"
        lines += [f"{title[0].upper()}{title[1:]}:", ""]
        for a in actions:
            notes = []
            if a.option_strings and a.required:
                notes.append("required")
            if isinstance(a, argparse._AppendAction):
                notes.append("repeatable")
            head = f"- `{_spelling(a)}`" + (f" ({', '.join(notes)})" if notes else "")
            text = _help(a, name)
            lines.append(f"{head}: {text}" if text else head)
        lines.append("")
    commands = _commands(parser)
    if commands:
        lines += ["| command | what it does |", "|---|---|"]
        lines += [f"| [`{name} {cmd}`](#{_anchor(f'{name} {cmd}')}) | {' '.join(text.split())} |"
                  for cmd, text, _ in commands]
        lines.append("")
        for cmd, text, sub in commands:
            lines += _section(f"{name} {cmd}", sub, min(level + 1, 6), text)
    return lines


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading `` `heading` ``: lower case, spaces to dashes, punctuation dropped."""
    return "".join(c for c in heading.lower().replace(" ", "-") if c.isalnum() or c in "-_")


def render() -> str:
    """The text of docs/CLI.md for the parser of this checkout."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from ood_core.cli import build_parser

    parser = build_parser()
    head = [
        "# Command-line reference",
        "",
        "<!-- Generated from ood_core.cli.build_parser() by docs/gen_cli_reference.py: do not edit by hand. -->",
        f"<!-- Regenerate with: {REGENERATE} -->",
        "",
        f"`{parser.prog}` is installed with the package; `python -m ood_core` is the same command. "
        "`--help` on any command lists the same options.",
        "",
    ]
    return "\n".join(head + _section(parser.prog, parser, 2, "")).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Print the command-line reference (docs/CLI.md) from the parser.")
    p.add_argument("--check", action="store_true", help="compare with docs/CLI.md instead of printing; exit 1 if it differs")
    args = p.parse_args(argv)
    text = render()
    if not args.check:
        sys.stdout.write(text)
        return 0
    current = CLI_MD.read_text() if CLI_MD.is_file() else ""
    if current != text:
        print(f"{CLI_MD.relative_to(ROOT)} is out of date with ood_core.cli.build_parser(); regenerate it: {REGENERATE}",
              file=sys.stderr)
        return 1
    print(f"{CLI_MD.relative_to(ROOT)} is up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
