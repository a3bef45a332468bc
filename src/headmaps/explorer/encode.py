"""Compact, JSON-able encoding of a head report for the HTML explorer: the one encoding step.

The page reads a :class:`~headmaps.headreport.HeadReport` in this form, written here in
one pass from its typed parts (the scan, salient operations, descriptions, the QK half,
head types, the descriptions' held-out scores) plus any hand-written per-head extras
(:mod:`headmaps.explorer.schema`).
Scores are stored as little-endian ``uint16`` quantised to ``1/65535`` and base64
encoded (two bytes per head and relation). The quantisation is nudged at the threshold
so that ``q >= tau_q`` in the page holds exactly when ``score >= tau`` in Python: the
page never disagrees with the library about which heads implement a relation. Token
strings are interned in one table and referred to by index; each head's entry is a
separate small JSON text, so the page parses a head only when it shows it.
"""

from __future__ import annotations

import base64
import datetime as _dt
import math
from typing import Any

import numpy as np

from ..attention import AttentionSummary, describe_qk
from ..describe import Description, DescriptionScores
from ..headreport import HeadReport
from ..headtypes import HeadTypes
from ..headtypes.results import TYPES as TYPE_ORDER
from ..relations.registry import category_of
from ..relations.schema import CATEGORIES, CUSTOM_CATEGORY
from ..salient import SalientAll
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
    """Three significant digits: enough to read, short in JSON (non-finite: 0)."""
    x = float(x)
    return float(f"{x:.3g}") if math.isfinite(x) else 0.0


