"""`headmaps info MODEL`: architecture, sizes, origin and load time."""

from __future__ import annotations

import argparse

from .common import add_model_args, load_model


def register(sub) -> None:
    """Add the ``info`` subcommand."""
    p = sub.add_parser("info", help="print a model's architecture and sizes",
                       description="Print architecture, layers, heads, KV heads, sizes, origin and "
                                   "load time.")
    add_model_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the model summary."""
    from ..projection import chunking
    from ..projection.precision import STREAM_DTYPES, choose, describe

    m = load_model(args)
    info = m.info()
    # what the default stream runs in here (a property of this machine, not of the model)
    dtype, reason = choose("auto", m.E.device)
    info["stream_dtype"] = describe(dtype, reason)
    info["stream_chunk"] = chunking.describe(*chunking.mlp_shape(m), STREAM_DTYPES[dtype],
                                             m.E.device)
    width = max(map(len, info))
    for key, value in info.items():
        if key == "load_seconds":
            value = f"{value:.2f} s"
        print(f"{key:<{width}}  {value}")
    warn_zero_ov(m)
    return 0


def warn_zero_ov(model) -> None:
    """Print one warning line naming the heads whose OV product is zero, if any."""
    import sys

    dead = model.zero_ov_heads()
    if dead:
        names = ", ".join(f"{layer}.{head}" for layer, head in dead[:20])
        more = f" and {len(dead) - 20} more" if len(dead) > 20 else ""
        print(f"warning: {len(dead)} heads have a zero OV product (W_V W_O = 0; pruned or "
              f"ablated?): {names}{more}; they score 0 for every relation", file=sys.stderr)
