"""The readout side: source rows through a layer's input norm, ``U`` with norms folded, biases."""

from __future__ import annotations

import torch

from ..models import AttentionWeights, HeadModel
from .options import ProjectionOptions


def layer_sources(base: torch.Tensor, attn: AttentionWeights,
                  opts: ProjectionOptions) -> torch.Tensor:
    """``base`` with the layer's input norm applied when ``opts.fold_norms``; ``(n, d_model)``."""
    if not opts.fold_norms:
        return base
    return attn.input_norm(base).float()


def output_basis(
    model: HeadModel,
    opts: ProjectionOptions,
    attn: AttentionWeights | None = None,
    columns: slice | torch.Tensor | None = None,
) -> torch.Tensor:
    """``U`` as seen by a head's output, ``(d_model, n_columns)`` float32.

    With ``fold_norms`` the final norm gain is folded in (and, for LayerNorm, the
    centring, which is linear); with ``attn`` given, that layer's post-attention norm
    gain (Gemma 2/3) too.

    Args:
        model: the model.
        opts: projection options.
        attn: the head's layer (for its post-attention norm).
        columns: a slice or index tensor of vocabulary columns (default all); only these
            are converted to float32, so a big ``U`` kept in bf16 is never copied whole.
    """
    U = (model.U if columns is None else model.U[:, columns]).float()
    if not opts.fold_norms:
        return U
    scale = torch.ones(model.d_model, device=U.device)
    fn = model.final_norm
    if fn.weight is not None:
        scale = scale * fn.weight.float()
    if attn is not None:
        post = attn.post_norm
        if post is not None and post.weight is not None:
            scale = scale * post.weight.float()
    U = scale[:, None] * U
    if fn.kind == "layernorm":
        U = U - U.mean(0, keepdim=True)
    return U


def layer_biases(a: AttentionWeights,
                 opts: ProjectionOptions) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(b_V (n_kv_heads, d_head) or None, b_O (d_model,) or None)`` as the options ask."""
    b_v = a.b_V.float() if opts.value_bias and a.b_V is not None else None
    b_o = a.b_O.float() if opts.output_bias and a.b_O is not None else None
    return b_v, b_o
