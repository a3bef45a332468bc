"""The QK half of a head as pure tensor functions: queries, keys, rotary, logits.

For head ``h`` of a layer (see :class:`~headmaps.models.weights.QKWeights`) the
attention logit of a query at position ``i`` on a key at position ``j`` is::

    s = softcap(scale * <rot_i(qn(x_i W_Q[h] + b_Q[h])), rot_j(kn(x_j W_K[kv] + b_K[kv]))>)

with ``x`` the residual stream after the layer's input norm and ``kv`` the key head of
``h`` (``ArchSpec.kv_index``, the one place the mapping is written). With rotary
positions only ``i - j`` matters; with learned absolute positions the position
embeddings are part of ``x`` (:func:`headmaps.attention.compute.residual`).
"""

from __future__ import annotations

from typing import Protocol

import torch

from .weights import Norm, Positions, QKWeights


class Folding(Protocol):
    """What :func:`layer_input` reads of the projection options.

    A protocol, not ``ProjectionOptions``: this module sits below
    :mod:`headmaps.projection`, which uses it for ``token_alone`` after a prefix.
    """

    fold_norms: bool


def position_embedding(pos: Positions, positions: torch.Tensor | None,
                       device: torch.device) -> torch.Tensor | float:
    """Learned position embeddings ``(n, d_model)`` of ``positions``; 0 for other schemes."""
    if pos.kind != "learned" or positions is None or pos.embedding is None:
        return 0.0
    rows = positions.to(device=pos.embedding.device, dtype=torch.long) + pos.offset
    return pos.embedding[rows].float().to(device)


def _project(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None,
             norm: Norm | None) -> torch.Tensor:
    """``(n, d) x (k, d, dh) -> (k, n, dh)`` with bias and per-head norm."""
    y = torch.einsum("nd,kde->kne", x, W.float())
    if b is not None:
        y = y + b.float()[:, None, :]
    return norm(y).float() if norm is not None else y


def select_heads(t: torch.Tensor, heads: torch.Tensor) -> torch.Tensor:
    """``t[heads]`` along the head dim 0: ``t`` itself when ``heads`` is every head in order.

    A copy only for a subset (or another order) of heads.
    """
    if len(heads) == t.shape[0] and bool((heads.cpu() == torch.arange(len(heads))).all()):
        return t
    return t.index_select(0, heads.to(t.device))


def queries(qk: QKWeights, x: torch.Tensor, heads: torch.Tensor) -> torch.Tensor:
    """Queries of ``heads`` for layer inputs ``x`` ``(n, d_model)`` -> ``(n_h, n, d_head)``.

    ``x`` is the residual after the layer's input norm (see :func:`layer_input`); no
    rotary embedding is applied.
    """
    b = select_heads(qk.b_Q, heads) if qk.b_Q is not None else None
    return _project(x, select_heads(qk.W_Q, heads), b, qk.q_norm)


def keys(qk: QKWeights, x: torch.Tensor, kv_heads: torch.Tensor | None = None) -> torch.Tensor:
    """Keys of ``kv_heads`` (default all) for ``x`` ``(n, d_model)`` -> ``(n_kv, n, d_head)``."""
    W, b = qk.W_K, qk.b_K
    if kv_heads is not None:
        W = W.index_select(0, kv_heads.to(W.device))
        b = b.index_select(0, kv_heads.to(b.device)) if b is not None else None
    return _project(x, W, b, qk.k_norm)


def layer_input(qk: QKWeights, resid: torch.Tensor, opts: Folding) -> torch.Tensor:
    """The layer's input norm applied to ``resid`` when ``opts.fold_norms`` (as on the OV side)."""
    return qk.input_norm(resid).float() if opts.fold_norms else resid.float()


