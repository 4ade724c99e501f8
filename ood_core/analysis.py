"""What one run produced, as one immutable :class:`Analysis`, and everything computed from it.

:func:`ood_core.analyze` builds an Analysis in one go; its methods answer the questions the
dashboard and the CLI ask (scores of a scorer, counts at a threshold, an item's neighbours, the
CSV and threshold card). :meth:`Analysis.rescore` returns a new Analysis with other scorer
settings, reusing the features and the out-of-sample pred_probs.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any

import numpy as np

from ._binomial import DEFAULT_BATCH, expected_flag_rate
from ._export import to_csv
from ._files import atomic_write, digest, read_kept  # digest: run ids, cache keys of derived views
from ._index import INDEX_CHOICES
from ._progress import Progress
from ._validation import check_int
from .explain.neighbours import explain_neighbours
from ._scorer_registry import SCORERS, ScorerKind, fit_feature, fit_prediction, register_scorer  # noqa: F401 - re-exported
from .scorers import PRED_SCORE_METHODS, FeatureScorer, PredProbScorer
from .settings import DEFAULT_INDEX, DEFAULT_PRED_METHOD, DEFAULT_TEMPERATURE
from .thresholds import flag, ood_metrics, percentile_of, percentile_threshold, scored_values

PROJECTION_FORMAT = "ood-explorer-projection-v1"  # bump when project_2d's output changes for equal input
# The scorers, by name: SCORERS (a registry of ScorerKind: title, settings, how each is fitted) lives in
# _scorer_registry.py and is re-exported here. Why an analysis has no prediction score (kept for callers):
NO_PREDICTION_REASON = SCORERS["prediction"].missing

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
        """The settings that ``scorer`` depends on (its :class:`ScorerKind`'s ``settings``; an issue type
        of :mod:`ood_core.issues` reads the neighbours and the pred_probs, so it depends on all of them)."""
        names = SCORERS[scorer].settings if scorer in SCORERS else [f.name for f in fields(self)]
        return tuple(getattr(self, name) for name in names)


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
    fit_unscored: int = 0  # fit items without a score (an issue type's NaN): in fit_total, never flagged
    query_unscored: int = 0  # the same among the query items

    @property
    def fit_flagged_pct(self) -> float:
        """Flagged share of the *scored* fit items, in percent (the percentile is taken over them)."""
        return 100.0 * self.fit_flagged / max(self.fit_total - self.fit_unscored, 1)

    @property
    def query_flagged_pct(self) -> float:
        return 100.0 * self.query_flagged / max(self.query_total - self.query_unscored, 1)


@dataclass(frozen=True)
class ClassifierInfo:
    """How the out-of-sample pred_probs were made."""

    model: str  # the classifier, e.g. "LogisticRegression"
    C: float  # its inverse regularisation strength
    selected_by: str  # the cross-validated criterion that chose C


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
    query_neighbors: np.ndarray | None = None  # fit rows nearest each query row (k_ columns); None when same set

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
        return tuple(name for name, kind in SCORERS.items() if getattr(self, kind.fit_field, None) is not None)

    def scores(self, scorer: str) -> tuple[np.ndarray, np.ndarray]:
        """``(fit_scores, query_scores)`` of ``"feature"`` or ``"prediction"``, or of an issue type
        (:func:`ood_core.issues.list_issue_types`; NaN for items it cannot score)."""
        if scorer not in SCORERS:
            from .issues._registry import ISSUE_TYPES  # importing ood_core.issues registers every type
            if isinstance(scorer, str) and scorer in ISSUE_TYPES:
                s = self.issue_scores(scorer).scores
                return s[np.asarray(self.fit_index, dtype=np.int64)], s[np.asarray(self.query_index, dtype=np.int64)]
            raise ValueError(f"scorer must be one of {tuple(SCORERS)}; got {scorer!r}")
        kind = SCORERS[scorer]
        if scorer not in self.scorers:
            raise ValueError(f"this analysis has no {scorer} scores: {kind.missing}")
        return getattr(self, kind.fit_field), getattr(self, kind.query_field)

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
        kind = SCORERS[scorer]
        notes = list(kind.caveats(self))
        fit_scores = self.scores(scorer)[0]
        low, high = np.percentile(fit_scores, [5, 95])
        if high - low < 1e-3:
            notes.append(
                f"The fit scores hardly vary (90% of them lie between {low:.3g} and {high:.3g}), so a percentile "
                "threshold cannot separate typical from atypical items here"
                + kind.flat_advice)
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

    # ------------------------------------------------------------------ data issues (ood_core.issues)
    @cached_property
    def _issue_results(self) -> dict[str, Any]:  # family (and "stats") -> what ood_core.issues computed
        return {}

    def image_stats(self, progress: Progress | None = None):
        """:class:`~ood_core.issues.ImageStats` of ``items`` (None without images), kept on disk."""
        from .issues._run import cached_image_stats

        return cached_image_stats(self, progress)

    def issue_scores(self, issue: str, progress: Progress | None = None):
        """:class:`~ood_core.issues.IssueScores` of one issue type over ``ids`` (lazy, kept on disk)."""
        from .issues._run import cached_issue_scores

        return cached_issue_scores(self, issue, progress)

    def issues(self, types=None, thresholds: dict[str, float] | None = None,
               progress: Progress | None = None) -> np.ndarray:
        """One row per (scored item, issue type): a structured array (``id``, ``position``, ``issue``,
        ``score``, ``flagged``, ``detail``); see :func:`ood_core.issues.issue_table`."""
        from .issues._run import issue_table

        return issue_table(self, types, thresholds, progress)

    def _unscored(self, issue: str) -> dict[int, str]:  # position -> why (ood_core.issues.unscored_items)
        from .issues._run import unscored_items

        return unscored_items(self, issue)

    def duplicate_sets(self, near_threshold: float | None = None):
        """:class:`~ood_core.issues.DuplicateSet` s (exact copies and near duplicates), largest first."""
        from .issues.duplicates import analysis_duplicate_sets

        return analysis_duplicate_sets(self, near_threshold)

    # ------------------------------------------------------------------ other settings
    def rescore(self, score_config: ScoreConfig, progress: Progress | None = None) -> "Analysis":
        """A new Analysis with ``score_config``: only the scorers whose settings changed are refitted;
        features and pred_probs are reused as they are."""
        changes: dict[str, Any] = {"score_config": score_config}
        for name, kind in SCORERS.items():
            if score_config.of(name) != self.score_config.of(name):
                changes.update(kind.refit(self, score_config, progress) or {})
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ a threshold
    def threshold_view(self, scorer: str, percentile: float | None = None,
                       threshold: float | None = None) -> ThresholdView:
        """Resolve a percentile of the fit scores (or a raw threshold value) into counts and metrics.
        An issue type's unscored items (NaN) are left out of the percentile, counted apart
        (``fit_unscored``, ``query_unscored``) and never flagged; ValueError when no fit item is scored."""
        fit_scores, query_scores = self.scores(scorer)
        if (percentile is None) == (threshold is None):
            raise ValueError("pass exactly one of percentile or threshold")
        scored = scored_values(fit_scores, f"the train (fit) scores of {scorer!r}") if scorer not in SCORERS \
            else fit_scores
        if threshold is None:
            threshold = percentile_threshold(scored, percentile)
        reached = percentile_of(scored, threshold)
        percentile = reached if percentile is None else percentile
        metrics = (ood_metrics(query_scores, self.is_ood, threshold)
                   if self.is_ood is not None and scorer in SCORERS else None)
        query = np.asarray(query_scores)
        return ThresholdView(
            scorer=scorer, percentile=float(percentile), threshold=float(threshold), reached=float(reached),
            fit_flagged=int(flag(scored, threshold).sum()), fit_total=len(fit_scores),
            query_flagged=int(np.count_nonzero(query < threshold)), query_total=len(query), metrics=metrics,
            fit_unscored=len(fit_scores) - len(scored), query_unscored=int(np.count_nonzero(np.isnan(query))))

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
        columns = {name: SCORERS[name].columns(self) if name in SCORERS else {} for name in thresholds}
        unscored = {name: self._unscored(name) for name in thresholds if name not in SCORERS}  # issue types
        for set_name, index, which in sets:
            for j, pos in enumerate(index):
                row: dict[str, Any] = {"id": self.ids[pos], "path": self.paths[pos], "set": set_name,
                                       "label": self.class_name(pos)}
                if self.is_ood is not None:
                    row["is_ood"] = bool(self.is_ood[j]) if set_name == "query" else ""
                for name, thr in thresholds.items():
                    s = float(scores[name][which][j])
                    row[f"{name}_score"] = "" if np.isnan(s) else s  # an issue type's unscored item: no flag
                    row[f"{name}_flagged"] = "" if np.isnan(s) else s < thr
                    row.update(columns[name])
                    if name in unscored:
                        row[f"{name}_unscored"] = unscored[name].get(int(pos), "")
                table.append(row)
        return table

    def scores_csv(self, thresholds: dict[str, float]) -> str:
        """:meth:`scores_table` as CSV text (scores with full float precision)."""
        return to_csv(self.scores_table(thresholds))

    def expected_flag_rate(self, view: ThresholdView) -> dict[str, Any] | None:
        """The flagged rates 95% of in-distribution batches fall in at ``view``'s threshold, a percentile
        of the fit scores (``ood_core._binomial.expected_flag_rate``, with its sentence): for batches the
        size of the query set, or of 1,000 when the query set is the fit set. None below 2 fit items."""
        n_fit, n_query = view.fit_total - view.fit_unscored, view.query_total - view.query_unscored  # scored
        if n_fit < 2:
            return None
        batch = n_query if not self.same_set and n_query else DEFAULT_BATCH
        return expected_flag_rate(n_fit, view.percentile, batch, below=min(view.fit_flagged, n_fit - 1))

    def threshold_card(self, view: ThresholdView) -> dict[str, Any]:
        """A JSON-ready record of a threshold: what was scored, how, and what it flags."""
        scorer_params = SCORERS[view.scorer].card(self) if view.scorer in SCORERS else {}
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
            "fit": {"flagged": view.fit_flagged, "total": view.fit_total, "unscored": view.fit_unscored},
            "query": {"flagged": view.query_flagged, "total": view.query_total, "unscored": view.query_unscored},
        }
        if view.scorer not in SCORERS:  # an issue type: the percentile is of the scored fit items; the rest named
            card["unscored"] = [{"id": self.ids[p], "why": why} for p, why in self._unscored(view.scorer).items()]
        expected = self.expected_flag_rate(view)
        if expected is not None:
            card["expected_flag_rate"] = expected
        caveats = self.caveats(view.scorer) if view.scorer in SCORERS else []
        if caveats:
            card["caveats"] = caveats
        if view.metrics is not None:
            card["metrics"] = {k: (None if isinstance(v, float) and np.isnan(v) else v)
                               for k, v in view.metrics.items()}
        return card


__all__ = ["Analysis", "ScoreConfig", "ThresholdView", "ClassifierInfo", "SCORERS", "ScorerKind", "register_scorer",
           "NO_PREDICTION_REASON", "PROJECTION_FORMAT", "digest", "fit_feature", "fit_prediction"]
