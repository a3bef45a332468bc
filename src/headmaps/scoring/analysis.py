"""Analyses of a :class:`ScanResult`: relation heads, multi-relation heads, layers, GQA groups."""

from __future__ import annotations

from math import comb
from typing import Any, Protocol

import numpy as np
import pandas as pd

from ..io import markdown_table


class ScanResult(Protocol):
    """What these analyses read of a :class:`~headmaps.scoring.ScanResult` (no import of it).

    ``scores`` and ``suppression`` are ``(n_relations, n_layers, n_heads)``; ``scan[name]``
    is the :class:`~headmaps.scoring.RelationScores` of one relation.
    """

    model_id: str
    model_info: dict[str, Any]
    relations: list[str]
    scores: np.ndarray
    suppression: np.ndarray
    n_pairs: dict[str, int]
    k: dict[str, int]
    skipped: dict[str, str]
    preset: str
    options: dict[str, Any]
    tau: float
    phi_ctx: np.ndarray | None
    tau_ctx: float

    @property
    def n_layers(self) -> int: ...  # noqa: D102

    @property
    def n_heads(self) -> int: ...  # noqa: D102

    def __getitem__(self, relation: str) -> Any: ...  # noqa: D105


def _tau(scan: ScanResult, tau: float | None) -> float:
    return scan.tau if tau is None else tau


def implements(scan: ScanResult, tau: float | None = None, suppression: bool = False) -> np.ndarray:
    """Bool ``(n_relations, n_layers, n_heads)``: score >= tau."""
    return (scan.suppression if suppression else scan.scores) >= _tau(scan, tau)


def relation_heads(scan: ScanResult, tau: float | None = None,
                   suppression: bool = False) -> dict[str, list[str]]:
    """Relation -> heads (``"L.H"``, best first) with score >= tau."""
    arr = scan.suppression if suppression else scan.scores
    out = {}
    for i, rel in enumerate(scan.relations):
        idx = np.argwhere(arr[i] >= _tau(scan, tau))
        idx = sorted(idx.tolist(), key=lambda lh: -arr[i, lh[0], lh[1]])
        out[rel] = [f"{layer}.{head}" for layer, head in idx]
    return out


def multi_relation_heads(scan: ScanResult, tau: float | None = None,
                         min_relations: int = 2) -> pd.DataFrame:
    """Heads implementing at least ``min_relations`` relations.

    The one definition the summary, the CLI and the HTML report all use.

    Returns:
        Frame with columns ``head`` (``L.H``), ``layer``, ``head_index``, ``n_relations``,
        ``relations`` (comma-separated, in scan order), ``max_score`` (the head's best
        score over all relations); most relations first, then best score, then position.
    """
    imp = implements(scan, tau)
    count = imp.sum(0)
    best = scan.scores.max(0) if len(scan.relations) else np.zeros((scan.n_layers, scan.n_heads))
    rows = []
    for layer, head in np.argwhere(count >= min_relations):
        rels = [scan.relations[r] for r in np.flatnonzero(imp[:, layer, head])]
        rows.append({"head": f"{layer}.{head}", "layer": int(layer), "head_index": int(head),
                     "n_relations": len(rels), "relations": ", ".join(rels),
                     "max_score": float(best[layer, head])})
    frame = pd.DataFrame(rows, columns=["head", "layer", "head_index", "n_relations", "relations",
                                        "max_score"])
    return frame.sort_values(["n_relations", "max_score", "layer", "head_index"],
                             ascending=[False, False, True, True], ignore_index=True)


def layer_distribution(scan: ScanResult, tau: float | None = None,
                       suppression: bool = False) -> pd.DataFrame:
    """Number of heads implementing each relation, per layer: index layer, columns relations."""
    imp = implements(scan, tau, suppression)
    return pd.DataFrame(imp.sum(2).T, index=pd.RangeIndex(scan.n_layers, name="layer"),
                        columns=scan.relations)


def kv_group_size(scan: ScanResult) -> int:
    """Query heads per value head (1 without grouping, or when the model info does not say)."""
    n_kv = int(scan.model_info.get("n_kv_heads") or scan.n_heads)
    return scan.n_heads // n_kv if n_kv and scan.n_heads % n_kv == 0 else 1


