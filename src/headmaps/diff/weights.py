"""Weight-space figures of a head diff, through the low-rank factors of each circuit.

Every circuit of a head is a rank-``d_head`` product ``W = A B`` with ``A`` ``(d, r)`` and
``B`` ``(r, d)`` (``W_VO = W_V W_O``, ``W_QK = W_Q W_K^T``). Nothing here forms the
``d x d`` matrix: Frobenius norms and inner products go through ``r x r`` Gram matrices,

``<A1 B1, A2 B2>_F = tr((A1^T A2)(B2 B1^T))``,

and subspaces through the QR factors of one side. All in float64, and the difference is
written as ``(A2 - A1) B2 + A1 (B2 - B1)``, so a relative change of 1e-7 (a few
fine-tuning steps) is not lost to cancellation.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def _inner(a1: torch.Tensor, b1: torch.Tensor, a2: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
    """``<A1 B1, A2 B2>_F`` batched: ``A`` ``(..., d, r)``, ``B`` ``(..., r, d)`` -> ``(...)``."""
    left = a1.transpose(-1, -2) @ a2  # (..., r1, r2)
    right = b2 @ b1.transpose(-1, -2)  # (..., r2, r1)
    return (left * right.transpose(-1, -2)).sum((-1, -2))


def relative_change(a1: torch.Tensor, b1: torch.Tensor, a2: torch.Tensor,
                    b2: torch.Tensor) -> torch.Tensor:
    """``||A2 B2 - A1 B1||_F / ||A1 B1||_F`` for batches of low-rank products.

    Args:
        a1: ``(..., d, r)`` left factor of the first circuit.
        b1: ``(..., r, d)`` its right factor.
        a2: ``(..., d, r)`` left factor of the second circuit.
        b2: ``(..., r, d)`` its right factor.

    Returns:
        ``(...)`` float64 relative change; ``0`` where both circuits are zero and ``inf``
        where only the first one is.
    """
    a1, b1, a2, b2 = (t.double() for t in (a1, b1, a2, b2))
    # A2 B2 - A1 B1 = (A2 - A1) B2 + A1 (B2 - B1): a sum of small terms, no cancellation
    c = torch.cat([a2 - a1, a1], -1)  # (..., d, 2r)
    e = torch.cat([b2, b2 - b1], -2)  # (..., 2r, d)
    n11 = _inner(a1, b1, a1, b1)
    diff = _inner(c, e, c, e).clamp_min(0).sqrt()
    rel = diff / n11.sqrt()
    rel = torch.where(n11 > 0, rel, torch.where(diff > 0, math.inf, 0.0))
    return rel


def _basis(m: torch.Tensor, rtol: float = 1e-9) -> torch.Tensor:
    """Orthonormal columns spanning the column space of ``m`` ``(d, r)`` (numerical rank).

    ``m = Q R`` (thin QR), ``R = U_R S V_R^T``: the left singular vectors of ``m`` are
    ``Q U_R``, so only an ``r x r`` SVD is needed.
    """
    q, r = torch.linalg.qr(m)
    u, s, _ = torch.linalg.svd(r)
    if not len(s) or s[0] == 0:
        return q[:, :0]
    return q @ u[:, : int((s > rtol * s[0]).sum())]


def subspaces(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bases of what ``W = A B`` reads and writes: its column space and its row space.

    ``W = A B = Q_A (R_A B)``: the row space of ``W`` is that of ``R_A B`` (``r x d``),
    and likewise ``W = (A R_B^T) Q_B^T`` for the column space.

    Args:
        a: ``(d, r)`` left factor.
        b: ``(r, d)`` right factor.

    Returns:
        ``(reads, writes)``: ``(d, rank)`` orthonormal columns each.
    """
    a, b = a.double(), b.double()
    _, r_a = torch.linalg.qr(a)
    _, r_b = torch.linalg.qr(b.T)
    return _basis(a @ r_b.T), _basis((r_a @ b).T)


def max_principal_angle(u: torch.Tensor, v: torch.Tensor) -> float:
    """The largest principal angle in degrees between the spans of orthonormal ``u``, ``v``.

    Over ``min(rank u, rank v)`` angles (0: one span lies in the other), from its sine,
    the norm of what is left of the smaller basis after projecting it onto the larger
    (accurate for small angles, where the cosine is not). NaN when either span is empty
    (a zeroed head).
    """
    if u.shape[1] == 0 or v.shape[1] == 0:
        return float("nan")
    small, big = (u, v) if u.shape[1] <= v.shape[1] else (v, u)
    rest = small - big @ (big.T @ small)
    sin = float(torch.linalg.matrix_norm(rest, ord=2).clamp(0.0, 1.0))
    return float(np.degrees(np.arcsin(sin)))
