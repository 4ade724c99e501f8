"""The reference's frozen parts: images embedded exactly as the reference's were, the scorers and the
classifier rebuilt from saved arrays, and the prediction scorer fitted and frozen."""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from .._progress import Progress, stage
from ..analysis import ScoreConfig
from ..sources import ImageSet
from ._folder import ReferenceError


def embed_frozen(config, weights: str | os.PathLike, images: ImageSet, *, device: str, batch_size: int,
                 cache_dir, progress: Progress | None, pixel_mean: np.ndarray | None, backend: str = "auto"):
    """Features of ``images`` embedded with the resolved ``config`` (an :class:`EmbedConfig`, its
    ``backend`` included), through the disk cache; images that fail to decode are dropped (listed in
    the returned set's ``skipped``).

    ``backend``: what the caller asked for. "auto" lets an export that disagrees with torch fall back
    to torch (with a warning); an explicit backend raises ValueError then (as the Embedder does).
    A centred pixel model is embedded raw and centred on ``pixel_mean`` (the reference's fit mean), so
    a batch is never centred on itself. Returns ``(kept images, features, the EmbedConfig that
    computed them)``: its ``backend`` is the one that ran (torch after a fall-back)."""
    from ..cache import cached_embed
    from ..embedder import Embedder, drop_failed

    embedder = Embedder(model=config.model, weights="bundled" if config.pixels else weights,
                        image_size=config.image_size, device=device, batch_size=batch_size,
                        fold_batchnorm=config.fold_batchnorm, backend=backend, cache_dir=cache_dir)
    if not config.pixels and embedder.config.weights != config.weights:
        raise ReferenceError(f"the weights given ({weights}) are {embedder.config.weights}, but the reference was "
                             f"embedded with {config.weights}; pass the same weights")
    embedder.config = dataclasses.replace(config, centre=False)  # resolved: used as it is
    features, _ = cached_embed(embedder, images, cache_dir=cache_dir, progress=stage(progress, "embed"))
    used = dataclasses.replace(embedder.config_for(images), centre=config.centre)
    kept, features = drop_failed(images, features, embedder.failures_)
    features = np.array(features, dtype=np.float32)  # our own copy: the centring below writes to it
    if pixel_mean is not None:
        features -= pixel_mean
    return kept, features, used


def frozen_config(embedding: dict[str, Any]):
    """The :class:`EmbedConfig` of a reference's saved ``embedding`` settings."""
    from .._embed_config import EmbedConfig

    cfg = dict(embedding)
    cfg["mean"], cfg["std"] = tuple(cfg["mean"]), tuple(cfg["std"])
    return EmbedConfig(**cfg)


def check_backend(config, device: str):
    """``(EmbedConfig, note)``: ``config`` (a reference's resolved embedding settings) as a batch is
    embedded with it here, and why its backend differs from the reference's ("" when it does not).

    The reference's own backend when it can run here (installed, on the CPU); else torch, whose
    features every export was checked to agree with when it was made (max |difference| <=
    ``MAX_ABS_DIFF`` on a probe batch, :mod:`ood_core._backends`), so the frozen thresholds still
    hold; the note says so. A disagreeing export found at check time also falls back to torch
    (the embedder warns)."""
    from .._backends import MAX_ABS_DIFF, TORCH, installed
    from .._device import resolve_device

    if config.backend in (TORCH, "none"):
        return config, ""
    device_type = resolve_device(device).type
    why = (f"the device is {device_type}" if device_type != "cpu" else
           f"{config.backend} is not installed here" if not installed(config.backend) else "")
    if not why:
        return config, ""
    return dataclasses.replace(config, backend=TORCH), (
        f"the reference was embedded with the {config.backend} backend but {why}: the batch is embedded with "
        f"torch, which its {config.backend} export agreed with to {MAX_ABS_DIFF:g} when it was made")


