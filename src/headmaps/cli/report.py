"""`headmaps report MODEL -o report.html`: the self-contained HTML explorer of every head."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_analyse_args, add_model_args, analyse_model, projection_label


def register(sub) -> None:
    """Add the ``report`` subcommand."""
    p = sub.add_parser(
        "report", help="write the HTML explorer of every head (offline, one file)",
        description="Write one self-contained HTML page (no network requests) with the model card, "
                    "a layers x heads heatmap per relation, a sortable table of every head, a "
                    "panel per head (salient operations, description, what it attends to, head "
                    "types, scores) and summaries. Analyses the model now (headmaps analyse) "
                    "unless --from gives a saved head report.")
    add_model_args(p)
    p.add_argument("-o", "--output", type=Path, default=Path("report.html"),
                   help="HTML file (default report.html)")
    p.add_argument("--from", dest="from_", type=Path, default=None, metavar="DIR",
                   help="a head report saved by `headmaps analyse --out DIR`: render it, load "
                        "no model; a diff saved by `headmaps diff A B --out DIR` opens the "
                        "diff view")
    add_analyse_args(p)
    p.add_argument("--extras", type=Path, default=None, metavar="JSON",
                   help="extra per-head data in the report schema ({'L.H': {...}}), merged last")
    p.add_argument("--title", default=None, help="page title (default: headmaps · MODEL)")
    p.add_argument("--show-paths", action="store_true",
                   help="keep absolute local paths (model file, cache folder) in the page; "
                        "by default it shows file names only, so it can be shared")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the report."""
    from ..explorer import load_extras, report
    from ..headreport import HeadReport

    if args.from_ is not None:
        from ..explorer.diffview import is_diff, write_diff_report

        if is_diff(args.from_):
            path = write_diff_report(args.output, args.from_, title=args.title,
                                     show_paths=args.show_paths)
            print(f"wrote the diff view {path} ({path.stat().st_size / 1e6:.1f} MB)")
            return 0
    result = HeadReport.load(args.from_) if args.from_ is not None else analyse_model(args)
    path = report(result, args.output, title=args.title, show_paths=args.show_paths,
                  extras=load_extras(args.extras) if args.extras is not None else None)
    scan = result.scan
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): {scan.n_layers} layers x "
          f"{scan.n_heads} heads, {len(scan.relations)} relations (projection "
          f"{projection_label(scan)}), parts: {', '.join(result.parts())}")
    return 0
