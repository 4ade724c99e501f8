"""One run of the whole flow: source -> features (cached) -> both scorers -> scores.

The dashboard and the CLI both call :func:`run_analysis` and read the :class:`Analysis` it
returns; :func:`rescore` refits only the scorers when their settings change, reusing the
features and the out-of-sample pred_probs.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .pred_probs import out_of_sample_pred_probs
from .scorers import FeatureScorer, PredProbScorer
from .thresholds import flag, ood_metrics, percentile_of, percentile_threshold

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (stage, done, total)

SCORER_NAMES = ("feature", "prediction")
SCORER_TITLES = {"feature": "Feature score (KNN)", "prediction": "Prediction score (pred_probs)"}


@dataclass(frozen=True)
class ScoreConfig:
    """Settings of both scorers; ``None`` means the scorer's own default."""

    k: int | None = None  # neighbours of the feature scorer (None: min(10, n_fit - 1))
    t: float = 1.0  # temperature of the feature score
    method: str = "entropy"  # prediction score: "entropy" or "least_confidence"
    adjust: bool = True  # subtract the per-class confident thresholds


@dataclass
class Analysis:
    """What one run produced. Scores lie in [0, 1]; lower = more atypical."""

    source: str
    embed_config: dict[str, Any]
    items: Any  # ImageSet to render images from; None for precomputed arrays
    ids: list[str]
    paths: list[str]
    labels: np.ndarray
    class_names: list[str]
    fit_index: np.ndarray
    query_index: np.ndarray
    features: np.ndarray
    is_ood: np.ndarray | None  # truth for the query rows, aligned with query_index
    score_config: ScoreConfig
    feature_scorer: FeatureScorer
    fit_feature_scores: np.ndarray
    query_feature_scores: np.ndarray
    pred_scorer: PredProbScorer | None = None
    fit_pred_probs: np.ndarray | None = None
    query_pred_probs: np.ndarray | None = None
    fit_pred_scores: np.ndarray | None = None
    query_pred_scores: np.ndarray | None = None
    pred_classes: np.ndarray | None = None  # class index of each pred_probs column
    classifier: Any = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    cache_hit: bool = False

    @property
    def same_set(self) -> bool:
        """True when the fit and query sets are the same items (a source without a split)."""
        return len(self.fit_index) == len(self.query_index) and bool(np.all(self.fit_index == self.query_index))

    @property
    def scorers(self) -> tuple[str, ...]:
        """Names of the scorers this analysis has scores for."""
        return SCORER_NAMES if self.fit_pred_scores is not None else ("feature",)

    def scores(self, scorer: str) -> tuple[np.ndarray, np.ndarray]:
        """``(fit_scores, query_scores)`` of ``"feature"`` or ``"prediction"``."""
        if scorer not in SCORER_NAMES:
            raise ValueError(f"scorer must be one of {SCORER_NAMES}; got {scorer!r}")
        if scorer not in self.scorers:
            raise ValueError(
                "this analysis has no prediction scores: the fit set needs class labels (or pred_probs)"
            )
        if scorer == "feature":
            return self.fit_feature_scores, self.query_feature_scores
        return self.fit_pred_scores, self.query_pred_scores

    def class_name(self, position: int) -> str:
        """Class name of the item at ``position`` (into ``ids``), or "" when unknown."""
        label = int(self.labels[position])
        return self.class_names[label] if 0 <= label < len(self.class_names) else ""


