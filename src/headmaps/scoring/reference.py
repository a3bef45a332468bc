"""The reference implementation's computation order, kept plain on purpose.

Used by tests (the batched engine must agree with it) and by the benchmark (it is the
baseline): for every head form ``W_VO = W_V W_O`` (d x d), push each relation's sources
through it and through ``U``, and take ``topk`` of every row.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .. import projection as P
from ..models import HeadModel


def reference_scores(
    model: HeadModel,
    source_ids: torch.Tensor,
    target_ids: torch.Tensor,
    k: int,
    opts: P.ProjectionOptions,
    layers: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Relation and suppression scores ``(n_layers, n_heads)``, head by head.

    Args:
        model: the model.
        source_ids: ``(n_pairs,)`` source token ids.
        target_ids: ``(n_pairs,)`` target token ids.
        k: top-k.
        opts: projection options (same meaning as in the batched engine).
        layers: compute only these layers (the others stay 0); default all.
    """
    L, H = model.n_layers, model.n_heads
    scores = np.zeros((L, H), np.float32)
    supp = np.zeros((L, H), np.float32)
    with torch.no_grad():
        sources = P.Sources(model, source_ids, opts)
        for layer in range(L) if layers is None else layers:
            a = model.attention(layer)
            X = P.layer_sources(sources.at(layer), a, opts)
            U = P.output_basis(model, opts, a)
            b_v, b_o = P.layer_biases(a, opts)
            for head in range(H):
                W_V, W_O = model.ov(layer, head)
                W_VO = W_V.float() @ W_O.float()
                M = X @ W_VO
                if b_v is not None:
                    M = M + b_v[model.kv_head(head)] @ W_O.float()
                if b_o is not None:
                    M = M + b_o
                M = M @ U
                t = target_ids.view(-1, 1)
                top = torch.topk(M, k, dim=-1).indices
                bottom = torch.topk(-M, k, dim=-1).indices
                scores[layer, head] = (top == t).any(-1).float().mean().item()
                supp[layer, head] = (bottom == t).any(-1).float().mean().item()
    return scores, supp
