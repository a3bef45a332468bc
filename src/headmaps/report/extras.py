"""Gather the per-head extras of a report: salient operations and descriptions.

Converters turn the library's own results (:class:`~headmaps.salient.SalientAll`,
:class:`~headmaps.describe.Description`) into the plain
:data:`~headmaps.report.schema.HeadExtras` the report reads; :func:`collect_extras`
computes them from a model.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import HeadmapsError
from ..scoring.results import ScanResult
from .schema import HeadExtras

log = logging.getLogger(__name__)

DESCRIBE_CHOICES = ("pattern", "llm", "none")


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


def collect_extras(model: Any, scan: ScanResult, describe: str = "pattern", *,
                   progress: bool = False,
                   llm_options: dict[str, Any] | None = None) -> HeadExtras:
    """Compute salient operations of every head (and describe them) for a report.

    Args:
        model: the :class:`~headmaps.HeadModel` the scan was made on.
        scan: the scan (its preset is reused for the salient operations when it is a
            named preset; otherwise the salient default applies).
        describe: ``"pattern"`` (offline pattern matcher), ``"llm"`` (an
            OpenAI-compatible endpoint, see :class:`~headmaps.describe.LLMDescriber`) or
            ``"none"`` (salient operations only).
        progress: show progress bars.
        llm_options: keyword arguments of the LLM describer (model, base_url...).

    Returns:
        :data:`~headmaps.report.schema.HeadExtras` for every head.

    Raises:
        HeadmapsError: unknown ``describe``, or the model does not match the scan.
    """
    if describe not in DESCRIBE_CHOICES:
        raise HeadmapsError(f"unknown describer {describe!r}; use one of "
                            f"{', '.join(DESCRIBE_CHOICES)}")
    if (model.n_layers, model.n_heads) != (scan.n_layers, scan.n_heads):
        raise HeadmapsError(f"the model has {model.n_layers}x{model.n_heads} heads but the scan "
                            f"{scan.n_layers}x{scan.n_heads}: was the scan made on another model?")
    from ..projection import PRESETS
    from ..salient import salient_all

    kwargs: dict[str, Any] = {"preset": scan.preset} if scan.preset in PRESETS else {}
    log.info("salient operations of %d heads", scan.n_layers * scan.n_heads)
    salient = salient_all(model, progress=progress, **kwargs)
    extras = extras_from_salient(salient)
    if describe != "none":
        from ..describe import describe_all, get_describer

        options = (llm_options or {}) if describe == "llm" else {}
        describer = get_describer(describe, **options)
        extras_from_descriptions(describe_all(salient, describer, progress=progress), extras)
    return extras
