"""The front door: :func:`analyze` runs the whole flow, source -> features -> both scorers."""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Unpack

import numpy as np

from ._progress import Progress, stage
from ._files import atomic_write, read_kept
from .analysis import Analysis, ClassifierInfo, ScoreConfig, digest, fit_feature, fit_prediction
from .pred_probs import out_of_sample_pred_probs
from .run_config import EMBEDDING_FIELDS, EmbeddingKeywords, RunConfig, RunKeywords
from .sources import ArraySet, ImageSet, in_out_split, open_source
from .sources.split import class_indices

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Embedding:
    """Features of a source's images: ``images`` are the items kept (images that failed to decode
    are dropped and listed in ``images.skipped``), one row of ``features`` each."""

    images: ImageSet
    features: np.ndarray  # (N, D) float32
    config: dict[str, Any]  # the resolved embedding settings
    cache_hit: bool  # read from the disk cache


def embed(
    source: str | os.PathLike | ImageSet,
    *,
    settings: RunConfig | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: Progress | None = None,
    name: str | None = None,
    **overrides: Unpack[EmbeddingKeywords],
) -> Embedding:
    """Embed the images of ``source`` (as :func:`analyze` takes it) through the disk cache, with the
    embedding fields of ``settings`` (a :class:`~ood_core.run_config.RunConfig`; its defaults when
    None), each replaceable by a keyword: ``model``, ``weights``, ``image_size``, ``device``,
    ``batch_size``, ``backend`` (see :class:`~ood_core.embedder.Embedder`)."""
    from .cache import cached_embed
    from .embedder import Embedder, drop_failed
    from .issues._image_pass import ImageStatsCollector
    from .issues._run import keep_image_stats

    settings = RunConfig.resolve(settings, "embed", EMBEDDING_FIELDS, **overrides)
    images = _open(source, name)
    if not isinstance(images, ImageSet):
        raise ValueError(f"{images.description} already holds features; embedding needs images")
    if len(images) < 2:
        raise ValueError(f"the source has {len(images)} readable image(s) ({len(images.skipped)} skipped"
                         f"{_first_reasons(images.skipped)}); at least 2 are needed")
    embedder = Embedder(**settings.embedding(), cache_dir=cache_dir)  # the backend's exports kept there too
    # the image statistics of ood_core.issues, gathered in the decoding pass (only when embedding runs)
    collector = ImageStatsCollector(len(images), pixel_digests=getattr(images, "item_digests", None) is None)
    features, hit = cached_embed(embedder, images, cache_dir=cache_dir, progress=stage(progress, "embed"),
                                 collector=collector)
    decoded = None if hit else np.isfinite(features).all(axis=1)
    kept, features = drop_failed(images, features, embedder.failures_)
    if decoded is not None and len(kept) >= 2:
        try:
            keep_image_stats(kept, collector.result().rows(decoded), cache_dir)
        except ValueError as exc:  # costs only the reuse: Analysis.image_stats() reads the images again
            logger.warning("image statistics from the embedding not kept (%s)", exc)
    if len(kept) < 2:
        raise ValueError(f"only {len(kept)} of {len(images)} image(s) could be decoded"
                         f"{_first_reasons(kept.skipped)}; at least 2 are needed")
    return Embedding(images=kept, features=features, config=dataclasses.asdict(embedder.config_for(kept)),
                     cache_hit=hit)


