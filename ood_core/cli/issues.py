"""``issues``: a source's data issues (exact and near duplicates, label issues, image properties) as a
CSV of one row per item and issue type, a ``.json`` card beside it, and a table of counts."""
from __future__ import annotations

import argparse
import json

from ._common import (BUILTIN_HELP, _Bars, add_class_args, add_embed_args, add_score_args, analyze_source,
                      class_split, output, print_skipped)


def issue_types(text: str) -> list[str]:
    """A flag type: comma-separated issue type names, each checked against the registry."""
    from ..issues import get_issue_type

    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected issue types separated by commas, e.g. dark,near_duplicate")
    try:
        return [get_issue_type(name).name for name in names]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parsers(sub) -> None:
    """The ``issues`` command."""
    from ..issues import list_issue_types

    p = sub.add_parser("issues", help="find data issues: exact and near duplicates, label issues, dark, light, "
                                      "blurry, low-information, grayscale and odd-sized images")
    p.add_argument("source", help=f"image folder, .zip, .npz of features, or a {BUILTIN_HELP}")
    p.add_argument("--out", required=True, type=output(".csv"),
                   help="output .csv: one row per item and issue type (id, issue, score, flagged, detail; "
                        "score in [0, 1], lower = more severe, flagged = score < the type's threshold; an item "
                        "a type cannot score has score and flagged empty, and why in detail); the "
                        "settings, each type's threshold and reason and the counts go to a .json beside it")
    p.add_argument("--types", type=issue_types, default=None,
                   help=f"comma-separated issue types (default: every type the source allows: "
                        f"{', '.join(list_issue_types())}; image types need images, label issues class labels)")
    add_class_args(p, "default: use the source's own split, if any")
    add_embed_args(p)
    add_score_args(p, percentile_flag=False)
    p.set_defaults(run=run_issues)


def run_issues(args) -> int:
    """``issues``: the source analyzed, its issue table written as CSV + JSON, the counts printed."""
    from .._export import to_csv
    from ..issues import issue_summary, list_issue_types, summary_lines

    analysis = analyze_source(args.source, args, class_split(args))
    bars = _Bars(not args.quiet)
    table = analysis.issues(args.types, progress=bars)
    card = issue_summary(analysis, table)
    bars.close()
    print(f"source: {analysis.source}")
    print(f"items: {len(analysis.ids)} (fit {len(analysis.fit_index)}, query {len(analysis.query_index)}"
          + (", the same items" if analysis.same_set else "") + ")"
          + (f"   skipped files: {len(analysis.skipped)}" if analysis.skipped else ""))
    print_skipped(analysis.skipped)
    for name in list_issue_types():  # left out of the table (only when --types did not ask for them)
        if name not in card["types"] and args.types is None:
            print(f"not scored: {name}: {analysis.issue_scores(name).info.get('unavailable', 'no item has a score')}")
    print("\n".join(summary_lines(card)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"id": r["id"], "issue": r["issue"], "score": float(r["score"]), "flagged": bool(r["flagged"]),
             "detail": r["detail"]} for r in table]
    # an unscored item is neither flagged nor clear: its row says so, with why (score and flagged empty)
    rows += [{"id": u["id"], "issue": name, "score": "", "flagged": "", "detail": f"not scored: {u['why']}"}
             for name, t in card["types"].items() for u in t["unscored_items"]]
    args.out.write_text(to_csv(rows) if rows else "id,issue,score,flagged,detail\n")
    json_path = args.out.with_suffix(".json")
    json_path.write_text(json.dumps(card, indent=2, default=str))
    print(f"\nwrote {args.out} ({len(rows)} rows) and {json_path}")
    return 0