class Interner:
    """Strings to indices into one shared table (the page's token table)."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.table: list[str] = []

    def __call__(self, s: str) -> int:
        """The index of ``s``, added to the table on first sight."""
        i = self.index.get(s)
        if i is None:
            i = self.index[s] = len(self.table)
            self.table.append(s)
        return i


#: Key-side preferences of the QK half shown per head.
N_KEYS = 6

#: One head's entry: the short keys ``s`` (salient: ``[token, saliency, [target, score,
#: target, score, ...]]``), ``d`` (description), ``e`` (evidence), ``c`` (confidence), ``u``
#: (1 when unclear), ``a`` (the QK half: ``{"w": profile weights, "k": [token, score,
#: ...], "t": summary}``) and ``ds`` (the description's held-out score: ``{"s": score,
#: "b": baseline, "m": method, "n": tokens, "k": k, "r": reason}``, ``s`` and ``b`` None
#: where not measured); tokens are indices into the token table.
Entry = dict[str, Any]


def _salient(sal: SalientAll, heads: list[Entry], intern: Interner, n_heads: int) -> None:
    for i, layer in enumerate(sal.layers):
        for h in range(sal.n_heads):
            heads[layer * n_heads + h]["s"] = [
                [intern(sal.token_text(t)), _num(sv),
                 [v for g, sc in zip(tids, scs) for v in (intern(sal.token_text(g)), _num(sc))]]
                for t, sv, tids, scs in zip(sal.token_ids[i, h], sal.saliency[i, h],
                                            sal.target_ids[i, h], sal.scores[i, h])]


def _evidence(ev: Any) -> str:
    if isinstance(ev, dict):
        s, t, why = ev.get("source", ""), ev.get("target", ""), ev.get("why", "")
        text = f"{s!s} \u2192 {t!s}" if (s or t) else ""
        return f"{text} ({why})" if why and text else (text or str(why))
    return str(ev)


def _descriptions(descriptions: list[Description], heads: list[Entry], n_heads: int) -> None:
    for d in descriptions:
        out = heads[d.layer * n_heads + d.head]
        if d.unclear:
            out["u"] = 1
            out.pop("d", None)
        elif d.text:
            out["d"] = str(d.text)
        if d.evidence:
            out["e"] = [_evidence(x) for x in d.evidence]
        out["c"] = _num(d.confidence)


def _attention(att: AttentionSummary, heads: list[Entry], intern: Interner,
               n_heads: int) -> None:
    for layer, h in att.heads:
        pr, pf = att.profile_at(layer, h), att.preferences(layer, h)
        heads[layer * n_heads + h]["a"] = {
            "w": [_num(w) for w in pr.weights],
            "k": [v for t, sc in zip(pf.key_tokens[:N_KEYS], pf.key_scores[:N_KEYS])
                  for v in (intern(str(t)), _num(sc))],
            "t": describe_qk(pf, pr)}


def _opt(x: Any) -> float | None:
    """A score that may be missing: None for None or NaN, else :func:`_num`."""
    return None if x is None or not math.isfinite(float(x)) else _num(x)


def _score_entry(score: float | None, baseline: float | None, method: str, n: int, k: int,
                 reason: str) -> dict[str, Any]:
    return {"s": _opt(score), "b": _opt(baseline), "m": method, "n": int(n), "k": int(k),
            "r": reason}


def _description_scores(scores: DescriptionScores, heads: list[Entry], n_heads: int) -> None:
    """Each described head's held-out score (the first score of a head wins).

    Unclear heads are left out (they have no description to score); a head whose
    description was not scored (no rule: it needs an LLM scorer) keeps the reason, with
    method ``"none"``.
    """
    for s in scores:
        out = heads[s.layer * n_heads + s.head]
        if "ds" in out or s.reason == "unclear":
            continue
        out["ds"] = _score_entry(s.score if s.scored else None, s.baseline,
                                 s.method if s.scored else "none", s.n, s.k,
                                 s.reason or ("" if s.scored else "not measured"))


def _types(types: HeadTypes, n_heads: int
           ) -> tuple[dict[int, list[str]], dict[int, dict[str, str]]]:
    """Head index -> type labels (from :meth:`HeadTypes.to_frame`), and -> their evidence.

    The frame's ``types`` column names each head's labels, so the encoding stays generic:
    a type or column the result gains passes through the frame. The evidence is
    :meth:`HeadTypes.evidence_text` of each labelled head (the badge's tooltip).
    """
    frame = types.to_frame()
    labels = {int(layer) * n_heads + int(head): names.split(",")
              for layer, head, names in zip(frame["layer"], frame["head"], frame["types"])
              if names}
    why = {i: types.evidence_text(i // n_heads, i % n_heads) for i in labels}
    return labels, why


def _hand(extras: dict[tuple[int, int], HeadExtra], heads: list[Entry], intern: Interner,
          labels: dict[int, list[str]], n_heads: int,
          why: dict[int, dict[str, str]] | None = None) -> None:
    """Hand-written extras (already checked by the schema): their fields win head by head."""
    for (layer, head), e in extras.items():
        i = layer * n_heads + head
        out = heads[i]
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
        if e.get("types"):
            labels[i] = list(e["types"])
            if why is not None:
                why[i] = dict(e.get("type_evidence") or {})
        if e.get("description_score"):
            ds = e["description_score"]
            out["ds"] = _score_entry(ds["score"], ds["baseline"], ds["method"], ds["n"],
                                     ds["k"], ds["reason"])


def encode_types(labels: dict[int, list[str]],
                 why: dict[int, dict[str, str]] | None = None) -> dict[str, Any]:
    """Head index -> labels, as ``{"names": [type, ...], "heads": [[head index, ...], ...]}``.

    One list of head indices (``layer * n_heads + head``, ascending) per type name, in the
    head types' display order, so the page filters by type without parsing every head.
    With ``why`` (head index -> type -> evidence text), ``"why"`` holds the evidence of
    each listed head, in the same order (the badge's tooltip).
    """
    heads: dict[str, list[int]] = {}
    for i in sorted(labels):
        for t in labels[i]:
            heads.setdefault(t, []).append(i)
    rank = {t: i for i, t in enumerate(TYPE_ORDER)}
    names = sorted(heads, key=lambda t: (rank.get(t, len(rank)), t))
    out: dict[str, Any] = {"names": names, "heads": [heads[t] for t in names]}
    texts = [[(why or {}).get(i, {}).get(t, "") for i in heads[t]] for t in names]
    if any(w for ws in texts for w in ws):
        out["why"] = texts
    return out


def _context(scan: Any) -> dict[str, Any] | None:
    """The in-context scores of the page's "in context" toggle, or None without them."""
    if scan.phi_ctx is None:
        return None
    scores, tau_q = quantise(scan.phi_ctx, scan.tau_ctx)
    supp, _ = quantise(scan.supp_ctx, scan.tau_ctx)
    return {"scores": b64(scores), "supp": b64(supp), "tau": float(scan.tau_ctx), "tauQ": tau_q,
            "best": best_relation(scan.phi_ctx).tolist(),
            "bestSupp": best_relation(scan.supp_ctx).tolist()}


def encode(report: HeadReport, title: str,
           extras: dict[tuple[int, int], HeadExtra] | None = None) -> tuple[dict[str, Any],
                                                                         list[Any]]:
    """The payload the page reads at once, and the per-head entries it parses on demand.

    Args:
        report: the head report; every part present is shown.
        title: the page title.
        extras: hand-written extras checked by
            :func:`~headmaps.explorer.schema.normalise_extras`; their fields win head by head.

    Returns:
        ``(payload, heads)``: ``payload`` holds everything but the per-head entries, whose
        token table is ``payload["toks"]``; ``heads`` has one entry (an :data:`Entry`, or
        None) per head in ``layer * n_heads + head`` order, which the page keeps as one
        JSON text per line and parses only when it needs that head.
    """
    scan = report.scan
    L, H = scan.n_layers, scan.n_heads
    intern = Interner()
    heads: list[Entry] = [{} for _ in range(L * H)]
    if report.salient is not None:
        _salient(report.salient, heads, intern, H)
    if report.descriptions is not None:
        _descriptions(report.descriptions, heads, H)
    if report.attention is not None:
        _attention(report.attention, heads, intern, H)
    if report.description_scores is not None:
        _description_scores(report.description_scores, heads, H)
    labels, why = _types(report.types, H) if report.types is not None else ({}, {})
    _hand(extras or {}, heads, intern, labels, H, why)
    scores, tau_q = quantise(scan.scores, scan.tau)
    supp, _ = quantise(scan.suppression, scan.tau)
    fams, fam = families(list(scan.relations))
    return {
        "format": 1,
        "title": title,
        "model_id": scan.model_id,
        "relations": list(scan.relations),
        "n_pairs": [int(scan.n_pairs.get(r, 0)) for r in scan.relations],
        "k": [int(scan.k.get(r, 0)) for r in scan.relations],
        "nL": L, "nH": H,
        "tau": float(scan.tau), "Q": Q, "tauQ": tau_q,
        "scores": b64(scores), "supp": b64(supp),
        # The overview: each head's best relation (by relation and by suppression score)
        # and the family of every relation; the page shows a head neutral below tau.
        "families": fams, "famColours": [FAMILY_COLOURS[f] for f in fams], "fam": fam,
        "best": best_relation(scan.scores).tolist(),
        "bestSupp": best_relation(scan.suppression).tolist(),
        "toks": intern.table,
        "summary": summarise(scan, heads),
        "types": encode_types(labels, why),
        # heads with a measured description score: the page shows its column and filter
        "dscored": sum(1 for h in heads if (h.get("ds") or {}).get("s") is not None),
        "ctx": _context(scan),
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }, [h or None for h in heads]
