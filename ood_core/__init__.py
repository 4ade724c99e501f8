"""ood_core: outlier scores for image datasets (KNN on embeddings, predicted-probability scores)."""
from .explain import (
    compare_auroc,
    explain_item,
    explain_neighbours,
    flag_per_class,
    per_class_counts,
    per_class_thresholds,
    predicted_classes,
    project_2d,
    quadrants,
    rank_average,
    rank_average_fit_query,
)
from .pred_probs import out_of_sample_pred_probs
from .scorers import FeatureScorer, PredProbScorer
from .thresholds import flag, ood_metrics, percentile_of, percentile_threshold, rank_outliers, roc_points

__all__ = [
    "FeatureScorer",
    "PredProbScorer",
    "out_of_sample_pred_probs",
    "percentile_threshold",
    "percentile_of",
    "flag",
    "rank_outliers",
    "ood_metrics",
    "roc_points",
    "explain_neighbours",
    "explain_item",
    "project_2d",
    "quadrants",
    "rank_average",
    "rank_average_fit_query",
    "compare_auroc",
    "per_class_thresholds",
    "flag_per_class",
    "per_class_counts",
    "predicted_classes",
]
