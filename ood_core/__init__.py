"""ood_core: outlier scores for image datasets (KNN on embeddings, predicted-probability scores)."""
from .analysis import Analysis, ScoreConfig, rescore, run_analysis
from .cache import cached_embed, default_cache_dir
from .catalog import list_sources, open_source
from .embedder import EmbedConfig, Embedder, drop_failed, resolve_embed_config
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
from .sources import (
    ANIMALS,
    CIFAR10_CLASSES,
    ArraySet,
    ImageSet,
    cifar10,
    demo_split,
    digits,
    image_folder,
    image_zip,
    load_arrays,
)
from .weights import WeightsUnavailableError, list_weights
from .thresholds import flag, ood_metrics, percentile_of, percentile_threshold, rank_outliers, roc_points

__all__ = [
    "ImageSet",
    "ArraySet",
    "image_folder",
    "image_zip",
    "cifar10",
    "demo_split",
    "digits",
    "load_arrays",
    "ANIMALS",
    "CIFAR10_CLASSES",
    "open_source",
    "list_sources",
    "Embedder",
    "EmbedConfig",
    "resolve_embed_config",
    "drop_failed",
    "cached_embed",
    "default_cache_dir",
    "WeightsUnavailableError",
    "list_weights",
    "Analysis",
    "ScoreConfig",
    "run_analysis",
    "rescore",
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
