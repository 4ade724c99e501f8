"""The review commands: ``export-review`` (review marks with their scores, as CSV) and ``copy-items``
(the original files of flagged or marked images copied into a folder).

Marks remember the fit/query split they were made under (:func:`ood_core.review.split_key`): a command
that scores the marks uses that split when no ``--in-classes`` is given, and refuses one that differs
from it, since the sets and flags of another split are not the ones the marks were made against.
"""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from .._review_store import VERDICTS
from .. import settings
from ..analysis import SCORERS
from ._common import BUILTIN_HELP, _Bars, add_run_args, analysis_settings, class_split, output, score_config


def add_parsers(sub) -> None:
    """The ``export-review`` and ``copy-items`` commands."""
    p = sub.add_parser("export-review", help="write a source's review marks, with its scores, to a .csv")
    p.add_argument("source", help="the image folder, .zip, .npz or built-in source the marks were made on")
    p.add_argument("--out", required=True, type=output(".csv"), help="output .csv")
    p.add_argument("--all", action="store_true", help="every scored item, reviewed or not (default: reviewed ones)")
    _add_review_args(p)
    add_run_args(p)
    p.set_defaults(run=export_review)

    p = sub.add_parser("copy-items", help="copy the original files of flagged or marked images into a folder")
    p.add_argument("source", help=f"image folder, .zip of images, or a {BUILTIN_HELP}")
    _add_copy_args(p)
    _add_review_args(p)
    add_run_args(p)
    p.set_defaults(run=copy_marked_or_flagged)


def _add_review_args(p: argparse.ArgumentParser) -> None:
    """``--reviews``: the review database to read."""
    p.add_argument("--reviews", type=Path, default=None,
                   help="review database (default: reviews.sqlite3 in the data_dir setting, "
                        f"${settings.SETTINGS['data_dir'].env} or the config file, else the user data folder)")


def _add_copy_args(p: argparse.ArgumentParser) -> None:
    """Which items ``copy-items`` copies, and where to."""
    p.add_argument("--dest", required=True, type=Path,
                   help="folder to copy into (created; files keep their relative paths; a different file already "
                        "there stops the copy before anything is written)")
    g = p.add_argument_group("which items (--flagged, --verdict or both: items that are both)")
    g.add_argument("--flagged", action="store_true", help="items flagged below --percentile of the fit scores")
    g.add_argument("--scorer", choices=tuple(SCORERS), default="feature",
                   help="the score that flags them (default: feature)")
    g.add_argument("--set", choices=("query", "fit"), default="query",
                   help="flagged items of the query (scored) set or of the fit set (default: query)")
    g.add_argument("--verdict", choices=VERDICTS, action="append",
                   help="items marked with this verdict in the review (repeat for several)")


def _marks(args, source):
    """The marks of ``source``'s data; a ValueError listing the datasets that have marks when it has none."""
    from ..review import ReviewStore, dataset_key

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


def _flags_of(key: str) -> str:
    """The flags that ask for the split of ``key``."""
    from ..review import split_settings

    drawn = split_settings(key)
    if drawn is None:
        return "no --in-classes"
    return (f"--in-classes {','.join(drawn['in_classes'])} --fit-fraction {drawn['fit_fraction']:g} "
            f"--seed {drawn['seed']}")


def marks_split(args, marks) -> dict:
    """The split to score ``marks`` under (``analyze``'s keywords), from the flags and the splits the
    marks were made under; a ValueError when they disagree, naming the flags that agree."""
    from ..review import describe_split, key_of_split, reference_of_split, split_settings

    batch = sum(1 for m in marks.values() if m.split and reference_of_split(m.split) is not None)
    if batch:
        print(f"note: {batch} mark(s) were made on batches checked against a saved reference (the Batches page); "
              "they are scored under this command's split (column made_under names the reference and batch)")
    made = Counter(m.split for m in marks.values() if m.split and reference_of_split(m.split) is None)
    unknown = sum(1 for m in marks.values() if not m.split)
    if unknown:
        print(f"note: {unknown} mark(s) do not record the split they were made under (made before splits were "
              "kept): they are scored under this command's split")
    if not args.in_classes:
        if not made:
            return {}
        if len(made) > 1:
            listing = "; ".join(f"{n} under {describe_split(k)} ({_flags_of(k)})" for k, n in made.most_common())
            raise ValueError(f"the marks were made under {len(made)} different splits: {listing}. Choose one "
                             "with --in-classes (and --fit-fraction, --seed)")
        (key, n), = made.items()
        drawn = split_settings(key)
        if drawn is None:
            return {}
        print(f"scoring under the split the marks were made under: {describe_split(key)}")
        return drawn
    asked = class_split(args)
    asked_key = key_of_split(asked)
    if made and asked_key not in made:
        listing = "; ".join(f"{n} under {describe_split(k)} ({_flags_of(k)})" for k, n in made.most_common())
        raise ValueError(f"the marks were made under another split than {describe_split(asked_key)}: {listing}. "
                         "Under another split the fit and query sets and the flags differ from those the marks "
                         "were made against; run with the flags of the marks' split")
    others = sum(n for k, n in made.items() if k != asked_key)
    if others:
        print(f"warning: {others} mark(s) were made under other splits; they are scored under "
              f"{describe_split(asked_key)}")
    return asked


