"""``report``: one self-contained HTML file with the outlier scores and the data issues of a source,
for people who will not run the dashboard."""
from __future__ import annotations

from ._common import BUILTIN_HELP, _Bars, add_run_args, analyze_source, class_split, output, positive_int


def add_parsers(sub) -> None:
    """The ``report`` command."""
    p = sub.add_parser("report", help="write one self-contained HTML report (outlier scores and data issues, "
                                      "with histograms and thumbnails) to share")
    p.add_argument("source", help=f"image folder, .zip, .npz of features, or a {BUILTIN_HELP}")
    p.add_argument("--out", required=True, type=output(".html"),
                   help="output .html: one file, images inline, nothing fetched when it is opened")
    p.add_argument("--top", type=positive_int, default=12,
                   help="images shown per score, issue type and duplicate sets (default: 12)")
    add_run_args(p)
    p.set_defaults(run=run_report)


def run_report(args) -> int:
    """``report``: the source analyzed, every issue type it allows computed, the page written; the
    counts it shows are printed."""
    from .. import SCORERS
    from .._report import render_report
    from ..issues import issue_summary, summary_lines

    analysis = analyze_source(args.source, args, class_split(args))
    bars = _Bars(not args.quiet)
    card = issue_summary(analysis, analysis.issues(progress=bars))
    bars.close()
    print(f"source: {analysis.source}")
    for name in analysis.scorers:
        v = analysis.threshold_view(name, percentile=args.percentile)
        print(f"{SCORERS[name].title}: threshold {v.threshold:.6f} (the {args.percentile:g}th percentile of fit scores); "
              f"flagged fit {v.fit_flagged}/{v.fit_total}" + ("" if analysis.same_set else
                                                              f", query {v.query_flagged}/{v.query_total}"))
    print("\n".join(summary_lines(card)))
    html = render_report(analysis, card, percentile=args.percentile, top=args.top)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(html, encoding="utf-8")
    print(f"\nwrote {args.out} ({len(html.encode('utf-8')) / 1e6:.1f} MB)")
    return 0
