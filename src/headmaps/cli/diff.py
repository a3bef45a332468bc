"""`headmaps diff MODEL_A MODEL_B`: what changed in every head between two checkpoints."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..diff.noise import DEFAULT_ALPHA, DEFAULT_N_BOOT
from . import checks, common


def register(sub) -> None:
    """Add the ``diff`` subcommand."""
    p = sub.add_parser(
        "diff", help="compare every head of two checkpoints of one architecture",
        description="Compare two models of the same shape head by head (L.H with L.H): relation "
                    "score changes beyond a bootstrap noise floor, weight-space changes, salient "
                    "operations and positional profiles.",
    )
    p.add_argument("model_a", help="the first model (base): alias, hub id, folder or .gguf file")
    p.add_argument("model_b", help="the second model (fine-tuned, later checkpoint...)")
    common.add_load_args(p)
    common.add_relation_args(p, none=True,
                             tau_help="threshold a head crosses to gain or lose a relation",
                             pairs_help="pairs a relation needs, single tokens in both models")
    p.add_argument("--n-boot", type=checks.positive_int, default=DEFAULT_N_BOOT,
                   help=f"bootstrap draws of the noise floor (default {DEFAULT_N_BOOT})")
    p.add_argument("--alpha", type=checks.fraction, default=DEFAULT_ALPHA,
                   help=f"the floor is the 1 - alpha quantile (default {DEFAULT_ALPHA})")
    p.add_argument("--seed", type=checks.nonnegative_int, default=0,
                   help="seed of the bootstrap (default 0)")
    p.add_argument("--no-salient", action="store_true", help="skip the salient operations")
    p.add_argument("--no-qk", action="store_true", help="skip the positional profiles")
    p.add_argument("--types", action="store_true",
                   help="also compare the head types (previous-token, induction, copying...)")
    common.add_projection_args(p)
    p.add_argument("--out", type=Path, default=None,
                   help="folder for diff.parquet, heads.parquet, summary.md and diff.png")
    p.add_argument("--html", type=checks.html_file, default=None, metavar="FILE",
                   help="also write the explorer's diff view (one self-contained HTML file): "
                        "both models' scores per head, the change as the colour, both sides' "
                        "salient operations and positional profiles per head")
    p.add_argument("--top", type=checks.positive_int, default=5,
                   help="heads per relation in the summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load both models, diff them, print the summary and write the outputs."""
    from ..diff import diff
    from ..models import load

    text = args.relations.strip()
    relations = None if text == "none" else common.parse_relations(text)
    opts = common.load_options(args)
    a = load(args.model_a, **opts)
    b = load(args.model_b, **opts)
    res = diff(a, b, relations, k=args.k, tau=args.tau, min_pairs=args.min_pairs,
               n_boot=args.n_boot, alpha=args.alpha, seed=args.seed, salient=not args.no_salient,
               qk=not args.no_qk, types=args.types, progress=True,
               projection=common.projection(args, a))
    summary = res.summary_markdown(n=args.top)
    print(summary, end="")
    if args.out is not None:
        out = common.save_folder(args.out, res, summary, args, res.figure, "diff.png")
        print(common.written(out))
    if args.html is not None:
        from ..explorer.diffview import write_diff_report

        path = write_diff_report(args.html, res)
        print(f"wrote the diff view {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0
