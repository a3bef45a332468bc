"""`headmaps head MODEL L.H`: a head's salient operations as a table, and a description."""

from __future__ import annotations

import argparse

from ..models import parse_head
from . import common


def register(sub) -> None:
    """Add the ``head`` subcommand."""
    p = sub.add_parser("head", help="salient operations of one head, and a description",
                       description="Print head LAYER.HEAD's most salient source tokens and their "
                                   "top targets (approach B of MAPS); describe the pattern.")
    common.add_model_args(p)
    p.add_argument("head", metavar="LAYER.HEAD",
                   help="the head, e.g. 23.4 (Hugging Face numbering)")
    common.add_salient_args(p)
    common.add_describer_args(p)
    p.add_argument("--json", action="store_true",
                   help="print the result as JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Compute, print and describe one head."""
    import json

    from ..salient import salient_operations

    parse_head(args.head)  # format errors before loading anything
    describer = common.make_describer(args)
    model = common.load_model(args)
    layer, head = parse_head(args.head, model)
    skip = False if args.skip_nonwords == "none" else args.skip_nonwords
    ops = salient_operations(model, layer, head, n_tokens=args.tokens, n_mappings=args.mappings,
                             skip_nonwords=skip, **common.projection_kwargs(args))
    desc = describer.describe(ops) if describer is not None else None
    if args.json:
        out = ops.to_dict()
        out["description"] = desc.to_dict() if desc is not None else None
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0
    print(f"head {ops.name} of {model.model_id} (projection {common.projection_label(ops)}, "
          f"non-words skipped: {ops.skip_nonwords})")
    print(ops.table())
    if desc is not None:
        print()
        print(f"description ({desc.describer}): {desc.text}")
        if desc.input_strings and desc.input_strings not in desc.text:
            print(f"inputs: {desc.input_strings}")
        if not desc.unclear:
            print(f"confidence: {desc.confidence:.2f}")
        if desc.error:
            print(f"error: {desc.error}")
    return 0
