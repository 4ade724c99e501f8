"""The saved reference itself: :class:`Reference` (fit, save, load, check, history); see the package
docstring and docs/REFERENCE.md."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Unpack

import numpy as np

from .._binomial import DEFAULT_BATCH, class_rate_beta, expected_flag_rate, flag_rate_interval, rate_beta, rate_test
from .._progress import Progress, stage
from .._reference_store import HISTORY_FILE, CheckHistory, HistoryError
from ..analysis import ScoreConfig
from ..run_config import EMBEDDING_FIELDS, RunConfig, RunKeywords
from ..sources import ArraySet, ImageSet
from ._folder import (DEFAULT_LEVEL, REFERENCE_FORMAT, SETTINGS_FILE, ReferenceError, _now, embedding_format,
                      package_version, read_folder, write_folder)
from ._frozen import (check_backend, embed_frozen, fit_frozen_prediction, frozen_classifier, frozen_config,
                      frozen_feature_scorer, frozen_pred_scorer)
from ._result import BatchResult, read_history

class Reference:
    """In-distribution images, embedded and scored once, with both thresholds frozen; see the module
    docstring. Build one with :meth:`fit` or :meth:`load`; check batches with :meth:`check`."""

    def __init__(self, settings: dict[str, Any], arrays: dict[str, np.ndarray], *, folder: Path | None = None,
                 digest: str | None = None, device: str = "auto", weights: str | os.PathLike | None = None):
        """Use :meth:`fit` or :meth:`load`; this builds the scorers from the saved state."""
        self._settings = settings
        self._arrays = arrays
        self.folder = folder
        self.digest = digest
        self.device = device
        self.skipped: list[tuple[str, str]] = []  # fit files that could not be decoded (after fit)
        self._weights = weights if weights is not None else settings.get("weights")
        self.feature_scorer = frozen_feature_scorer(arrays["fit_features"], settings["feature"], arrays, device)
        self.pred_scorer = self.classifier = None
        if settings.get("prediction") is not None:
            self.pred_scorer = frozen_pred_scorer(settings["prediction"], arrays)
            self.classifier = frozen_classifier(settings["prediction"]["classifier"], arrays)
        for scorer in self.scorers:
            threshold = self._state(scorer)["threshold"]
            if float(np.percentile(self.fit_scores(scorer), self.percentile)) != threshold:
                raise ReferenceError(f"{SETTINGS_FILE}: the {scorer} threshold {threshold!r} is not the "
                                     f"{self.percentile} percentile of the fit scores; the reference is inconsistent")

    def __repr__(self) -> str:
        where = f", folder={str(self.folder)!r}" if self.folder else ""
        return f"Reference(n_fit={self.n_fit}, percentile={self.percentile}, scorers={self.scorers}{where})"

    # ------------------------------------------------------------------ what it holds
    @property
    def settings(self) -> dict[str, Any]:
        """What ``reference.json`` holds (a copy): format, versions, source, embedding, scorers' state."""
        return json.loads(json.dumps(self._settings))

    @property
    def percentile(self) -> float:
        return float(self._settings["percentile"])

    @property
    def n_fit(self) -> int:
        return int(self._settings["n_fit"])

    @property
    def class_names(self) -> list[str]:
        return list(self._settings["class_names"])

    @property
    def embed_config(self) -> dict[str, Any] | None:
        """The resolved embedding settings (None when the reference was fitted on precomputed features)."""
        return None if self._settings["embedding"] is None else dict(self._settings["embedding"])

    @property
    def scorers(self) -> tuple[str, ...]:
        """``("feature", "prediction")``, or ``("feature",)`` when the fit images had too few labels."""
        return ("feature", "prediction") if self._settings.get("prediction") is not None else ("feature",)

    @property
    def thresholds(self) -> dict[str, float]:
        """The frozen threshold of each scorer (an item scoring strictly below it is flagged)."""
        return {scorer: float(self._state(scorer)["threshold"]) for scorer in self.scorers}

    @property
    def fit_ids(self) -> list[str]:
        return [str(i) for i in self._arrays["fit_ids"]]

    @property
    def features(self) -> np.ndarray:
        """The fit rows' features (N, D), as the batch's are compared with them."""
        return self._arrays["fit_features"]

    def _state(self, scorer: str) -> dict[str, Any]:
        if scorer not in self.scorers:
            raise ValueError(f"scorer must be one of {self.scorers}; got {scorer!r}")
        return self._settings[scorer]

    def fit_scores(self, scorer: str) -> np.ndarray:
        """The fit items' scores of ``scorer`` (leave-one-out for the feature score, out-of-sample
        pred_probs for the prediction score), as the threshold was set on them."""
        self._state(scorer)
        return (self.feature_scorer if scorer == "feature" else self.pred_scorer).fit_scores_

    def expected_rate(self, scorer: str) -> float:
        """The share of fit items flagged at the frozen threshold (strictly below it; ties can make it
        less than the percentile asked for)."""
        return int(self._state(scorer)["below"]) / self.n_fit

    def interval(self, scorer: str, batch_size: int, level: float = DEFAULT_LEVEL) -> tuple[float, float]:
        """The flagged rates ``level`` of in-distribution batches of ``batch_size`` fall in
        (:func:`~ood_core._binomial.flag_rate_interval` at this reference's threshold)."""
        return flag_rate_interval(self.n_fit, self.percentile, batch_size, level,
                                  below=int(self._state(scorer)["below"]))

    def expected_flag_rate(self, scorer: str, batch_size: int = DEFAULT_BATCH) -> dict[str, Any]:
        """:meth:`interval` as a record with its sentence ("p = 5 of 300 fit images: 95% of
        in-distribution batches of 1,000 will flag between 2.8% and 8.5%"), see
        :func:`~ood_core._binomial.expected_flag_rate`."""
        return expected_flag_rate(self.n_fit, self.percentile, batch_size, DEFAULT_LEVEL,
                                  below=int(self._state(scorer)["below"]))

    def fit_predicted_classes(self) -> np.ndarray | None:
        """Class index (into :attr:`class_names`) the classifier predicts for each fit item from its
        out-of-sample pred_probs; None without a prediction scorer."""
        if self.pred_scorer is None:
            return None
        columns = self._arrays["classifier_classes"]
        return columns[np.argmax(self._arrays["prediction_fit_pred_probs"], axis=1)]

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(
        cls,
        source: str | os.PathLike | ImageSet | ArraySet,
        *,
        settings: RunConfig | None = None,
        percentile: float = 5.0,
        scores: ScoreConfig = ScoreConfig(),
        cache_dir: str | os.PathLike | None = None,
        progress: Progress | None = None,
        name: str | None = None,
        **overrides: Unpack[RunKeywords],
    ) -> "Reference":
        """Fit a reference on the in-distribution images of ``source``.

        The fit set is every item of ``source`` (a built-in name, a folder or zip of images, a
        ``.npz``/``.npy`` of features, an :class:`ImageSet` / :class:`ArraySet`), or only its
        ``"train"`` items when it has a train/test split; ``in_classes`` (names or indices) keeps
        only those classes' items. They are embedded (``model``, ``weights``, ``image_size``,
        ``device``, ``batch_size``, ``backend``, recorded as it ran in ``embed_config``: ``settings``, a
        RunConfig, and its fields as keywords, as for :func:`ood_core.analyze`), the feature scorer (KNN, exact
        search) is fitted on them, a logistic regression is cross-validated on them for out-of-sample
        pred_probs (when they carry at least 2 classes with 2 items each) and the prediction scorer
        fitted on those; each threshold is frozen at ``percentile`` of its fit scores.
        ``progress(stage, done, total)`` hears of "embed", "classifier" and "neighbours".
        """
        from .._analyze import _classify, _open
        from .._device import resolve_device
        from .._embed_config import resolve_for_images
        from ..scorers import FeatureScorer
        from ..sources.split import _subset, class_indices
        from ..thresholds import percentile_threshold

        run = RunConfig.resolve(settings, "Reference.fit", ("in_classes", *EMBEDDING_FIELDS), **overrides)
        in_classes, model, weights, image_size, device, batch_size, backend = (
            run.in_classes, run.model, run.weights, run.image_size, run.device, run.batch_size, run.backend)
        p = float(percentile) if isinstance(percentile, (int, float)) and not isinstance(percentile, bool) else math.nan
        if not 0 < p < 100:
            raise ValueError(f"percentile must be a number strictly between 0 and 100; got {percentile!r}")
        if not isinstance(scores, ScoreConfig):
            raise TypeError(f"scores must be a ScoreConfig; got {type(scores).__name__}")
        if scores.index == "approximate":
            raise ValueError("scores.index='approximate': a reference searches its fit features exactly (a batch "
                             "of 1,000 against 50,000 fit rows takes well under a second); use 'exact' or 'auto'")
        scores = dataclasses.replace(scores, index="exact")
        src = _open(source, name)
        keep = np.ones(len(src), dtype=bool)
        if src.split is not None and np.any(np.asarray(src.split).astype(str) == "train"):
            keep &= np.asarray(src.split).astype(str) == "train"
        if in_classes is not None:
            keep &= np.isin(np.asarray(src.labels), class_indices(src, in_classes))
        if not keep.all():
            src = _subset(src, np.flatnonzero(keep))
        if len(src) < 3:
            raise ValueError(f"{src.description}: the reference needs at least 3 items; {len(src)} selected"
                             + (f" (in_classes={list(in_classes)})" if in_classes is not None else ""))

        pixel_mean, embed_config, weights_kind, skipped = None, None, None, list(getattr(src, "skipped", []))
        if isinstance(src, ImageSet):
            config = resolve_for_images(model, weights, image_size, src, backend=backend,
                                        device_type=resolve_device(device).type)
            src, features, config = embed_frozen(config, weights, src, device=device, batch_size=batch_size,
                                                 cache_dir=cache_dir, progress=progress, pixel_mean=None,
                                                 backend=backend)
            skipped = list(src.skipped)
            if config.centre:
                pixel_mean = features.mean(axis=0, dtype=np.float64).astype(np.float32)
                features -= pixel_mean
            embed_config = dataclasses.asdict(config)
            # "bundled", "hub" or "file" (a file's path is this machine's: Reference.load(..., weights=PATH))
            weights_kind = None if config.pixels else config.weights.split(":", 1)[0]
        else:
            from ..shards import blocks

            features = np.concatenate([np.asarray(b, dtype=np.float32) for b in blocks(src.features)])
        n = len(features)
        if n < 3:
            raise ValueError(f"{src.description}: only {n} item(s) could be embedded; the reference needs at least 3")

        arrays: dict[str, np.ndarray] = {
            "fit_features": np.ascontiguousarray(features, dtype=np.float32),
            "fit_ids": np.array([str(i) for i in src.ids], dtype=str),
            "fit_labels": np.asarray(src.labels, dtype=np.int64),
        }
        if pixel_mean is not None:
            arrays["pixel_mean"] = pixel_mean
        scorer = FeatureScorer(k=scores.k, t=scores.t, device=device, index="exact").fit(
            arrays["fit_features"], progress=stage(progress, "neighbours"))
        knn_dist, knn_idx = scorer.kneighbors()
        arrays.update(feature_fit_distances=scorer.fit_distances_, feature_knn_distances=knn_dist,
                      feature_knn_indices=knn_idx.astype(np.int64))
        feature_threshold = percentile_threshold(scorer.fit_scores_, p)
        settings: dict[str, Any] = {
            "format": REFERENCE_FORMAT, "package_version": package_version(), "embedding_format": embedding_format(),
            "created_at": _now(), "source": src.description, "source_identity": src.identity,
            "in_classes": None if in_classes is None else [str(c) for c in in_classes],
            "n_fit": n, "n_features": int(features.shape[1]), "class_names": list(src.class_names),
            "skipped": len(skipped), "percentile": p,
            "embedding": embed_config, "weights": weights_kind, "backend_asked": backend,
            "precomputed": None if embed_config is not None else src.description,
            "scores": dataclasses.asdict(scores),
            "feature": {"k": scorer.k_, "t": float(scores.t), "metric": scorer.metric_, "scale": scorer.scale_,
                        "threshold": feature_threshold,
                        "below": int(np.count_nonzero(scorer.fit_scores_ < feature_threshold))},
            "prediction": None,
        }
        settings.update(fit_frozen_prediction(arrays, scores, p, _classify, progress))
        ref = cls(settings, arrays, device=device, weights=weights)
        ref.skipped = skipped
        return ref

    # ------------------------------------------------------------------ saving and loading
    def save(self, folder: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the reference to ``folder`` (arrays as ``.npy``, settings as JSON, a manifest with
        the SHA-256 of every file), atomically: it is written to a temporary folder beside it and
        renamed, so ``folder`` is never half-written. An existing reference is replaced only with
        ``overwrite=True`` (its history goes with it). Returns the folder."""
        self.folder, self.digest = write_folder(folder, self._settings, self._arrays, overwrite=overwrite)
        return self.folder

    @classmethod
    def load(cls, folder: str | os.PathLike, *, device: str = "auto",
             weights: str | os.PathLike | None = None) -> "Reference":
        """Open a saved reference after checking every file against its manifest.

        Refused (:class:`ReferenceError`, naming the file) when the manifest is missing or unreadable,
        written by another format version, a listed file is missing, damaged or swapped (its SHA-256
        differs), or the folder holds a file the manifest does not list (``history.sqlite`` aside).
        Arrays are read with ``allow_pickle=False``. ``weights``: the weights file, for a reference
        embedded with weights from a file (bundled and hub weights need nothing)."""
        folder, settings, arrays, digest = read_folder(folder)
        try:
            return cls(settings, arrays, folder=folder, digest=digest, device=device, weights=weights)
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ReferenceError):
                raise
            raise ReferenceError(f"{folder / SETTINGS_FILE}: inconsistent reference settings ({exc!r})") from None

    # ------------------------------------------------------------------ checking a batch
    def check(self, batch: str | os.PathLike | ImageSet | ArraySet, *, alpha: float = 0.01, name: str | None = None,
              level: float = DEFAULT_LEVEL, batch_size: int = 64, cache_dir: str | os.PathLike | None = None,
              progress: Progress | None = None, log: bool = True) -> BatchResult:
        """Score ``batch`` against the frozen thresholds and test its flagged rates.

        ``batch``: anything :func:`ood_core.open_source` takes (a folder or zip of images, a
        ``.npz``/``.npy`` of features embedded like the reference's), or an ImageSet / ArraySet.
        Images are embedded exactly as the reference's were (its resolved settings, its weights, the
        centred pixel model's fit mean, its inference backend, or torch where that cannot run here, with a warning:
        :func:`~ood_core.reference._frozen.check_backend`); the
        reference is never embedded again. ``alpha``: the
        alarm's significance level; ``level``: the coverage of the intervals. ``name``: how to call
        the batch (default: its description). With ``log`` (default) the check of a saved reference
        is appended to its history (a warning when the folder cannot be written).
        """
        from .._analyze import _open
        from .._validation import check_number
        from ..shards import blocks

        alpha = check_number(alpha, "alpha")
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must lie strictly between 0 and 1; got {alpha!r}")
        src = _open(batch, name)
        items, backend = None, None
        if isinstance(src, ImageSet):
            if self._settings["embedding"] is None:
                raise ValueError(f"{src.description}: this reference was fitted on precomputed features "
                                 f"({self._settings['precomputed']}); check a .npz of features embedded the same way")
            if len(src) == 0:
                raise ValueError(f"{src.description}: the batch has no image ({len(src.skipped)} file(s) skipped)")
            config, note = check_backend(self._config(), self.device)
            if note:
                warnings.warn(note, stacklevel=2)
            src, features, config = embed_frozen(config, self._weights_for_check(), src, device=self.device,
                                                 batch_size=batch_size, cache_dir=cache_dir, progress=progress,
                                                 pixel_mean=self._arrays.get("pixel_mean"))
            items, backend = src, config.backend
        else:
            if "pixel_mean" in self._arrays:
                raise ValueError(f"{src.description}: this reference embeds pixels centred on its own fit mean; "
                                 "check the images themselves, not precomputed features")
            features = np.concatenate([np.asarray(b, dtype=np.float32) for b in blocks(src.features)])
        if len(features) == 0:
            raise ValueError(f"{src.description}: no item of the batch could be scored ({len(src.skipped)} skipped)")
        if features.shape[1] != self.features.shape[1]:
            raise ValueError(f"{src.description}: the batch has {features.shape[1]} features per item but the reference "
                             f"has {self.features.shape[1]}; embed the batch with the reference's settings")
        scores = {"feature": self.feature_scorer.score(features, progress=stage(progress, "score"))}
        predicted = None
        if self.pred_scorer is not None:
            pred_probs = np.concatenate([self.classifier.predict_proba(b) for b in blocks(features)])
            scores["prediction"] = self.pred_scorer.score(pred_probs)
            predicted = self._arrays["classifier_classes"][np.argmax(pred_probs, axis=1)]
        result = dataclasses.replace(self._result(src, items, scores, predicted, alpha, level, name), backend=backend)
        if log and self.folder is not None:
            result = self._log(result)
        return result

    def _result(self, src, items, scores, predicted, alpha: float, level: float, name: str | None) -> BatchResult:
        thresholds = self.thresholds
        flagged = {s: scores[s] < thresholds[s] for s in scores}
        tests, class_tests = {}, {}
        fit_classes = self.fit_predicted_classes()
        for scorer in scores:
            below = int(self._state(scorer)["below"])
            tests[scorer] = rate_test(int(flagged[scorer].sum()), len(scores[scorer]),
                                      rate_beta(self.n_fit, self.percentile, below), below / self.n_fit, self.n_fit,
                                      alpha=alpha, level=level)
            if predicted is None:
                continue
            fit_flagged = self.fit_scores(scorer) < thresholds[scorer]
            per_class = {}
            for c in self._arrays["classifier_classes"]:
                in_fit, in_batch = fit_classes == c, predicted == c
                n_fit_c, below_c = int(in_fit.sum()), int(fit_flagged[in_fit].sum())
                per_class[self.class_names[int(c)]] = rate_test(
                    int(flagged[scorer][in_batch].sum()), int(in_batch.sum()),
                    class_rate_beta(n_fit_c, below_c) if n_fit_c else None,
                    below_c / n_fit_c if n_fit_c else math.nan, n_fit_c, alpha=alpha, level=level)
            class_tests[scorer] = per_class
        p_value = min(1.0, len(tests) * min(t.p_value for t in tests.values()))
        names = list(src.class_names)
        return BatchResult(
            name=name or src.description, batch_digest=src.identity, reference_digest=self.digest, checked_at=_now(),
            ids=list(src.ids), paths=list(getattr(src, "paths", src.ids)),
            labels=[names[int(c)] if 0 <= int(c) < len(names) else "" for c in src.labels],
            scores=scores, flagged=flagged, thresholds=thresholds,
            predicted=None if predicted is None else [self.class_names[int(c)] for c in predicted],
            tests=tests, class_tests=class_tests, percentile=self.percentile, alpha=alpha, level=level,
            p_value=p_value, alarm=bool(p_value < alpha), skipped=list(getattr(src, "skipped", [])), items=items)

    def _log(self, result: BatchResult) -> BatchResult:
        try:
            row = CheckHistory(self.folder / HISTORY_FILE).record(
                result.checked_at, result.name, result.batch_digest, result.n, result.alarm, result.p_value,
                result.card())
        except HistoryError as exc:
            warnings.warn(f"the check was not logged: {exc}", stacklevel=3)
            return result
        return dataclasses.replace(result, history_id=row)

    def history(self) -> list[dict[str, Any]]:
        """Every logged check of this (saved) reference, oldest first (:func:`read_history`); empty for
        an unsaved reference."""
        return [] if self.folder is None else read_history(self.folder)

    @property
    def backend(self) -> str | None:
        """The fit images' inference backend ("none" for a pixel model, None for precomputed features)."""
        return None if self._settings["embedding"] is None else str(self._settings["embedding"]["backend"])

    # ------------------------------------------------------------------ helpers
    def _config(self):
        return frozen_config(self._settings["embedding"])

    def _weights_for_check(self) -> str | os.PathLike:
        kind = self._weights
        if self._settings["weights"] == "file" and (kind is None or kind == "file"):
            raise ValueError(f"this reference was embedded with weights from a file "
                             f"({self._settings['embedding']['weights']}); pass Reference.load(folder, weights=PATH)")
        return kind if kind is not None else "bundled"


__all__ = ["Reference"]
