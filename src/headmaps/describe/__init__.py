"""Describe what a head does, in words, from its salient operations.

Two describers share one interface (:class:`Describer`): the offline
:class:`PatternDescriber` (the default) and :class:`LLMDescriber` for any
OpenAI-compatible chat endpoint. :func:`score_descriptions` measures how well a
description predicts the head's mappings of held-out tokens.

Projection: descriptions read salient operations and inherit their projection;
:func:`score_descriptions` reuses it (``Projection.from_record(salient)``) or takes
``projection=`` (resolved by :func:`headmaps.projection_for`), and its held-out tokens are
salient operations of their own (their vocabulary stream, :mod:`headmaps.salient`).
"""

from __future__ import annotations

from typing import Any

from ..errors import HeadmapsError
from .base import ERROR, UNCLEAR, Describer, Description
from .coverage import coverage, describe_all, load_descriptions, plot_coverage, save_descriptions
from .llm import AnswerError, LLMDescriber, LLMError, build_messages, parse_answer
from .pattern import PatternDescriber
from .results import DescriptionScore, DescriptionScores
from .rewrite import refine_descriptions
from .scoring import score_descriptions

DESCRIBERS = ("pattern", "llm")
#: What ``describe=`` accepts by name: a describer, or ``"none"`` for no descriptions.
DESCRIBE_CHOICES = (*DESCRIBERS, "none")


def get_describer(kind: str | Describer = "pattern",
                  llm_options: dict[str, Any] | None = None) -> Describer | None:
    """The one describer factory: a describer by name, or the one given.

    Args:
        kind: ``"pattern"`` (offline), ``"llm"``, ``"none"`` (no describer: None), or a
            :class:`Describer`, returned as it is.
        llm_options: keyword arguments of :class:`LLMDescriber` (``model``, ``base_url``,
            ``api_key``, ``timeout``, ``json_mode``...); used for ``"llm"`` only.

    Raises:
        HeadmapsError: an unknown name (the message lists the known ones).
    """
    if not isinstance(kind, str):
        return kind
    if kind == "pattern":
        return PatternDescriber()
    if kind == "llm":
        return LLMDescriber(**(llm_options or {}))
    if kind == "none":
        return None
    raise HeadmapsError(f"unknown describer {kind!r}; use one of "
                        f"{', '.join(DESCRIBE_CHOICES)}")


__all__ = ["DESCRIBERS", "DESCRIBE_CHOICES", "ERROR", "UNCLEAR", "AnswerError", "Describer",
           "Description",
           "DescriptionScore", "DescriptionScores", "LLMDescriber",
           "LLMError", "PatternDescriber", "build_messages", "coverage", "describe_all",
           "get_describer",
           "load_descriptions", "parse_answer", "plot_coverage", "refine_descriptions",
           "save_descriptions", "score_descriptions"]
