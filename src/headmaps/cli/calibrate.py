"""`headmaps calibrate MODEL`: choose the projection that agrees best with inference."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import checks, common


def register(sub) -> None:
    """Add the ``calibrate`` subcommand."""
    from ..experiments.calibrate import DEFAULT_MAX_PAIRS, DEFAULT_N_TEMPLATES, RULE
    from ..relations import MIN_PAIRS

    p = sub.add_parser(
        "calibrate", help="pick the projection that agrees best with inference on this model",
        description="Run a small seeded correlation experiment, score every candidate "
                    f"projection against it (rule: {RULE}) and store the winner; scan, head, "
                    "describe, validate and report then use it unless a projection is given.")
    common.add_model_args(p)
    common.add_big_model_args(p)
    p.add_argument("--relations", default=None,
                   help="'all', or comma-separated built-in names / paths to JSON or CSV sets "
                        "(default: eight relations, two per category)")
    p.add_argument("--max-pairs", type=checks.nonnegative_int, default=DEFAULT_MAX_PAIRS,
                   help=f"pairs per relation, a seeded subset (default {DEFAULT_MAX_PAIRS}; 0 for "
                        "all)")
    p.add_argument("--templates", type=checks.positive_int, default=DEFAULT_N_TEMPLATES,
                   help=f"how many of the neutral templates (default {DEFAULT_N_TEMPLATES})")
    p.add_argument("--template-file", default=None, metavar="FILE",
                   help="templates with one <X> instead (as for validate --templates)")
    p.add_argument("--k", type=checks.positive_int, default=None,
                   help="top-k (default: per relation)")
    p.add_argument("--min-pairs", type=checks.positive_int, default=MIN_PAIRS,
                   help=f"single-token pairs a relation needs (default {MIN_PAIRS})")
    p.add_argument("--seed", type=checks.nonnegative_int, default=0, help="seed of the pair subset")
    p.add_argument("--batch-size", type=checks.positive_int, default=32,
                   help="prompts per forward pass")
    p.add_argument("--out", type=Path, default=None,
                   help="also write the calibration to this .json file")
    p.add_argument("--no-store", action="store_true",
                   help="do not store it in the headmaps cache (only --out)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Calibrate, print the candidates and store the choice."""
    from ..experiments.calibrate import calibrate
    from ..projection.calibration import calibration_path
    from .validate import read_templates

    if not args.no_store:
        from ..projection.calibration import check_store_writable

        check_store_writable()
    model = common.load_model(args)
    templates = read_templates(args.template_file) if args.template_file else None
    rels = common.parse_relations(args.relations) if args.relations else None
    cal = calibrate(model, rels, templates,
                    max_pairs=args.max_pairs or None, n_templates=args.templates, k=args.k,
                    min_pairs=args.min_pairs, seed=args.seed, batch_size=args.batch_size,
                    save=not args.no_store,
                    progress=True)
    table = cal.to_frame()[["name", "median_r", "median_r_with_context", "n_relations"]]
    print(f"{model.model_id}: {len(cal.candidates)} candidate projections, "
          f"{len(cal.sample['relations'])} relations, {cal.n_pairs} pairs x "
          f"{len(cal.sample['templates'])} templates, seed {args.seed} ({cal.seconds:.0f} s)")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"projection: {cal.label()}")
    if not args.no_store:
        print(f"stored in {calibration_path(model)}")
    if args.out is not None:
        print(f"wrote {cal.save(args.out)}")
    return 0