def gqa_agreement(scan: ScanResult, tau: float | None = None) -> pd.DataFrame:
    """Do heads that share a value head (a GQA group) implement a relation together?

    The one definition the summary, the CLI and the HTML report all use. Per relation:
    ``heads`` implementing it, ``groups`` (KV groups of a layer holding at least one of
    them), ``share`` = mean fraction of a touched group's heads that implement it, and
    ``chance`` = the same expected if each layer's relation heads sat at random among its
    heads (hypergeometric: a group of ``g`` of the layer's ``H`` heads is untouched by
    ``k`` relation heads with probability ``C(H-k, g) / C(H, g)``). ``share`` well above
    ``chance`` means a group's heads tend to implement the relation together.

    Returns:
        Frame with columns ``relation``, ``heads``, ``groups``, ``share``, ``chance``,
        ``group_size``; empty for models without grouped heads.
    """
    cols = ["relation", "heads", "groups", "share", "chance", "group_size"]
    group = kv_group_size(scan)
    if group <= 1 or not scan.relations:
        return pd.DataFrame(columns=cols)
    L, H = scan.n_layers, scan.n_heads
    G = H // group
    imp = implements(scan, tau)
    rows = []
    for r, rel in enumerate(scan.relations):
        hits = imp[r]  # (L, H)
        n = int(hits.sum())
        touched = int(hits.reshape(L, G, group).any(axis=2).sum())
        expected = sum(G * (1.0 - comb(H - k, group) / comb(H, group))
                       for k in hits.sum(axis=1).tolist() if k)
        rows.append({"relation": rel, "heads": n, "groups": touched,
                     "share": n / (group * touched) if touched else 0.0,
                     "chance": n / (group * expected) if expected else 0.0, "group_size": group})
    return pd.DataFrame(rows, columns=cols)


def top_heads(scan: ScanResult, relation: str, n: int = 5,
              suppression: bool = False) -> pd.DataFrame:
    """The ``n`` best heads for ``relation``: columns head, layer, head_index and score."""
    rows = scan[relation].top_heads(n, suppression)
    return pd.DataFrame([{"head": f"{layer}.{h}", "layer": layer, "head_index": h, "score": s}
                         for layer, h, s in rows], columns=["head", "layer", "head_index", "score"])


def summary_table(scan: ScanResult, n: int = 3, tau: float | None = None) -> pd.DataFrame:
    """One row per relation: pairs, k, best heads, count of heads >= tau (and suppressing).

    With in-context scores, also the best heads in context and the count of heads whose
    ``phi_ctx`` reaches ``scan.tau_ctx`` (``top_heads_ctx``, ``n_heads_ctx``).
    """
    t = _tau(scan, tau)
    ctx = scan.phi_ctx is not None
    heads = lambda best: ", ".join(f"{layer}.{h} ({s:.2f})" for layer, h, s in best)  # noqa: E731
    rows = []
    for i, rel in enumerate(scan.relations):
        row = {
            "relation": rel, "n_pairs": scan.n_pairs[rel], "k": scan.k[rel],
            "top_heads": heads(scan[rel].top_heads(n)),
            "n_heads": int((scan.scores[i] >= t).sum()),
            "n_suppressing": int((scan.suppression[i] >= t).sum()),
        }
        if ctx:
            row["top_heads_ctx"] = heads(scan[rel].top_heads(n, context=True))
            row["n_heads_ctx"] = int((scan.phi_ctx[i] >= scan.tau_ctx).sum())
        rows.append(row)
    columns = ["relation", "n_pairs", "k", "top_heads", "n_heads", "n_suppressing"]
    return pd.DataFrame(rows, columns=columns + (["top_heads_ctx", "n_heads_ctx"] if ctx else []))


def summary_markdown(scan: ScanResult, tau: float | None = None) -> str:
    """A Markdown report: per-relation table, skipped relations, multi-relation heads, GQA."""
    t = _tau(scan, tau)
    lines = [f"# headmaps scan: {scan.model_id}", "",
             f"Preset `{scan.preset}`, tau = {t}, options: `{scan.options}`.", "",
             "## Relations", "", markdown_table(summary_table(scan, tau=t), digits=3), ""]
    if scan.skipped:
        lines += ["## Skipped relations",
                  ""] + [f"- `{r}`: {why}" for r, why in scan.skipped.items()] + [""]
    multi = multi_relation_heads(scan, t)
    lines += ["## Heads implementing several relations", "",
              markdown_table(multi.head(30), digits=3) if len(multi) else "None.", ""]
    gqa = gqa_agreement(scan, tau=t)
    if len(gqa):
        lines += ["## Grouped-query attention", "",
                  "Per relation: the mean share of a touched KV group's heads that implement it, "
                  "against the share expected if the relation heads sat at random in their layer:",
                  "", markdown_table(gqa, digits=3), ""]
    return "\n".join(lines)
