"""Token strings and the non-word filter used by salient operations.

A token counts as a *word* when its decoded text contains at least one letter or digit,
is not whitespace only, holds no undecodable byte fragment (U+FFFD) and is not a
special token. Padded embedding rows beyond the tokenizer's vocabulary are never
words (they do not decode to anything).
"""

from __future__ import annotations

import weakref
from typing import Any, Literal

import torch

from ..errors import HeadmapsError

SkipSide = Literal["source", "target", "both"]

_STRINGS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def token_strings(tokenizer: Any, n: int) -> list[str]:
    """Decoded text of token ids ``0..n-1`` (ids the tokenizer lacks decode to ``""``).

    Decoding a whole vocabulary takes a moment for big tokenizers, so the answer is
    kept per tokenizer object.
    """
    key = (n,)
    try:
        cached = _STRINGS.get(tokenizer)
    except TypeError:  # not weak-referenceable: no cache
        cached = None
    if cached is not None and cached[0] == key:
        return cached[1]
    n_tok = min(n, len(tokenizer))
    out = list(tokenizer.batch_decode([[i] for i in range(n_tok)], skip_special_tokens=False,
                                      clean_up_tokenization_spaces=False))
    out += [""] * (n - n_tok)
    try:
        _STRINGS[tokenizer] = (key, out)
    except TypeError:
        pass
    return out


def is_word(text: str) -> bool:
    """Whether ``text`` (a decoded token) looks like a word or number.

    False for whitespace, pure punctuation or symbols, and byte fragments.
    """
    if not text or not text.strip() or "\ufffd" in text:
        return False
    return any(ch.isalnum() for ch in text)


def word_mask(tokenizer: Any, n: int, strings: list[str] | None = None) -> torch.Tensor:
    """``(n,)`` bool tensor: True where token id is a word (see :func:`is_word`)."""
    strings = strings if strings is not None else token_strings(tokenizer, n)
    mask = torch.tensor([is_word(s) for s in strings], dtype=torch.bool)
    special = [i for i in (getattr(tokenizer, "all_special_ids", None) or []) if 0 <= i < n]
    if special:
        mask[torch.tensor(special)] = False
    return mask


def valid_mask(tokenizer: Any, n: int) -> torch.Tensor:
    """``(n,)`` bool: ids the tokenizer knows (all True without a tokenizer)."""
    mask = torch.ones(n, dtype=torch.bool)
    if tokenizer is not None:
        mask[min(n, len(tokenizer)):] = False
    return mask


def skip_sides(skip_nonwords: bool | str | None) -> tuple[bool, bool]:
    """``(skip on source side, skip on target side)`` from the user's option.

    Args:
        skip_nonwords: False/None (keep all), True or ``"both"``, ``"source"``, ``"target"``.

    Raises:
        HeadmapsError: an unknown value.
    """
    if skip_nonwords in (False, None, "none"):
        return False, False
    if skip_nonwords is True or skip_nonwords == "both":
        return True, True
    if skip_nonwords == "source":
        return True, False
    if skip_nonwords == "target":
        return False, True
    raise HeadmapsError("skip_nonwords must be False, True, 'source', 'target' or 'both'; got "
                        f"{skip_nonwords!r}")


def skip_label(skip_nonwords: bool | str | None) -> str:
    """Canonical name of the option: ``none``, ``source``, ``target`` or ``both``."""
    src, tgt = skip_sides(skip_nonwords)
    return {(False, False): "none", (True, False): "source",
            (False, True): "target"}.get((src, tgt), "both")


def visible(text: str) -> str:
    """A token made readable in a table: leading spaces as ``␣``, control characters escaped."""
    stripped = text.lstrip(" ")
    out = "␣" * (len(text) - len(stripped)) + stripped
    return out.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
