"""The in-context score ``phi_ctx``: the relation score read where the head attends.

``phi`` reads a head as if its attention went entirely to the source token. Inside a
prompt it does not: at the query a head reads from, most heads put much of their weight on
the first token (the attention sink) and little on the source, and their output is then
the sink's value, whatever the source. ``phi_ctx`` keeps the source's representation of
the projection (the ``through`` stream: the source as the second token of
``[prefix, source]``) and replaces the one assumption: at the source position, the head
attends over the prefix and the source with its own weights (its queries and keys, with
the layer's norms, rotary angles, scale, soft cap and window, as the stream computes
them), so its output before ``W_O`` is

    z = w_prefix * v_prefix + w_source * v_source

and a pair is a hit when the target is in the top-k of ``z W_O U`` (the scan's own hit
test, :func:`~headmaps.scoring.kernel.count_hits`). A head that sends its weight to the
prefix writes the prefix's value for every source and scores near zero, however high its
``phi``; a head that attends to the source keeps its ``phi``. Everything comes from the
parameters; the two weights are the ones the stream already computes.

It models the prompt whose last token is the source (the query is the source itself)
with the document prefix as its only context. How well it predicts the with-context
dynamic score, against ``phi``, on both template sets: ``docs/results/in-context.md``.
"""

from __future__ import annotations

import torch

from .. import projection as P
from ..models import AttentionWeights, HeadModel


def prefix_values(first: torch.Tensor, attn: AttentionWeights, opts: P.ProjectionOptions,
                  kv_index: torch.Tensor) -> torch.Tensor:
    """The prefix's value per query head, ``(n_heads, 1, d_head)`` float32.

    Args:
        first: the prefix's residual ``(d_model,)`` entering the layer.
        attn: the layer's attention weights.
        opts: projection options (input norm and value bias as for the sources).
        kv_index: ``(n_heads,)`` key/value head of each query head.
    """
    X = P.layer_sources(first[None].float(), attn, opts)
    b_v, _ = P.layer_biases(attn, opts)
    v = torch.einsum("nd,kde->kne", X, attn.W_V.float())
    if b_v is not None:
        v = v + b_v[:, None, :]
    return v.index_select(0, kv_index)


def mix(weights: torch.Tensor, v_prefix: torch.Tensor, v_source: torch.Tensor) -> torch.Tensor:
    """Head outputs before ``W_O`` from two-position attention, ``(n_heads, n, d_head)``.

    Args:
        weights: ``(n_heads, n, 2)``: weight on the prefix, then on the source.
        v_prefix: ``(n_heads, 1, d_head)``.
        v_source: ``(n_heads, n, d_head)``: the sources' values (the rows ``phi`` reads).
    """
    return weights[..., :1] * v_prefix + weights[..., 1:] * v_source


def source_weights(model: HeadModel, layer: int, sources: P.Sources,
                   kv_index: torch.Tensor) -> torch.Tensor | None:
    """Every head's weights ``(n_heads, n, 2)`` over ``[prefix, source]`` at the source.

    None when the projection's rows are not read after a prefix (no ``through`` stream).
    """
    first = sources.prefix_at(layer)
    if first is None:
        return None
    return P.after_prefix_weights(model.qk(layer), kv_index, first, sources.at(layer))
