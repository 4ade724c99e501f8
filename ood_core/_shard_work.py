"""What embedding one shard takes, shared by both engines of :func:`~ood_core._sharded_embed.embed_shards`:
the embedder pinned to the settings resolved once for the whole set (:func:`make_embedder`), and
one shard's features with its failures and its images' statistics (:func:`embed_shard`). The local
engine runs them in this process, each Ray actor (:mod:`ood_core._ray_embed`) in its own."""
from __future__ import annotations

import warnings

import numpy as np

from ._embed_config import EmbedConfig
from ._progress import StepProgress
from ._shard_stats import stats_array
from .issues._image_pass import ImageStatsCollector
from .sources import ImageSet

# Embedder.embed warns once per call about undecodable images; a sharded run reports them once.
_FAILED_WARNING = r"\d+ of \d+ images could not be decoded"


def make_embedder(config: EmbedConfig, weights, device: str, batch_size: int, cache_dir=None):
    """An :class:`~ood_core.embedder.Embedder` pinned to ``config`` (resolved once for the whole set),
    so every shard (a subset of the images) is embedded with the same settings; the backend's
    exports are kept in the cache folder ``cache_dir`` (None: the ``cache_dir`` setting)."""
    from .embedder import Embedder

    embedder = Embedder(model=config.model, weights=weights, image_size=config.image_size, device=device,
                        batch_size=batch_size, fold_batchnorm=config.fold_batchnorm, cache_dir=cache_dir)
    if embedder.config.weights != config.weights:
        raise ValueError(f"the weights {weights!r} are {embedder.config.weights} here but were "
                         f"{config.weights} where the run started; every worker needs the same weights file")
    embedder.config = config
    return embedder


def embed_shard(embedder, images: ImageSet, progress: StepProgress | None = None
                ) -> tuple[np.ndarray, list[tuple[int, str, str]], np.ndarray]:
    """Features of one shard's images (NaN rows where decoding failed), its failures as (index
    within the shard, path, reason), and the images' statistics for ``ood_core.issues``, gathered
    as the embedder decodes them (a structured array, see :func:`~ood_core._shard_stats.stats_array`;
    pixel digests included: a shard folder keeps no file digests)."""
    collector = ImageStatsCollector(len(images), pixel_digests=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_FAILED_WARNING)
        features = embedder.embed(images, progress=progress, collector=collector)
    return features, list(embedder.failures_), stats_array(collector.result())


__all__ = ["embed_shard", "make_embedder"]
