"""Embedding into a folder of feature shards, resumable, on one process or on a Ray cluster.

:func:`embed_shards` opens a source, resolves the embedding settings once for the whole image set
(exactly as :func:`ood_core.embed` does), and writes the features as ``.npy`` shards through a
:class:`~ood_core.shards.ShardWriter` keyed by :func:`~ood_core.cache.cache_key`: rerunning the
same command on a folder left half-way embeds only the shards still missing, and a folder of other
images or settings is refused. Engine ``"local"`` embeds the pending shards one after the other in
this process; ``"ray"`` (:mod:`ood_core._ray_embed`) hands them to a pool of Ray actors and writes
each shard here as its features come back. Images that fail to decode keep NaN rows in the shards;
they are listed (index, path, reason) in each shard's notes and in ``meta.npz``, and dropped when
the folder is read (:func:`ood_core.load_arrays`). The images' statistics for ``ood_core.issues``
(properties, perceptual hashes, pixel digests) are gathered in the same decoding pass and kept beside
each shard (``stats-NNNNN.npy``), so the issues of an analysis of the folder read no image again.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Unpack

import numpy as np

from ._embed_config import EmbedConfig
from ._progress import Progress, StepProgress, stage
from ._shard_work import embed_shard, make_embedder
from .run_config import EMBEDDING_FIELDS, RunConfig, EmbeddingKeywords
from .issues._run import STATS_FORMAT
from .shards import DEFAULT_SHARD_ROWS, FeatureShards, ShardWriter
from .sources import ImageSet, open_source

ENGINES = ("local", "ray")


@dataclass(frozen=True, eq=False)
class ShardedEmbedding:
    """What :func:`embed_shards` wrote: ``features`` (lazy, on disk) are the rows of ``images``,
    the items kept (images that failed to decode are dropped and listed in ``images.skipped``)."""

    folder: Path
    images: ImageSet
    features: FeatureShards  # (N, D) float32, read from the shards on use
    config: dict[str, Any]  # the resolved embedding settings
    shards: int  # shards in the folder
    written: int  # shards embedded by this call (the others were there already)


def embed_shards(
    source: str | os.PathLike | ImageSet,
    out: str | os.PathLike,
    *,
    engine: str = "local",
    workers: int = 2,
    ray_address: str | None = None,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    settings: RunConfig | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: Progress | None = None,
    name: str | None = None,
    **overrides: Unpack[EmbeddingKeywords],
) -> ShardedEmbedding:
    """Embed the images of ``source`` into the shard folder ``out`` (resuming it when a run with the
    same images and settings was interrupted there).

    ``engine``: ``"local"`` (this process) or ``"ray"`` (Ray Data: ``workers`` actors, one GPU each
    when the cluster has GPUs, else an equal share of its CPUs; ``ray_address`` or ``$RAY_ADDRESS``
    names an existing cluster, else a local Ray instance with this machine's CPUs is started and shut
    down). Every Ray worker must be able to read the images at the paths this process sees; the
    features come back to this process, which writes the shards, so the workers need no access to
    ``out``. ``shard_rows``: images per shard (the unit of work and of resuming). The embedding
    settings (``settings`` and the keywords replacing its fields) are those of :func:`ood_core.embed`;
    ``cache_dir``, as there, is the cache folder whose ``exports/`` keeps the backend's exports.
    ``progress(stage, done, total)`` hears of the
    "embed" stage in images.
    """
    settings = RunConfig.resolve(settings, "embed_shards", EMBEDDING_FIELDS, **overrides)
    weights, device, batch_size = settings.weights, settings.device, settings.batch_size
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}; got {engine!r}")
    for arg, value in (("workers", workers), ("shard_rows", shard_rows)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{arg} must be a positive int; got {value!r}")
    images = source if isinstance(source, ImageSet) else open_source(str(source), name=name)
    if not isinstance(images, ImageSet):
        raise ValueError(f"{images.description} already holds features; embedding needs images")
    if len(images) < 2:
        raise ValueError(f"the source has {len(images)} readable image(s) ({len(images.skipped)} skipped); "
                         "at least 2 are needed")
    from .cache import cache_key
    from .embedder import Embedder

    config = Embedder(**settings.embedding(), cache_dir=cache_dir).config_for(images)
    if config.centre:
        picked = " (what model=auto picks for these images)" if settings.model != config.model else ""
        raise ValueError(f"model {config.model!r}{picked} centres the features on the mean of the fit rows, which "
                         "needs every row before the first is written; embed into shards with model 'pixels-raw' "
                         "(or another model), or into a .npz")
    writer = ShardWriter(out, n_rows=len(images), key=cache_key(config, images), shard_rows=int(shard_rows),
                         stats_format=STATS_FORMAT)
    pending = writer.pending()
    step = stage(progress, "embed")
    done = len(images) - sum(stop - start for start, stop in map(writer.span, pending))
    if step is not None:
        step(done, len(images))
    if engine == "local":
        results = _local(images, pending, writer, config, weights, device, batch_size, step, done, cache_dir)
    else:
        from ._ray_embed import ray_shards

        results = ray_shards(images, pending, writer.span, config, weights=weights, device=device,
                             batch_size=batch_size, workers=int(workers), address=ray_address,
                             cache_dir=None if cache_dir is None else str(cache_dir))
    with contextlib.closing(results):  # a Ray session ends here even when a write fails
        for number, features, failures, stats in results:
            start, stop = writer.span(number)
            writer.write(number, features,
                         notes={"failures": [[start + i, path, reason] for i, path, reason in failures]}, stats=stats)
            done += stop - start
            if step is not None and engine != "local":
                step(done, len(images))
    return _finish(writer, images, config, len(pending))


def _local(images: ImageSet, pending: list[int], writer: ShardWriter, config: EmbedConfig, weights, device: str,
           batch_size: int, step: StepProgress | None, done: int, cache_dir=None
           ) -> Iterator[tuple[int, np.ndarray, list, np.ndarray]]:
    """The pending shards embedded one after the other in this process: (number, features, failures,
    statistics)."""
    embedder = make_embedder(config, weights, device, batch_size, cache_dir)
    for number in pending:
        start, stop = writer.span(number)
        inner = None if step is None else (lambda d, _t, base=done: step(base + d, len(images)))
        features, failures, stats = embed_shard(embedder, images.subset(np.arange(start, stop)), inner)
        yield number, features, failures, stats
        done += stop - start


def _finish(writer: ShardWriter, images: ImageSet, config: EmbedConfig, written: int) -> ShardedEmbedding:
    """Store the per-row arrays and the failures in ``meta.npz``; the kept items and their features."""
    failures = sorted((int(i), str(p), str(r)) for n in range(writer.n_shards)
                      for i, p, r in writer.notes(n).get("failures", []))
    settings = dataclasses.asdict(config)
    meta = {"ids": np.asarray(images.ids, dtype=str), "labels": np.asarray(images.labels, dtype=np.int64),
            "class_names": np.asarray(images.class_names, dtype=str),
            "failed_index": np.array([i for i, _, _ in failures], dtype=np.int64),
            "failed_path": np.array([p for _, p, _ in failures], dtype=str),
            "failed_reason": np.array([r for _, _, r in failures], dtype=str),
            "embed_config": np.array(json.dumps(settings, sort_keys=True)),
            "source": np.array(images.description)}
    if images.split is not None:
        meta["split"] = np.asarray(images.split, dtype=str)
    if images.is_ood is not None:
        meta["is_ood"] = np.asarray(images.is_ood, dtype=bool)
    shards = writer.finish(meta)
    ok = np.ones(len(images), dtype=bool)
    ok[[i for i, _, _ in failures]] = False
    kept, features = images, shards
    if not ok.all():
        kept = images.subset(ok)
        kept.description = images.description
        kept.skipped = list(images.skipped) + [(p, r) for _, p, r in failures]
        features = shards.subset(np.flatnonzero(ok))
    if len(kept) < 2:
        raise ValueError(f"only {len(kept)} of {len(images)} image(s) could be decoded; at least 2 are needed")
    return ShardedEmbedding(folder=writer.folder, images=kept, features=features, config=settings,
                            shards=writer.n_shards, written=written)


__all__ = ["ENGINES", "ShardedEmbedding", "embed_shards"]
