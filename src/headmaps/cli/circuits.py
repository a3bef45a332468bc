"""`headmaps circuits MODEL`: which earlier heads each head reads (composition).

Per head its best partners by one kind (Q, K, V or the induction circuit), and the
induction heads' partners by the induction circuit.
"""

from __future__ import annotations

import argparse

from ..composition.compute import INDUCTION, KINDS, PATH_KINDS, canonical_kind
from . import checks
from .common import (
    add_model_args,
    add_projection_args,
    load_model,
    projection,
    save_folder,
    written,
)


def register(sub) -> None:
    """Add the ``circuits`` subcommand."""
    p = sub.add_parser("circuits", help="which earlier heads each head reads (composition)",
                       description="Q-, K- and V-composition of every pair of heads from "
                                   "parameters, raw (Elhage et al.) and through the projection's "
                                   "token sample; per head its best partners, and for each "
                                   "induction head its previous-token partners by the induction "
                                   "circuit (the K path read as a match of tokens).")
    add_model_args(p)
    add_projection_args(p)
    p.add_argument("--kind", default="K", type=canonical_kind, choices=list(KINDS),
                   help="composition kind to list partners by (default K; induction: the "
                        "induction circuit)")
    p.add_argument("--top", type=checks.int_at_least(1), default=3,
                   help="partners listed per head (default 3)")
    p.add_argument("--tokens", type=checks.int_at_least(2), default=2048,
                   help="token sample of the projection-based scores (default 2048)")
    p.add_argument("--seed", type=int, default=0, help="seed of the token sample")
    p.add_argument("--no-types", action="store_true",
                   help="skip the head types and the induction heads' partners (and the "
                        "induction circuit, about as costly again as Q, K and V)")
    p.add_argument("--out", default=None,
                   help="folder: composition.parquet, its JSON header and summary.md")
    p.set_defaults(func=run)


def induction_lines(res, types, n: int) -> list[str]:
    """Per induction-labelled head: its partners and the previous-token heads' ranks.

    Both by the induction circuit (:data:`~headmaps.composition.compute.INDUCTION`).
    """
    import numpy as np

    prev = set(types.heads_of("previous_token"))
    lines = []
    for layer, head in types.heads_of("induction"):
        if layer == 0:
            continue
        parts = [f"{a}.{b} ({s:.3g}{', previous-token' if (a, b) in prev else ''})"
                 for a, b, s in res.partners(layer, head, INDUCTION, n)]
        s = np.nan_to_num(res.grid(INDUCTION)[layer, head], nan=-np.inf)
        ranked = sorted((int((s > s[a, b]).sum()) + 1, a, b) for a, b in prev if a < layer)
        lines.append(f"  {layer}.{head}: partners {', '.join(parts)}")
        lines.append("      previous-token heads by rank: " + (
            ", ".join(f"{a}.{b} (rank {r})" for r, a, b in ranked) or "none in earlier layers"))
    return lines or ["  (no head is labelled induction from parameters)"]


def run(args: argparse.Namespace) -> int:
    """Print every head's best partners (and the induction heads'), optionally save."""
    from ..composition import composition
    from ..io import markdown_table

    m = load_model(args)
    proj = projection(args, m)
    kinds = [*PATH_KINDS, *([] if args.no_types and args.kind != INDUCTION else [INDUCTION])]
    res = composition(m, kinds=kinds, n_tokens=args.tokens, seed=args.seed, projection=proj,
                      progress=True)
    table = res.partner_table(args.kind, args.top)
    print(f"{args.kind} composition of {m.model_id} ({res.seconds:.1f} s, "
          f"{res.params['n_tokens']} sample tokens, projection {res.preset}): the {args.top} "
          "best earlier partners of each head")
    print(table.to_string(index=False))
    lines: list[str] = []
    if not args.no_types:
        from ..headtypes import head_types

        types = head_types(m, relations=False, projection=proj)
        lines = ["", "induction heads (from parameters) and their partners by the induction "
                     "circuit:",
                 *induction_lines(res, types, args.top)]
        print("\n".join(lines))
    if args.out:
        summary = [res.summary_markdown(), "", f"## Best {args.kind} partners per head", "",
                   markdown_table(table), *(["", "```", *lines[1:], "```"] if lines
                                                      else [])]
        print(written(save_folder(args.out, res, "\n".join(summary) + "\n", args)))
    return 0