def frozen_feature_scorer(features: np.ndarray, state: dict[str, Any], arrays: dict[str, np.ndarray], device: str):
    """A fitted :class:`FeatureScorer` (exact search) rebuilt from its saved state: the fit rows, ``k``,
    ``t``, the metric, the scale and the fit rows' own neighbours; nothing is searched again."""
    from .. import _neighbors
    from .._device import resolve_device
    from ..scorers import FeatureScorer

    scorer = FeatureScorer(k=int(state["k"]), t=float(state["t"]), metric=state["metric"], device=device,
                           index="exact")
    scorer.k_ = int(state["k"])
    scorer.metric_ = str(state["metric"])
    scorer.n_fit_, scorer.n_features_in_ = (int(v) for v in features.shape)
    scorer.device_ = resolve_device(device)
    scorer._fit_dtype = features.dtype
    scorer._ann = None
    scorer._fit_rows = _neighbors.prepare(features, scorer.metric_, scorer.device_)
    scorer.index_, scorer.search_ = {"kind": "exact"}, "exact"
    scorer._fit_neighbors = (arrays["feature_knn_distances"], arrays["feature_knn_indices"])
    scorer.fit_distances_ = arrays["feature_fit_distances"]
    scorer.scale_ = float(state["scale"])
    scorer.fit_scores_ = scorer._to_scores(scorer.fit_distances_)
    return scorer


def frozen_pred_scorer(state: dict[str, Any], arrays: dict[str, np.ndarray]):
    """A fitted :class:`PredProbScorer` rebuilt from its method, its thresholds and the fit pred_probs."""
    from ..scorers import PredProbScorer

    scorer = PredProbScorer(method=state["method"], adjust=bool(state["adjust"]))
    scorer.n_classes_ = int(state["n_classes"])
    scorer.thresholds_ = arrays.get("prediction_confident_thresholds") if scorer.adjust else None
    scorer.fit_scores_ = scorer._score(arrays["prediction_fit_pred_probs"])
    return scorer


def frozen_classifier(state: dict[str, Any], arrays: dict[str, np.ndarray]):
    """The logistic regression rebuilt from its arrays (its ``predict_proba`` is scikit-learn's own)."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=float(state["C"]))
    clf.coef_ = arrays["classifier_coef"]
    clf.intercept_ = arrays["classifier_intercept"]
    clf.classes_ = np.arange(len(arrays["classifier_classes"]))
    clf.n_features_in_ = int(arrays["classifier_coef"].shape[1])
    return clf



def fit_frozen_prediction(arrays: dict[str, np.ndarray], scores: ScoreConfig, percentile: float, classify,
                    progress: Progress | None) -> dict[str, Any]:
    """Cross-validate the classifier on the fit rows, fit the prediction scorer on its out-of-sample
    pred_probs, freeze its threshold; settings entries (arrays are added to ``arrays``). Nothing when
    the fit rows do not carry at least 2 classes with 2 items each (then only the feature score)."""
    from ..analysis import fit_prediction
    from ..thresholds import percentile_threshold

    labels = arrays["fit_labels"]
    if np.any(labels < 0) or len(np.unique(labels)) < 2:
        return {"prediction_missing": "the fit items need class labels of at least 2 classes"}
    classes, local = np.unique(labels, return_inverse=True)
    n_splits = int(min(5, np.bincount(local).min()))
    if n_splits < 2:
        return {"prediction_missing": "a fit class has a single item"}
    everything = np.arange(len(labels))
    fit_pp, _, clf = classify(arrays["fit_features"], everything, everything, local, n_splits, True, progress)
    scorer = fit_prediction(fit_pp, fit_pp, classes, labels, True, scores)["pred_scorer"]
    threshold = percentile_threshold(scorer.fit_scores_, percentile)
    arrays.update(prediction_fit_pred_probs=np.asarray(fit_pp, dtype=np.float64),
                  classifier_coef=clf.coef_, classifier_intercept=clf.intercept_,
                  classifier_classes=classes.astype(np.int64))
    if scorer.thresholds_ is not None:
        arrays["prediction_confident_thresholds"] = scorer.thresholds_
    return {"prediction": {
        "method": scores.method, "adjust": bool(scores.adjust), "n_classes": int(len(classes)),
        "threshold": threshold, "below": int(np.count_nonzero(scorer.fit_scores_ < threshold)),
        "classifier": {"model": "LogisticRegression", "C": float(clf.C), "selected_by": str(clf.cv_select_),
                       "pred_probs": "out of sample (stratified cross-validation)"}}}


__all__ = ["check_backend", "embed_frozen", "frozen_config", "fit_frozen_prediction", "frozen_classifier", "frozen_feature_scorer", "frozen_pred_scorer"]
