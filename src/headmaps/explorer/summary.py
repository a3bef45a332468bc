"""Summary statistics of a scan that the report and the plots show.

The analyses themselves (multi-relation heads, GQA agreement) are defined once, in
:mod:`headmaps.scoring.analysis`; this module only shapes their results for the page,
so the HTML report and ``summary.md`` agree. A head *implements* a relation when its
score is at least ``tau`` (and *suppresses* it likewise).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..scoring import analysis
from ..scoring.results import ScanResult


def heads_per_layer(scores: np.ndarray, tau: float) -> np.ndarray:
    """``(n_relations, n_layers)`` count of heads with score >= tau."""
    return (scores >= tau).sum(axis=2).astype(int)


def any_per_layer(scores: np.ndarray, tau: float) -> np.ndarray:
    """``(n_layers,)`` heads implementing at least one relation."""
    if scores.shape[0] == 0:
        return np.zeros(scores.shape[1], int)
    return (scores >= tau).any(axis=0).sum(axis=1).astype(int)


def multi_relation_heads(scan: ScanResult, limit: int = 50) -> list[dict[str, Any]]:
    """:func:`headmaps.scoring.analysis.multi_relation_heads`, for the page.

    Returns:
        Up to ``limit`` dicts ``{"head": "L.H", "relations": [names], "max": best score}``,
        in the analysis's order.
    """
    frame = analysis.multi_relation_heads(scan).head(limit)
    return [{"head": row.head, "relations": row.relations.split(", "), "max": round(row.max_score,
                                                                                    4)}
            for row in frame.itertuples(index=False)]


def gqa_agreement(scan: ScanResult) -> list[dict[str, Any]]:
    """:func:`headmaps.scoring.analysis.gqa_agreement`, for the page (one dict per relation)."""
    frame = analysis.gqa_agreement(scan)
    return [{"relation": row.relation, "heads": int(row.heads), "groups": int(row.groups),
             "share": round(row.share, 4), "chance": round(row.chance, 4)}
            for row in frame.itertuples(index=False)]


def coverage_per_layer(heads: list[dict[str, Any] | None], n_layers: int,
                       n_heads: int) -> dict[str, list[int]] | None:
    """Per layer, how many heads are ``described``, ``unclear`` and ``none``.

    Args:
        heads: the encoded per-head entries (:data:`headmaps.explorer.encode.Entry`), in
            ``layer * n_heads + head`` order: ``u`` marks an unclear head, ``d`` a
            description (the coverage statuses of :func:`headmaps.explorer.schema.coverage`).
        n_layers: layers.
        n_heads: heads per layer.

    Returns:
        ``{"described": [...], "unclear": [...], "none": [...]}`` (one count per layer), or
        None when no head has a description or an unclear verdict.
    """
    counts = {c: [0] * n_layers for c in ("described", "unclear")}
    for i, e in enumerate(heads):
        if e and e.get("u"):
            counts["unclear"][i // n_heads] += 1
        elif e and str(e.get("d") or "").strip():
            counts["described"][i // n_heads] += 1
    if not any(map(sum, counts.values())):
        return None
    counts["none"] = [n_heads - d - u for d, u in zip(counts["described"], counts["unclear"])]
    return counts


def summarise(scan: ScanResult, heads: list[dict[str, Any] | None]) -> dict[str, Any]:
    """Every summary the report shows, as JSON-able data."""
    tau = scan.tau
    group = analysis.kv_group_size(scan)
    return {
        "per_layer": heads_per_layer(scan.scores, tau).tolist(),
        "any_per_layer": any_per_layer(scan.scores, tau).tolist(),
        "supp_any_per_layer": any_per_layer(scan.suppression, tau).tolist(),
        "multi": multi_relation_heads(scan),
        "n_multi": int(((scan.scores >= tau).sum(axis=0) >= 2).sum()) if scan.relations else 0,
        "kv_group": group,
        "gqa": gqa_agreement(scan),
        "coverage": coverage_per_layer(heads, scan.n_layers, scan.n_heads),
    }
