"""Data issues beyond outliers: duplicates, label issues and image-quality problems.

Each issue type gives every item a score in [0, 1] (lower = more severe, like the outlier scores),
a default threshold with the reason for its value, and ``flagged = score < threshold``. Families
(one module each) compute their types together: :mod:`.duplicates` (``exact_duplicate``,
``near_duplicate``), :mod:`.labels` (``label``) and :mod:`.properties` (``dark``, ``light``,
``blurry``, ``low_information``, ``grayscale``, ``odd_size``, ``odd_aspect_ratio``).

Use them through an analysis: ``analysis.issues()`` (a table), ``analysis.issue_scores(name)``,
``analysis.duplicate_sets()``, :func:`feature_scores_without_duplicates` (analysis); they are computed on first use and kept on disk with the run.
:func:`issue_summary` adds a table up (counts per type, thresholds and their reasons, duplicate sets).
"""
from ._image_pass import (PROPERTY_COLUMNS, ImageStats, ImageStatsCollector, collect_image_stats, hamming,
                          image_record, perceptual_hashes)
from ._registry import IssueScores, IssueType, get_issue_type, list_issue_types
from ._run import TABLE_DTYPE, issue_table, unscored_items
from ._summary import issue_summary, summary_lines
from .duplicates import (DuplicateSet, analysis_duplicate_sets, bucket_pairs, duplicate_sets,
                         feature_scores_without_duplicates)
from .labels import RANK_BY, label_issues
from .properties import image_properties, property_scores

__all__ = ["PROPERTY_COLUMNS", "RANK_BY", "TABLE_DTYPE", "DuplicateSet", "ImageStats", "ImageStatsCollector",
           "IssueScores", "IssueType", "analysis_duplicate_sets", "bucket_pairs", "collect_image_stats", "duplicate_sets",
           "feature_scores_without_duplicates", "get_issue_type", "hamming", "image_properties", "image_record",
           "issue_summary", "issue_table", "label_issues", "list_issue_types", "perceptual_hashes", "property_scores", "summary_lines",
           "unscored_items"]
