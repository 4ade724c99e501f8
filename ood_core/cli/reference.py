"""``fit`` (a saved reference), ``check`` (a new batch against its frozen thresholds) and ``history``
(the checks logged beside a reference); see docs/REFERENCE.md."""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from ..settings import DEFAULT_BATCH_SIZE, DEFAULT_DEVICE
from ._common import (BUILTIN_HELP, _Bars, _number, add_embed_args, add_score_args, name_list, output,
                      positive_int, print_skipped, run_config, score_config)

EXIT_ALARM = 1  # `check --fail-on-alarm` when the alarm is raised


def alpha(text: str) -> float:
    """A flag type: a significance level strictly between 0 and 1."""
    value = _number(text, lo=0, hi=1, lo_open=True)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1; got {text!r}")
    return value


def add_parsers(sub) -> None:
    """The ``fit``, ``check`` and ``history`` commands."""
    p = sub.add_parser("fit", help="fit a reference on in-distribution images and save it (to check new batches)",
                       description="Embed the in-distribution images of SOURCE once, fit both scorers, freeze each "
                                   "threshold at --percentile of its fit scores and save it all in a folder that "
                                   "`check` reads (arrays and JSON only; it can be moved or copied).")
    p.add_argument("source", help=f"image folder, .zip of images, .npz of features, or a {BUILTIN_HELP}; only its "
                                  "train items when it has a train/test split")
    p.add_argument("--save", required=True, metavar="REF/", help="the folder to save the reference in (must be new "
                                                                  "or empty, unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace a reference already saved in --save "
                                                            "(its history goes with it)")
    p.add_argument("--in-classes", type=name_list, default=None,
                   help="comma-separated classes the reference is fitted on (default: every class)")
    add_embed_args(p)
    add_score_args(p)
    p.set_defaults(run=run_fit)

    p = sub.add_parser("check", help="check a new batch against a saved reference's frozen thresholds",
                       description="Score BATCH with the reference's frozen scorers (the batch is embedded exactly "
                                   "as the reference was; the reference is never embedded again) and test each "
                                   "flagged count against what an in-distribution batch of its size flags. Writes "
                                   "a CSV of each item's scores and flags and a .json card beside it, and logs the "
                                   "check in the reference's history. The alarm: the smallest scorer p-value, "
                                   "times the number of scorers, below --alpha.")
    p.add_argument("reference", metavar="REF/", help="a folder saved by `fit`")
    p.add_argument("batch", help="image folder or .zip of images (or a .npz of features, for a reference fitted on "
                                 "features)")
    p.add_argument("--out", required=True, type=output(".csv"),
                   help="output .csv; the batch's card (rates, interval, p-values, alarm) goes to a .json beside it")
    p.add_argument("--alpha", type=alpha, default=0.01,
                   help="significance level of the alarm: over many in-distribution batches it is raised about "
                        "this often (default: 0.01)")
    p.add_argument("--fail-on-alarm", action="store_true",
                   help=f"exit with status {EXIT_ALARM} when the alarm is raised (for pipelines; default: exit 0)")
    p.add_argument("--name", default=None, help="what to call the batch in the card and the history "
                                                "(default: its path)")
    g = p.add_argument_group("embedding (the model and its settings are the reference's)")
    g.add_argument("--weights", default=None,
                   help="the weights file, for a reference embedded with weights from a file (bundled and hub "
                        "weights need nothing)")
    g.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE,
                   help=f"images per forward pass (default: {DEFAULT_BATCH_SIZE})")
    g.add_argument("--device", default=DEFAULT_DEVICE, help=f"'auto', 'cpu' or 'cuda' (default: {DEFAULT_DEVICE})")
    g.add_argument("--cache-dir", default=None, help="embedding cache folder (default: the cache_dir setting; see "
                                                     "`ood-explorer config`)")
    p.set_defaults(run=run_check)

    p = sub.add_parser("history", help="list the checks logged beside a saved reference")
    p.add_argument("reference", metavar="REF/", help="a folder saved by `fit`")
    p.add_argument("--json", action="store_true", help="print every check with its full card as JSON")
    p.set_defaults(run=run_history)


def _pct(rate: float | None) -> str:
    return "-" if rate is None or (isinstance(rate, float) and math.isnan(rate)) else f"{rate:.1%}"


