"""Comparisons up to near-ties, for results two float32 code paths compute differently.

Two paths that compute the same logits through products of different shapes, blockings or
association orders (the early exit and the dense engine, batched and per-head, the engine
and the plain reference) agree only up to rounding, and that rounding differs between CPUs:
oneDNN/MKL pick other kernels on an AVX2 machine than on an AVX-512 one. A top-k decision
or a ranking built on such values is then exact except where two values lie within rounding
of each other. These helpers demand exact agreement everywhere else, and check that every
disagreement is such a near-tie.

Tolerances. A float32 dot product of depth ``d`` rounds with an error of about
``sqrt(d) * 2**-24`` relative to ``|y| |u|`` (Cauchy-Schwarz bounds the sum of its terms'
magnitudes by that), i.e. <= 1.5e-6 for every ``d`` here (64 for the tiny models, 576 for
SmolLM2). A logit ``x W_V W_O . u`` passes three such products plus the norm of ``x``, so
a path's logit is within ~5e-6 ``|y| max|u|`` of the exact one, ``y = x W_V W_O (+ b_O)``.
:data:`LOGIT_RTOL` = 1e-4 leaves a factor 20 (and a factor 3 over the worst-case
``d * 2**-24`` of a single product of SmolLM2's depth). Measured on the tiny models, the
float32 chain stays within 2e-7 of that scale; at 1e-4 about 0.1% of their decisions are
flagged as near-ties.
"""

from __future__ import annotations

import numpy as np
import torch

from headmaps import projection as P
from headmaps.relations import select

#: Relative rounding of a float32 logit, as a fraction of ``|y| max_v |u_v|`` (see above).
LOGIT_RTOL = 1e-4


# ---- rankings --------------------------------------------------------------------------

def assert_ranking_up_to_ties(ids_a, vals_a, ids_b, vals_b, atol, what: str = "") -> None:
    """Two best-first lists of ids (last axis) rank the same items up to near-ties.

    ``atol`` bounds how far one item's value may move between the two computations
    (scalar, or one per list). Then (1) the values agree position by position within
    ``atol`` (an order statistic moves by at most the largest change of any value), and
    (2) wherever two consecutive values of ``a`` are more than ``2 atol`` apart, the ids
    before that gap are the same set in both lists: an item of ``a``'s prefix keeps a value
    above ``a[i] - atol`` in ``b`` and any other item stays below ``a[i + 1] + atol``. Ids
    within a run of closer values may come in any order, and the run that reaches the end
    of the lists may hold different ids (the cut splits a tie).
    """
    ids_a, ids_b = np.asarray(ids_a), np.asarray(ids_b)
    vals_a = np.asarray(vals_a, dtype=np.float64)
    vals_b = np.asarray(vals_b, dtype=np.float64)
    assert ids_a.shape == ids_b.shape == vals_a.shape == vals_b.shape, what
    n = ids_a.shape[-1]
    tol = np.broadcast_to(np.asarray(atol, dtype=np.float64), ids_a.shape[:-1]).reshape(-1)
    for r, (ia, va, ib, vb) in enumerate(zip(ids_a.reshape(-1, n), vals_a.reshape(-1, n),
                                             ids_b.reshape(-1, n), vals_b.reshape(-1, n))):
        t = tol[r]
        np.testing.assert_allclose(vb, va, rtol=0, atol=t, err_msg=f"{what} list {r}")
        assert len(set(ia.tolist())) == n and len(set(ib.tolist())) == n, f"{what} list {r}"
        with np.errstate(invalid="ignore"):  # -inf - -inf: no gap
            gaps = np.flatnonzero(np.abs(np.diff(va)) > 2 * t)
        for i in gaps:
            assert set(ia[:i + 1].tolist()) == set(ib[:i + 1].tolist()), (
                f"{what} list {r}: the first {i + 1} ids differ beyond ties: {ia} vs {ib}")


