"""Argument helpers shared by subcommands."""

from __future__ import annotations

import argparse

from ..models import DEFAULT_MODEL


def add_model_args(p: argparse.ArgumentParser, *, optional: bool = True) -> None:
    """MODEL positional (alias, hub id, folder, .gguf) plus --device/--dtype."""
    if optional:
        p.add_argument("model", nargs="?", default=DEFAULT_MODEL,
                       help=f"alias, hub id, folder or .gguf file (default: {DEFAULT_MODEL})")
    else:
        p.add_argument("model", help="alias, hub id, folder or .gguf file")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default cpu)")
    p.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16 (default: checkpoint's)")
    p.add_argument("--lazy", action="store_true",
                   help="read a safetensors checkpoint tensor by tensor (big models)")


def load_model(args: argparse.Namespace):
    """Load the model named by ``args`` (see :func:`add_model_args`)."""
    from ..models import load

    return load(args.model, device=args.device, dtype=args.dtype, lazy=getattr(args, "lazy", False))
