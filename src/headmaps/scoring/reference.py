"""The reference implementation's computation order, kept plain on purpose.

Used by tests (the batched engine must agree with it) and by the benchmark (it is the
baseline): for every head form ``W_VO = W_V W_O`` (d x d), push each relation's sources
through it and through ``U``, and count, in every whole row, the other entries that tie
or beat the target (the tie rule of :mod:`~headmaps.scoring.kernel`, by brute force).
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
                hit, low = brute_force_hits(M, target_ids, k)
                scores[layer, head] = hit.float().mean().item()
                supp[layer, head] = low.float().mean().item()
    return scores, supp


def brute_force_hits(logits: torch.Tensor, target_ids: torch.Tensor,
                     k: int | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The documented hit test on whole rows: fewer than ``k`` others tie or beat the target.

    Args:
        logits: ``(n_pairs, vocab)`` one row per pair.
        target_ids: ``(n_pairs,)`` target column of each row.
        k: top-k (an int or ``(n_pairs,)``).

    Returns:
        ``hits``, ``suppressed``: bool ``(n_pairs,)``: the target is in the top-k (bottom-k).
    """
    t = target_ids.view(-1, 1).long()
    tgt = logits.gather(1, t)
    # the target's own column ties itself, hence the -1
    at_least = (logits >= tgt).sum(1) - 1
    at_most = (logits <= tgt).sum(1) - 1
    return at_least < k, at_most < k