def assert_topk_up_to_ties(ids, values, atol, largest: bool = True, what: str = "") -> None:
    """``ids`` (last axis, best first) are a top-k of ``values`` (last axis) up to near-ties.

    ``values`` are the exact (reference) values of every item; ``atol`` bounds the error of
    the values the ids were chosen on. Checked with :func:`assert_ranking_up_to_ties`
    against the reference's own top-k, both lists valued by the reference.
    """
    values = torch.as_tensor(np.asarray(values, dtype=np.float64))
    ids = torch.as_tensor(np.asarray(ids)).long()
    ref = torch.topk(values, ids.shape[-1], dim=-1, largest=largest, sorted=True)
    assert_ranking_up_to_ties(ids.numpy(), values.gather(-1, ids).numpy(),
                              ref.indices.numpy(), ref.values.numpy(), atol, what)


# ---- top-k hit decisions of the scan -----------------------------------------------------

def _logit_rows(model, sources, layer: int, opts):
    """Float64 logits ``(H, n, V)`` of the source rows, and their rounding scale ``(H, n)``.

    The plain reference's order (:func:`headmaps.scoring.reference_scores`), in float64;
    the scale is ``|y| max_v |u_v|`` with ``|y|`` summed over its parts.
    """
    a = model.attention(layer)
    X = P.layer_sources(sources.at(layer), a, opts).double()
    U = P.output_basis(model, opts, a).double()
    u_max = U.norm(dim=0).max()
    b_v, b_o = P.layer_biases(a, opts)
    rows, scale = [], []
    for head in range(model.n_heads):
        W_V, W_O = (w.double() for w in model.ov(layer, head))
        y = X @ W_V
        if b_v is not None:
            y = y + b_v[model.kv_head(head)].double()
        y = y @ W_O
        size = y.norm(dim=-1)
        if b_o is not None:
            y = y + b_o.double()
            size = size + b_o.double().norm()
        rows.append(y @ U)
        scale.append(size * u_max)
    return torch.stack(rows), torch.stack(scale)


def unsure_decisions(model, source_ids, target_ids, k, opts, where: np.ndarray | None = None,
                     rtol: float = LOGIT_RTOL) -> np.ndarray:
    """Which hit (``[0]``) and suppression (``[1]``) decisions a rounding could flip.

    A path computes every logit within ``t = rtol |y| max|u|`` of the exact (float64)
    value, so the count of other entries that tie or beat the target lies between the
    count of those at least ``2 t`` above it and the count of those at least ``-2 t``
    above it; the decision ``count < k`` is unsure when ``k`` falls between the two.
    Exact ties stay exact (a zeroed head has ``t = 0``: all its logits are exactly 0).

    Args:
        model: the model.
        source_ids, target_ids: ``(P,)`` token ids of the pairs.
        k: top-k, an int or ``(P,)``.
        opts: the projection options the scan used.
        where: ``(L, H, P)`` bool: only these decisions are needed (default all).
        rtol: see :data:`LOGIT_RTOL`.

    Returns:
        bool ``(2, L, H, P)``; decisions not asked for are False.
    """
    source_ids, target_ids = torch.as_tensor(source_ids), torch.as_tensor(target_ids)
    L, H, n = model.n_layers, model.n_heads, len(target_ids)
    k = torch.as_tensor(k).expand(n)
    need = np.ones((L, H, n), bool) if where is None else np.asarray(where, bool)
    out = np.zeros((2, L, H, n), bool)
    pairs = np.flatnonzero(need.any((0, 1)))
    if not len(pairs):
        return out
    cols = torch.as_tensor(pairs)
    sources = P.Sources(model, source_ids[cols], opts)
    with torch.no_grad():
        for layer in np.flatnonzero(need.any((1, 2))).tolist():
            rows, scale = _logit_rows(model, sources, layer, opts)  # (H, n_needed, V)
            tgt_col = target_ids[cols].view(1, -1, 1).expand(H, -1, 1)
            diff = rows - rows.gather(2, tgt_col)
            diff.scatter_(2, tgt_col, float("nan"))  # the target itself never counts
            t = (2 * rtol * scale).unsqueeze(2)
            kk = k[cols].view(1, -1)
            for j, (surely, maybe) in enumerate(((diff >= t, diff >= -t),
                                                 (diff <= -t, diff <= t))):
                lo, hi = surely.sum(2), maybe.sum(2)
                out[j, layer][:, pairs] = ((lo < kk) & (hi >= kk)).numpy()
    return out & need


