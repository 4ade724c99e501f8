"""What one run produced, as one immutable :class:`Analysis`, and everything computed from it.

:func:`ood_core.analyze` builds an Analysis in one go; its methods answer the questions the
dashboard and the CLI ask (scores of a scorer, counts at a threshold, an item's neighbours, the
CSV and threshold card). :meth:`Analysis.rescore` returns a new Analysis with other scorer
settings, reusing the features and the out-of-sample pred_probs.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from ._export import to_csv
from ._files import atomic_write, read_kept
from ._index import INDEX_CHOICES
from ._progress import Progress, stage
from ._validation import check_int
from .explain.neighbours import explain_neighbours
from .scorers import PRED_SCORE_METHODS, FeatureScorer, PredProbScorer
from .settings import DEFAULT_INDEX, DEFAULT_PRED_METHOD, DEFAULT_TEMPERATURE
from .shards import rows
from .thresholds import flag, ood_metrics, percentile_of, percentile_threshold

PROJECTION_FORMAT = "ood-explorer-projection-v1"  # bump when project_2d's output changes for equal input
# The scorers, by name, with the title the CLI and the dashboard show.
SCORERS = {"feature": "Feature score (KNN)", "prediction": "Prediction score (pred_probs)"}


# Why an analysis has no prediction score (the CLI's report and the dashboard say it alike).
NO_PREDICTION_REASON = ("the prediction score needs class labels (at least 2 classes, 2 items each) on the train "
                        "(fit) items, or precomputed pred_probs")

@dataclass(frozen=True)
class ScoreConfig:
    """Settings of both scorers; ``None`` means the scorer's own default."""

    k: int | None = None  # neighbours of the feature scorer (None: min(10, n_fit - 1))
    t: float = DEFAULT_TEMPERATURE  # temperature of the feature score
    method: str = DEFAULT_PRED_METHOD  # prediction score: one of PRED_SCORE_METHODS
    adjust: bool = True  # subtract the per-class confident thresholds
    index: str = DEFAULT_INDEX  # neighbour search of the feature score: "auto", "exact" or "approximate"

    def __post_init__(self):
        if self.method not in PRED_SCORE_METHODS:
            raise ValueError(f"method must be one of {PRED_SCORE_METHODS}; got {self.method!r}")
        if self.index not in INDEX_CHOICES:
            raise ValueError(f"index must be one of {INDEX_CHOICES}; got {self.index!r}")

    def of(self, scorer: str) -> tuple:
        """The settings that ``scorer`` depends on."""
        return (self.k, self.t, self.index) if scorer == "feature" else (self.method, self.adjust)


@dataclass(frozen=True)
class ThresholdView:
    """Counts at one threshold of one scorer."""

    scorer: str
    percentile: float  # the percentile asked for (when a threshold value was given: the one it reaches)
    threshold: float
    reached: float  # the percentile the threshold reaches: the share of fit scores strictly below it
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


@dataclass(frozen=True)
class ClassifierInfo:
    """How the out-of-sample pred_probs were made."""

    model: str  # the classifier, e.g. "LogisticRegression"
    C: float  # its inverse regularisation strength
    selected_by: str  # the cross-validated criterion that chose C


