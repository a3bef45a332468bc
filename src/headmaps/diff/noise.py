"""The noise floor of a relation-score change: a paired bootstrap over the relation's pairs.

A relation score is the mean over a sample of pairs of a per-pair hit (``1`` when the
target is in the top-k of the source's row). Another sample of the same relation would
give another score, and so another change. The bootstrap redraws the pairs with
replacement (the same draw for both models: the change is paired) and recomputes both
models' scores from their per-pair hits; the floor is the ``1 - alpha`` quantile of how
far a redrawn change lies from the observed one (the basic bootstrap's half-width). A
change counts only when it exceeds its floor: one pair that flips moves a score by
``1 / n_pairs`` and stays below it, a model compared with itself has every change and
every floor exactly 0, so nothing is marked.
"""

from __future__ import annotations

import numpy as np

#: Bootstrap draws and the quantile of the floor (a two-sided 95% interval by default).
DEFAULT_N_BOOT = 1000
DEFAULT_ALPHA = 0.05


def resample_counts(n_pairs: int, n_boot: int, seed: int) -> np.ndarray:
    """How often each pair is drawn in each bootstrap sample: ``(n_boot, n_pairs)`` int."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_pairs, np.full(n_pairs, 1.0 / n_pairs), size=n_boot)


def paired_floor(hits_a: np.ndarray, hits_b: np.ndarray, counts: np.ndarray,
                 alpha: float = DEFAULT_ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """The change of a mean of per-pair hits and its bootstrap noise floor.

    Args:
        hits_a: ``(..., n_pairs)`` bool (or 0/1) per-pair hits of the first model.
        hits_b: the same shape, the second model on the same pairs.
        counts: ``(n_boot, n_pairs)`` draws of :func:`resample_counts`.
        alpha: the floor is the ``1 - alpha`` quantile of ``|change* - change|``.

    Returns:
        ``(change, floor)``, each of shape ``(...)``: ``mean(b) - mean(a)`` and its floor.
    """
    if hits_a.shape != hits_b.shape:
        raise ValueError(f"hit arrays differ in shape: {hits_a.shape} vs {hits_b.shape}")
    lead, n = hits_a.shape[:-1], hits_a.shape[-1]
    d = (hits_b.astype(np.float64) - hits_a.astype(np.float64)).reshape(-1, n)
    change = d.mean(1)
    boots = d @ (counts.T / n)  # (N, n_boot)
    floor = np.quantile(np.abs(boots - change[:, None]), 1.0 - alpha, axis=1)
    return change.reshape(lead), floor.reshape(lead)