def run_fit(args) -> int:
    """``fit``: the reference fitted, saved, and its thresholds and expected rates printed."""
    from ..reference import Reference

    if args.percentile in (0, 100):
        raise ValueError(f"--percentile must lie strictly between 0 and 100 for a reference; got {args.percentile:g}")
    save = Path(args.save)
    if save.exists() and not save.is_dir():
        raise ValueError(f"--save {save}: exists and is not a folder")
    if save.is_dir() and any(save.iterdir()) and not args.overwrite:
        raise ValueError(f"--save {save}: the folder is not empty; choose a new folder or pass --overwrite")
    bars = _Bars(not args.quiet)
    start = time.perf_counter()
    ref = Reference.fit(args.source, settings=run_config(args), percentile=args.percentile,
                        scores=score_config(args), cache_dir=args.cache_dir, progress=bars)
    bars.close()
    folder = ref.save(save, overwrite=args.overwrite)
    print(f"fitted in {time.perf_counter() - start:.1f} s")
    settings = ref.settings
    print(f"source: {settings['source']}"
          + (f"   classes: {', '.join(settings['in_classes'])}" if settings["in_classes"] else ""))
    embedding = ref.embed_config
    print(f"fit items: {ref.n_fit:,}" + (f"   skipped files: {len(ref.skipped)}" if ref.skipped else "")
          + (f"   model: {embedding['model']} at {embedding['image_size']} px, backend {embedding['backend']}"
             if embedding else "   (precomputed features)"))
    print_skipped(ref.skipped)
    if "prediction" not in ref.scorers:
        print(f"prediction score: none ({settings.get('prediction_missing', 'no class labels')}); "
              "the feature score works without them")
    for scorer in ref.scorers:
        expected = ref.expected_flag_rate(scorer)
        print(f"\n{scorer} score: threshold {ref.thresholds[scorer]:.6f} (the {ref.percentile:g}th percentile of "
              f"the fit scores); expected flagged rate {_pct(ref.expected_rate(scorer))}")
        print(f"  {expected['text']}")
    print(f"\nsaved the reference to {folder} (digest {ref.digest[:16]})")
    return 0


def run_check(args) -> int:
    """``check``: a batch scored and tested; CSV + JSON card written; 1 on an alarm with --fail-on-alarm."""
    from ..reference import Reference

    ref = Reference.load(args.reference, device=args.device, weights=args.weights)
    bars = _Bars(not args.quiet)
    start = time.perf_counter()
    result = ref.check(args.batch, alpha=args.alpha, name=args.name, batch_size=args.batch_size,
                       cache_dir=args.cache_dir, progress=bars)
    bars.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(result.to_csv())
    card_path = args.out.with_suffix(".json")
    card_path.write_text(json.dumps(result.card(), indent=2))
    print(f"checked in {time.perf_counter() - start:.1f} s")
    print(f"batch: {result.name}   items: {result.n:,}" + (f"   backend: {result.backend}" if result.backend else "")
          + (f"   skipped files: {len(result.skipped)}" if result.skipped else ""))
    print_skipped(result.skipped)
    for scorer, test in result.tests.items():
        lo, hi = test.interval
        print(f"{scorer} score: flagged {test.flagged}/{test.n} ({_pct(test.flagged_rate)}); expected "
              f"{_pct(test.expected_rate)}, {result.level:.0%} of in-distribution batches of {test.n:,} flag "
              f"{_pct(lo)} to {_pct(hi)}; p = {test.p_value:.3g}" + ("  (too many)" if test.alarm else ""))
    verdict = "ALARM" if result.alarm else "no alarm"
    print(f"{verdict}: p = {result.p_value:.3g} {'<' if result.alarm else '>='} alpha = {result.alpha:g} "
          f"(smallest scorer p-value x {len(result.tests)})")
    if result.history_id is not None:
        print(f"logged as check {result.history_id} in {Path(args.reference) / 'history.sqlite'}")
    print(f"wrote {args.out} and {card_path}")
    return EXIT_ALARM if result.alarm and args.fail_on_alarm else 0


def run_history(args) -> int:
    """``history``: one line per logged check (or all of them as JSON)."""
    from ..reference import read_history

    rows = read_history(args.reference)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no check of {args.reference} yet")
        return 0
    scorers = [s for s in ("feature", "prediction") if f"{s}_flagged_rate" in rows[-1]]
    header = ["id", "checked at (UTC)", "n", *(f"{s} flagged (expected)" for s in scorers), "p-value", "alarm",
              "backend", "batch"]
    table = [header]
    for row in rows:
        table.append([str(row["id"]), row["checked_at"][:19].replace("T", " "), f"{row['n']:,}",
                      *(f"{_pct(row.get(f'{s}_flagged_rate'))} ({_pct(row.get(f'{s}_expected_rate'))})"
                        for s in scorers),
                      f"{row['p_value']:.3g}", "ALARM" if row["alarm"] else "no",
                      str(row["card"].get("batch", {}).get("backend") or "-"), row["batch_name"]])
    widths = [max(len(r[i]) for r in table) for i in range(len(header) - 1)]
    for r in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)) + "  " + r[-1])
    print(f"\n{len(rows)} check(s); {sum(r['alarm'] for r in rows)} alarm(s)")
    return 0
