"""`headmaps analyse MODEL --out DIR`: everything the report shows, computed once and saved."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import (
    add_analyse_args,
    add_model_args,
    analyse_model,
    projection_label,
    save_kwargs,
)


def register(sub) -> None:
    """Add the ``analyse`` subcommand."""
    p = sub.add_parser(
        "analyse", help="scan, salient operations, descriptions, QK half and head types, saved",
        description="Compute everything the report shows about every head (headmaps.analyse) "
                    "and save it as one head report folder; `headmaps report --from DIR` renders "
                    "it without the model.")
    add_model_args(p)
    p.add_argument("--out", type=Path, required=True, help="folder to write the head report to")
    add_analyse_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Analyse and save."""
    from ..io import staged_folder

    res = analyse_model(args)
    with staged_folder(args.out) as tmp:  # every part or none
        res.save(tmp, **save_kwargs(args))
    folder = args.out
    took = ", ".join(f"{k} {v:.1f} s" for k, v in res.seconds.items())
    print(f"wrote {folder}/ ({', '.join(res.parts())}) for {res.model_id} "
          f"[{res.scan.n_layers} layers x {res.scan.n_heads} heads, projection "
          f"{projection_label(res.scan)}]" + (f"; {took}" if took else ""))
    return 0
