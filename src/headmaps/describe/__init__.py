"""Describe what a head does, in words, from its salient operations.

Two describers share one interface (:class:`Describer`): the offline
:class:`PatternDescriber` (the default) and :class:`LLMDescriber` for any
OpenAI-compatible chat endpoint. :func:`score_descriptions` measures how well a
description predicts the head's mappings of held-out tokens.
"""

from __future__ import annotations

from typing import Any

from ..errors import HeadmapsError
from .base import ERROR, UNCLEAR, Describer, Description
from .coverage import coverage, describe_all, load_descriptions, plot_coverage, save_descriptions
from .llm import AnswerError, LLMDescriber, LLMError, build_messages, parse_answer
from .pattern import PatternDescriber
from .score import DescriptionScore, DescriptionScores, refine_descriptions, score_descriptions

DESCRIBERS = ("pattern", "llm")


def get_describer(kind: str = "pattern", **kwargs: Any) -> Describer:
    """A describer by name: ``"pattern"`` or ``"llm"`` (``kwargs`` go to its constructor)."""
    if kind == "pattern":
        return PatternDescriber(**kwargs)
    if kind == "llm":
        return LLMDescriber(**kwargs)
    raise HeadmapsError(f"unknown describer {kind!r}; use one of {', '.join(DESCRIBERS)}")


__all__ = ["DESCRIBERS", "ERROR", "UNCLEAR", "AnswerError", "Describer", "Description",
           "DescriptionScore", "DescriptionScores", "LLMDescriber",
           "LLMError", "PatternDescriber", "build_messages", "coverage", "describe_all",
           "get_describer",
           "load_descriptions", "parse_answer", "plot_coverage", "refine_descriptions",
           "save_descriptions", "score_descriptions"]