def analyze(
    source: str | os.PathLike | ImageSet | ArraySet,
    *,
    settings: RunConfig | None = None,
    scores: ScoreConfig = ScoreConfig(),
    cache_dir: str | os.PathLike | None = None,
    progress: Progress | None = None,
    name: str | None = None,
    **overrides: Unpack[RunKeywords],
) -> Analysis:
    """Score ``source``: embed its images (through the disk cache) or take its precomputed
    features, fit every scorer on the fit split and score the query split.

    ``source``: a built-in name (``"digits"``, ``"cifar10-demo"``), a folder or zip of images, a
    ``.npz``/``.npy`` of features, or an :class:`ImageSet` / :class:`ArraySet`. ``settings``: a
    :class:`~ood_core.run_config.RunConfig` (its defaults when None), each field replaceable by a
    keyword of its name: the embedding (``model``, ``weights``, ``image_size`` (None: the model's
    default for the images' size), ``device``, ``batch_size``, ``backend``; ignored for precomputed
    features) and the split: ``in_classes``, the classes that are in distribution: the fit set is a
    seeded ``fit_fraction`` of their items (of the train split, when the source has one, drawn with
    ``seed``) and everything else is scored, with the other classes as known out-of-distribution
    truth (see :func:`in_out_split`); None keeps the source's own split. ``scores``: the scorers'
    settings. ``progress(stage, done, total)`` hears of each stage ("embed", "classifier",
    "neighbours"). ``name``: how to call a path source in descriptions (e.g. an upload's own file name).
    """
    settings = RunConfig.resolve(settings, "analyze", **overrides)
    source = _open(source, name)
    class_split, drawn = None, settings.class_split()
    if drawn is not None:
        names = [source.class_names[i] for i in class_indices(source, settings.in_classes)]
        source = in_out_split(source, **drawn)
        class_split = {"in_classes": names, "fit_fraction": float(settings.fit_fraction), "seed": int(settings.seed)}
    if isinstance(source, ArraySet):
        features, items, hit, pred_probs = source.features, None, False, source.pred_probs
        embed_config: dict[str, Any] = {"precomputed": source.description}
    else:
        embedded = embed(source, settings=settings, cache_dir=cache_dir, progress=progress)
        source = items = embedded.images
        features, hit, pred_probs, embed_config = embedded.features, embedded.cache_hit, None, embedded.config

    n = len(features)
    fit_index, query_index = _split_indices(source.split, n)
    labels = np.asarray(source.labels, dtype=np.int64) if source.labels is not None else np.full(n, -1)
    is_ood = None if source.is_ood is None else np.asarray(source.is_ood, dtype=bool)[query_index]
    if is_ood is not None and (is_ood.all() or not is_ood.any()):
        is_ood = None  # evaluation needs both kinds of query item
    run_id = digest({"data": source.identity, "embedding": embed_config,
                     "split": [digest(fit_index.tolist()), digest(query_index.tolist())]})
    same_set = len(fit_index) == len(query_index) and bool(np.all(fit_index == query_index))
    predictions = _predictions(features, labels, fit_index, query_index, same_set, pred_probs, scores, run_id,
                               progress, cache_dir)
    return Analysis(
        run_id=run_id, data_id=source.data_id, source=source.description, embed_config=embed_config, items=items,
        ids=list(source.ids), paths=list(getattr(source, "paths", source.ids)), labels=labels,
        class_names=list(source.class_names), fit_index=fit_index, query_index=query_index,
        features=features, is_ood=is_ood, score_config=scores,
        skipped=list(getattr(source, "skipped", [])), cache_hit=hit,
        class_split=class_split, cache_dir=None if cache_dir is None else str(cache_dir),
        **fit_feature(features, fit_index, query_index, scores, progress), **predictions,
    )


def _first_reasons(skipped: list[tuple[str, str]], n: int = 3) -> str:
    """``": a.jpg (why), b.png (why), ..."`` for the first ``n`` skipped files, or "" when none."""
    if not skipped:
        return ""
    listed = ", ".join(f"{path} ({reason})" for path, reason in skipped[:n])
    return f": {listed}" + (", ..." if len(skipped) > n else "")


def _open(source, name: str | None):
    if isinstance(source, (str, os.PathLike)):
        return open_source(str(source), name=name)
    if not isinstance(source, (ImageSet, ArraySet)):
        raise TypeError(f"source must be a name, a path, an ImageSet or an ArraySet; got {type(source).__name__}")
    return source


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


