"""Description scores in the explorer: :class:`~headmaps.describe.DescriptionScores` -> extras.

Each described head gets ``"description_score"`` in the
:data:`~headmaps.report.schema.HeadExtras` schema::

    {"score": 0.8, "baseline": 0.05, "method": "offline", "n": 18, "k": 5, "reason": ""}

``score`` and ``baseline`` are None where not measured; ``method`` is ``"none"`` for a
head whose description was not scored, with the ``reason`` (no rule: needs an LLM scorer;
unclear...). The page shows the score and baseline beside the description, a column of
scores in the table, and a "description score >= x" filter.
"""

from __future__ import annotations

import math
from typing import Any

from .schema import HeadExtras


def _num(x: float) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def score_extra(s: Any) -> dict[str, Any]:
    """One :class:`~headmaps.describe.DescriptionScore` in the extras schema."""
    return {"score": _num(s.score) if s.scored else None, "baseline": _num(s.baseline),
            "method": s.method if s.scored else "none", "n": int(s.n), "k": int(s.k),
            "reason": s.reason or ("" if s.scored else "not measured")}


def extras_from_description_scores(scores: Any, extras: HeadExtras | None = None) -> HeadExtras:
    """Add every head's description score to ``extras`` (the first score of a head wins).

    Unclear heads are left out (they have no description to score).
    """
    extras = {} if extras is None else extras
    seen = set()
    for s in scores:
        key = f"{s.layer}.{s.head}"
        if key in seen or s.reason == "unclear":
            continue
        seen.add(key)
        extras.setdefault(key, {})["description_score"] = score_extra(s)
    return extras
