"""ood_core: outlier scores for image datasets (KNN on embeddings, predicted-probability scores).

The front door is :func:`analyze`: a source in, an immutable :class:`Analysis` out::

    import ood_core
    analysis = ood_core.analyze("digits")
    view = analysis.threshold_view("feature", percentile=5)

Front door (``__all__``): ``analyze``, ``embed``, ``embed_shards``, ``compare_models``,
``open_source``, ``list_sources`` and what they take and return (``RunConfig``, ``Analysis``,
``ScoreConfig``, ``ThresholdView``, ``Embedding``, ``ShardedEmbedding``, ``ModelComparison``,
``DEFAULT_COMPARE_MODELS``), and ``Reference`` (a saved reference, new batches checked against its
frozen thresholds).

Everything else lives in a public sub-module, reachable as ``ood_core.<name>`` after
``import ood_core``:

- ``sources``: data sources (``ImageSet``, ``ArraySet``, folders, zips, ``.npz``, digits, CIFAR-10)
- ``analysis``: ``Analysis`` and its views, ``SCORERS`` (the registry of scorer kinds, ``register_scorer``)
- ``run_config``: ``RunConfig``, what defines a run (the embedding and the class split)
- ``scorers``: ``FeatureScorer`` (KNN), ``PredProbScorer``, the neighbour index settings
- ``thresholds``: percentile thresholds, flags, rankings, ``ood_metrics``
- ``explain``: neighbours, 2-D maps, comparing scores, per-class thresholds
- ``reference``: saved references, checks of new batches (``BatchResult``, ``ReferenceError``, ``flag_rate_interval``)
- ``review``: review marks and the precision they estimate
- ``issues``: data issues beyond outliers (duplicates, label issues, image properties)
- ``embedder``, ``weights``, ``cache``, ``shards``, ``pred_probs``: the machinery under ``embed``
- ``uploads``: storing uploaded files (the dashboard's)

The names below ``_ELSEWHERE`` are also importable from ``ood_core`` itself, as they were before
the sub-modules were the way in (the CLI and the dashboard use them); ``__init__.pyi`` declares
every name for editors and type checkers. Nothing is imported until first use, so
``import ood_core`` (and the CLI's ``--help``) does not pay for torch, timm or scikit-learn.
"""
import importlib
from typing import Any

# The front door, by the module that defines it.
_FRONT_DOOR: dict[str, list[str]] = {
    "._analyze": ["analyze", "embed", "Embedding"],
    "._sharded_embed": ["embed_shards", "ShardedEmbedding"],
    "._compare_models": ["compare_models", "ModelComparison", "DEFAULT_COMPARE_MODELS"],
    ".analysis": ["Analysis", "ScoreConfig", "ThresholdView"],
    ".run_config": ["RunConfig"],
    ".sources": ["open_source", "list_sources"],
    ".reference": ["Reference"],
}

# The public sub-modules.
_SUBMODULES = ("analysis", "cache", "embedder", "explain", "issues", "pred_probs", "reference", "review", "run_config",
               "scorers", "shards", "sources", "thresholds", "uploads", "weights")

# Names also importable from ``ood_core``, by the public sub-module that is their home.
_ELSEWHERE: dict[str, list[str]] = {
    ".sources": ["ImageSet", "ArraySet", "image_folder", "image_zip", "cifar10", "download_cifar10",
                 "cifar10_location", "cifar10_data_dir", "demo_split", "digits", "load_arrays", "fit_query_arrays",
                 "in_out_split", "ANIMALS", "CIFAR10_CLASSES", "DownloadError"],
    ".analysis": ["SCORERS"],
    ".scorers": ["FeatureScorer", "PredProbScorer", "PRED_SCORE_METHODS", "INDEX_CHOICES", "AUTO_APPROXIMATE_ROWS",
                 "IndexParams", "faiss_available"],
    ".thresholds": ["percentile_threshold", "percentile_of", "flag", "rank_outliers", "ood_metrics", "roc_points",
                    "flag_metrics", "scored_values"],
    ".explain": ["explain_neighbours", "project_2d", "PROJECTION_TITLES", "quadrants", "QUADRANTS", "rank_average",
                 "rank_average_fit_query", "compare_auroc", "per_class_thresholds", "flag_per_class",
                 "per_class_counts"],
    ".review": ["ReviewStore", "Mark", "VERDICTS", "ReviewStoreError", "DatasetMarks", "dataset_key",
                "precision_estimate", "PrecisionEstimate", "review_summary", "ReviewSummary", "reviewed_truth",
                "flagged_positions", "marked_positions", "review_table", "review_csv", "copy_items"],
    ".embedder": ["Embedder", "MODEL_CHOICES"],
    ".weights": ["DEFAULT_MODEL", "DEFAULT_NETWORK", "list_weights", "WeightsUnavailableError"],
    ".cache": ["default_cache_dir"],
    ".shards": ["FeatureShards"],
    ".pred_probs": ["out_of_sample_pred_probs"],
    ".uploads": ["save_upload", "discard_upload", "UPLOAD_SUFFIXES"],
    ".reference": ["BatchResult", "ReferenceError", "flag_rate_interval"],
}

__all__ = [name for names in _FRONT_DOOR.values() for name in names]
_HOME = {name: module for table in (_FRONT_DOOR, _ELSEWHERE) for module, names in table.items() for name in names}


def __getattr__(name: str) -> Any:
    """Import a name's module (or a public sub-module) on first use."""
    if name in _HOME:
        value = getattr(importlib.import_module(_HOME[name], __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'ood_core' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(_SUBMODULES))
