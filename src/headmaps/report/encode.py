"""Compact, JSON-able encoding of a scan (+ extras) for the HTML explorer.

Scores are stored as little-endian ``uint16`` quantised to ``1/65535`` and base64
encoded (two bytes per head and relation). The quantisation is nudged at the threshold
so that ``q >= tau_q`` in the page holds exactly when ``score >= tau`` in Python: the
page never disagrees with the library about which heads implement a relation. Token
strings of the extras are interned in one table and referred to by index; each head's
extras are a separate small JSON text, so the page parses a head only when it shows it.
"""

from __future__ import annotations

import base64
import datetime as _dt
import math
from typing import Any

import numpy as np

from ..headtypes.results import TYPES as TYPE_ORDER
from ..relations.registry import category_of
from ..relations.schema import CATEGORIES, CUSTOM_CATEGORY
from ..scoring.results import ScanResult
from .schema import HeadExtra
from .summary import summarise

#: Quantisation levels of the scores (uint16).
Q = 65535

#: The colour of each relation family in the overview (distinct for colour-blind readers).
FAMILY_COLOURS: dict[str, str] = {
    "algorithmic": "#4e79a7", "knowledge": "#e15759", "linguistic": "#59a14f",
    "translation": "#b07aa1", CUSTOM_CATEGORY: "#f28e2b",
}


def quantise(a: np.ndarray, tau: float) -> tuple[np.ndarray, int]:
    """Scores in [0, 1] -> (uint16 array, tau level) with exact threshold semantics.

    Returns:
        ``(q, tau_q)`` where ``q >= tau_q`` exactly where ``a >= tau``.
    """
    a = np.nan_to_num(np.asarray(a, dtype=np.float64), nan=0.0)
    q = np.clip(np.rint(a * Q), 0, Q)
    tau_q = int(min(max(math.ceil(tau * Q), 0), Q + 1))
    above = a >= tau
    q = np.where(above, np.maximum(q, tau_q), np.minimum(q, tau_q - 1))
    return np.clip(q, 0, Q).astype("<u2"), tau_q


def best_relation(scores: np.ndarray) -> np.ndarray:
    """Index of each head's best-scoring relation (the first on ties; NaN counts as 0).

    Args:
        scores: ``(n_relations, n_layers, n_heads)`` scores.

    Returns:
        ``(n_layers * n_heads,)`` int array in ``layer * n_heads + head`` order; ``-1``
        everywhere when there are no relations.
    """
    n_rel = scores.shape[0]
    if n_rel == 0:
        return np.full(scores.shape[1] * scores.shape[2], -1, dtype=int)
    flat = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=0.0).reshape(n_rel, -1)
    return flat.argmax(axis=0)


def families(relations: list[str]) -> tuple[list[str], list[int]]:
    """The relation families a scan holds, in display order, and each relation's family.

    Families are the categories of :mod:`headmaps.relations` (algorithmic, knowledge,
    linguistic, translation) and ``custom`` for relations that are not built in.

    Returns:
        ``(names, index)``: the families present, and per relation the position of its
        family in ``names``.
    """
    cats = [category_of(r) for r in relations]
    order = [f for f in (*CATEGORIES, CUSTOM_CATEGORY) if f in cats]
    return order, [order.index(c) for c in cats]


def b64(a: np.ndarray) -> str:
    """Base64 of the raw little-endian bytes of ``a``."""
    return base64.b64encode(np.ascontiguousarray(a).astype("<u2").tobytes()).decode("ascii")


def _num(x: float) -> float:
    """Three significant digits: enough to read, short in JSON."""
    return float(f"{x:.3g}")


class _Interner:
    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.table: list[str] = []

    def __call__(self, s: str) -> int:
        i = self.index.get(s)
        if i is None:
            i = self.index[s] = len(self.table)
            self.table.append(s)
        return i


