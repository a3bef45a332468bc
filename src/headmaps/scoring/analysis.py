"""Analyses of a :class:`ScanResult`: relation heads, multi-relation heads, layers, GQA groups."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # type only: results.py imports this module, not the other way round
    from .results import ScanResult


def _tau(scan: ScanResult, tau: float | None) -> float:
    return scan.tau if tau is None else tau


def implements(scan: ScanResult, tau: float | None = None, suppression: bool = False) -> np.ndarray:
    """Bool ``(n_relations, n_layers, n_heads)``: score >= tau."""
    return (scan.suppression if suppression else scan.scores) >= _tau(scan, tau)


def relation_heads(scan: ScanResult, tau: float | None = None, suppression: bool = False) -> dict[str, list[str]]:
    """Relation -> heads (``"L.H"``, best first) with score >= tau."""
    arr = scan.suppression if suppression else scan.scores
    out = {}
    for i, rel in enumerate(scan.relations):
        idx = np.argwhere(arr[i] >= _tau(scan, tau))
        idx = sorted(idx.tolist(), key=lambda lh: -arr[i, lh[0], lh[1]])
        out[rel] = [f"{layer}.{head}" for layer, head in idx]
    return out


def multi_relation_heads(scan: ScanResult, tau: float | None = None, min_relations: int = 2) -> pd.DataFrame:
    """Heads implementing at least ``min_relations`` relations.

    Returns:
        Frame with columns ``head`` (``L.H``), ``layer``, ``head_index``, ``n_relations``,
        ``relations`` (comma-separated), sorted by ``n_relations`` descending.
    """
    imp = implements(scan, tau)
    count = imp.sum(0)
    rows = []
    for layer, head in np.argwhere(count >= min_relations):
        rels = [scan.relations[r] for r in np.flatnonzero(imp[:, layer, head])]
        rows.append({"head": f"{layer}.{head}", "layer": int(layer), "head_index": int(head),
                     "n_relations": len(rels), "relations": ", ".join(rels)})
    frame = pd.DataFrame(rows, columns=["head", "layer", "head_index", "n_relations", "relations"])
    return frame.sort_values(["n_relations", "layer", "head_index"], ascending=[False, True, True],
                             ignore_index=True)


def layer_distribution(scan: ScanResult, tau: float | None = None, suppression: bool = False) -> pd.DataFrame:
    """Number of heads implementing each relation, per layer: index layer, columns relations."""
    imp = implements(scan, tau, suppression)
    return pd.DataFrame(imp.sum(2).T, index=pd.RangeIndex(scan.n_layers, name="layer"),
                        columns=scan.relations)


def gqa_agreement(scan: ScanResult, n_kv_heads: int | None = None, tau: float | None = None) -> pd.DataFrame:
    """Do heads that share a value head implement the same relations?

    For every pair of heads in the same layer that each implement at least one relation,
    the Jaccard similarity of their relation sets; averaged over pairs that share a value
    head (same GQA group) and over pairs that do not (the chance level).

    Returns:
        One-row frame: ``same_group_jaccard``, ``other_group_jaccard``, ``same_group_pairs``,
        ``other_group_pairs``, ``group_size``. Empty for models without grouped heads.
    """
    n_heads = scan.n_heads
    n_kv = n_kv_heads or int(scan.model_info.get("n_kv_heads", n_heads))
    cols = ["same_group_jaccard", "other_group_jaccard", "same_group_pairs", "other_group_pairs", "group_size"]
    if n_kv >= n_heads:
        return pd.DataFrame(columns=cols)
    group = np.arange(n_heads) // (n_heads // n_kv)
    imp = implements(scan, tau)
    same, other = [], []
    for layer in range(scan.n_layers):
        sets = imp[:, layer, :].T  # (H, R)
        active = np.flatnonzero(sets.any(1))
        for i_pos, i in enumerate(active):
            for j in active[i_pos + 1:]:
                inter = np.logical_and(sets[i], sets[j]).sum()
                union = np.logical_or(sets[i], sets[j]).sum()
                (same if group[i] == group[j] else other).append(inter / union)
    return pd.DataFrame([{
        "same_group_jaccard": float(np.mean(same)) if same else float("nan"),
        "other_group_jaccard": float(np.mean(other)) if other else float("nan"),
        "same_group_pairs": len(same), "other_group_pairs": len(other),
        "group_size": n_heads // n_kv,
    }], columns=cols)


def top_heads(scan: ScanResult, relation: str, n: int = 5, suppression: bool = False) -> pd.DataFrame:
    """The ``n`` best heads for ``relation``: columns ``head``, ``layer``, ``head_index``, ``score``."""
    rows = scan[relation].top_heads(n, suppression)
    return pd.DataFrame([{"head": f"{layer}.{h}", "layer": layer, "head_index": h, "score": s}
                         for layer, h, s in rows], columns=["head", "layer", "head_index", "score"])


def summary_table(scan: ScanResult, n: int = 3, tau: float | None = None) -> pd.DataFrame:
    """One row per relation: pairs, k, best heads, count of heads >= tau (and suppressing)."""
    t = _tau(scan, tau)
    rows = []
    for i, rel in enumerate(scan.relations):
        best = scan[rel].top_heads(n)
        rows.append({
            "relation": rel, "n_pairs": scan.n_pairs[rel], "k": scan.k[rel],
            "top_heads": ", ".join(f"{layer}.{h} ({s:.2f})" for layer, h, s in best),
            "n_heads": int((scan.scores[i] >= t).sum()),
            "n_suppressing": int((scan.suppression[i] >= t).sum()),
        })
    return pd.DataFrame(rows, columns=["relation", "n_pairs", "k", "top_heads", "n_heads", "n_suppressing"])


def summary_markdown(scan: ScanResult, tau: float | None = None) -> str:
    """A Markdown report: per-relation table, skipped relations, multi-relation heads, GQA."""
    t = _tau(scan, tau)
    lines = [f"# headmaps scan: {scan.model_id}", "",
             f"Preset `{scan.preset}`, tau = {t}, options: `{scan.options}`.", "",
             "## Relations", "", _md(summary_table(scan, tau=t)), ""]
    if scan.skipped:
        lines += ["## Skipped relations", ""] + [f"- `{r}`: {why}" for r, why in scan.skipped.items()] + [""]
    multi = multi_relation_heads(scan, t)
    lines += ["## Heads implementing several relations", "",
              _md(multi.head(30)) if len(multi) else "None.", ""]
    gqa = gqa_agreement(scan, tau=t)
    if len(gqa):
        lines += ["## Grouped-query attention", "",
                  "Mean Jaccard similarity of the relation sets of two heads in the same layer, "
                  "for heads sharing a value head versus not:", "", _md(gqa), ""]
    return "\n".join(lines)


def _md(frame: pd.DataFrame) -> str:
    cols = list(frame.columns)
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        out.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    return "\n".join(out)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)