def _predictions(features, labels, fit_index, query_index, same_set: bool, pred_probs, config: ScoreConfig,
                 run_id: str, progress: Progress | None, cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Out-of-sample pred_probs for the fit rows and a classifier's for the query rows (or the
    source's own pred_probs), and the prediction scores; empty when the fit rows do not carry
    at least 2 known classes with 2 items each."""
    fit_labels = labels[fit_index]
    if pred_probs is not None:
        P = np.asarray(pred_probs, dtype=np.float64)
        out = {"fit_pred_probs": P[fit_index], "query_pred_probs": P[query_index],
               "pred_classes": np.arange(P.shape[1])}
    else:
        if np.any(fit_labels < 0) or len(np.unique(fit_labels)) < 2:
            logger.info("no prediction score: the fit rows need class labels of at least 2 classes")
            return {}
        classes, local = np.unique(fit_labels, return_inverse=True)
        n_splits = int(min(5, np.bincount(local).min()))
        if n_splits < 2:
            logger.info("no prediction score: a fit class has a single example")
            return {}
        out = _out_of_sample(features, fit_index, query_index, local, classes, same_set, n_splits, run_id, progress,
                             cache_dir)
    out.update(fit_prediction(out["fit_pred_probs"], out["query_pred_probs"], out["pred_classes"], fit_labels,
                              same_set, config))
    return out


PRED_PROBS_FORMAT = "ood-explorer-pred-probs-v1"  # bump when the classifier or its selection changes


def _out_of_sample(features, fit_index, query_index, local, classes, same_set: bool, n_splits: int, run_id: str,
                   progress: Progress | None, cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """The classifier's out-of-sample fit pred_probs and its query pred_probs, read from the disk cache
    when this run computed them before (a server restart does not redo the cross-validation)."""
    from .cache import run_file

    # The key holds the fit rows' bytes too, so a source whose identity is not by content (an ArraySet
    # built in memory) can never read another's pred_probs.
    from .shards import blocks, rows

    fit_rows = hashlib.blake2b(digest_size=16)
    for block in blocks(rows(features, fit_index)):  # a block at a time: the rows may be shards on disk
        fit_rows.update(np.ascontiguousarray(block).tobytes())
    fit_rows.update(np.ascontiguousarray(local).tobytes())
    key = digest([PRED_PROBS_FORMAT, run_id, n_splits, fit_rows.hexdigest(), len(query_index), MAX_CLASSIFIER_ROWS])
    path = run_file(key, cache_dir)
    cached = _read_pred_probs(path, len(fit_index), len(query_index), len(classes))
    if cached is not None:
        return {**cached, "pred_classes": classes}
    fit_pp, query_pp, clf = _classify(features, fit_index, query_index, local, n_splits, same_set, progress)
    info = ClassifierInfo(model="LogisticRegression", C=float(clf.C), selected_by=str(clf.cv_select_))
    try:
        atomic_write(path, lambda f: np.savez(f, format=PRED_PROBS_FORMAT, fit=fit_pp, query=query_pp,
                                              C=info.C, selected_by=info.selected_by))
    except OSError as exc:
        logger.warning("could not keep the pred_probs in %s (%s)", path, exc)
    return {"fit_pred_probs": fit_pp, "query_pred_probs": query_pp, "pred_classes": classes, "classifier": info}


# The classifier is cross-validated on at most this many fit rows (a seeded, stratified-enough random
# sample): logistic regression on 1280-d features costs minutes per 50,000 rows on 2 cores.
MAX_CLASSIFIER_ROWS = 50_000


def _classify(features, fit_index, query_index, local, n_splits: int, same_set: bool, progress):
    """Out-of-sample pred_probs of every fit row and the classifier's pred_probs of the query rows.

    Up to :data:`MAX_CLASSIFIER_ROWS` fit rows: cross-validated predictions (held-out folds). Above,
    the classifier is cross-validated on a seeded sample of that many fit rows; the sample gets its
    held-out predictions and every other fit row is predicted by the classifier fitted on the whole
    sample, which never saw it: every fit row's pred_probs stay out of sample. Rows not in memory
    (feature shards) are read a block at a time.
    """
    from .shards import blocks, rows

    n_fit = len(fit_index)
    sample = np.arange(n_fit)
    if n_fit > MAX_CLASSIFIER_ROWS:
        # every class keeps at least n_splits rows (all it has when fewer), the rest in proportion
        order = np.random.default_rng(0).permutation(n_fit)
        share = MAX_CLASSIFIER_ROWS / n_fit
        sample = np.sort(np.concatenate([
            members[: max(n_splits, int(round(share * len(members))))]
            for members in (order[local[order] == c] for c in np.unique(local))]))
        logger.info("classifier cross-validated on a seeded sample of %d of %d fit rows", len(sample), n_fit)
    X = np.asarray(rows(features, fit_index[sample]))
    sample_pp, clf = out_of_sample_pred_probs(X, local[sample], n_splits=n_splits, progress=stage(progress, "classifier"))
    del X
    if len(sample) == n_fit:
        fit_pp = sample_pp
    else:
        rest = np.setdiff1d(np.arange(n_fit), sample)
        fit_pp = np.empty((n_fit, sample_pp.shape[1]))
        fit_pp[sample] = sample_pp
        fit_pp[rest] = np.concatenate([clf.predict_proba(b) for b in blocks(rows(features, fit_index[rest]))])
    if same_set:
        return fit_pp, fit_pp, clf
    query_pp = np.concatenate([clf.predict_proba(b) for b in blocks(rows(features, query_index))])
    return fit_pp, query_pp, clf


def _read_pred_probs(path: Path, n_fit: int, n_query: int, n_classes: int) -> dict[str, Any] | None:
    """The kept pred_probs at ``path`` when the file is there and holds what this run expects; a damaged
    or inconsistent one gives a warning (``read_kept``) and None (computed again)."""
    def check(kept: dict[str, np.ndarray]) -> None:
        if str(kept["format"]) != PRED_PROBS_FORMAT:
            raise ValueError(f"format {str(kept['format'])!r}, expected {PRED_PROBS_FORMAT!r}")
        for name, n in (("fit", n_fit), ("query", n_query)):
            if kept[name].shape != (n, n_classes) or not np.isfinite(kept[name]).all():
                raise ValueError(f"{name} pred_probs of shape {kept[name].shape}, expected finite ({n}, {n_classes})")
        float(kept["C"]), str(kept["selected_by"])  # present (a KeyError otherwise)

    kept = read_kept(path, "pred_probs", check)
    if kept is None:
        return None
    info = ClassifierInfo(model="LogisticRegression", C=float(kept["C"]), selected_by=str(kept["selected_by"]))
    return {"fit_pred_probs": kept["fit"], "query_pred_probs": kept["query"], "classifier": info}
