"""ood_core: outlier scores for image datasets (KNN on embeddings, predicted-probability scores).

The front door is :func:`analyze`: a source in, an immutable :class:`Analysis` out::

    import ood_core
    analysis = ood_core.analyze("digits")
    view = analysis.threshold_view("feature", percentile=5)

The estimators, thresholds and explain functions below work on plain arrays as well.
"""
import importlib
from typing import Any

# Every public name, by the module that defines it; each module is imported on first use.
_MODULES: dict[str, list[str]] = {
    "._analyze": ["analyze", "embed", "Embedding"],  # the front door
    "._sharded_embed": ["embed_shards", "ShardedEmbedding"],
    ".shards": ["FeatureShards"],
    "._index": ["INDEX_CHOICES", "AUTO_APPROXIMATE_ROWS", "IndexParams", "faiss_available"],
    ".analysis": ["Analysis", "ScoreConfig", "ThresholdView", "SCORERS"],
    ".sources": ["open_source", "list_sources", "ImageSet", "ArraySet", "image_folder", "image_zip", "cifar10",
                 "download_cifar10", "cifar10_location", "cifar10_data_dir",
                 "demo_split", "digits", "load_arrays", "fit_query_arrays", "in_out_split", "ANIMALS",
                 "CIFAR10_CLASSES"],
    ".uploads": ["save_upload", "discard_upload", "UPLOAD_SUFFIXES"],
    "._download": ["DownloadError"],
    ".review": ["ReviewStore", "Mark", "VERDICTS", "ReviewStoreError", "DatasetMarks", "dataset_key",
                "precision_estimate", "PrecisionEstimate", "review_summary", "ReviewSummary", "reviewed_truth",
                "flagged_positions", "marked_positions", "review_table", "review_csv", "copy_items"],
    ".embedder": ["Embedder"],
    ".weights": ["DEFAULT_MODEL", "DEFAULT_NETWORK", "list_weights", "WeightsUnavailableError"],
    "._embed_config": ["MODEL_CHOICES"],
    "._compare_models": ["compare_models", "ModelComparison", "DEFAULT_COMPARE_MODELS"],
    ".cache": ["default_cache_dir"],
    ".scorers": ["FeatureScorer", "PredProbScorer", "PRED_SCORE_METHODS"],
    ".pred_probs": ["out_of_sample_pred_probs"],
    ".thresholds": ["percentile_threshold", "percentile_of", "flag", "rank_outliers", "ood_metrics", "roc_points",
                    "flag_metrics"],
    ".explain": ["explain_neighbours", "project_2d", "PROJECTION_TITLES", "quadrants", "QUADRANTS", "rank_average",
                 "rank_average_fit_query", "compare_auroc", "per_class_thresholds", "flag_per_class",
                 "per_class_counts"],
}
_PUBLIC = {name: module for module, names in _MODULES.items() for name in names}
__all__ = list(_PUBLIC)


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use, so ``import ood_core`` (and the CLI's ``--help``)
    does not pay for torch, timm and scikit-learn until they are needed."""
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ood_core' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


