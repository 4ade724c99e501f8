"""``compare-models``: one source embedded with several models, their outlier scores compared."""
from __future__ import annotations

from ._common import BUILTIN_HELP, _Bars, add_class_args, add_embed_args, name_list, percentile, run_config


def add_parsers(sub) -> None:
    """The ``compare-models`` command."""
    p = sub.add_parser("compare-models", help="embed one source with several models and compare their outlier scores")
    p.add_argument("source", help=f"image folder, .zip of images, or a {BUILTIN_HELP}")
    p.add_argument("--models", type=name_list, default=["lite0", "lite2", "pixels"],
                   help="comma-separated models: timm names, lite0/lite1/lite2, pixels, pixels-raw or auto "
                        "(default: lite0,lite2,pixels)")
    p.add_argument("--percentile", type=percentile, default=5.0,
                   help="count items scoring below this percentile of each model's fit scores (default: 5)")
    add_class_args(p, "default: use the source's own split, if any")
    add_embed_args(p, model=False)
    p.set_defaults(run=run_compare_models)


def run_compare_models(args) -> int:
    """Print one row per model and the agreement of each pair."""
    from .._compare_models import compare_models

    bars = _Bars(not args.quiet)
    result = compare_models(args.source, args.models, settings=run_config(args), cache_dir=args.cache_dir,
                            percentile=args.percentile, progress=bars)
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
