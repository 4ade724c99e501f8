"""Command line: ``python -m ood_core COMMAND`` (installed as ``ood-explorer``).

One module per command group (``embed``, ``scoring``: score/run/demo, ``reference``: fit/check/history,
``issues``, ``report``, ``compare``: compare-models, ``review``: export-review/copy-items, ``app``, ``config``),
each with ``add_parsers(sub)`` that registers its commands and the function each runs; ``_common`` holds what they share. Every flag is checked before any
work starts; the heavy modules (torch, timm, scikit-learn) are imported only when a command runs, so
``--help`` answers at once.
"""
from __future__ import annotations

import argparse
import logging
import sys
import warnings
from typing import Sequence

from . import app, compare, config, embed, issues, reference, report, review, scoring

_GROUPS = (embed, scoring, reference, issues, report, review, compare, app, config)
DISTRIBUTION = "ood-explorer"


def version_text() -> str:
    """``ood-explorer X.Y.Z`` from the installed package's metadata, or why there is no version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{DISTRIBUTION} {version(DISTRIBUTION)}"
    except PackageNotFoundError:
        return (f"{DISTRIBUTION}: version unknown (no installed package metadata: this copy runs from a source "
                "folder; `pip install .` there installs it with its version)")


class _VersionAction(argparse.Action):
    """``--version``: the version, read only when asked for."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command."""
    parser = argparse.ArgumentParser(prog="ood-explorer",
                                     description="Find out-of-distribution and atypical images. Also runs as "
                                                 "`python -m ood_core`.")
    parser.add_argument("-V", "--version", action=_VersionAction, help="print the version and exit")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in _GROUPS:
        group.add_parsers(sub)
    return parser


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv``; the Streamlit flags of ``app`` are set aside first (argparse would refuse them)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    command = next((i for i, word in enumerate(argv) if not word.startswith("-")), None)
    if command is None or argv[command] != "app":
        return parser.parse_args(argv)
    ours, theirs = app.split_streamlit_flags(argv[command + 1:])
    args = parser.parse_args(argv[:command + 1] + ours)
    args.streamlit_flags = theirs
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; 0 on success, 2 with ``error: ...`` on stderr for a problem with the input."""
    args = _parse(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return args.run(args)
        except (ValueError, TypeError, FileNotFoundError, RuntimeError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        finally:  # the library's warnings (e.g. the same items in fit and query), as plain lines
            for warning in caught:
                print(f"warning: {warning.message}", file=sys.stderr)


__all__ = ["build_parser", "main", "version_text"]
