"""Explain and compare (issue 5): why an item is an outlier, and whether the two scorers agree.

Plain functions on arrays and fitted scorers; the dashboard pages only draw what they return.

- :mod:`.neighbours`: :func:`explain_neighbours`, an item's nearest fit rows, their distances,
  its own mean distance and the distance a threshold corresponds to.
- :mod:`.projection`: :func:`project_2d`, a 2-D map of the features (PCA, or t-SNE).
- :mod:`.compare`: :func:`quadrants` (which items each scorer flags, Spearman correlation),
  :func:`rank_average`, :func:`rank_average_fit_query` and :func:`compare_auroc`.
- :mod:`.per_class`: :func:`per_class_thresholds`, :func:`flag_per_class`, :func:`per_class_counts`.

Confusion counts of any flag mask: :func:`ood_core.thresholds.flag_metrics`.

Scores follow the package contract: in [0, 1], lower = more atypical; an item is flagged when its
score is strictly below the threshold.
"""
from .compare import QUADRANTS, compare_auroc, quadrants, rank_average, rank_average_fit_query
from .neighbours import explain_neighbours
from .per_class import flag_per_class, per_class_counts, per_class_thresholds
from .projection import PROJECTION_TITLES, PROJECTIONS, project_2d

__all__ = [
    "explain_neighbours",
    "project_2d",
    "PROJECTIONS",
    "PROJECTION_TITLES",
    "QUADRANTS",
    "quadrants",
    "rank_average",
    "rank_average_fit_query",
    "compare_auroc",
    "per_class_thresholds",
    "flag_per_class",
    "per_class_counts",
]
