"""Outlier explorer dashboard: page config, navigation, the session's starting dataset, the sidebar.

From a checkout, ``streamlit run app.py`` (the launcher beside the repository's README). Installed,
``ood-explorer app`` runs ``streamlit run <site-packages>/ood_dashboard/app.py`` with the settings of
``ood_dashboard/streamlit_config.toml``. Either way the script takes its own arguments after
``--``: ``streamlit run app.py -- --source FOLDER`` opens FOLDER (a folder, zip, ``.npz``, ``digits``
or ``cifar10-demo``) in every new session, as a ``?source=`` link does.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __name__ == "__main__" and __package__ in (None, ""):  # run as a script from a checkout: find the package
    _root = str(Path(__file__).resolve().parents[1])
    if _root not in sys.path:
        sys.path.append(_root)

import streamlit as st  # noqa: E402

# Every helper module is imported here, before the first Streamlit call of a session's first run:
# no page imports one for the first time mid-run (see tests/test_browser_first_loads.py).
from ood_dashboard import (explain_views, figures, grid, groups, issue_views, map_selection, markup,  # noqa: E402,F401
                           review, runs, score_page, session, threshold_histogram, uploads)
from ood_dashboard.navigation import PAGES  # noqa: E402

# The tab icon is drawn here (a histogram with a threshold line), not taken from a ":material/...:"
# name: Streamlit fetches those favicons from fonts.gstatic.com, and nothing may leave localhost.
FAVICON_SVG = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24">
<rect x="2" y="14" width="4" height="8" rx="1" fill="#4c78a8"/>
<rect x="8" y="7" width="4" height="15" rx="1" fill="#4c78a8"/>
<rect x="14" y="4" width="4" height="18" rx="1" fill="#4c78a8"/>
<rect x="20" y="11" width="3" height="11" rx="1" fill="#4c78a8"/>
<rect x="6.5" y="1" width="1.5" height="22" fill="#d6336c"/>
</svg>"""
# Page layout: narrower side margins than Streamlit's wide default (more room at 1280 px), metric
# labels and values that wrap onto a second line rather than end in an ellipsis, and the reason an
# upload was refused (over server.maxUploadSize: the browser refuses it, Python never sees it) shown
# under the file's name, not only in a tooltip (Streamlit keeps it in a visually hidden alert).
PAGE_CSS = """<style>
@media (min-width: 640px) {
  [data-testid='stMainBlockContainer'] {padding-left: 3rem; padding-right: 3rem; padding-top: 4rem;}
}
[data-testid='stMetricValue'] {font-size: 2rem;}
[data-testid='stMetricValue'] :is(div, p),
[data-testid='stMetricLabel'] :is(div, p) {white-space: normal; overflow: visible; text-overflow: clip;}
[data-testid='stFileChip']:has([role='alert']) {flex-wrap: wrap; height: auto; max-width: 100%;}
[data-testid='stFileChip'] [role='alert'] {position: static; width: auto; height: auto; clip: auto; clip-path: none;
  overflow: visible; white-space: normal; margin: 0; flex-basis: 100%; color: #bd4043; font-size: 0.8rem;}
</style>"""


class _ArgumentError(ValueError):
    """A bad script argument (argparse would exit the server's script thread instead)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise _ArgumentError(message)


def build_parser() -> argparse.ArgumentParser:
    """The script's own arguments (after ``--`` on the ``streamlit run`` line)."""
    parser = _Parser(prog="streamlit run app.py --", add_help=False,
                     description="The outlier explorer dashboard.")
    parser.add_argument("--source", default=None,
                        help="open this dataset in every new session: a folder, a zip, an .npz/.npy, or a "
                             "built-in name (digits, cifar10-demo); a path may lie outside the allowed data roots "
                             "(default: the built-in digits)")
    return parser


def script_argv() -> list[str]:
    """The arguments given to this script by ``streamlit run SCRIPT -- ARGS`` (Streamlit sets
    ``sys.argv`` to ``[SCRIPT, *ARGS]``); none when it was started otherwise (e.g. by AppTest, where
    ``sys.argv`` is pytest's)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None or not sys.argv:
        return []
    try:
        started_so = Path(sys.argv[0]).resolve() == Path(ctx.pages_manager.main_script_path).resolve()
    except (OSError, ValueError):
        started_so = False
    return sys.argv[1:] if started_so else []


def start_source(argv: list[str]) -> str | None:
    """The ``--source`` this server was started with (None without one), checked and trusted: a
    path given by whoever started the server is readable even outside the allowed data roots."""
    options = build_parser().parse_args(argv)
    if options.source is None:
        return None
    return uploads.trust_start_source(options.source)


def main(argv: list[str] | None = None) -> None:
    """Draw the app: page config, navigation, the session's starting dataset, sidebar, then the page."""
    st.set_page_config(page_title="Outlier explorer", page_icon=FAVICON_SVG, layout="wide")
    navigation = st.navigation([st.Page(spec.path, title=spec.title, icon=spec.icon, default=i == 0)
                                for i, spec in enumerate(PAGES)])
    st.html(PAGE_CSS + grid.GRID_CSS)  # page margins, metrics; crisp thumbnails, compact grid cells
    try:
        source = start_source(script_argv() if argv is None else argv)
    except ValueError as exc:
        st.error(f"The dashboard's own arguments are wrong: {markup.escape(str(exc))}. Usage: "
                 "`streamlit run app.py -- --source FOLDER_ZIP_NPZ_OR_NAME`.", icon=":material/error:")
        st.stop()
    session.ensure_default_analysis(source)
    session.adopt_finished_run()
    session.sidebar_summary()
    review.mark_error_notice()  # a mark that could not be saved, until dismissed or a mark is saved
    navigation.run()


if __name__ == "__main__":
    main()
