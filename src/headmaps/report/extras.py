"""The per-head extras of a report, converted from results (nothing is computed here).

Converters turn the library's own results (:class:`~headmaps.salient.SalientAll`,
:class:`~headmaps.describe.Description`, :class:`~headmaps.analyse.HeadReport`) into
the plain :data:`~headmaps.report.schema.HeadExtras` the report reads. The results
come from :func:`headmaps.analyse`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import HeadmapsError
from .schema import HeadExtras


def extras_from_salient(salient: Any, extras: HeadExtras | None = None) -> HeadExtras:
    """Add the salient operations of every head of a ``SalientAll`` to ``extras``.

    Args:
        salient: a :class:`~headmaps.salient.SalientAll` (or any iterable of
            :class:`~headmaps.salient.SalientOperations`).
        extras: extras to add to (a new dict by default).

    Returns:
        The extras, ``"L.H" -> {"salient": [...]}`` merged in.
    """
    extras = {} if extras is None else extras
    for ops in salient:
        entries = [{"token": tok, "saliency": float(sal),
                    "targets": [[t, float(sc)] for t, sc in zip(targets, scores)]}
                   for tok, sal, targets, scores
                   in zip(ops.tokens, ops.saliency, ops.targets, ops.scores)]
        extras.setdefault(f"{ops.layer}.{ops.head}", {})["salient"] = entries
    return extras


def _evidence(ev: Any) -> str:
    if isinstance(ev, dict):
        s, t, why = ev.get("source", ""), ev.get("target", ""), ev.get("why", "")
        text = f"{s!s} \u2192 {t!s}" if (s or t) else ""
        return f"{text} ({why})" if why and text else (text or str(why))
    return str(ev)


def extras_from_descriptions(descriptions: Iterable[Any],
                             extras: HeadExtras | None = None) -> HeadExtras:
    """Add descriptions (:class:`~headmaps.describe.Description` or their dicts) to ``extras``.

    Unclear heads keep ``unclear: True`` and no description text.
    """
    extras = {} if extras is None else extras
    for d in descriptions:
        d = d.to_dict() if hasattr(d, "to_dict") else dict(d)
        e = extras.setdefault(f"{int(d['layer'])}.{int(d['head'])}", {})
        if d.get("unclear"):
            e["unclear"] = True
            e.pop("description", None)
        else:
            e["description"] = str(d.get("text", ""))
        e["evidence"] = [_evidence(x) for x in d.get("evidence") or []]
        if d.get("confidence") is not None:
            e["confidence"] = float(d["confidence"])
    return extras


def load_extras(path: str | os.PathLike) -> HeadExtras:
    """Read extras written as JSON in the :data:`~headmaps.report.schema.HeadExtras` schema."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise HeadmapsError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise HeadmapsError(f"{path} must hold a JSON object mapping 'LAYER.HEAD' to extras")
    return data


def merge_extras(extras: HeadExtras, more: HeadExtras | None) -> HeadExtras:
    """Merge ``more`` into ``extras`` head by head (its fields win); returns ``extras``."""
    for key, value in (more or {}).items():
        extras.setdefault(key, {}).update(value)
    return extras


def extras_from_report(result: Any) -> HeadExtras:
    """The per-head extras of a :class:`~headmaps.analyse.HeadReport`: pure conversion.

    Salient operations, descriptions, the QK half (``attention``) and head types
    (``types``) of every head, whichever parts the result holds.
    """
    extras: HeadExtras = {}
    if result.salient is not None:
        extras_from_salient(result.salient, extras)
    if result.descriptions is not None:
        extras_from_descriptions(result.descriptions, extras)
    for part in (result.attention, result.types):
        if part is not None:
            merge_extras(extras, part.to_extras())
    if getattr(result, "description_scores", None) is not None:
        from .descscores import extras_from_description_scores

        extras_from_description_scores(result.description_scores, extras)
    return extras
