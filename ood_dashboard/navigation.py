"""The dashboard's pages: one script each in ``views/``, listed here once (file, title, icon) for the
navigation, for links between pages and for the tests.

The page scripts live in ``views/``, not ``pages/``: Streamlit puts a server whose main script has a
``pages/`` folder beside it into its legacy "pages directory" mode, in which a deep link such as
``/feature_scores`` runs that page's file alone, without the app (and ``ood_dashboard/app.py`` is
the main script of an installed dashboard). Each page is given to ``st.Page`` by its absolute path,
so the URLs (``/feature_scores``, ``/table``, ...) are the files' names whatever the main script.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

VIEWS = Path(__file__).resolve().parent / "views"


class PageSpec(NamedTuple):
    """One page: its script's name in ``views/`` (also its URL path), sidebar title and icon."""

    name: str
    title: str
    icon: str

    @property
    def path(self) -> Path:
        """The page script's absolute path."""
        return VIEWS / f"{self.name}.py"


PAGES = (  # in the sidebar's order; the first is the default page ("/")
    PageSpec("data", "Data & model", ":material/dataset:"),
    PageSpec("feature_scores", "Feature scores", ":material/hub:"),
    PageSpec("prediction_scores", "Prediction scores", ":material/psychology:"),
    PageSpec("neighbours", "Why this one?", ":material/travel_explore:"),
    PageSpec("table", "All items", ":material/table_rows:"),
    PageSpec("compare", "Compare scores", ":material/compare_arrows:"),
    PageSpec("embedding_map", "Embedding map", ":material/scatter_plot:"),
    PageSpec("per_class", "Per class", ":material/category:"),
    PageSpec("models", "Which model?", ":material/model_training:"),
    PageSpec("issues", "Data issues", ":material/report:"),
    PageSpec("issue_scores", "Issue scores", ":material/troubleshoot:"),
    PageSpec("batches", "Batches", ":material/monitoring:"),
)


def page_path(name: str) -> Path:
    """The absolute path of page ``name`` (what ``st.switch_page`` takes)."""
    for spec in PAGES:
        if spec.name == name:
            return spec.path
    raise ValueError(f"unknown page {name!r}; the pages are {', '.join(p.name for p in PAGES)}")