def assert_pair_hits_agree(model, relations, a_hits: dict, b_hits: dict, opts, *,
                           k=None, min_pairs: int | None = None) -> int:
    """Two scans' per-pair decisions (``pair_hits``) agree except on near-ties.

    Every decision on which they differ must be unsure (:func:`unsure_decisions`).

    Returns:
        How many decisions differ (all near-ties).
    """
    kw = {} if min_pairs is None else {"min_pairs": min_pairs}
    chosen, _ = select(model, relations, k, **kw)
    assert sorted(a_hits) == sorted(b_hits) == sorted(c.name for c in chosen)
    n_differ = 0
    for c in chosen:
        differ = np.stack([np.asarray(x) != np.asarray(y)
                           for x, y in zip(a_hits[c.name], b_hits[c.name])])
        if differ.any():
            unsure = unsure_decisions(model, c.prepared.source_ids, c.prepared.target_ids, c.k,
                                      opts, where=differ.any(0))
            assert unsure[differ].all(), (
                f"{c.name}: {int((differ & ~unsure).sum())} decisions differ beyond near-ties")
            n_differ += int(differ.sum())
    return n_differ


def assert_scans_agree(model, relations, a, a_hits: dict, b, b_hits: dict, *, k=None,
                       min_pairs: int | None = None) -> int:
    """Two scans of the same relations (with ``pair_hits``) agree up to near-ties.

    Per pair: :func:`assert_pair_hits_agree` (under ``a``'s recorded options). Per head:
    the scores and suppression scores are the means of those decisions, so they differ
    by at most the fraction of pairs whose decision differs (exactly equal where none do;
    1e-6 covers float32 rounding of the means).

    Returns:
        How many decisions differ (all near-ties).
    """
    n_differ = assert_pair_hits_agree(model, relations, a_hits, b_hits, options_of(a), k=k,
                                      min_pairs=min_pairs)
    assert a.relations == b.relations
    for r, name in enumerate(a.relations):
        for j, what in enumerate(("scores", "suppression")):
            flipped = np.asarray(a_hits[name][j]) != np.asarray(b_hits[name][j])
            gap = np.abs(getattr(a, what)[r].astype(np.float64) - getattr(b, what)[r])
            assert (gap <= flipped.mean(-1) + 1e-6).all(), f"{name} {what}"
    return n_differ


def assert_scores_up_to_ties(got, want, unsure: np.ndarray, what: str = "") -> None:
    """Scores ``(L, H)`` (means of per-pair decisions) differ by at most the unsure pairs.

    ``unsure``: ``(L, H, P)`` bool for the decisions averaged. Decisions both sides make
    on sure pairs are equal, so ``|got - want| <= n_unsure / P``; float32 scores carry a
    rounding of at most 1e-7, hence the 1e-6.
    """
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    bound = np.asarray(unsure).mean(-1) + 1e-6
    bad = np.abs(got - want) > bound
    assert not bad.any(), f"{what}: scores differ beyond near-ties at {np.argwhere(bad).tolist()}"


def unsure_for_relations(model, relations, opts, *, k=None,
                         min_pairs: int | None = None) -> dict[str, np.ndarray]:
    """:func:`unsure_decisions` of every pair of the relations a scan with these arguments
    scores: relation -> ``(2, L, H, P)`` in the order of ``pair_hits``."""
    kw = {} if min_pairs is None else {"min_pairs": min_pairs}
    chosen, _ = select(model, relations, k, **kw)
    return {c.name: unsure_decisions(model, c.prepared.source_ids, c.prepared.target_ids, c.k,
                                     opts) for c in chosen}


def options_of(result) -> P.ProjectionOptions:
    """The projection options a result recorded."""
    return P.ProjectionOptions(**result.options)

