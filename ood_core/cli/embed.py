"""``embed``: a source's images into a ``.npz`` of features, or a folder of feature shards (local or Ray)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ._common import BUILTIN_HELP, _Bars, add_embed_args, positive_int, print_skipped, run_config

# Suffixes of files that are never a shard folder (a likely slip for --out).
_NOT_A_FOLDER = (".npy", ".csv", ".json", ".zip", ".txt")


def embed_output(text: str) -> Path:
    """``embed --out``: a ``.npz`` file, or a folder for feature shards."""
    path = Path(text)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"{text!r} is a folder; give a .npz file path, or a folder name "
                                             "without the .npz suffix for shards")
        return path
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is an existing file; give a .npz path or a folder for "
                                         "the shards")
    if suffix in _NOT_A_FOLDER:
        raise argparse.ArgumentTypeError(f"must be a .npz file path or a folder for shards; got {text!r}")
    return path


def add_parsers(sub) -> None:
    """The ``embed`` command."""
    from ..shards import DEFAULT_SHARD_ROWS

    p = sub.add_parser("embed", help="embed a source's images into a .npz of features or a folder of shards")
    p.add_argument("source", help=f"image folder, .zip of images, or a {BUILTIN_HELP}")
    p.add_argument("--out", required=True, type=embed_output,
                   help="output .npz (keys: features, ids, labels (-1 unknown), class_names; split and is_ood "
                        "when the source has them), or a folder: features as .npy shards read memory-mapped, "
                        "resumed when the same command is run again; `score`, `run` and the dashboard open it")
    g = p.add_argument_group("engine (a shard folder)")
    g.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="'local': this process (default); 'ray': Ray Data actors (pip install "
                        "'ood-explorer[ray]'), one GPU each when the cluster has GPUs; writes a shard folder")
    g.add_argument("--workers", type=positive_int, default=None,
                   help="Ray actors (default: 2), one GPU each when there are GPUs, else an equal share of "
                        "the CPUs")
    g.add_argument("--ray-address", default=None,
                   help="an existing Ray cluster, e.g. ray://head:10001 (default: the ray_address setting, "
                        "$RAY_ADDRESS, else a local instance); every worker must read the images at the same path")
    g.add_argument("--shard-rows", type=positive_int, default=None,
                   help=f"images per shard (default: {DEFAULT_SHARD_ROWS:,})")
    add_embed_args(p)
    p.set_defaults(run=run_embed)


def check_embed_flags(args) -> None:
    """Flags of ``embed`` that only make sense together (each flag alone is checked at parse time)."""
    npz = args.out.suffix.lower() == ".npz"
    if npz and args.engine == "ray":
        raise ValueError(f"--engine ray writes a folder of shards: give --out a folder (e.g. "
                         f"{args.out.with_suffix('')}/), not a .npz")
    if npz and args.shard_rows is not None:
        raise ValueError("--shard-rows sets the shards of a folder: give --out a folder, not a .npz")
    if args.engine == "local" and (args.workers is not None or args.ray_address is not None):
        raise ValueError("--workers and --ray-address apply to --engine ray")


def run_embed_shards(args) -> int:
    from .. import embed_shards
    from ..shards import DEFAULT_SHARD_ROWS

    bars = _Bars(not args.quiet)
    # the folder is its own cache of features; --cache-dir keeps the backend's exports
    result = embed_shards(args.source, args.out, engine=args.engine, workers=args.workers or 2,
                          ray_address=args.ray_address, shard_rows=args.shard_rows or DEFAULT_SHARD_ROWS,
                          settings=run_config(args), cache_dir=args.cache_dir, progress=bars)
    bars.close()
    images, features = result.images, result.features
    reused = result.shards - result.written
    print(f"embedded {len(features)} images -> {result.folder}/ ({features.shape[1]} features; {result.shards} "
          f"shard(s): {result.written} embedded now{f', {reused} already there' if reused else ''}; "
          f"{len(images.skipped)} skipped)")
    print_skipped(images.skipped)
    return 0


def run_embed(args) -> int:
    """``embed``: write the features (and ids, labels, class names, split) of a source's images."""
    import numpy as np

    from .. import embed

    check_embed_flags(args)
    if args.out.suffix.lower() != ".npz":
        return run_embed_shards(args)
    bars = _Bars(not args.quiet)
    result = embed(args.source, settings=run_config(args), cache_dir=args.cache_dir, progress=bars)
    bars.close()
    images, features = result.images, result.features
    # ids are the images' relative paths inside the folder or zip
    arrays = {"features": features, "ids": np.asarray(images.ids, dtype=str),
              "labels": np.asarray(images.labels, dtype=np.int64),
              "class_names": np.asarray(images.class_names, dtype=str)}
    if images.split is not None:
        arrays["split"] = np.asarray(images.split, dtype=str)
    if images.is_ood is not None:
        arrays["is_ood"] = np.asarray(images.is_ood, dtype=bool)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **arrays)
    print(f"embedded {len(features)} images -> {args.out} ({features.shape[1]} features; "
          f"{'from the cache' if result.cache_hit else 'computed'}; {len(images.skipped)} skipped)")
    print_skipped(images.skipped)
    return 0
