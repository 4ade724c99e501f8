"""The review commands of the command line, ``export-review`` and ``copy-items`` (parsers in
:mod:`ood_core.cli`): review marks exported with scores, flagged or marked images copied."""
from __future__ import annotations

import argparse
from pathlib import Path

from ._review_store import VERDICTS

_SCORER_NAMES = ("feature", "prediction")


def add_review_args(p: argparse.ArgumentParser) -> None:
    """``--reviews``: the review database to read."""
    p.add_argument("--reviews", type=Path, default=None,
                   help="review database (default: reviews.sqlite3 in $OOD_DATA_DIR, else in the user data folder)")


def add_copy_args(p: argparse.ArgumentParser) -> None:
    """Which items ``copy-items`` copies, and where to."""
    p.add_argument("--dest", required=True, type=Path,
                   help="folder to copy into (created; files keep their relative paths; a different file already "
                        "there stops the copy before anything is written)")
    g = p.add_argument_group("which items (--flagged, --verdict or both: items that are both)")
    g.add_argument("--flagged", action="store_true", help="items flagged below --percentile of the fit scores")
    g.add_argument("--scorer", choices=_SCORER_NAMES, default="feature",
                   help="the score that flags them (default: feature)")
    g.add_argument("--set", choices=("query", "fit"), default="query",
                   help="flagged items of the query (scored) set or of the fit set (default: query)")
    g.add_argument("--verdict", choices=VERDICTS, action="append",
                   help="items marked with this verdict in the review (repeat for several)")


def _open_source(args):
    """The source of ``args.source``, split by ``--in-classes`` when given."""
    from . import in_out_split, open_source

    source = open_source(args.source)
    if args.in_classes:
        source = in_out_split(source, args.in_classes, fit_fraction=args.fit_fraction, seed=args.seed)
    return source


def _marks(args, source):
    """The review store and the marks of ``source``'s data; a ValueError listing the datasets
    that have marks when it has none."""
    from .review import ReviewStore, dataset_key

    store = ReviewStore(args.reviews)
    key = dataset_key(source)
    marks = store.marks(key)
    if not marks:
        raise ValueError(no_marks_message(store, key, source.description))
    return marks


def no_marks_message(store, key: str, description: str) -> str:
    """Why there is nothing to export: no marks for this data, and which data has marks."""
    head = f"no review marks for {description} (dataset key {key[:12]}) in {store.path}"
    listing = store.datasets()
    if not listing:
        return head + "; the review database holds no marks yet: mark images in the dashboard first"
    lines = [f"  {d.label or '(no description)'} [key {d.dataset[:12]}]: {d.marks} mark(s), last "
             f"{d.updated_at:%Y-%m-%d %H:%M} UTC" for d in listing[:10]]
    more = ["  ..."] if len(listing) > 10 else []
    return "\n".join([f"{head}. Marks are kept for {len(listing)} other dataset(s):", *lines, *more,
                      "Marks belong to the images' contents: a folder with images added, removed or edited is "
                      "other data."])


def _analysis(source, args):
    from . import analyze
    from .cli import _Bars, _embed_options, _score_config

    bars = _Bars(not args.quiet)
    analysis = analyze(source, scores=_score_config(args), progress=bars, **_embed_options(args))
    bars.close()
    return analysis


def _precision_text(estimate) -> str:
    if estimate.n == 0:
        return "no outlier/fine mark among them yet"
    return (f"estimated precision {estimate.precision:.2f} (95% interval {estimate.low:.2f} to {estimate.high:.2f}, "
            f"from {estimate.n} marked outlier or fine)")


def export_review(args) -> int:
    """``export-review``: the marks of a source's data with its scores, as CSV."""
    from . import SCORERS
    from ._files import atomic_write
    from .review import review_csv, review_summary

    source = _open_source(args)
    marks = _marks(args, source)
    analysis = _analysis(source, args)
    thresholds = {name: analysis.threshold_view(name, percentile=args.percentile).threshold
                  for name in analysis.scorers}
    atomic_write(args.out, review_csv(analysis, marks, thresholds, reviewed_only=not args.all).encode())
    counts = {v: sum(m.verdict == v for m in marks.values()) for v in VERDICTS}
    print(f"{len(marks)} review mark(s) for {analysis.source}: "
          + ", ".join(f"{n} {verdict}" for verdict, n in counts.items()))
    for name, threshold in thresholds.items():
        summary = review_summary(analysis, marks, name, threshold)
        print(f"{SCORERS[name]} at the {args.percentile:g}th percentile: {summary.reviewed} of {summary.flagged} "
              f"flagged query item(s) reviewed; {_precision_text(summary.precision)}")
    unscored = len(set(marks) - set(analysis.ids))
    if unscored:
        print(f"{unscored} marked item(s) are not in this run (another split of the same data): written with empty "
              "scores")
    print(f"wrote {args.out}")
    return 0


def copy_marked_or_flagged(args) -> int:
    """``copy-items``: copy the original files of flagged and/or marked images into a folder."""
    from .review import copy_items, flagged_positions, marked_positions

    if not (args.flagged or args.verdict):
        raise ValueError("copy-items needs --flagged, --verdict or both, to say which images to copy")
    source = _open_source(args)
    marks = _marks(args, source) if args.verdict else {}
    data, positions, what = source, None, []
    if args.flagged:
        data = analysis = _analysis(source, args)
        threshold = analysis.threshold_view(args.scorer, percentile=args.percentile).threshold
        positions = flagged_positions(analysis, args.scorer, threshold, args.set).tolist()
        what.append(f"{args.set} items flagged by the {args.scorer} score at the {args.percentile:g}th percentile")
    if args.verdict:
        marked = marked_positions(data.ids, marks, args.verdict).tolist()
        keep = set(marked)
        positions = marked if positions is None else [p for p in positions if p in keep]
        what.append(f"marked {' or '.join(dict.fromkeys(args.verdict))}")
    paths = copy_items(data, positions, args.dest)
    print(f"{len(paths)} image(s) ({' and '.join(what)}) are in {args.dest}, at their relative paths"
          + ("" if paths else "; nothing matched"))
    return 0
