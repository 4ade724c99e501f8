"""``score`` (fit and query features), ``run`` (a source end to end) and ``demo`` (the CIFAR-10 workflow)."""
from __future__ import annotations

from pathlib import Path

from .. import settings
from ._common import (BUILTIN_HELP, _Bars, add_embed_args, add_run_args, add_score_args, analyze_source, class_split,
                      name_list, output, report)


def add_parsers(sub) -> None:
    """The ``score``, ``run`` and ``demo`` commands."""
    p = sub.add_parser("score", help="score query features against fit features (.npz from `embed`)")
    p.add_argument("--fit", required=True, help="fit-set .npz (in-distribution reference)")
    p.add_argument("--query", required=True,
                   help="query-set .npz to score; classes the fit file lacks are out of distribution")
    p.add_argument("--out", required=True, type=output(".csv"),
                   help="output .csv; the settings and thresholds go to a .json beside it")
    add_score_args(p)
    p.set_defaults(run=run_score)

    p = sub.add_parser("run", help="embed (cached) and score a source end to end")
    p.add_argument("source", help=f"image folder, .zip, .npz of features, or a {BUILTIN_HELP}")
    p.add_argument("--out", required=True, type=output(".csv"),
                   help="output .csv; the settings and thresholds go to a .json beside it")
    add_run_args(p)
    p.set_defaults(run=run_run)

    p = sub.add_parser("demo", help="the CIFAR-10 workflow: fit on animals, score all classes, flag < 5th percentile")
    p.add_argument("--cifar10", default=None,
                   help="CIFAR-10 as a zip or folder of {train,test}/{class}/*.jpg or torchvision's "
                        f"cifar-10-batches-py (default: the cifar10 setting, ${settings.SETTINGS['cifar10'].env} or "
                        "the config file, else the copy --download fetched)")
    p.add_argument("--out", default=Path("demo_scores.csv"), type=output(".csv"),
                   help="output .csv (default: demo_scores.csv)")
    p.add_argument("--in-classes", type=name_list, default=None,
                   help="comma-separated in-distribution classes (default: the six animal classes)")
    p.add_argument("--download", action="store_true",
                   help="fetch CIFAR-10 (torchvision's copy, 163 MB, md5-checked) into the user data folder "
                        "when no copy is found")
    add_embed_args(p)
    add_score_args(p)
    p.set_defaults(run=run_demo)


def run_score(args) -> int:
    """``score``: the fit and query files as one source, scored and reported."""
    from .. import fit_query_arrays, load_arrays

    source = fit_query_arrays(load_arrays(args.fit), load_arrays(args.query))
    report(analyze_source(source, args), args.percentile, args.out)
    return 0


def run_run(args) -> int:
    """``run``: a source analyzed (split by --in-classes when given) and reported."""
    report(analyze_source(args.source, args, class_split(args)), args.percentile, args.out)
    return 0


def run_demo(args) -> int:
    """``demo``: CIFAR-10, fit on the in-classes, every class scored."""
    from .. import ANIMALS, cifar10, demo_split

    bars = _Bars(not args.quiet)
    cifar = cifar10(args.cifar10, download=args.download, progress=lambda done, total: bars("download", done, total))
    bars.close()
    source = demo_split(cifar, in_classes=args.in_classes or ANIMALS)
    report(analyze_source(source, args), args.percentile, args.out)
    return 0