def _split_indices(split: np.ndarray | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    if split is None:
        everything = np.arange(n)
        return everything, everything
    split = np.asarray(split).astype(str)
    fit_index = np.flatnonzero(split == "train")
    query_index = np.flatnonzero(split == "test")
    if len(fit_index) < 2:
        raise ValueError(f"the source's fit ('train') split has {len(fit_index)} item(s); at least 2 are needed")
    if len(query_index) == 0:
        raise ValueError("the source's query ('test') split is empty; add test items or drop the split")
    return fit_index, query_index


def _stage(progress: Progress | None, stage: str) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(stage, done, total)


def run_analysis(
    source,
    embedder=None,
    score_config: ScoreConfig = ScoreConfig(),
    cache_dir=None,
    progress: Progress | None = None,
) -> Analysis:
    """Embed ``source`` (an ImageSet, through the disk cache) or take its precomputed features
    (an ArraySet), then fit both scorers on the fit split and score the query split."""
    from .sources import ArraySet, ImageSet

    source_pred_probs = None
    if isinstance(source, ArraySet):
        features, items, hit = source.features, None, False
        embed_config = {"precomputed": source.description}
        source_pred_probs = source.pred_probs
    elif isinstance(source, ImageSet):
        from .cache import cached_embed
        from .embedder import Embedder, drop_failed

        embedder = embedder if embedder is not None else Embedder()
        if len(source) < 2:
            raise ValueError(
                f"the source has {len(source)} readable image(s) ({len(source.skipped)} skipped); "
                "at least 2 are needed"
            )
        features, hit = cached_embed(embedder, source, cache_dir=cache_dir, progress=_stage(progress, "embed"))
        # Images that failed to decode come back as NaN rows: drop them, and list them as skipped.
        source, features = drop_failed(source, features, embedder.failures_)
        items = source
        embed_config = dataclasses.asdict(embedder.config_for(source))
    else:
        raise TypeError(f"source must be an ImageSet or ArraySet; got {type(source).__name__}")

    n = len(features)
    fit_index, query_index = _split_indices(source.split, n)
    labels = np.asarray(source.labels, dtype=np.int64) if source.labels is not None else np.full(n, -1)
    is_ood = None if source.is_ood is None else np.asarray(source.is_ood, dtype=bool)[query_index]
    if is_ood is not None and (is_ood.all() or not is_ood.any()):
        is_ood = None  # evaluation needs both kinds of query item

    analysis = Analysis(
        source=source.description, embed_config=embed_config, items=items,
        ids=list(source.ids), paths=list(getattr(source, "paths", source.ids)), labels=labels,
        class_names=list(source.class_names), fit_index=fit_index, query_index=query_index,
        features=features, is_ood=is_ood, score_config=score_config,
        feature_scorer=FeatureScorer(), fit_feature_scores=np.empty(0), query_feature_scores=np.empty(0),
        skipped=list(getattr(source, "skipped", [])), cache_hit=hit,
    )
    _attach_pred_probs(analysis, source_pred_probs, progress)
    return rescore(analysis, score_config, progress=progress, _force=True)


def _attach_pred_probs(analysis: Analysis, source_pred_probs, progress: Progress | None) -> None:
    """Out-of-sample pred_probs for the fit rows and a classifier's for the query rows (or the
    source's own pred_probs), when the fit rows carry at least 2 known classes."""
    fit_labels = analysis.labels[analysis.fit_index]
    if source_pred_probs is not None:
        P = np.asarray(source_pred_probs, dtype=np.float64)
        analysis.fit_pred_probs, analysis.query_pred_probs = P[analysis.fit_index], P[analysis.query_index]
        analysis.pred_classes = np.arange(P.shape[1])
        return
    if np.any(fit_labels < 0) or len(np.unique(fit_labels)) < 2:
        logger.info("no prediction score: the fit rows need class labels of at least 2 classes")
        return
    classes, local = np.unique(fit_labels, return_inverse=True)
    n_splits = int(min(5, np.bincount(local).min()))
    if n_splits < 2:
        logger.info("no prediction score: a fit class has a single example")
        return
    fit_pp, clf = out_of_sample_pred_probs(
        analysis.features[analysis.fit_index], local, n_splits=n_splits, progress=_stage(progress, "classifier")
    )
    analysis.fit_pred_probs = fit_pp
    analysis.query_pred_probs = fit_pp if analysis.same_set else clf.predict_proba(
        analysis.features[analysis.query_index])
    analysis.pred_classes = classes
    analysis.classifier = clf


def rescore(analysis: Analysis, score_config: ScoreConfig, progress: Progress | None = None,
            _force: bool = False) -> Analysis:
    """Refit the scorers whose settings changed; features and pred_probs are reused as they are."""
    old = analysis.score_config
    a = dataclasses.replace(analysis, score_config=score_config)
    if _force or (old.k, old.t) != (score_config.k, score_config.t):
        X = a.features
        fs = FeatureScorer(k=score_config.k, t=score_config.t).fit(X[a.fit_index], progress=_stage(progress, "neighbours"))
        a.feature_scorer = fs
        a.fit_feature_scores = fs.fit_scores_
        a.query_feature_scores = fs.fit_scores_ if a.same_set else fs.score(X[a.query_index])
    if a.fit_pred_probs is not None and (_force or (old.method, old.adjust) != (score_config.method, score_config.adjust)):
        local = np.searchsorted(a.pred_classes, a.labels[a.fit_index]) if score_config.adjust else None
        ps = PredProbScorer(method=score_config.method, adjust=score_config.adjust).fit(a.fit_pred_probs, local)
        a.pred_scorer = ps
        a.fit_pred_scores = ps.fit_scores_
        a.query_pred_scores = ps.fit_scores_ if a.same_set else ps.score(a.query_pred_probs)
    return a


# ---------------------------------------------------------------- a threshold and what it flags
@dataclass(frozen=True)
class ThresholdView:
    """Counts at one threshold of one scorer."""

    scorer: str
    percentile: float
    threshold: float
    fit_flagged: int
    fit_total: int
    query_flagged: int
    query_total: int
    metrics: dict[str, float] | None  # ood_metrics at the threshold, when truth is known

    @property
    def fit_flagged_pct(self) -> float:
        return 100.0 * self.fit_flagged / self.fit_total

    @property
    def query_flagged_pct(self) -> float:
        return 100.0 * self.query_flagged / self.query_total


def threshold_view(analysis: Analysis, scorer: str, percentile: float | None = None,
                   threshold: float | None = None) -> ThresholdView:
    """Resolve a percentile of the fit scores (or a raw threshold value) into counts and metrics."""
    fit_scores, query_scores = analysis.scores(scorer)
    if (percentile is None) == (threshold is None):
        raise ValueError("pass exactly one of percentile or threshold")
    if threshold is None:
        threshold = percentile_threshold(fit_scores, percentile)
    else:
        percentile = percentile_of(fit_scores, threshold)
    metrics = ood_metrics(query_scores, analysis.is_ood, threshold) if analysis.is_ood is not None else None
    return ThresholdView(
        scorer=scorer, percentile=float(percentile), threshold=float(threshold),
        fit_flagged=int(flag(fit_scores, threshold).sum()), fit_total=len(fit_scores),
        query_flagged=int(flag(query_scores, threshold).sum()), query_total=len(query_scores),
        metrics=metrics,
    )


def scores_table(analysis: Analysis, thresholds: dict[str, float]) -> list[dict[str, Any]]:
    """One row per scored item (fit rows, then query rows unless they are the same items): id, path,
    set, label, truth when known, and for each scorer in ``thresholds`` its score and flag."""
    scores = {name: analysis.scores(name) for name in thresholds}
    sets = [("fit", analysis.fit_index, 0)]
    if not analysis.same_set:
        sets.append(("query", analysis.query_index, 1))
    rows: list[dict[str, Any]] = []
    for set_name, index, which in sets:
        for j, pos in enumerate(index):
            row: dict[str, Any] = {"id": analysis.ids[pos], "path": analysis.paths[pos], "set": set_name,
                                   "label": analysis.class_name(pos)}
            if analysis.is_ood is not None:
                row["is_ood"] = bool(analysis.is_ood[j]) if set_name == "query" else ""
            for name, thr in thresholds.items():
                s = float(scores[name][which][j])
                row[f"{name}_score"] = s
                row[f"{name}_flagged"] = s < thr
            rows.append(row)
    return rows


def to_csv(rows: list[dict[str, Any]]) -> str:
    """CSV text of :func:`scores_table` rows (scores with full float precision)."""
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    return buf.getvalue()


def threshold_card(analysis: Analysis, view: ThresholdView) -> dict[str, Any]:
    """A JSON-ready record of a threshold: what was scored, how, and what it flags."""
    scorer_params = ({"k": analysis.feature_scorer.k_, "t": analysis.score_config.t,
                      "metric": analysis.feature_scorer.metric_, "scale": analysis.feature_scorer.scale_}
                     if view.scorer == "feature" else
                     {"method": analysis.score_config.method, "adjust": analysis.score_config.adjust,
                      "classifier": None if analysis.classifier is None else
                      {"model": "LogisticRegression", "C": analysis.classifier.C,
                       "C_chosen_by": f"{analysis.classifier.cv_select_} over stratified cross-validation",
                       "pred_probs": "out of sample (held-out folds)"}})
    card = {
        "source": analysis.source,
        "embedding": analysis.embed_config,
        "scorer": view.scorer,
        "scorer_params": scorer_params,
        "percentile": view.percentile,
        "threshold": view.threshold,
        "flagged_rule": "score < threshold",
        "fit": {"flagged": view.fit_flagged, "total": view.fit_total},
        "query": {"flagged": view.query_flagged, "total": view.query_total},
    }
    if view.metrics is not None:
        card["metrics"] = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in view.metrics.items()}
    return card
