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
    p.add_argument("--lazy", action="store_true", default=None,
                   help="read a safetensors checkpoint tensor by tensor (big models; "
                        "automatic when the weights exceed half the free memory)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="let --lazy read .bin pickle checkpoints (only for files you trust)")


def load_model(args: argparse.Namespace):
    """Load the model named by ``args`` (see :func:`add_model_args`)."""
    from ..models import load

    return load(args.model, device=args.device, dtype=args.dtype, lazy=getattr(args, "lazy", None),
                allow_pickle=getattr(args, "allow_pickle", False))


def add_projection_args(p: argparse.ArgumentParser) -> None:
    """--preset and the projection option overrides."""
    from ..projection import DEFAULT_PRESET, PRESETS

    p.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help=f"projection preset (default {DEFAULT_PRESET})")
    p.add_argument("--source", default=None, choices=["embedding", "mlp0", "mlp0_residual"],
                   help="source representation for layers > 0 (overrides the preset)")
    p.add_argument("--fold-norms", default=None, action=argparse.BooleanOptionalAction,
                   help="fold norm gains into the projection (overrides the preset)")
    p.add_argument("--biases", default=None, action=argparse.BooleanOptionalAction,
                   help="include value and output biases (overrides the preset)")
    p.add_argument("--scale-embeddings", default=None, action=argparse.BooleanOptionalAction,
                   help="multiply embeddings by the model's scale, e.g. Gemma (overrides the preset)")


def projection_kwargs(args: argparse.Namespace) -> dict:
    """Keyword arguments for scan/salient functions from :func:`add_projection_args`."""
    kw = {"preset": args.preset, "source": args.source, "fold_norms": args.fold_norms,
          "scale_embeddings": args.scale_embeddings}
    if args.biases is not None:
        kw["value_bias"] = kw["output_bias"] = args.biases
    return {k: v for k, v in kw.items() if v is not None}


def projection_label(result) -> str:
    """The projection a result used, as printed: its preset, or the options of a custom one."""
    from ..projection import describe_projection

    return describe_projection(result.preset, result.options)
