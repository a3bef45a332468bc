"""The held-out sample of description scoring: the source tokens a description is scored on.

A description of a head was written from its ``n_shown`` most salient source tokens;
:func:`held_out_ids` picks tokens it did not see (the next ones by saliency, then
saliency-weighted draws) with one seeded generator per head (:func:`head_rng`), and
:func:`derangement` pairs each head with another one for the simulation baseline.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

#: Default held-out sample: next-most-salient tokens, saliency-weighted draws, top-k.
DEFAULT_N_SALIENT = 10
DEFAULT_N_RANDOM = 10
DEFAULT_K = 5


def held_out_ids(saliency: np.ndarray, shown: Iterable[int], n_shown: int, n_salient: int,
                 n_random: int, rng: np.random.Generator) -> np.ndarray:
    """Held-out source tokens of one head: never one of ``shown``.

    Args:
        saliency: ``(V,)`` the head's saliency over the vocabulary (``-inf`` or NaN where
            a token may not be a source).
        shown: token ids the describer saw.
        n_shown: how many tokens the describer was shown (the top ``n_shown`` by saliency
            are excluded too, whatever ``shown`` holds).
        n_salient: tokens taken in saliency order after rank ``n_shown``.
        n_random: tokens drawn from the rest without replacement, with probability
            proportional to saliency (uniform among zero-saliency ones when too few are
            positive).
        rng: the random generator.

    Returns:
        ``(n,)`` int64 ids: the salient ones first, then the drawn ones;
        ``n = min(n_salient + n_random, eligible tokens)``.
    """
    sal = np.asarray(saliency, dtype=np.float64)
    valid = np.isfinite(sal)
    order = np.argsort(-np.where(valid, sal, -np.inf), kind="stable")
    order = order[valid[order]]
    banned = set(int(i) for i in shown) | set(int(i) for i in order[:n_shown])
    rest = [int(i) for i in order[n_shown:] if int(i) not in banned]
    salient = rest[:n_salient]
    pool = np.array(rest[n_salient:], dtype=np.int64)
    drawn: list[int] = []
    if n_random > 0 and len(pool):
        w = np.clip(sal[pool], 0.0, None)
        pos = pool[w > 0]
        m = min(n_random, len(pos))
        if m:
            p = w[w > 0] / w[w > 0].sum()
            drawn = [int(i) for i in rng.choice(pos, size=m, replace=False, p=p)]
        if len(drawn) < n_random:
            zero = pool[w <= 0]
            m = min(n_random - len(drawn), len(zero))
            drawn += [int(i) for i in rng.choice(zero, size=m, replace=False)] if m else []
    out = np.array(salient + drawn, dtype=np.int64)
    assert not banned.intersection(out.tolist()), "held-out tokens overlap the shown ones"
    assert len(set(out.tolist())) == len(out), "held-out tokens repeat"
    return out


def head_rng(seed: int, layer: int, head: int) -> np.random.Generator:
    """The generator of one head's draws, seeded by ``(seed, layer, head)``."""
    return np.random.default_rng([int(seed), int(layer), int(head)])


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation of ``range(n)`` without fixed points (identity for n < 2)."""
    if n < 2:
        return np.arange(n)
    while True:
        p = rng.permutation(n)
        if not np.any(p == np.arange(n)):
            return p