def digest(payload: Any) -> str:
    """A short stable name for a JSON-able payload (run ids, cache keys of derived views)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


@dataclass(frozen=True, eq=False)
class Analysis:
    """What one run produced. Scores lie in [0, 1]; lower = more atypical.

    ``run_id`` names the data, the model and the embedding settings (what the features and
    pred_probs depend on); it stays the same under :meth:`rescore`, while
    :meth:`scores_id` changes with the scorer settings. Treat the arrays as read-only.
    """

    run_id: str
    data_id: str  # identity of the whole data the items were drawn from (ood_core.dataset_key; review marks)
    source: str  # description of the data
    embed_config: dict[str, Any]
    items: Any  # ImageSet to render images from; None for precomputed features
    ids: list[str]
    paths: list[str]
    labels: np.ndarray  # class index per item, -1 when unknown
    class_names: list[str]
    fit_index: np.ndarray  # positions (into ids) of the fit items
    query_index: np.ndarray  # positions of the query items
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
    classifier: ClassifierInfo | None = None  # None when the source brought its own pred_probs
    skipped: list[tuple[str, str]] = field(default_factory=list)
    cache_hit: bool = False
    # How analyze drew the fit/query split by class: {"in_classes": [names], "fit_fraction": f, "seed": s};
    # None: the source's own split (see ood_core.review.split_key).
    class_split: dict[str, Any] | None = None
    cache_dir: str | None = None  # the cache folder the run keeps its pred_probs and maps in (None: the default)

    # ------------------------------------------------------------------ what it holds
    @cached_property
    def query_row_of(self) -> dict[str, int]:
        """Item id -> its row in the query arrays (``query_index`` order); built once per run."""
        return {self.ids[int(position)]: j for j, position in enumerate(self.query_index)}

    @cached_property
    def same_set(self) -> bool:
        """True when the fit and query sets are the same items (a source without a split)."""
        return len(self.fit_index) == len(self.query_index) and bool(np.all(self.fit_index == self.query_index))

    @property
    def scorers(self) -> tuple[str, ...]:
        """Names of the scorers this analysis has scores for."""
        return tuple(SCORERS) if self.fit_pred_scores is not None else ("feature",)

    def scores(self, scorer: str) -> tuple[np.ndarray, np.ndarray]:
        """``(fit_scores, query_scores)`` of ``"feature"`` or ``"prediction"``."""
        if scorer not in SCORERS:
            raise ValueError(f"scorer must be one of {tuple(SCORERS)}; got {scorer!r}")
        if scorer not in self.scorers:
            raise ValueError(
                "this analysis has no prediction scores: the fit set needs class labels (or pred_probs)"
            )
        if scorer == "feature":
            return self.fit_feature_scores, self.query_feature_scores
        return self.fit_pred_scores, self.query_pred_scores

    def scores_id(self, scorer: str) -> str:
        """Names the scores of ``scorer``: changes when the run or that scorer's settings change."""
        return f"{self.run_id}:{scorer}:{digest(self.score_config.of(scorer))}"

    def class_name(self, position: int) -> str:
        """Class name of the item at ``position`` (into ``ids``), or "" when unknown."""
        label = int(self.labels[position])
        return self.class_names[label] if 0 <= label < len(self.class_names) else ""

    def item_scores(self, scorer: str = "feature") -> np.ndarray:
        """One score per item of ``ids`` (float64): the fit score of a fit item, the query score of a
        query item (the same value when fit and query are the same items), NaN for neither."""
        fit_scores, query_scores = self.scores(scorer)
        out = np.full(len(self.ids), np.nan)
        out[np.asarray(self.query_index, dtype=np.int64)] = query_scores
        out[np.asarray(self.fit_index, dtype=np.int64)] = fit_scores
        return out

    def predicted_classes(self, which: str = "query") -> np.ndarray | None:
        """Predicted class index (into ``class_names``) of each query (or fit) item: the argmax of
        its pred_probs mapped through ``pred_classes``; None without pred_probs."""
        if which not in ("query", "fit"):
            raise ValueError(f"which must be 'query' or 'fit'; got {which!r}")
        P = self.query_pred_probs if which == "query" else self.fit_pred_probs
        if P is None:
            return None
        columns = self.pred_classes if self.pred_classes is not None else np.arange(P.shape[1])
        return np.asarray(columns, dtype=np.int64)[np.argmax(P, axis=1)]

    def caveats(self, scorer: str) -> list[str]:
        """What a user should know before trusting ``scorer``'s threshold on this data (may be empty)."""
        notes = []
        if scorer == "feature" and self.feature_scorer.index_["kind"] == "approximate":
            notes.append(
                f"The neighbour search was approximate ({self.feature_scorer.index_['details']}): a few of an "
                "item's k nearest fit items may be missed, which lowers its score slightly. Choose the exact "
                "search (index 'exact') for exact scores; it is slow above about 100,000 fit items.")
        if scorer == "prediction" and self.fit_pred_probs is not None and self.fit_pred_probs.shape[1] == 2:
            notes.append(
                "With only 2 classes the prediction score says how unsure a 2-way classifier is between them: "
                "an image of neither class is often classified with confidence and scores as typical. Use the "
                "feature score (KNN) to find out-of-distribution images; the prediction score finds the images "
                "between the two classes.")
        fit_scores = self.scores(scorer)[0]
        low, high = np.percentile(fit_scores, [5, 95])
        if high - low < 1e-3:
            notes.append(
                f"The fit scores hardly vary (90% of them lie between {low:.3g} and {high:.3g}), so a percentile "
                "threshold cannot separate typical from atypical items here"
                + ("; use the feature score (KNN) instead." if scorer == "prediction" else "."))
        return notes

    def projection(self, method: str = "pca", max_points: int | None = 5_000,
                   progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
        """2-D coordinates of (a seeded sample of at most ``max_points``) items for a map, and their
        positions (into ``ids``); :func:`~ood_core.project_2d` of the features, kept on disk per run
        and method, so reopening the data (even after a restart) does not compute it again."""
        from .cache import run_file
        from .explain.projection import project_2d

        path = run_file(digest([PROJECTION_FORMAT, self.run_id, method, max_points]), self.cache_dir)
        items = np.union1d(self.fit_index, self.query_index)

        def check(kept: dict[str, np.ndarray]) -> None:  # one row per drawn item, each an item of this run
            coords, positions = kept["coords"], kept["positions"]
            if coords.ndim != 2 or coords.shape[1] != 2 or not np.isfinite(coords).all():
                raise ValueError(f"coords of shape {coords.shape} are not finite (n, 2) coordinates")
            if positions.shape != (len(coords),) or positions.dtype.kind not in "iu":
                raise ValueError(f"{len(coords)} coordinates but positions of shape {positions.shape} "
                                 f"({positions.dtype})")
            if len(positions) > min(len(items), max_points or len(items)) or not np.isin(positions, items).all():
                raise ValueError("positions that are not this run's items")

        kept = read_kept(path, f"{method} map", check)  # absent: None; damaged: None, with a warning
        if kept is not None:
            return kept["coords"], kept["positions"]
        coords, drawn = project_2d(self.features[items], method=method, max_points=max_points,
                                   normalize=self.feature_scorer.metric_ == "cosine", progress=progress)
        try:
            atomic_write(path, lambda f: np.savez(f, coords=coords, positions=items[drawn]))
        except OSError:  # a read-only cache costs only the reuse
            pass
        return coords, items[drawn]

    # ------------------------------------------------------------------ other settings
    def rescore(self, score_config: ScoreConfig, progress: Progress | None = None) -> "Analysis":
        """A new Analysis with ``score_config``: only the scorers whose settings changed are refitted;
        features and pred_probs are reused as they are."""
        changes: dict[str, Any] = {"score_config": score_config}
        if score_config.of("feature") != self.score_config.of("feature"):
            changes.update(fit_feature(self.features, self.fit_index, self.query_index, score_config, progress))
        if self.fit_pred_probs is not None and score_config.of("prediction") != self.score_config.of("prediction"):
            changes.update(fit_prediction(self.fit_pred_probs, self.query_pred_probs, self.pred_classes,
                                          self.labels[self.fit_index], self.same_set, score_config))
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ a threshold
    def threshold_view(self, scorer: str, percentile: float | None = None,
                       threshold: float | None = None) -> ThresholdView:
        """Resolve a percentile of the fit scores (or a raw threshold value) into counts and metrics."""
        fit_scores, query_scores = self.scores(scorer)
        if (percentile is None) == (threshold is None):
            raise ValueError("pass exactly one of percentile or threshold")
        if threshold is None:
            threshold = percentile_threshold(fit_scores, percentile)
        reached = percentile_of(fit_scores, threshold)
        percentile = reached if percentile is None else percentile
        metrics = ood_metrics(query_scores, self.is_ood, threshold) if self.is_ood is not None else None
        return ThresholdView(
            scorer=scorer, percentile=float(percentile), threshold=float(threshold), reached=float(reached),
            fit_flagged=int(flag(fit_scores, threshold).sum()), fit_total=len(fit_scores),
            query_flagged=int(flag(query_scores, threshold).sum()), query_total=len(query_scores),
            metrics=metrics,
        )

    def explain(self, position: int, k: int | None = None, threshold: float | None = None) -> dict[str, Any]:
        """:func:`~ood_core.explain.explain_neighbours` for the item at ``position`` (into ``ids``).

        A fit item is explained as a fit row (its own entry excluded); any other item as a query
        row. Adds ``positions`` (the neighbours, into ``ids``), ``position`` and ``is_fit``.
        """
        position = check_int(position, "position", 0, len(self.ids) - 1)
        hits = np.flatnonzero(np.asarray(self.fit_index) == position)
        fit_position = int(hits[0]) if len(hits) else None
        scorer = self.feature_scorer
        k_eff = scorer.k_ if k is None else k
        needs_row = fit_position is None or (isinstance(k_eff, (int, np.integer)) and k_eff > scorer.k_)
        x = self.features[position] if needs_row else None
        result = explain_neighbours(scorer, x, fit_position=fit_position, k=k, threshold=threshold)
        result["positions"] = np.asarray(self.fit_index, dtype=np.int64)[result["indices"]]
        result["position"] = position
        result["is_fit"] = fit_position is not None
        return result

    # ------------------------------------------------------------------ exports
    def scores_table(self, thresholds: dict[str, float]) -> list[dict[str, Any]]:
        """One row per scored item (fit rows, then query rows unless they are the same items): id,
        path, set, label, truth when known, and for each scorer in ``thresholds`` its score and flag."""
        scores = {name: self.scores(name) for name in thresholds}
        sets = [("fit", self.fit_index, 0)]
        if not self.same_set:
            sets.append(("query", self.query_index, 1))
        table: list[dict[str, Any]] = []
        search = self.feature_scorer.search_  # "exact", or the approximate index and its settings
        for set_name, index, which in sets:
            for j, pos in enumerate(index):
                row: dict[str, Any] = {"id": self.ids[pos], "path": self.paths[pos], "set": set_name,
                                       "label": self.class_name(pos)}
                if self.is_ood is not None:
                    row["is_ood"] = bool(self.is_ood[j]) if set_name == "query" else ""
                for name, thr in thresholds.items():
                    s = float(scores[name][which][j])
                    row[f"{name}_score"] = s
                    row[f"{name}_flagged"] = s < thr
                    if name == "feature" and search != "exact":
                        row["feature_search"] = search
                table.append(row)
        return table

    def scores_csv(self, thresholds: dict[str, float]) -> str:
        """:meth:`scores_table` as CSV text (scores with full float precision)."""
        return to_csv(self.scores_table(thresholds))

    def threshold_card(self, view: ThresholdView) -> dict[str, Any]:
        """A JSON-ready record of a threshold: what was scored, how, and what it flags."""
        if view.scorer == "feature":
            scorer_params = {"k": self.feature_scorer.k_, "t": self.score_config.t,
                             "metric": self.feature_scorer.metric_, "scale": self.feature_scorer.scale_,
                             "neighbour_search": self.feature_scorer.index_}
        else:
            classifier = None if self.classifier is None else {
                "model": self.classifier.model, "C": self.classifier.C,
                "C_chosen_by": f"{self.classifier.selected_by} over stratified cross-validation",
                "pred_probs": "out of sample (held-out folds)"}
            scorer_params = {"method": self.score_config.method, "adjust": self.score_config.adjust,
                             "classifier": classifier}
        card = {
            "run_id": self.run_id,
            "source": self.source,
            "embedding": self.embed_config,
            "scorer": view.scorer,
            "scorer_params": scorer_params,
            "percentile": view.percentile,
            "percentile_reached": view.reached,
            "threshold": view.threshold,
            "flagged_rule": "score < threshold",
            "fit": {"flagged": view.fit_flagged, "total": view.fit_total},
            "query": {"flagged": view.query_flagged, "total": view.query_total},
        }
        caveats = self.caveats(view.scorer)
        if caveats:
            card["caveats"] = caveats
        if view.metrics is not None:
            card["metrics"] = {k: (None if isinstance(v, float) and np.isnan(v) else v)
                               for k, v in view.metrics.items()}
        return card


# ---------------------------------------------------------------------- fitting the scorers
def fit_feature(features: np.ndarray, fit_index: np.ndarray, query_index: np.ndarray, config: ScoreConfig,
                progress: Progress | None = None) -> dict[str, Any]:
    """The feature scorer fitted on the fit rows, and the fit and query scores (Analysis fields)."""
    scorer = FeatureScorer(k=config.k, t=config.t, index=config.index).fit(
        rows(features, fit_index), progress=stage(progress, "neighbours"))
    same = len(fit_index) == len(query_index) and bool(np.all(fit_index == query_index))
    return {"feature_scorer": scorer, "fit_feature_scores": scorer.fit_scores_,
            "query_feature_scores": scorer.fit_scores_ if same else scorer.score(rows(features, query_index))}


def fit_prediction(fit_pred_probs: np.ndarray, query_pred_probs: np.ndarray, pred_classes: np.ndarray,
                   fit_labels: np.ndarray, same_set: bool, config: ScoreConfig) -> dict[str, Any]:
    """The prediction scorer fitted on the fit pred_probs, and the fit and query scores (Analysis fields)."""
    local = np.searchsorted(pred_classes, fit_labels) if config.adjust else None
    scorer = PredProbScorer(method=config.method, adjust=config.adjust).fit(fit_pred_probs, local)
    return {"pred_scorer": scorer, "fit_pred_scores": scorer.fit_scores_,
            "query_pred_scores": scorer.fit_scores_ if same_set else scorer.score(query_pred_probs)}