def encode_extras(extras: dict[tuple[int, int], HeadExtra], n_layers: int,
                  n_heads: int) -> tuple[list[str], list[Any]]:
    """Extras -> (token table, one entry per head in ``layer * n_heads + head`` order).

    Each entry is None or a dict with the short keys ``s`` (salient:
    ``[token, saliency, [target, score, target, score, ...]]``), ``d`` (description),
    ``e`` (evidence), ``c`` (confidence), ``u`` (1 when unclear) and ``a`` (the QK half:
    ``{"w": profile weights, "k": [token, score, ...], "t": summary}``) and ``ds`` (the
    description score: ``{"s": score, "b": baseline, "m": method, "n": tokens, "k": k,
    "r": reason}``, scores None where not measured). Head types go to the payload
    instead (:func:`encode_types`).
    """
    intern = _Interner()
    heads: list[Any] = [None] * (n_layers * n_heads)
    for (layer, head), e in extras.items():
        out: dict[str, Any] = {}
        if e.get("salient"):
            out["s"] = [[intern(s["token"]), _num(s["saliency"]),
                         [v for t, sc in s["targets"] for v in (intern(t), _num(sc))]]
                        for s in e["salient"]]
        if e.get("description"):
            out["d"] = e["description"]
        if e.get("evidence"):
            out["e"] = e["evidence"]
        if e.get("confidence") is not None:
            out["c"] = _num(e["confidence"])
        if e.get("unclear"):
            out["u"] = 1
        if e.get("attention"):
            a = e["attention"]
            out["a"] = {"w": [_num(w) for w in a["weights"]],
                        "k": [v for t, sc in a["keys"] for v in (intern(t), _num(sc))],
                        "t": a["summary"]}
        if e.get("description_score"):
            ds = e["description_score"]
            out["ds"] = {"s": None if ds["score"] is None else _num(ds["score"]),
                         "b": None if ds["baseline"] is None else _num(ds["baseline"]),
                         "m": ds["method"], "n": ds["n"], "k": ds["k"], "r": ds["reason"]}
        heads[layer * n_heads + head] = out or None
    return intern.table, heads


def encode_types(extras: dict[tuple[int, int], HeadExtra], n_heads: int) -> dict[str, Any]:
    """Head types of the extras -> ``{"names": [type, ...], "heads": [[head index, ...], ...]}``.

    One list of head indices (``layer * n_heads + head``, ascending) per type name, so
    the page can filter by type without parsing every head's extras.
    """
    heads: dict[str, list[int]] = {}
    for (layer, head), e in sorted(extras.items()):
        for t in e.get("types") or []:
            heads.setdefault(t, []).append(layer * n_heads + head)
    rank = {t: i for i, t in enumerate(TYPE_ORDER)}
    names = sorted(heads, key=lambda t: (rank.get(t, len(rank)), t))
    return {"names": names, "heads": [heads[t] for t in names]}


def encode(scan: ScanResult, extras: dict[tuple[int, int], HeadExtra],
           title: str) -> tuple[dict[str, Any], list[Any]]:
    """The payload the page reads at once, and the per-head extras it parses on demand.

    Returns:
        ``(payload, heads)``: ``payload`` holds everything but the per-head extras, whose
        token table is ``payload["toks"]``; ``heads`` has one entry per head (see
        :func:`encode_extras`), which the page keeps as one JSON text per line and
        parses only when it needs that head.
    """
    scores, tau_q = quantise(scan.scores, scan.tau)
    supp, _ = quantise(scan.suppression, scan.tau)
    toks, heads = encode_extras(extras, scan.n_layers, scan.n_heads)
    fams, fam = families(list(scan.relations))
    return {
        "format": 1,
        "title": title,
        "model_id": scan.model_id,
        "relations": list(scan.relations),
        "n_pairs": [int(scan.n_pairs.get(r, 0)) for r in scan.relations],
        "k": [int(scan.k.get(r, 0)) for r in scan.relations],
        "nL": scan.n_layers, "nH": scan.n_heads,
        "tau": float(scan.tau), "Q": Q, "tauQ": tau_q,
        "scores": b64(scores), "supp": b64(supp),
        # The overview: each head's best relation (by relation and by suppression score)
        # and the family of every relation; the page shows a head neutral below tau.
        "families": fams, "famColours": [FAMILY_COLOURS[f] for f in fams], "fam": fam,
        "best": best_relation(scan.scores).tolist(),
        "bestSupp": best_relation(scan.suppression).tolist(),
        "toks": toks,
        "summary": summarise(scan, extras),
        "types": encode_types(extras, scan.n_heads),
        # heads with a measured description score: the page shows its column and filter
        "dscored": sum(1 for e in extras.values()
                       if (e.get("description_score") or {}).get("score") is not None),
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }, heads
