"""`headmaps circuits MODEL`: which earlier heads each head reads (Q/K/V-composition)."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import checks
from .common import (
    add_model_args,
    add_projection_args,
    load_model,
    projection,
    save_kwargs,
)


def register(sub) -> None:
    """Add the ``circuits`` subcommand."""
    p = sub.add_parser("circuits", help="which earlier heads each head reads (composition)",
                       description="Q-, K- and V-composition of every pair of heads from "
                                   "parameters, raw (Elhage et al.) and through the projection's "
                                   "token sample; per head its best partners, and for each "
                                   "induction head its previous-token partners by K-composition.")
    add_model_args(p)
    add_projection_args(p)
    p.add_argument("--kind", default="K", type=str.upper, choices=["Q", "K", "V"],
                   help="composition kind to list partners by (default K)")
    p.add_argument("--top", type=checks.int_at_least(1), default=3,
                   help="partners listed per head (default 3)")
    p.add_argument("--tokens", type=checks.int_at_least(2), default=2048,
                   help="token sample of the projection-based scores (default 2048)")
    p.add_argument("--seed", type=int, default=0, help="seed of the token sample")
    p.add_argument("--no-types", action="store_true",
                   help="skip the head types (and the induction heads' partners)")
    p.add_argument("--out", default=None,
                   help="folder: composition.parquet, its JSON header and summary.md")
    p.set_defaults(func=run)


def induction_lines(res, types, n: int) -> list[str]:
    """Per induction-labelled head: its K-partners, and the previous-token heads by rank."""
    import numpy as np

    prev = set(types.heads_of("previous_token"))
    lines = []
    for layer, head in types.heads_of("induction"):
        if layer == 0:
            continue
        parts = [f"{a}.{b} ({s:.3g}{', previous-token' if (a, b) in prev else ''})"
                 for a, b, s in res.partners(layer, head, "K", n)]
        s = np.nan_to_num(res.grid("K")[layer, head], nan=-np.inf)
        ranked = sorted((int((s > s[a, b]).sum()) + 1, a, b) for a, b in prev if a < layer)
        lines.append(f"  {layer}.{head}: K-partners {', '.join(parts)}")
        lines.append("      previous-token heads by K-composition rank: " + (
            ", ".join(f"{a}.{b} (rank {r})" for r, a, b in ranked) or "none in earlier layers"))
    return lines or ["  (no head is labelled induction from parameters)"]


def run(args: argparse.Namespace) -> int:
    """Print every head's best partners (and the induction heads'), optionally save."""
    from ..composition import composition
    from ..io import markdown_table, write_text

    m = load_model(args)
    proj = projection(args, m)
    res = composition(m, n_tokens=args.tokens, seed=args.seed, projection=proj)
    table = res.partner_table(args.kind, args.top)
    print(f"{args.kind}-composition of {m.model_id} ({res.seconds:.1f} s, "
          f"{res.params['n_tokens']} sample tokens, projection {res.preset}): the {args.top} "
          "best earlier partners of each head")
    print(table.to_string(index=False))
    lines: list[str] = []
    if not args.no_types:
        from ..headtypes import head_types

        types = head_types(m, relations=False, projection=proj)
        lines = ["", "induction heads (from parameters) and their previous-token partners:",
                 *induction_lines(res, types, args.top)]
        print("\n".join(lines))
    if args.out:
        out = Path(args.out)
        path = res.save(out, **save_kwargs(args))
        summary = [res.summary_markdown(), "", f"## Best {args.kind}-partners per head", "",
                   markdown_table(table), *(["", "```", *lines[1:], "```"] if lines
                                                      else [])]
        write_text(out / "summary.md", "\n".join(summary) + "\n")
        print(f"wrote {path}, its JSON header and {out / 'summary.md'}")
    return 0
