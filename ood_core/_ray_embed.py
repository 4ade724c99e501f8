"""The Ray engine of :func:`~ood_core._sharded_embed.embed_shards`: pending shards embedded by a
pool of Ray Data actors, their features streamed back to the driver (which writes the shards).

Each input row is one shard: its number and its images (the :class:`ImageSet` subset of the
shard's rows made :meth:`~ood_core.sources.ImageSet.portable`: a folder's absolute root, a zip's
path, an in-memory set's own pixels travel). Each actor builds the embedder once, pinned to the settings the
driver resolved, and uses one GPU when the cluster has GPUs, else an equal share of the CPUs (its
torch threads set to that share, so actors do not oversubscribe the cores). Ray is imported only
here, and only when this engine runs.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import warnings
from typing import Any, Callable, Iterator

import numpy as np

from ._embed_config import EmbedConfig
from . import settings
from ._shard_stats import stats_bytes, stats_from_bytes
from ._shard_work import embed_shard, make_embedder
from .sources import ImageSet

RAY_EXTRA = "pip install 'ood-explorer[ray]'"


def import_ray():
    """The ``ray`` module with Ray Data, or RuntimeError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401 - the extra's other half
    except ImportError as exc:
        raise RuntimeError(f"the ray engine needs Ray Data, which is not installed ({exc}); {RAY_EXTRA}") from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None, workers: int):
    """Ray connected to ``address`` (else the ``ray_address`` setting, ``$RAY_ADDRESS``; else a local instance with this machine's
    CPUs, at least ``workers``), shut down afterwards when this call started it. An already initialised Ray is used as
    it is. Ray's own chatter (info logs, deprecation notices of its settings) is kept out of the
    caller's output; its errors still raise."""
    ray = import_ray()
    address = address or settings.value("ray_address") or None
    started = not ray.is_initialized()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray(\.|$)")
        if started:
            quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
            if address:
                ray.init(address=address, **quiet)
            else:
                ray.init(num_cpus=max(workers, os.cpu_count() or 1), include_dashboard=False, **quiet)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the caller's progress callback reports shards as they land
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled"
        try:
            yield ray
        finally:
            if started:
                ray.shutdown()


def shard_images(images: ImageSet, start: int, stop: int) -> bytes:
    """The images of rows ``[start, stop)``, pickled for a worker (only what they need travels)."""
    try:
        return pickle.dumps(images.subset(np.arange(start, stop)).portable(), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001 - e.g. a zip given as an open file
        raise ValueError(f"the ray engine sends each shard's images to the workers, and this source's cannot be "
                         f"sent ({exc}); give a folder or a .zip path every worker can read, or use the local "
                         "engine") from None


class ShardActor:
    """One Ray actor: the embedder built once, then one shard per call."""

    def __init__(self, config: EmbedConfig, weights, device: str, batch_size: int, threads: int,
                 cache_dir: str | None = None):
        import torch

        torch.set_num_threads(threads)
        self.embedder = make_embedder(config, weights, device, batch_size, cache_dir)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out: dict[str, list] = {"shard": [], "rows": [], "dim": [], "features": [], "failures": [], "stats": []}
        for number, blob in zip(batch["shard"], batch["images"]):
            features, failures, stats = embed_shard(self.embedder, pickle.loads(blob))
            out["shard"].append(int(number))
            out["rows"].append(features.shape[0])
            out["dim"].append(features.shape[1])
            out["features"].append(np.ascontiguousarray(features, dtype=np.float32).tobytes())
            out["failures"].append(json.dumps(failures))
            out["stats"].append(stats_bytes(stats))
        return {key: np.array(values, dtype=object if key in ("features", "failures", "stats") else np.int64)
                for key, values in out.items()}


def _actor_resources(ray, workers: int, device: str) -> tuple[int, dict[str, Any], int]:
    """(pool size, Ray resources per actor, torch threads per actor) for ``workers`` actors on this
    cluster."""
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), float(resources.get("CPU", 1))
    if device.startswith("cuda") and gpus < 1:
        raise ValueError(f"device={device!r} but the Ray cluster has no GPU; use device 'auto' or 'cpu'")
    if gpus >= 1 and (device == "auto" or device.startswith("cuda")):
        size = min(workers, gpus)  # one GPU per actor: more actors than GPUs would wait for ever
        return size, {"num_gpus": 1, "num_cpus": 1}, max(1, int(cpus // size))
    share = max(1, int(cpus // workers)) if cpus >= workers else cpus / workers
    return workers, {"num_cpus": share}, max(1, int(share))


def ray_shards(images: ImageSet, pending: list[int], span: Callable[[int], tuple[int, int]], config: EmbedConfig, *,
               weights, device: str, batch_size: int, workers: int, address: str | None,
               cache_dir: str | None = None) -> Iterator[tuple[int, np.ndarray, list[tuple[int, str, str]], np.ndarray]]:
    """(number, features, failures, image statistics) of each pending shard, in the order they finish
    (each worker keeps the backend's exports in ``cache_dir``, as this process would)."""
    if not pending:
        return
    rows = [{"shard": number, "images": shard_images(images, *span(number))} for number in pending]
    with ray_session(address, workers) as ray:
        # No more actors than shards: an actor with nothing to do would only hold its share of the cluster.
        size, resources, threads = _actor_resources(ray, min(workers, len(pending)), device)
        dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
            ShardActor, batch_size=1, compute=ray.data.ActorPoolStrategy(size=size),
            fn_constructor_kwargs={"config": config, "weights": weights, "device": device,
                                   "batch_size": batch_size, "threads": threads, "cache_dir": cache_dir},
            **resources)
        batches = iter(dataset.iter_batches(batch_size=None, batch_format="numpy"))
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except Exception as exc:
                if not type(exc).__module__.startswith("ray"):
                    raise
                raise RuntimeError(f"the Ray run failed: {_cause(exc)} (the shards written so far are kept: run "
                                   "the same command again to resume)") from exc
            for i in range(len(batch["shard"])):
                features = np.frombuffer(batch["features"][i], dtype=np.float32).reshape(
                    int(batch["rows"][i]), int(batch["dim"][i]))
                failures = [(int(j), str(p), str(r)) for j, p, r in json.loads(batch["failures"][i])]
                yield int(batch["shard"][i]), features, failures, stats_from_bytes(batch["stats"][i])


def _cause(exc: BaseException) -> str:
    """The last line of a Ray error: the worker's own exception, without Ray's traceback."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


__all__ = ["RAY_EXTRA", "ShardActor", "import_ray", "ray_session", "ray_shards", "shard_images"]
