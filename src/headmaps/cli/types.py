"""`headmaps types MODEL [--validate]`: which heads are which circuit type, from parameters."""

from __future__ import annotations

import argparse

from . import checks
from .common import (
    add_big_model_args,
    add_model_args,
    add_projection_args,
    load_model,
    projection,
    save_kwargs,
)


def register(sub) -> None:
    """Add the ``types`` subcommand."""
    p = sub.add_parser("types",
                       help="label heads as previous-token, induction, copying... from parameters",
                       description="Score every head for six circuit types (previous-token, "
                                   "induction, "
                                   "duplicate-token, copying, copy suppression, successor) from "
                                   "its "
                                   "parameters; --validate runs the behavioural detectors and "
                                   "compares.")
    add_model_args(p)
    add_big_model_args(p)  # --validate runs the model
    add_projection_args(p)
    p.add_argument("--tokens", type=checks.positive_int, default=8192,
                   help="token subset for the eigenvalue and self-preference scores (default 8192)")
    p.add_argument("--no-relations", action="store_true",
                   help="skip the copying/successor relation scores (fast; copying from "
                        "eigenvalues alone)")
    p.add_argument("--validate", action="store_true",
                   help="also run the behavioural detectors (forward passes) and print the "
                        "agreement")
    p.add_argument("--out", default=None, help="write the result (parquet/csv + json header) here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the type table (and the validation)."""
    from ..headtypes import head_types

    m = load_model(args)
    res = head_types(m, n_tokens=args.tokens, relations=not args.no_relations,
                     projection=projection(args, m))
    print(f"head types of {m.model_id} from parameters ({res.seconds:.1f} s):")
    print(res.text())
    for name, why in res.skipped.items():
        print(f"  ({name} missing: {why})")
    if args.out:
        print(f"wrote {res.save(args.out, **save_kwargs(args))}")
    if args.validate:
        import time

        from ..experiments.behaviour import behaviour_scores
        from ..headtypes.validate import compare

        t0 = time.perf_counter()
        beh = behaviour_scores(m, relations=not args.no_relations and m.tokenizer is not None)
        secs = time.perf_counter() - t0
        print(f"\nbehavioural detectors ({secs:.1f} s; static pass "
              f"{secs / max(res.seconds, 1e-9):.1f}x faster):")
        print(compare(res, beh).to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    return 0
