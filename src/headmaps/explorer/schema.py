"""Hand-written per-head data a report can show beside a head report, as plain JSON.

The library's own results reach the page typed (:mod:`headmaps.explorer.encode` reads a
:class:`~headmaps.headreport.HeadReport`); this small schema is for data from elsewhere
(``headmaps report --extras FILE``, ``hm.report(..., extras=...)``, a JSON file written by
hand, the synthetic demo scan), whose fields win head by head::

    extras = {
        "12.3": {
            "salient": [                                  # top salient tokens, best first
                {"token": " France", "saliency": 3.1,
                 "targets": [[" Paris", 8.2], [" Lyon", 6.0]]},   # top mappings, best first
            ],
            "description": "maps countries to their capitals",    # "" or absent: none
            "evidence": [" France -> Paris", " Italy -> Rome"],
            "confidence": 0.9,                           # 0..1, optional
            "unclear": False,                            # True: no clear pattern found
            "attention": {                               # the QK half
                "weights": [0.1, 0.6, 0.2],              # positional profile, Δ = 0, 1, 2, ...
                "keys": [[" the", 2.1], [".", 1.7]],     # key-side preferences, best first
                "summary": "attends previous-token ...",
            },
            "types": ["previous_token"],                 # head types
            "description_score": {                       # held-out score (description_scores)
                "score": 0.8, "baseline": 0.05,          # None where not measured
                "method": "offline", "n": 18, "k": 5, "reason": "",
            },
        },
    }

Keys are heads written ``"L.H"`` (layer, head; Hugging Face numbering). Every field is
optional. A head's *coverage status* is ``described`` (a description and not unclear),
``unclear`` (a describer looked and found no clear pattern) or ``none`` (not described).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, TypedDict

from ..errors import HeadmapsError
from ..models.headmodel import parse_head

COVERAGE = ("described", "unclear", "none")


class SalientEntry(TypedDict):
    """One salient token of a head and where the head maps it."""

    token: str
    saliency: float
    targets: list[tuple[str, float]]


class AttentionExtra(TypedDict, total=False):
    """The QK half of one head: positional profile weights, key-side preferences, a line."""

    weights: list[float]
    keys: list[tuple[str, float]]
    summary: str


class DescriptionScoreExtra(TypedDict, total=False):
    """The measured score of a head's description (encoded by :mod:`headmaps.explorer.encode`)."""

    score: float | None
    baseline: float | None
    method: str
    n: int
    k: int
    reason: str


class HeadExtra(TypedDict, total=False):
    """Everything beyond the scores that the report knows about one head."""

    salient: list[SalientEntry]
    description: str
    evidence: list[str]
    confidence: float
    unclear: bool
    attention: AttentionExtra
    types: list[str]
    type_evidence: dict[str, str]
    description_score: DescriptionScoreExtra


#: ``"L.H"`` -> :class:`HeadExtra`.
HeadExtras = dict[str, HeadExtra]


def coverage(extra: HeadExtra | None) -> str:
    """The coverage status of one head: ``described``, ``unclear`` or ``none``."""
    if not extra:
        return "none"
    if extra.get("unclear"):
        return "unclear"
    return "described" if (extra.get("description") or "").strip() else "none"