def rotate(v: torch.Tensor, pos: Positions, positions: torch.Tensor | float) -> torch.Tensor:
    """Apply the rotary embedding at ``positions`` to vectors ``v`` ``(..., n, d_head)``.

    Args:
        v: queries or keys.
        pos: the positional scheme; anything but rotary returns ``v`` unchanged.
        positions: ``(n,)`` positions (broadcast over leading dims) or one number.

    Returns:
        ``v`` with its first ``rotary_dim`` dims rotated (pairs ``(i, i + r/2)``, or
        ``(2i, 2i+1)`` when interleaved) and scaled by ``attention_scaling``.
    """
    if pos.kind != "rotary" or pos.inv_freq is None:
        return v
    r = pos.rotary_dim
    p = torch.as_tensor(positions, dtype=torch.float32, device=v.device)
    ang = p[..., None] * pos.inv_freq.to(v.device).float()  # (n, r/2)
    cos, sin = ang.cos() * pos.attention_scaling, ang.sin() * pos.attention_scaling
    rot, rest = v[..., :r], v[..., r:]
    if pos.interleaved:
        x1, x2 = rot[..., 0::2], rot[..., 1::2]
        out = torch.stack((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).flatten(-2)
    else:
        x1, x2 = rot[..., : r // 2], rot[..., r // 2:]
        out = torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
    return torch.cat((out, rest), dim=-1)


def dots_at_distances(q: torch.Tensor, k: torch.Tensor, pos: Positions,
                      distances: torch.Tensor) -> torch.Tensor:
    """``rotate(q, distances[j]) . rotate(k[..., j, :], 0)`` for every ``j``, without rotating.

    Args:
        q: ``(..., dh)`` queries (not rotated).
        k: ``(..., D, dh)`` keys (not rotated), one per distance.
        pos: the positional scheme (anything but rotary: plain dot products).
        distances: ``(D,)`` the query's position minus the key's.

    Returns:
        ``(..., D)``. With rotary embeddings, per frequency pair ``(q1, q2)``, ``(k1, k2)``:
        ``s^2 (cos(d w) (q1 k1 + q2 k2) + sin(d w) (q1 k2 - q2 k1))`` (``s`` the attention
        scaling), plus the unrotated dimensions; the same number as rotating both and
        taking the dot product, with no rotated copy of the keys.
    """
    if pos.kind != "rotary" or pos.inv_freq is None:
        return torch.linalg.vecdot(q.unsqueeze(-2), k)
    r = pos.rotary_dim
    ang = distances.to(device=q.device, dtype=torch.float32)[:, None] * \
        pos.inv_freq.to(q.device).float()  # (D, r/2)
    sc = pos.attention_scaling ** 2
    cos, sin = ang.cos() * sc, ang.sin() * sc
    if pos.interleaved:
        q1, q2, k1, k2 = q[..., 0:r:2], q[..., 1:r:2], k[..., 0:r:2], k[..., 1:r:2]
    else:
        h = r // 2
        q1, q2, k1, k2 = q[..., :h], q[..., h:r], k[..., :h], k[..., h:r]
    q1, q2 = q1.unsqueeze(-2), q2.unsqueeze(-2)  # (..., 1, r/2)
    out = torch.linalg.vecdot(q1 * cos - q2 * sin, k1) + \
        torch.linalg.vecdot(q2 * cos + q1 * sin, k2)
    if r < q.shape[-1]:
        out = out + torch.linalg.vecdot(q[..., r:].unsqueeze(-2), k[..., r:])
    return out


def logits(qk: QKWeights, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``scale * q k^T`` with the soft cap: ``(..., n, dh) x (..., m, dh) -> (..., n, m)``."""
    s = (q @ k.transpose(-1, -2)) * qk.scale
    if qk.softcap:
        s = qk.softcap * torch.tanh(s / qk.softcap)
    return s


def masked(qk: QKWeights, distance: int) -> bool:
    """Whether a key ``distance`` tokens back is outside the layer's sliding window."""
    w = qk.positions.sliding_window
    return w is not None and distance >= w
