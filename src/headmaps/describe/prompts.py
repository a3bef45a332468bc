"""The scoring LLM's prompts and the parsing of its answers (simulation scoring).

The scoring LLM gets a description (:func:`description_prompt`) and one held-out token
(:func:`simulation_messages`) and answers with the targets it expects as JSON
(:func:`parse_targets`); :data:`SIM_REPAIR` asks again once when an answer cannot be used.
"""

from __future__ import annotations

import json
from typing import Any

from ..salient.tokens import visible
from .base import Description
from .llm import AnswerError, answer_body

SIM_SYSTEM = "You predict the outputs of a described function and answer in JSON."

SIM_PROMPT = """\
A component of a language model maps an input string to output strings. This is a \
description of what it does:

{description}

Input: "{token}"

Which strings does it map this input to? Answer with one JSON object and nothing else: \
{{"targets": [up to {k} short strings, most likely first]}}."""

SIM_REPAIR = """\
Your answer could not be used: {error}. Reply again with only one JSON object \
{{"targets": [strings]}} and nothing else."""


def description_prompt(d: Description) -> str:
    """The words of a description the scoring LLM sees (text, and what inputs share)."""
    text = d.text
    if d.input_strings and d.input_strings not in text:
        text += f" (inputs: {d.input_strings})"
    return text


def simulation_messages(description: str, token: str, k: int) -> list[dict[str, str]]:
    """Chat messages asking which targets a head with ``description`` gives ``token``."""
    shown = token.strip() or visible(token)
    return [{"role": "system", "content": SIM_SYSTEM},
            {"role": "user", "content": SIM_PROMPT.format(description=description, token=shown,
                                                          k=k)}]


def parse_targets(text: str | None) -> list[str]:
    """Targets from an answer: ``{"targets": [...]}`` or a bare JSON list of strings.

    Accepts a Markdown code fence or prose around the JSON, any key holding a list,
    and numbers (written as strings).

    Raises:
        AnswerError: no JSON list or object with a list of strings.
    """
    s = answer_body(text)
    value: Any = None
    for open_, close in (("{", "}"), ("[", "]")):
        a, b = s.find(open_), s.rfind(close)
        if a >= 0 and b > a:
            try:
                value = json.loads(s[a:b + 1])
                break
            except json.JSONDecodeError:
                continue
    if value is None:
        raise AnswerError("the answer holds no JSON list or object")
    if isinstance(value, dict):
        lists = [v for k, v in value.items() if isinstance(v, list)]
        if "targets" in value and isinstance(value["targets"], list):
            lists = [value["targets"]]
        if not lists:
            raise AnswerError("the JSON object holds no list of targets")
        value = lists[0]
    if not isinstance(value, list):
        raise AnswerError("the JSON value is not a list")
    out = []
    for x in value:
        if isinstance(x, bool) or not isinstance(x, (str, int, float)):
            raise AnswerError("a target is not a string")
        out.append(str(x).strip())
    return [x for x in out if x]