def _analysis(source, args, split: dict):
    from .. import analyze

    bars = _Bars(not args.quiet)
    analysis = analyze(source, settings=analysis_settings(args, split), scores=score_config(args), progress=bars,
                       cache_dir=args.cache_dir)
    bars.close()
    return analysis


def _precision_text(estimate) -> str:
    if estimate.n == 0:
        return "no outlier/fine mark among them yet"
    return (f"estimated precision {estimate.precision:.2f} (95% interval {estimate.low:.2f} to {estimate.high:.2f}, "
            f"from {estimate.n} marked outlier or fine)")


def export_review(args) -> int:
    """``export-review``: the marks of a source's data with its scores, as CSV."""
    from .. import open_source
    from .._files import atomic_write
    from ..review import review_csv, review_summary

    source = open_source(args.source)
    marks = _marks(args, source)
    analysis = _analysis(source, args, marks_split(args, marks))
    thresholds = {name: analysis.threshold_view(name, percentile=args.percentile).threshold
                  for name in analysis.scorers}
    atomic_write(args.out, review_csv(analysis, marks, thresholds, reviewed_only=not args.all).encode())
    counts = {v: sum(m.verdict == v for m in marks.values()) for v in VERDICTS}
    print(f"{len(marks)} review mark(s) for {analysis.source}: "
          + ", ".join(f"{n} {verdict}" for verdict, n in counts.items()))
    for name, threshold in thresholds.items():
        summary = review_summary(analysis, marks, name, threshold)
        print(f"{SCORERS[name].title} at the {args.percentile:g}th percentile: {summary.reviewed} of {summary.flagged} "
              f"flagged query item(s) reviewed; {_precision_text(summary.precision)}")
    unscored = len(set(marks) - set(analysis.ids))
    if unscored:
        print(f"{unscored} marked item(s) are not in this run (another split of the same data): written with empty "
              "scores")
    print(f"wrote {args.out}")
    return 0


def copy_marked_or_flagged(args) -> int:
    """``copy-items``: copy the original files of flagged and/or marked images into a folder."""
    from .. import in_out_split, open_source
    from ..review import copy_items, flagged_positions, marked_positions

    if not (args.flagged or args.verdict):
        raise ValueError("copy-items needs --flagged, --verdict or both, to say which images to copy")
    source = open_source(args.source)
    marks = _marks(args, source) if args.verdict else {}
    data, positions, what = source, None, []
    if args.flagged:  # scored: under the split the marks were made under, when marks are read
        data = analysis = _analysis(source, args, marks_split(args, marks) if marks else class_split(args))
        threshold = analysis.threshold_view(args.scorer, percentile=args.percentile).threshold
        positions = flagged_positions(analysis, args.scorer, threshold, args.set).tolist()
        what.append(f"{args.set} items flagged by the {args.scorer} score at the {args.percentile:g}th percentile")
    elif args.in_classes:
        data = in_out_split(source, **class_split(args))
    if args.verdict:
        marked = marked_positions(data.ids, marks, args.verdict).tolist()
        keep = set(marked)
        positions = marked if positions is None else [p for p in positions if p in keep]
        what.append(f"marked {' or '.join(dict.fromkeys(args.verdict))}")
    paths = copy_items(data, positions, args.dest)
    print(f"{len(paths)} image(s) ({' and '.join(what)}) are in {args.dest}, at their relative paths"
          + ("" if paths else "; nothing matched"))
    return 0
