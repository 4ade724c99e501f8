"""The kinds of score an :class:`~ood_core.analysis.Analysis` holds, by name, in one registry.

Each :class:`ScorerKind` says what it is called, which :class:`~ood_core.analysis.ScoreConfig`
fields its scores depend on, which Analysis fields hold its scorer and scores, how it is fitted into
an Analysis, and what the threshold card, the CSV, the CLI report and the caveats say about it.
``Analysis``, the CLI report and the dashboard loop over :data:`SCORERS`, so a new kind of score is
one :func:`register_scorer` call (its Analysis fields added beside the others), not an edit wherever
scores are listed. The functions take the Analysis as their first argument (duck-typed: this module
is imported by ``analysis.py`` and does not import it back).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ._progress import Progress, stage
from .scorers import FeatureScorer, PredProbScorer
from .shards import rows


@dataclass(frozen=True)
class ScorerKind:
    """One kind of score: its name (``"feature"``), title and how an Analysis holds and fits it."""

    name: str  # the key of SCORERS, the CLI's --scorer value, the CSV's column prefix
    title: str  # what the CLI and the dashboard call it
    settings: tuple[str, ...]  # the ScoreConfig fields its scores depend on (a change refits it only)
    scorer_field: str  # the Analysis field holding the fitted scorer
    fit_field: str  # the Analysis field holding the fit scores (None: this analysis has no such scores)
    query_field: str  # the Analysis field holding the query scores
    # (analysis, score_config, progress) -> the Analysis fields of it refitted; None when the analysis lacks
    # what it is fitted on (e.g. pred_probs)
    refit: Callable[[Any, Any, Progress | None], dict[str, Any] | None]
    card: Callable[[Any], dict[str, Any]]  # analysis -> the threshold card's "scorer_params"
    missing: str = ""  # why an analysis may have none of these scores (the CLI report and the Data page say it)
    report: Callable[[Any], list[str]] = lambda analysis: []  # extra lines of the CLI report
    columns: Callable[[Any], dict[str, Any]] = lambda analysis: {}  # extra CSV columns of each row
    caveats: Callable[[Any], list[str]] = lambda analysis: []  # notes before trusting its threshold
    flat_advice: str = "."  # ends the caveat when its fit scores hardly vary


# The registry: name -> ScorerKind, in the order the CLI and the dashboard show them.
SCORERS: dict[str, ScorerKind] = {}


def register_scorer(kind: ScorerKind) -> ScorerKind:
    """Add ``kind`` to :data:`SCORERS`; a ValueError when its name is taken."""
    if kind.name in SCORERS:
        raise ValueError(f"a scorer named {kind.name!r} is registered already")
    SCORERS[kind.name] = kind
    return kind


# ---------------------------------------------------------------------- fitting the scorers
def fit_feature(features: np.ndarray, fit_index: np.ndarray, query_index: np.ndarray, config: Any,
                progress: Progress | None = None) -> dict[str, Any]:
    """The feature scorer fitted on the fit rows, and the fit and query scores (Analysis fields)."""
    scorer = FeatureScorer(k=config.k, t=config.t, index=config.index).fit(
        rows(features, fit_index), progress=stage(progress, "neighbours"))
    same = len(fit_index) == len(query_index) and bool(np.all(fit_index == query_index))
    if same:
        return {"feature_scorer": scorer, "fit_feature_scores": scorer.fit_scores_,
                "query_feature_scores": scorer.fit_scores_, "query_neighbors": None}
    # the query rows' neighbours are kept: the duplicate search (ood_core.issues) reuses them
    dist, idx = scorer.kneighbors(rows(features, query_index))
    return {"feature_scorer": scorer, "fit_feature_scores": scorer.fit_scores_,
            "query_feature_scores": scorer._to_scores(dist.astype(np.float64).mean(axis=1)), "query_neighbors": idx}


def fit_prediction(fit_pred_probs: np.ndarray, query_pred_probs: np.ndarray, pred_classes: np.ndarray,
                   fit_labels: np.ndarray, same_set: bool, config: Any) -> dict[str, Any]:
    """The prediction scorer fitted on the fit pred_probs, and the fit and query scores (Analysis fields)."""
    local = np.searchsorted(pred_classes, fit_labels) if config.adjust else None
    scorer = PredProbScorer(method=config.method, adjust=config.adjust).fit(fit_pred_probs, local)
    return {"pred_scorer": scorer, "fit_pred_scores": scorer.fit_scores_,
            "query_pred_scores": scorer.fit_scores_ if same_set else scorer.score(query_pred_probs)}


# ---------------------------------------------------------------------- the feature score (KNN)
def _feature_card(a) -> dict[str, Any]:
    return {"k": a.feature_scorer.k_, "t": a.score_config.t, "metric": a.feature_scorer.metric_,
            "scale": a.feature_scorer.scale_, "neighbour_search": a.feature_scorer.index_}


def _feature_caveats(a) -> list[str]:
    if a.feature_scorer.index_["kind"] != "approximate":
        return []
    return [f"The neighbour search was approximate ({a.feature_scorer.index_['details']}): a few of an item's k "
            "nearest fit items may be missed, which lowers its score slightly. Choose the exact search (index "
            "'exact') for exact scores; it is slow above about 100,000 fit items."]


def _feature_columns(a) -> dict[str, Any]:
    search = a.feature_scorer.search_  # "exact", or the approximate index and its settings
    return {} if search == "exact" else {"feature_search": search}


register_scorer(ScorerKind(
    name="feature", title="Feature score (KNN)", settings=("k", "t", "index"),
    scorer_field="feature_scorer", fit_field="fit_feature_scores", query_field="query_feature_scores",
    refit=lambda a, config, progress: fit_feature(a.features, a.fit_index, a.query_index, config, progress),
    card=_feature_card, report=lambda a: [f"neighbour search: {a.feature_scorer.search_}"],
    columns=_feature_columns, caveats=_feature_caveats))


# ---------------------------------------------------------------------- the prediction score (pred_probs)
def _prediction_refit(a, config, progress) -> dict[str, Any] | None:
    if a.fit_pred_probs is None:
        return None
    return fit_prediction(a.fit_pred_probs, a.query_pred_probs, a.pred_classes, a.labels[a.fit_index], a.same_set,
                          config)


def _prediction_card(a) -> dict[str, Any]:
    classifier = None if a.classifier is None else {
        "model": a.classifier.model, "C": a.classifier.C,
        "C_chosen_by": f"{a.classifier.selected_by} over stratified cross-validation",
        "pred_probs": "out of sample (held-out folds)"}
    return {"method": a.score_config.method, "adjust": a.score_config.adjust, "classifier": classifier}


def _prediction_caveats(a) -> list[str]:
    if a.fit_pred_probs is None or a.fit_pred_probs.shape[1] != 2:
        return []
    return ["With only 2 classes the prediction score says how unsure a 2-way classifier is between them: an image "
            "of neither class is often classified with confidence and scores as typical. Use the feature score "
            "(KNN) to find out-of-distribution images; the prediction score finds the images between the two "
            "classes."]


register_scorer(ScorerKind(
    name="prediction", title="Prediction score (pred_probs)", settings=("method", "adjust"),
    scorer_field="pred_scorer", fit_field="fit_pred_scores", query_field="query_pred_scores",
    refit=_prediction_refit, card=_prediction_card,
    missing=("the prediction score needs class labels (at least 2 classes, 2 items each) on the train (fit) items, "
             "or precomputed pred_probs"),
    caveats=_prediction_caveats, flat_advice="; use the feature score (KNN) instead."))


__all__ = ["SCORERS", "ScorerKind", "register_scorer", "fit_feature", "fit_prediction"]
