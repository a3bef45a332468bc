"""`headmaps plot --scan DIR -o out.png`: publication-ready heatmaps and per-layer plots."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import checks


def register(sub) -> None:
    """Add the ``plot`` subcommand."""
    p = sub.add_parser(
        "plot", help="static heatmaps / per-layer distributions of a saved scan (PNG, SVG, PDF)",
        description="Plot a saved scan with matplotlib. With one --relation: its layers x heads "
                    "heatmap; otherwise small multiples of every relation (or the ones given). "
                    "--kind layers plots how many heads of each layer implement each relation. "
                    "Cells with score >= tau are outlined. The format follows the suffix of -o.")
    p.add_argument("--scan", type=Path, required=True,
                   help="a saved scan (folder with scores.parquet, or the file)")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="output file: .png, .svg or .pdf")
    p.add_argument("--relation", action="append", default=None, metavar="NAME",
                   help="relation to plot (repeat for several; default: all)")
    p.add_argument("--kind", choices=["heatmap", "layers"], default="heatmap",
                   help="heatmap (default) or per-layer distribution of relation heads")
    p.add_argument("--suppression", action="store_true", help="plot suppression scores")
    p.add_argument("--dpi", type=checks.positive_int, default=200,
                   help="resolution of PNG output (default 200)")
    p.add_argument("--title", default=None, help="figure title")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Draw the plot."""
    from ..explorer import plots
    from ..scoring import ScanResult

    scan = ScanResult.load(args.scan)
    rels = args.relation
    kw = dict(suppression=args.suppression, title=args.title, dpi=args.dpi)
    if args.kind == "layers":
        path = plots.plot_layer_distribution(scan, args.output, rels, **kw)
    elif rels and len(rels) == 1:
        path = plots.plot_heatmap(scan, args.output, rels[0], **kw)
    else:
        path = plots.plot_heatmaps(scan, args.output, rels, **kw)
    print(f"wrote {path}")
    return 0
