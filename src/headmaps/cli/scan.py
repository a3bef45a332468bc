"""`headmaps scan MODEL`: every head against every relation; tables, files and heatmaps."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import checks, common
from .common import (
    add_model_args,
    add_projection_args,
    add_relation_args,
    load_model,
)


def register(sub) -> None:
    """Add the ``scan`` subcommand."""
    p = sub.add_parser(
        "scan", help="score every head against the relation library (approach A)",
        description="Score every attention head against relations; write scores, a summary and "
                    "heatmaps.",
    )
    add_model_args(p)
    add_relation_args(p)
    add_projection_args(p)
    p.add_argument("--exact-dense", action="store_true",
                   help="compute every logit instead of the exact early exit (same scores, slower; "
                        "for comparison)")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for scores.parquet, summary.md, heatmaps")
    p.add_argument("--format", choices=["parquet", "csv"], default="parquet", help="table format")
    p.add_argument("--no-plots", action="store_true", help="skip the heatmap PNGs")
    p.add_argument("--top", type=checks.positive_int, default=3,
                   help="heads per relation in the printed table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the scan and write its outputs."""
    from ..errors import HeadmapsError
    from ..scoring import scan
    from ..scoring.analysis import summary_table

    model = load_model(args)
    res = scan(model, common.parse_relations(args.relations), k=args.k, tau=args.tau,
               min_pairs=args.min_pairs, progress=True, exact_dense=args.exact_dense,
               projection=common.projection(args, model))
    if not res.relations:
        reasons = "; ".join(f"{rel}: {why}" for rel, why in res.skipped.items())
        raise HeadmapsError(f"no relation could be scored on {model.model_id}, nothing written "
                            f"({reasons}). Pick relations with enough single-token pairs "
                            f"(`headmaps relations coverage MODEL`) or lower --min-pairs.")
    from .info import warn_zero_ov

    warn_zero_ov(model)
    table = summary_table(res, n=args.top)
    print(f"{model.model_id}: {len(res.relations)} relations scored, {len(res.skipped)} skipped "
          f"(projection {common.projection_label(res)}, tau {res.tau})")
    if len(table):
        print(table.to_string(index=False))
    for rel, why in res.skipped.items():
        print(f"skipped {rel}: {why}")
    if args.out is not None:
        from ..io import staged_folder, write_text

        out = Path(args.out)
        with staged_folder(out) as tmp:  # every file or none
            path = res.save(tmp / f"scores.{args.format}", **common.save_kwargs(args))
            write_text(tmp / "summary.md", res.summary_markdown())
            written = [path, tmp / "summary.md"]
            if not args.no_plots:
                from ..explorer.plots import relation_heatmaps

                written += relation_heatmaps(res, tmp / "heatmaps")
        print(f"wrote {len(written)} files under {out}/ (scores: {path.name}, summary.md"
              + (", heatmaps/*.png)" if not args.no_plots else ")"))
    return 0