def normalise_extras(extras: dict[str, Any] | None, n_layers: int,
                     n_heads: int) -> dict[tuple[int, int], HeadExtra]:
    """Check ``extras`` against the schema and return them keyed by ``(layer, head)``.

    Numbers become finite floats, tokens strings; unknown fields are dropped.

    Args:
        extras: a :data:`HeadExtras` mapping, or None.
        n_layers: layers of the scanned model (keys must lie inside).
        n_heads: heads per layer.

    Returns:
        ``{(layer, head): HeadExtra}`` with only the known fields.

    Raises:
        HeadmapsError: a key is malformed or out of range, or a field has the wrong shape.
    """
    out: dict[tuple[int, int], HeadExtra] = {}
    for key, raw in (extras or {}).items():
        layer, head = parse_head(key)
        if not (0 <= layer < n_layers and 0 <= head < n_heads):
            raise HeadmapsError(f"extras for head {key} lie outside the model ({n_layers} layers x "
                                f"{n_heads} heads)")
        if raw is None:
            continue
        if not isinstance(raw, dict):
            raise HeadmapsError(f"extras for head {key} must be a dict, got {type(raw).__name__}")
        e: HeadExtra = {}
        if raw.get("salient"):
            e["salient"] = [_salient(key, s) for s in raw["salient"]]
        if raw.get("description"):
            e["description"] = str(raw["description"])
        if raw.get("evidence"):
            ev = raw["evidence"]
            e["evidence"] = [str(ev)] if isinstance(ev, str) else [str(x) for x in ev]
        if raw.get("confidence") is not None:
            e["confidence"] = _num(key, "confidence", raw["confidence"])
        if raw.get("unclear"):
            e["unclear"] = True
        if raw.get("attention"):
            e["attention"] = _attention(key, raw["attention"])
        if raw.get("types"):
            e["types"] = _types(key, raw["types"])
        if raw.get("type_evidence"):  # type -> why the head carries it
            e["type_evidence"] = {str(k): str(v) for k, v in dict(raw["type_evidence"]).items()}
        if raw.get("description_score"):
            e["description_score"] = _description_score(key, raw["description_score"])
        out[(layer, head)] = e
    return out


def _salient(key: str, s: Any) -> SalientEntry:
    if not isinstance(s, dict) or "token" not in s:
        raise HeadmapsError(f"salient entry of head {key} needs a 'token': {s!r}")
    targets = _token_scores(key, s.get("targets"), "target")
    return {"token": str(s["token"]), "saliency": _num(key, "saliency", s.get("saliency", 0.0)),
            "targets": targets}


def _token_scores(key: str, items: Any, what: str) -> list[tuple[str, float]]:
    """``[[token, score], ...]`` checked: strings and finite floats."""
    out = []
    for t in items or []:
        try:
            tok, score = t
        except (TypeError, ValueError):
            raise HeadmapsError(f"{what} of head {key} must be [token, score]: {t!r}") from None
        out.append((str(tok), _num(key, f"{what} score", score)))
    return out


def _attention(key: str, a: Any) -> AttentionExtra:
    if not isinstance(a, dict):
        raise HeadmapsError(f"attention extras of head {key} must be a dict, "
                            f"got {type(a).__name__}")
    keys = _token_scores(key, a.get("keys"), "attention key")
    return {"weights": [_num(key, "profile weight", w) for w in a.get("weights") or []],
            "keys": keys,
            "summary": str(a.get("summary") or "")}


def _types(key: str, t: Any) -> list[str]:
    if isinstance(t, str) or not all(isinstance(x, str) and x for x in t):
        raise HeadmapsError(f"types of head {key} must be a list of type names, got {t!r}")
    return list(dict.fromkeys(t))


def _description_score(key: str, d: Any) -> DescriptionScoreExtra:
    if not isinstance(d, dict):
        raise HeadmapsError(f"description_score of head {key} must be a dict, "
                            f"got {type(d).__name__}")

    def opt(name: str) -> float | None:
        x = d.get(name)
        if x is None:
            return None
        v = _num(key, f"description {name}", x)
        return v if math.isfinite(float(x)) else None

    score = opt("score")
    return {"score": score, "baseline": opt("baseline"),
            "method": str(d.get("method") or ("offline" if score is not None else "none")),
            "n": int(_num(key, "description score n", d.get("n", 0))),
            "k": int(_num(key, "description score k", d.get("k", 0))),
            "reason": str(d.get("reason") or "")}


def _num(key: str, what: str, x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise HeadmapsError(f"{what} of head {key} is not a number: {x!r}") from None
    return v if math.isfinite(v) else 0.0


def load_extras(path: str | os.PathLike) -> HeadExtras:
    """Read extras written as JSON in the :data:`HeadExtras` schema (checked when rendered)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise HeadmapsError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise HeadmapsError(f"{path} must hold a JSON object mapping 'LAYER.HEAD' to extras")
    return data
