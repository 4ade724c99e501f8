"""Every name ``ood_core`` gives, for editors and type checkers; at run time ``__init__.py`` loads
each on first use. tests/test_public_api.py checks that the two list the same names."""

# Public sub-modules.
from . import (
    analysis as analysis, cache as cache, embedder as embedder, explain as explain, issues as issues,
    pred_probs as pred_probs, reference as reference, review as review, run_config as run_config, scorers as scorers,
    shards as shards, sources as sources, thresholds as thresholds, uploads as uploads, weights as weights,
)

# The front door.
from ._analyze import analyze as analyze, embed as embed, Embedding as Embedding
from ._sharded_embed import embed_shards as embed_shards, ShardedEmbedding as ShardedEmbedding
from ._compare_models import (
    compare_models as compare_models, ModelComparison as ModelComparison,
    DEFAULT_COMPARE_MODELS as DEFAULT_COMPARE_MODELS,
)
from .analysis import Analysis as Analysis, ScoreConfig as ScoreConfig, ThresholdView as ThresholdView
from .run_config import RunConfig as RunConfig
from .sources import open_source as open_source, list_sources as list_sources
from .reference import Reference as Reference

__all__ = [
    "analyze", "embed", "Embedding",
    "embed_shards", "ShardedEmbedding",
    "compare_models", "ModelComparison", "DEFAULT_COMPARE_MODELS",
    "Analysis", "ScoreConfig", "ThresholdView",
    "RunConfig",
    "open_source", "list_sources",
    "Reference",
]

# Also importable from here, as before the sub-modules were the way in (the CLI and the dashboard
# use them); new code imports each from its home, the sub-module named.
from .sources import (
    ImageSet as ImageSet, ArraySet as ArraySet, image_folder as image_folder, image_zip as image_zip,
    cifar10 as cifar10, download_cifar10 as download_cifar10, cifar10_location as cifar10_location,
    cifar10_data_dir as cifar10_data_dir, demo_split as demo_split, digits as digits, load_arrays as load_arrays,
    fit_query_arrays as fit_query_arrays, in_out_split as in_out_split, ANIMALS as ANIMALS,
    CIFAR10_CLASSES as CIFAR10_CLASSES, DownloadError as DownloadError,
)
from .analysis import SCORERS as SCORERS
from .scorers import (
    FeatureScorer as FeatureScorer, PredProbScorer as PredProbScorer, PRED_SCORE_METHODS as PRED_SCORE_METHODS,
    INDEX_CHOICES as INDEX_CHOICES, AUTO_APPROXIMATE_ROWS as AUTO_APPROXIMATE_ROWS, IndexParams as IndexParams,
    faiss_available as faiss_available,
)
from .thresholds import (
    percentile_threshold as percentile_threshold, percentile_of as percentile_of, flag as flag,
    rank_outliers as rank_outliers, ood_metrics as ood_metrics, roc_points as roc_points,
    flag_metrics as flag_metrics, scored_values as scored_values,
)
from .explain import (
    explain_neighbours as explain_neighbours, project_2d as project_2d, PROJECTION_TITLES as PROJECTION_TITLES,
    quadrants as quadrants, QUADRANTS as QUADRANTS, rank_average as rank_average,
    rank_average_fit_query as rank_average_fit_query, compare_auroc as compare_auroc,
    per_class_thresholds as per_class_thresholds, flag_per_class as flag_per_class,
    per_class_counts as per_class_counts,
)
from .review import (
    ReviewStore as ReviewStore, Mark as Mark, VERDICTS as VERDICTS, ReviewStoreError as ReviewStoreError,
    DatasetMarks as DatasetMarks, dataset_key as dataset_key, precision_estimate as precision_estimate,
    PrecisionEstimate as PrecisionEstimate, review_summary as review_summary, ReviewSummary as ReviewSummary,
    reviewed_truth as reviewed_truth, flagged_positions as flagged_positions, marked_positions as marked_positions,
    review_table as review_table, review_csv as review_csv, copy_items as copy_items,
)
from .embedder import Embedder as Embedder, MODEL_CHOICES as MODEL_CHOICES
from .weights import (
    DEFAULT_MODEL as DEFAULT_MODEL, DEFAULT_NETWORK as DEFAULT_NETWORK, list_weights as list_weights,
    WeightsUnavailableError as WeightsUnavailableError,
)
from .cache import default_cache_dir as default_cache_dir
from .shards import FeatureShards as FeatureShards
from .pred_probs import out_of_sample_pred_probs as out_of_sample_pred_probs
from .uploads import save_upload as save_upload, discard_upload as discard_upload, UPLOAD_SUFFIXES as UPLOAD_SUFFIXES
from .reference import (
    BatchResult as BatchResult, ReferenceError as ReferenceError, flag_rate_interval as flag_rate_interval,
)
