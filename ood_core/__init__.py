"""ood_core: outlier scores for image datasets (KNN on embeddings, predicted-probability scores)."""
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
]
