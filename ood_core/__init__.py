"""ood_core: outlier scores for image datasets (KNN on embeddings, predicted-probability scores).

The front door is :func:`analyze`: a source in, an immutable :class:`Analysis` out::

    import ood_core
    analysis = ood_core.analyze("digits")
    view = analysis.threshold_view("feature", percentile=5)

The estimators, thresholds and explain functions below work on plain arrays as well.
"""
from ._analyze import DEFAULT_MODEL, Embedding, analyze, embed
from .analysis import SCORERS, Analysis, ScoreConfig, ThresholdView
from .cache import default_cache_dir
from .embedder import Embedder
from .explain import (
    PROJECTION_TITLES,
    QUADRANTS,
    compare_auroc,
    explain_neighbours,
    flag_per_class,
    per_class_counts,
    per_class_thresholds,
    project_2d,
    quadrants,
    rank_average,
    rank_average_fit_query,
)
from .pred_probs import out_of_sample_pred_probs
from .scorers import PRED_SCORE_METHODS, FeatureScorer, PredProbScorer
from .sources import (
    ANIMALS,
    CIFAR10_CLASSES,
    ArraySet,
    ImageSet,
    cifar10,
    demo_split,
    digits,
    image_folder,
    fit_query_arrays,
    image_zip,
    list_sources,
    load_arrays,
    open_source,
)
from .thresholds import flag, flag_metrics, ood_metrics, percentile_of, percentile_threshold, rank_outliers, roc_points
from .uploads import UPLOAD_SUFFIXES, save_upload
from .weights import WeightsUnavailableError, list_weights

__all__ = [
    # run the whole flow
    "analyze", "Analysis", "ScoreConfig", "ThresholdView", "SCORERS", "embed", "Embedding", "DEFAULT_MODEL",
    # data
    "open_source", "list_sources", "ImageSet", "ArraySet", "image_folder", "image_zip", "cifar10",
    "demo_split", "digits", "load_arrays", "fit_query_arrays", "ANIMALS", "CIFAR10_CLASSES", "save_upload", "UPLOAD_SUFFIXES",
    # embedding
    "Embedder", "list_weights", "WeightsUnavailableError", "default_cache_dir",
    # scores, thresholds, metrics
    "FeatureScorer", "PredProbScorer", "PRED_SCORE_METHODS", "out_of_sample_pred_probs",
    "percentile_threshold", "percentile_of", "flag", "rank_outliers", "ood_metrics", "roc_points", "flag_metrics",
    # explain and compare
    "explain_neighbours", "project_2d", "PROJECTION_TITLES", "quadrants", "QUADRANTS", "rank_average",
    "rank_average_fit_query", "compare_auroc", "per_class_thresholds", "flag_per_class", "per_class_counts",
]
