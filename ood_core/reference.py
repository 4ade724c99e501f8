"""A saved reference: fit once on in-distribution images, then check new batches against its frozen
thresholds, with odds (see docs/REFERENCE.md).

:meth:`Reference.fit` embeds the reference images, fits both scorers (the KNN feature score and the
prediction score of a logistic regression on the embeddings) and freezes each threshold at a
percentile of its fit scores. :meth:`Reference.save` writes a folder that holds arrays and JSON only
(no pickle, nothing executable) with a manifest of digests; :meth:`Reference.load` refuses a folder
whose files were damaged, swapped, removed or added, or that another format version wrote.
:meth:`Reference.check` embeds a batch exactly as the reference was embedded, scores it with the frozen
scorers and tests each flagged count against the Beta-binomial range of in-distribution batches
(:mod:`ood_core._binomial`); every check of a saved reference is logged in ``history.sqlite`` beside it.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import shutil
import uuid
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Unpack

import numpy as np

from ._binomial import RateTest, class_rate_beta, flag_rate_interval, rate_beta, rate_test
from ._export import to_csv
from ._files import atomic_write, file_digest
from ._progress import Progress, stage
from ._reference_store import HISTORY_FILES, CheckHistory, HistoryError, HISTORY_FILE
from .analysis import SCORERS, ScoreConfig
from .run_config import EMBEDDING_FIELDS, RunConfig, RunKeywords
from .sources import ArraySet, ImageSet, open_source

logger = logging.getLogger(__name__)

REFERENCE_FORMAT = "ood-explorer-reference-v1"  # bump when the folder's layout or meaning changes
CARD_FORMAT = "ood-explorer-batch-card-v1"
MANIFEST_FILE = "manifest.json"
SETTINGS_FILE = "reference.json"
DEFAULT_LEVEL = 0.95  # coverage of the interval in-distribution batches fall in
# Every array a reference may hold (file = name + ".npy"), and whether it is always there.
_ARRAYS = {
    "fit_features": True,  # (N, D) float32: the embedded reference images
    "fit_ids": True,  # (N,) str
    "fit_labels": True,  # (N,) int64, index into class_names, -1 when unknown
    "feature_fit_distances": True,  # (N,) float64: mean distance to the k nearest other fit rows
    "feature_knn_distances": True,  # (N, k): those k distances, sorted
    "feature_knn_indices": True,  # (N, k) int64: those k fit rows
    "pixel_mean": False,  # (D,) float32: the fit rows' mean, subtracted by the centred pixel model
    "prediction_fit_pred_probs": False,  # (N, K) float64: out-of-sample pred_probs of the fit rows
    "prediction_confident_thresholds": False,  # (K,) float64: per-class thresholds (adjust=True)
    "classifier_coef": False,  # (K or 1, D): LogisticRegression.coef_
    "classifier_intercept": False,  # (K or 1,): LogisticRegression.intercept_
    "classifier_classes": False,  # (K,) int64: class index (into class_names) of each pred_probs column
}


class ReferenceError(ValueError):
    """A saved reference cannot be used: damaged, incomplete, foreign, or written by another version."""


@functools.lru_cache(maxsize=1)
def package_version() -> str:
    """The installed ood-explorer version ("unknown" when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ood-explorer")
    except PackageNotFoundError:
        return "unknown"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


# ---------------------------------------------------------------------- embedding, frozen
def _embed_frozen(config, weights: str | os.PathLike, images: ImageSet, *, device: str, batch_size: int,
                  cache_dir, progress: Progress | None, pixel_mean: np.ndarray | None):
    """Features of ``images`` embedded with the resolved ``config`` (an :class:`EmbedConfig`), through
    the disk cache; images that fail to decode are dropped (listed in the returned set's ``skipped``).

    A centred pixel model is embedded raw and centred on ``pixel_mean`` (the reference's fit mean), so
    a batch is never centred on itself. Returns ``(kept images, features)``."""
    from .cache import cached_embed
    from .embedder import Embedder, drop_failed

    embedder = Embedder(model=config.model, weights="bundled" if config.pixels else weights,
                        image_size=config.image_size, device=device, batch_size=batch_size,
                        fold_batchnorm=config.fold_batchnorm)
    if not config.pixels and embedder.config.weights != config.weights:
        raise ReferenceError(f"the weights given ({weights}) are {embedder.config.weights}, but the reference was "
                             f"embedded with {config.weights}; pass the same weights")
    embedder.config = dataclasses.replace(config, centre=False)  # resolved: used as it is
    features, _ = cached_embed(embedder, images, cache_dir=cache_dir, progress=stage(progress, "embed"))
    kept, features = drop_failed(images, features, embedder.failures_)
    features = np.array(features, dtype=np.float32)  # our own copy: the centring below writes to it
    if pixel_mean is not None:
        features -= pixel_mean
    return kept, features


# ---------------------------------------------------------------------- the scorers, from arrays
def _feature_scorer(features: np.ndarray, state: dict[str, Any], arrays: dict[str, np.ndarray], device: str):
    """A fitted :class:`FeatureScorer` (exact search) rebuilt from its saved state: the fit rows, ``k``,
    ``t``, the metric, the scale and the fit rows' own neighbours; nothing is searched again."""
    from . import _neighbors
    from ._device import resolve_device
    from .scorers import FeatureScorer

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


def _pred_scorer(state: dict[str, Any], arrays: dict[str, np.ndarray]):
    """A fitted :class:`PredProbScorer` rebuilt from its method, its thresholds and the fit pred_probs."""
    from .scorers import PredProbScorer

    scorer = PredProbScorer(method=state["method"], adjust=bool(state["adjust"]))
    scorer.n_classes_ = int(state["n_classes"])
    scorer.thresholds_ = arrays.get("prediction_confident_thresholds") if scorer.adjust else None
    scorer.fit_scores_ = scorer._score(arrays["prediction_fit_pred_probs"])
    return scorer


def _classifier(state: dict[str, Any], arrays: dict[str, np.ndarray]):
    """The logistic regression rebuilt from its arrays (its ``predict_proba`` is scikit-learn's own)."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=float(state["C"]))
    clf.coef_ = arrays["classifier_coef"]
    clf.intercept_ = arrays["classifier_intercept"]
    clf.classes_ = np.arange(len(arrays["classifier_classes"]))
    clf.n_features_in_ = int(arrays["classifier_coef"].shape[1])
    return clf


# ---------------------------------------------------------------------- what a check returns
@dataclass(frozen=True, eq=False)
class BatchResult:
    """One batch checked against a reference: per image its scores, flags and predicted class; per
    scorer (and per predicted class) the flagged count tested against in-distribution batches.

    ``alarm`` is the headline: the smallest scorer p-value, Bonferroni-adjusted for the number of
    scorers (``p_value``), below ``alpha``; so over many in-distribution batches it sounds at most
    about ``alpha`` of the time. Each scorer's own ``tests[scorer].alarm`` compares its p-value
    with ``alpha`` unadjusted; the per-class tests are for reading, not for the headline.
    """

    name: str  # what the batch is called (the name given, else the source's description)
    batch_digest: str  # identity of the batch's content (images' bytes and paths, or the arrays file)
    reference_digest: str | None  # the reference's manifest digest (None for a reference never saved)
    checked_at: str  # UTC, ISO 8601
    ids: list[str]
    paths: list[str]
    labels: list[str]  # the batch's own class name of each item ("" when it has none)
    scores: dict[str, np.ndarray]  # scorer -> score per item
    flagged: dict[str, np.ndarray]  # scorer -> score strictly below the frozen threshold
    thresholds: dict[str, float]
    predicted: list[str] | None  # the classifier's class name per item (None without a prediction scorer)
    tests: dict[str, RateTest]
    class_tests: dict[str, dict[str, RateTest]]  # scorer -> predicted class name -> test
    percentile: float
    alpha: float
    level: float
    p_value: float  # min over scorers of their p-values, times the number of scorers (capped at 1)
    alarm: bool  # p_value < alpha
    skipped: list[tuple[str, str]] = field(default_factory=list)  # batch files that could not be decoded
    items: ImageSet | None = None  # the batch's images, to show them (None for features)
    history_id: int | None = None  # its row in the reference's history (None when not logged)

    @property
    def n(self) -> int:
        """Items scored."""
        return len(self.ids)

    @property
    def scorers(self) -> tuple[str, ...]:
        return tuple(self.scores)

    def table(self) -> list[dict[str, Any]]:
        """One row per item: id, path, label, predicted class, and per scorer its score and flag."""
        out = []
        for i, item in enumerate(self.ids):
            row: dict[str, Any] = {"id": item, "path": self.paths[i], "label": self.labels[i]}
            if self.predicted is not None:
                row["predicted_class"] = self.predicted[i]
            for scorer in self.scores:
                row[f"{scorer}_score"] = float(self.scores[scorer][i])
                row[f"{scorer}_flagged"] = bool(self.flagged[scorer][i])
            out.append(row)
        return out

    def to_csv(self) -> str:
        """:meth:`table` as CSV text (scores with full float precision)."""
        return to_csv(self.table())

    def card(self) -> dict[str, Any]:
        """A JSON-ready summary: the headline alarm, and per scorer (and per predicted class) the
        count, flagged and expected rates, the in-distribution interval, the p-value and the alarm."""
        scorers = {}
        for scorer, test in self.tests.items():
            entry = {"title": SCORERS[scorer].title, "threshold": self.thresholds[scorer], **test.as_dict()}
            if scorer in self.class_tests:
                entry["per_class"] = {name: t.as_dict() for name, t in self.class_tests[scorer].items()}
            scorers[scorer] = entry
        return {
            "format": CARD_FORMAT,
            "batch": {"name": self.name, "digest": self.batch_digest, "n": self.n, "skipped": len(self.skipped),
                      "checked_at": self.checked_at},
            "reference": {"digest": self.reference_digest, "percentile": self.percentile},
            "n": self.n, "alpha": self.alpha, "level": self.level, "p_value": self.p_value, "alarm": self.alarm,
            "alarm_rule": (f"smallest scorer p-value x {len(self.tests)} scorer(s) < alpha (Bonferroni); each "
                           "p-value: P(an in-distribution batch of this size flags at least as many), "
                           "Beta-binomial (the threshold's own uncertainty included)"),
            "flagged_rule": "score < threshold",
            "scorers": scorers,
        }


# ---------------------------------------------------------------------- the reference
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
        self.feature_scorer = _feature_scorer(arrays["fit_features"], settings["feature"], arrays, device)
        self.pred_scorer = self.classifier = None
        if settings.get("prediction") is not None:
            self.pred_scorer = _pred_scorer(settings["prediction"], arrays)
            self.classifier = _classifier(settings["prediction"]["classifier"], arrays)
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
        ``device``, ``batch_size``: ``settings``, a :class:`~ood_core.run_config.RunConfig`, and the
        keywords replacing its fields, as for :func:`ood_core.analyze`), the feature scorer (KNN, exact
        search) is fitted on them, a logistic regression is cross-validated on them for out-of-sample
        pred_probs (when they carry at least 2 classes with 2 items each) and the prediction scorer
        fitted on those; each threshold is frozen at ``percentile`` of its fit scores.
        ``progress(stage, done, total)`` hears of "embed", "classifier" and "neighbours".
        """
        from ._analyze import _classify, _open
        from ._embed_config import resolve_for_images
        from .scorers import FeatureScorer
        from .sources.split import _subset, class_indices
        from .thresholds import percentile_threshold

        run = RunConfig.resolve(settings, "Reference.fit", ("in_classes", *EMBEDDING_FIELDS), **overrides)
        in_classes, model, weights, image_size, device, batch_size = (
            run.in_classes, run.model, run.weights, run.image_size, run.device, run.batch_size)
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
            config = resolve_for_images(model, weights, image_size, src)
            src, features = _embed_frozen(config, weights, src, device=device, batch_size=batch_size,
                                          cache_dir=cache_dir, progress=progress, pixel_mean=None)
            skipped = list(src.skipped)
            if config.centre:
                pixel_mean = features.mean(axis=0, dtype=np.float64).astype(np.float32)
                features -= pixel_mean
            embed_config = dataclasses.asdict(config)
            # "bundled", "hub" or "file" (a file's path is this machine's: Reference.load(..., weights=PATH))
            weights_kind = None if config.pixels else config.weights.split(":", 1)[0]
        else:
            from .shards import blocks

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
            "format": REFERENCE_FORMAT, "package_version": package_version(), "embedding_format": _embedding_format(),
            "created_at": _now(), "source": src.description, "source_identity": src.identity,
            "in_classes": None if in_classes is None else [str(c) for c in in_classes],
            "n_fit": n, "n_features": int(features.shape[1]), "class_names": list(src.class_names),
            "skipped": len(skipped), "percentile": p,
            "embedding": embed_config, "weights": weights_kind,
            "precomputed": None if embed_config is not None else src.description,
            "scores": dataclasses.asdict(scores),
            "feature": {"k": scorer.k_, "t": float(scores.t), "metric": scorer.metric_, "scale": scorer.scale_,
                        "threshold": feature_threshold,
                        "below": int(np.count_nonzero(scorer.fit_scores_ < feature_threshold))},
            "prediction": None,
        }
        settings.update(_fit_prediction(arrays, scores, p, _classify, progress))
        ref = cls(settings, arrays, device=device, weights=weights)
        ref.skipped = skipped
        return ref

    # ------------------------------------------------------------------ saving and loading
    def save(self, folder: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the reference to ``folder`` (arrays as ``.npy``, settings as JSON, a manifest with
        the SHA-256 of every file), atomically: it is written to a temporary folder beside it and
        renamed, so ``folder`` is never half-written. An existing reference is replaced only with
        ``overwrite=True`` (its history goes with it). Returns the folder."""
        folder = Path(folder).expanduser()
        if folder.exists() and not folder.is_dir():
            raise FileExistsError(f"{folder} exists and is not a folder")
        if folder.is_dir() and any(folder.iterdir()):
            if not overwrite:
                raise FileExistsError(f"{folder} already exists and is not empty; choose a new folder or pass "
                                      "overwrite=True")
            if not (folder / MANIFEST_FILE).is_file():
                raise FileExistsError(f"{folder} is not a saved reference (no {MANIFEST_FILE}); it is not replaced")
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:12]}"
        tmp.mkdir()
        try:
            files = {}
            for key, array in sorted(self._arrays.items()):
                atomic_write(tmp / f"{key}.npy", lambda f, a=array: np.save(f, np.asarray(a), allow_pickle=False))
            atomic_write(tmp / SETTINGS_FILE, json.dumps(self._settings, indent=2, sort_keys=True).encode())
            for path in sorted(tmp.iterdir()):
                files[path.name] = {"sha256": file_digest(path), "bytes": path.stat().st_size}
            manifest = {"format": REFERENCE_FORMAT, "package_version": package_version(), "files": files}
            atomic_write(tmp / MANIFEST_FILE, json.dumps(manifest, indent=2, sort_keys=True).encode())
            if folder.is_dir():
                old = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:12]}"
                os.replace(folder, old) if any(folder.iterdir()) else folder.rmdir()
                os.replace(tmp, folder)
                if old.exists():
                    shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.folder, self.digest = folder, file_digest(folder / MANIFEST_FILE)
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, *, device: str = "auto",
             weights: str | os.PathLike | None = None) -> "Reference":
        """Open a saved reference after checking every file against its manifest.

        Refused (:class:`ReferenceError`, naming the file) when the manifest is missing or unreadable,
        written by another format version, a listed file is missing, damaged or swapped (its SHA-256
        differs), or the folder holds a file the manifest does not list (``history.sqlite`` aside).
        Arrays are read with ``allow_pickle=False``. ``weights``: the weights file, for a reference
        embedded with weights from a file (bundled and hub weights need nothing)."""
        folder = Path(folder).expanduser()
        manifest_path = folder / MANIFEST_FILE
        if not folder.is_dir():
            raise ReferenceError(f"{folder} is not a folder: a saved reference is a folder")
        if not manifest_path.is_file():
            raise ReferenceError(f"{manifest_path} is missing: {folder} is not a saved reference (or is incomplete)")
        try:
            manifest = json.loads(manifest_path.read_text())
            listed = manifest["files"]
            fmt = manifest["format"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ReferenceError(f"{manifest_path} is unreadable or not a reference manifest ({exc})") from None
        if fmt != REFERENCE_FORMAT:
            raise ReferenceError(f"{manifest_path}: the reference was written in format {fmt!r} (ood-explorer "
                                 f"{manifest.get('package_version', '?')}); this version reads {REFERENCE_FORMAT!r}. "
                                 "Fit the reference again with this version")
        present = {p.name for p in folder.iterdir()} - {MANIFEST_FILE} - set(HISTORY_FILES)
        missing = sorted(set(listed) - present)
        if missing:
            raise ReferenceError(f"{folder / missing[0]} is missing (listed in {MANIFEST_FILE}"
                                 + (f"; {len(missing) - 1} more missing" if len(missing) > 1 else "") + ")")
        extra = sorted(present - set(listed))
        if extra:
            raise ReferenceError(f"{folder / extra[0]} is not part of the reference (not in {MANIFEST_FILE}); "
                                 "remove it, or fit and save the reference again")
        for name, entry in sorted(listed.items()):
            if not isinstance(entry, dict) or file_digest(folder / name) != entry.get("sha256"):
                raise ReferenceError(f"{folder / name} is damaged or was replaced: its SHA-256 differs from the one "
                                     f"in {MANIFEST_FILE}")
        try:
            settings = json.loads((folder / SETTINGS_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise ReferenceError(f"{folder / SETTINGS_FILE} is unreadable ({exc})") from None
        if settings.get("format") != REFERENCE_FORMAT:
            raise ReferenceError(f"{folder / SETTINGS_FILE}: format {settings.get('format')!r}, expected "
                                 f"{REFERENCE_FORMAT!r}")
        if settings.get("embedding") is not None and settings.get("embedding_format") != _embedding_format():
            raise ReferenceError(f"{folder / SETTINGS_FILE}: the images were embedded by pipeline "
                                 f"{settings.get('embedding_format')!r}; this version embeds with "
                                 f"{_embedding_format()!r}, so a batch would not be embedded the same way. Fit the "
                                 "reference again with this version")
        arrays = {}
        for key, required in _ARRAYS.items():
            path = folder / f"{key}.npy"
            if f"{key}.npy" not in listed:
                if required:
                    raise ReferenceError(f"{path} is missing from {MANIFEST_FILE}")
                continue
            try:
                arrays[key] = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise ReferenceError(f"{path} cannot be read as an array without pickle ({exc})") from None
        _check_shapes(folder, settings, arrays)
        try:
            ref = cls(settings, arrays, folder=folder, digest=file_digest(manifest_path), device=device,
                      weights=weights)
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ReferenceError):
                raise
            raise ReferenceError(f"{folder / SETTINGS_FILE}: inconsistent reference settings ({exc!r})") from None
        return ref

    # ------------------------------------------------------------------ checking a batch
    def check(self, batch: str | os.PathLike | ImageSet | ArraySet, *, alpha: float = 0.01, name: str | None = None,
              level: float = DEFAULT_LEVEL, batch_size: int = 64, cache_dir: str | os.PathLike | None = None,
              progress: Progress | None = None, log: bool = True) -> BatchResult:
        """Score ``batch`` against the frozen thresholds and test its flagged rates.

        ``batch``: anything :func:`ood_core.open_source` takes (a folder or zip of images, a
        ``.npz``/``.npy`` of features embedded like the reference's), or an ImageSet / ArraySet.
        Images are embedded exactly as the reference's were (its resolved settings, its weights, the
        centred pixel model's fit mean); the reference is never embedded again. ``alpha``: the
        alarm's significance level; ``level``: the coverage of the intervals. ``name``: how to call
        the batch (default: its description). With ``log`` (default) the check of a saved reference
        is appended to its history (a warning when the folder cannot be written).
        """
        from ._analyze import _open
        from ._validation import check_number
        from .shards import blocks

        alpha = check_number(alpha, "alpha")
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must lie strictly between 0 and 1; got {alpha!r}")
        src = _open(batch, name)
        items = None
        if isinstance(src, ImageSet):
            if self._settings["embedding"] is None:
                raise ValueError(f"{src.description}: this reference was fitted on precomputed features "
                                 f"({self._settings['precomputed']}); check a .npz of features embedded the same way")
            if len(src) == 0:
                raise ValueError(f"{src.description}: the batch has no image ({len(src.skipped)} file(s) skipped)")
            src, features = _embed_frozen(self._config(), self._weights_for_check(), src, device=self.device,
                                          batch_size=batch_size, cache_dir=cache_dir, progress=progress,
                                          pixel_mean=self._arrays.get("pixel_mean"))
            items = src
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
        result = self._result(src, items, scores, predicted, alpha, level, name)
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
        """Every logged check of this (saved) reference, oldest first: ``id``, ``checked_at``,
        ``batch_name``, ``batch_digest``, ``n``, ``alarm``, ``p_value``, ``alpha``, and per scorer
        ``{scorer}_flagged_rate``, ``_expected_rate``, ``_interval`` ([lo, hi]), ``_p_value``,
        ``_alarm``; ``card`` is the full :meth:`BatchResult.card`. Empty for an unsaved reference."""
        if self.folder is None:
            return []
        out = []
        for row_id, checked_at, batch_name, batch_digest, n, alarm, p_value, card_json in \
                CheckHistory(self.folder / HISTORY_FILE).rows():
            card = json.loads(card_json)
            entry = {"id": row_id, "checked_at": checked_at, "batch_name": batch_name, "batch_digest": batch_digest,
                     "n": n, "alarm": bool(alarm), "p_value": p_value, "alpha": card.get("alpha")}
            for scorer, test in card.get("scorers", {}).items():
                for key in ("flagged_rate", "expected_rate", "interval", "p_value", "alarm"):
                    entry[f"{scorer}_{key}"] = test.get(key)
            entry["card"] = card
            out.append(entry)
        return out

    # ------------------------------------------------------------------ helpers
    def _config(self):
        from ._embed_config import EmbedConfig

        cfg = dict(self._settings["embedding"])
        cfg["mean"], cfg["std"] = tuple(cfg["mean"]), tuple(cfg["std"])
        return EmbedConfig(**cfg)

    def _weights_for_check(self) -> str | os.PathLike:
        kind = self._weights
        if self._settings["weights"] == "file" and (kind is None or kind == "file"):
            raise ValueError(f"this reference was embedded with weights from a file "
                             f"({self._settings['embedding']['weights']}); pass Reference.load(folder, weights=PATH)")
        return kind if kind is not None else "bundled"


def _embedding_format() -> str:
    """The embedding pipeline's version (the embedding cache's format): features of equal settings
    are equal within one."""
    from .cache import CACHE_FORMAT

    return CACHE_FORMAT


def _fit_prediction(arrays: dict[str, np.ndarray], scores: ScoreConfig, percentile: float, classify,
                    progress: Progress | None) -> dict[str, Any]:
    """Cross-validate the classifier on the fit rows, fit the prediction scorer on its out-of-sample
    pred_probs, freeze its threshold; settings entries (arrays are added to ``arrays``). Nothing when
    the fit rows do not carry at least 2 classes with 2 items each (then only the feature score)."""
    from .analysis import fit_prediction
    from .thresholds import percentile_threshold

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


def _check_shapes(folder: Path, settings: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Refuse arrays whose shapes or dtypes disagree with the settings (naming the file)."""
    n, d = int(settings["n_fit"]), int(settings["n_features"])
    k = int(settings["feature"]["k"])
    expected = {"fit_features": ((n, d), "f"), "fit_ids": ((n,), "U"), "fit_labels": ((n,), "i"),
                "feature_fit_distances": ((n,), "f"), "feature_knn_distances": ((n, k), "f"),
                "feature_knn_indices": ((n, k), "i"), "pixel_mean": ((d,), "f")}
    if settings.get("prediction") is not None:
        n_classes = int(settings["prediction"]["n_classes"])
        rows = 1 if n_classes == 2 else n_classes
        expected.update({"prediction_fit_pred_probs": ((n, n_classes), "f"),
                         "prediction_confident_thresholds": ((n_classes,), "f"),
                         "classifier_coef": ((rows, d), "f"), "classifier_intercept": ((rows,), "f"),
                         "classifier_classes": ((n_classes,), "i")})
        for key in ("prediction_fit_pred_probs", "classifier_coef", "classifier_intercept", "classifier_classes"):
            if key not in arrays:
                raise ReferenceError(f"{folder / (key + '.npy')} is missing: the reference has a prediction scorer")
    for key, array in arrays.items():
        shape, kind = expected.get(key, (None, None))
        if shape is None:
            raise ReferenceError(f"{folder / (key + '.npy')} does not belong to this reference")
        if array.shape != shape or array.dtype.kind != kind:
            raise ReferenceError(f"{folder / (key + '.npy')} holds {array.dtype} of shape {array.shape}; expected "
                                 f"shape {shape} ({'float' if kind == 'f' else 'int' if kind == 'i' else 'text'})")


__all__ = ["BatchResult", "Reference", "ReferenceError", "REFERENCE_FORMAT", "flag_rate_interval"]
