"""Summary statistics of a scan that the report and the plots show.

All functions take the score arrays of a :class:`~headmaps.scoring.ScanResult`
(``(n_relations, n_layers, n_heads)``) and the threshold ``tau``; a head *implements*
a relation when its score is at least ``tau`` (and *suppresses* it likewise).
"""

from __future__ import annotations

from math import comb
from typing import Any

import numpy as np

from ..scoring.results import ScanResult
from .schema import HeadExtra, coverage


def kv_group_size(model_info: dict[str, Any], n_heads: int) -> int:
    """Query heads per KV head (1 without grouping, or when the info does not say)."""
    n_kv = model_info.get("n_kv_heads") or n_heads
    try:
        n_kv = int(n_kv)
    except (TypeError, ValueError):
        return 1
    if n_kv <= 0 or n_heads % n_kv:
        return 1
    return n_heads // n_kv


def heads_per_layer(scores: np.ndarray, tau: float) -> np.ndarray:
    """``(n_relations, n_layers)`` count of heads with score >= tau."""
    return (scores >= tau).sum(axis=2).astype(int)


def any_per_layer(scores: np.ndarray, tau: float) -> np.ndarray:
    """``(n_layers,)`` heads implementing at least one relation."""
    if scores.shape[0] == 0:
        return np.zeros(scores.shape[1], int)
    return (scores >= tau).any(axis=0).sum(axis=1).astype(int)


def multi_relation_heads(scores: np.ndarray, tau: float, relations: list[str],
                         limit: int = 50) -> list[dict[str, Any]]:
    """Heads implementing two or more relations, most relations first (then best score).

    Returns:
        Up to ``limit`` dicts ``{"head": "L.H", "relations": [names], "max": best score}``.
    """
    if scores.shape[0] == 0:
        return []
    hits = scores >= tau
    n = hits.sum(axis=0)
    best = scores.max(axis=0)
    L, H = np.nonzero(n >= 2)
    order = sorted(zip(L, H), key=lambda lh: (-n[lh], -best[lh], lh))
    return [{"head": f"{layer}.{head}",
             "relations": [relations[r] for r in np.nonzero(hits[:, layer, head])[0]],
             "max": round(float(best[layer, head]), 4)} for layer, head in order[:limit]]


def gqa_agreement(scores: np.ndarray, tau: float, group: int,
                  relations: list[str]) -> list[dict[str, Any]]:
    """How much heads that share a KV head agree on each relation.

    For each relation: ``heads`` implementing it, ``groups`` (KV groups holding at least
    one of them), ``share`` = mean fraction of a touched group's heads that implement it,
    and ``chance`` = the same expected if each layer's relation heads were placed at random
    among its heads (hypergeometric). ``share`` well above ``chance`` means the heads of a
    KV group tend to implement the relation together.

    Returns:
        One dict per relation; empty when ``group`` is 1 (no grouping).
    """
    if group <= 1 or scores.shape[0] == 0:
        return []
    R, L, H = scores.shape
    G = H // group
    out = []
    for r in range(R):
        hits = scores[r] >= tau  # (L, H)
        n = int(hits.sum())
        touched = int(hits.reshape(L, G, group).any(axis=2).sum())
        expected = 0.0
        for layer in range(L):
            k = int(hits[layer].sum())
            if k:
                p0 = comb(H - k, group) / comb(H, group)
                expected += G * (1.0 - p0)
        share = n / (group * touched) if touched else 0.0
        chance = n / (group * expected) if expected else 0.0
        out.append({"relation": relations[r], "heads": n, "groups": touched,
                    "share": round(share, 4), "chance": round(chance, 4)})
    return out


def coverage_per_layer(extras: dict[tuple[int, int], HeadExtra], n_layers: int,
                       n_heads: int) -> dict[str, list[int]] | None:
    """Per layer, how many heads are ``described``, ``unclear`` and ``none``.

    Returns:
        ``{"described": [...], "unclear": [...], "none": [...]}`` (one count per layer), or
        None when no head has a description or an unclear verdict.
    """
    counts = {c: [0] * n_layers for c in ("described", "unclear")}
    for (layer, _), e in extras.items():
        c = coverage(e)
        if c in counts:
            counts[c][layer] += 1
    if not any(map(sum, counts.values())):
        return None
    counts["none"] = [n_heads - d - u for d, u in zip(counts["described"], counts["unclear"])]
    return counts


def summarise(scan: ScanResult, extras: dict[tuple[int, int], HeadExtra]) -> dict[str, Any]:
    """Every summary the report shows, as JSON-able data."""
    tau = scan.tau
    group = kv_group_size(scan.model_info, scan.n_heads)
    return {
        "per_layer": heads_per_layer(scan.scores, tau).tolist(),
        "any_per_layer": any_per_layer(scan.scores, tau).tolist(),
        "supp_any_per_layer": any_per_layer(scan.suppression, tau).tolist(),
        "multi": multi_relation_heads(scan.scores, tau, scan.relations),
        "n_multi": int(((scan.scores >= tau).sum(axis=0) >= 2).sum()) if scan.relations else 0,
        "kv_group": group,
        "gqa": gqa_agreement(scan.scores, tau, group, scan.relations),
        "coverage": coverage_per_layer(extras, scan.n_layers, scan.n_heads),
    }
