"""Keep the pairs of a relation whose source and target are single tokens.

The rule (the paper's): each string is encoded in its leading-space form
(``"France"`` -> ``" France"``) without special tokens; a pair is kept when the source and
the target each encode to exactly one token. This applies to every relation alike,
letters (``" a"``) and years (``" 1999"``) included, as in the reference implementation.
``space="prefer"`` falls back to the bare form (``"France"``) when the leading-space form
is not one token, and ``space="never"`` uses bare forms only; the exact string encoded is
reported per kept pair in :attr:`PreparedRelation.source_forms` / ``target_forms``.

Tokenizers that add a dummy prefix themselves (SentencePiece ``add_dummy_prefix``, e.g.
Llama 2) already encode ``"France"`` as ``"▁France"``; for them the leading-space form is
obtained by encoding the bare string, so the rule means the same token on every model.
"""

from __future__ import annotations

import logging
import weakref
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from .errors import InvalidRelationError, TokenizerError
from .registry import resolve
from .schema import Pair, validate_pairs

logger = logging.getLogger(__name__)

SpaceRule = Literal["always", "prefer", "never"]
#: Reasons a pair is dropped.
SOURCE_MULTI = "source multi-token"
TARGET_MULTI = "target multi-token"
SOURCE_RANGE = "source id out of range"
TARGET_RANGE = "target id out of range"
#: Default minimum number of kept pairs for a relation to be valid (paper: 30).
MIN_PAIRS = 30


@dataclass
class PreparedRelation:
    """A relation reduced to the single-token pairs of one model.

    Attributes:
        name: relation name (``"custom"`` for an unnamed list of pairs).
        source_ids: token ids of the kept sources, ``torch.long`` of shape (n,).
        target_ids: token ids of the kept targets, ``torch.long`` of shape (n,).
        kept: the kept (source, target) pairs, as in the data (no leading space).
        dropped: (source, target, reason) for each dropped pair; reason is
            ``"source multi-token"``, ``"target multi-token"``, or ``"... id out of range"``.
        source_forms: the exact string encoded for each kept source (e.g. ``" France"``).
        target_forms: the exact string encoded for each kept target.
        min_pairs: kept pairs needed for :attr:`valid`.
        space: the space rule used (``"always"``, ``"prefer"`` or ``"never"``).
        model_id: the model's id, when known.
    """

    name: str
    source_ids: torch.Tensor
    target_ids: torch.Tensor
    kept: list[Pair]
    dropped: list[tuple[str, str, str]]
    source_forms: list[str] = field(default_factory=list)
    target_forms: list[str] = field(default_factory=list)
    min_pairs: int = MIN_PAIRS
    space: SpaceRule = "always"
    model_id: str = ""

    @property
    def n_pairs(self) -> int:
        """Pairs that survived tokenisation."""
        return len(self.kept)

    @property
    def n_total(self) -> int:
        """Pairs in the relation before tokenisation."""
        return len(self.kept) + len(self.dropped)

    @property
    def valid(self) -> bool:
        """Whether at least :attr:`min_pairs` pairs survived."""
        return self.n_pairs >= self.min_pairs

    @property
    def n_identical(self) -> int:
        """Kept pairs whose source and target are the same token (copies, cognates)."""
        return int((self.source_ids == self.target_ids).sum()) if self.n_pairs else 0

    def drop_counts(self) -> dict[str, int]:
        """Dropped pairs per reason."""
        return dict(Counter(reason for _, _, reason in self.dropped))

    def summary(self) -> dict[str, Any]:
        """A flat dict for tables and logs."""
        counts = self.drop_counts()
        return {
            "relation": self.name, "pairs": self.n_total, "kept": self.n_pairs,
            "source_multi": counts.get(SOURCE_MULTI, 0),
            "target_multi": counts.get(TARGET_MULTI, 0),
            "out_of_range": counts.get(SOURCE_RANGE, 0) + counts.get(TARGET_RANGE, 0),
            "identical": self.n_identical, "valid": self.valid,
        }

    def require_valid(self) -> PreparedRelation:
        """Return self, or raise :class:`InvalidRelationError` when too few pairs survived."""
        if not self.valid:
            on = f" on {self.model_id}" if self.model_id else ""
            counts = (", ".join(f"{n} {reason}" for reason, n in self.drop_counts().items())
                      or "none dropped")
            raise InvalidRelationError(
                f"relation {self.name!r}{on}: only {self.n_pairs} of {self.n_total} pairs are "
                f"single tokens (need {self.min_pairs}; dropped: {counts})")
        return self


def prepare(model: Any, pairs_or_name: str | Path | Sequence[Sequence[str]],
            min_pairs: int = MIN_PAIRS, *,
            space: SpaceRule = "always", strict: bool = False,
            name: str | None = None) -> PreparedRelation:
    """Tokenise a relation for a model and keep the single-token pairs.

    Args:
        model: a :class:`~headmaps.HeadModel` (uses ``model.tokenizer`` and, to drop ids
            beyond the embedding, ``model.vocab_size``), or a tokenizer itself (anything
            with ``encode(text, add_special_tokens=False)``).
        pairs_or_name: a built-in relation name, a path to a user file, or a sequence of
            (source, target) string pairs.
        min_pairs: kept pairs needed for the relation to be valid (paper: 30).
        space: ``"always"`` (paper: every string gets a leading space), ``"prefer"``
            (leading-space form, else the bare form) or ``"never"`` (bare forms).
        strict: raise :class:`InvalidRelationError` when fewer than ``min_pairs`` survive.
        name: name to report for a sequence of pairs (default ``"custom"``).

    Returns:
        The kept token ids, the kept and dropped pairs, and the forms encoded.

    Raises:
        TokenizerError: the model has no tokenizer.
        InvalidRelationError: ``strict`` and too few pairs survived.
        UnknownRelationError, RelationDataError: bad name or file.
    """
    if space not in ("always", "prefer", "never"):
        raise ValueError(f"space must be 'always', 'prefer' or 'never', got {space!r}")
    if isinstance(pairs_or_name, str | Path):
        info, pairs = resolve(pairs_or_name)
        rel_name = name or info.name
    else:
        pairs = validate_pairs(list(pairs_or_name), "pairs", strict=False)
        rel_name = name or "custom"
    tokenizer, vocab_size, model_id = _unpack(model)
    encoder = encoder_for(tokenizer)

    src_ids: list[int] = []
    tgt_ids: list[int] = []
    kept: list[Pair] = []
    dropped: list[tuple[str, str, str]] = []
    src_forms: list[str] = []
    tgt_forms: list[str] = []
    for source, target in pairs:
        s = encoder.single(source, space)
        t = encoder.single(target, space)
        reason = None
        if s is None:
            reason = SOURCE_MULTI
        elif t is None:
            reason = TARGET_MULTI
        elif vocab_size is not None and s[0] >= vocab_size:
            reason = SOURCE_RANGE
        elif vocab_size is not None and t[0] >= vocab_size:
            reason = TARGET_RANGE
        if reason is not None:
            dropped.append((source, target, reason))
            continue
        kept.append((source, target))
        src_ids.append(s[0])
        tgt_ids.append(t[0])
        src_forms.append(s[1])
        tgt_forms.append(t[1])

    prepared = PreparedRelation(
        name=rel_name,
        source_ids=torch.tensor(src_ids, dtype=torch.long),
        target_ids=torch.tensor(tgt_ids, dtype=torch.long),
        kept=kept, dropped=dropped, source_forms=src_forms, target_forms=tgt_forms,
        min_pairs=min_pairs, space=space, model_id=model_id,
    )
    logger.info("relation %s%s: %d of %d pairs single-token (%s)", rel_name,
                f" on {model_id}" if model_id else "", prepared.n_pairs, prepared.n_total,
                "valid" if prepared.valid else f"invalid, need {min_pairs}")
    if strict:
        prepared.require_valid()
    return prepared


def _unpack(model: Any) -> tuple[Any, int | None, str]:
    """(tokenizer, vocab_size or None, model id) from a HeadModel or a tokenizer."""
    if hasattr(model, "encode") and not hasattr(model, "tokenizer"):
        return model, None, ""
    tokenizer = getattr(model, "tokenizer", None)
    model_id = str(getattr(model, "model_id", "") or "")
    if tokenizer is None:
        raise TokenizerError(f"model {model_id or type(model).__name__} has no tokenizer; load it "
                             f"with one (e.g. hm.load(model, tokenizer=tok)) to tokenise relations")
    vocab_size = getattr(model, "vocab_size", None)
    return tokenizer, (int(vocab_size) if vocab_size is not None else None), model_id


class _Encoder:
    """Encodes strings without special tokens, caching results, and applies the space rule."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self._cache: dict[str, list[int]] = {}
        self.dummy_prefix = _adds_dummy_prefix(tokenizer, self.encode)

    def encode(self, text: str) -> list[int]:
        ids = self._cache.get(text)
        if ids is None:
            try:
                ids = self.tokenizer.encode(text, add_special_tokens=False)
            except TypeError:  # a minimal tokenizer without the keyword
                ids = self.tokenizer.encode(text)
            ids = [int(i) for i in ids]
            self._cache[text] = ids
        return ids

    def spaced(self, text: str) -> list[int]:
        """Ids of the leading-space form of ``text`` (the dummy prefix supplies the space)."""
        return self.encode(text if self.dummy_prefix else " " + text)

    def continuation(self, text: str) -> list[int]:
        """Ids of ``text`` as it reads after earlier text (no dummy prefix of its own)."""
        if not self.dummy_prefix:
            return self.encode(text)
        if text.startswith(" "):  # the dummy prefix is that space
            return self.encode(text[1:])
        anchor = self.encode("a")  # glued on: encode behind a word, then drop the word
        ids = self.encode("a" + text)
        return ids[len(anchor):] if ids[:len(anchor)] == anchor else self.encode(text)

    def single(self, text: str, space: SpaceRule) -> tuple[int, str] | None:
        """(token id, form encoded) when ``text`` is one token under ``space``, else None."""
        if space != "never":
            ids = self.spaced(text)
            if len(ids) == 1:
                return ids[0], " " + text
            if space == "always":
                return None
        if self.dummy_prefix:  # a bare form cannot be encoded on its own; no fallback
            return None
        ids = self.encode(text)
        return (ids[0], text) if len(ids) == 1 else None


_ENCODERS: weakref.WeakKeyDictionary[Any, _Encoder] = weakref.WeakKeyDictionary()


def encoder_for(tokenizer: Any) -> _Encoder:
    """The (cached) encoder of a tokenizer: one place that knows about dummy prefixes."""
    try:
        enc = _ENCODERS.get(tokenizer)
    except TypeError:  # not weak-referenceable
        return _Encoder(tokenizer)
    if enc is None:
        enc = _ENCODERS[tokenizer] = _Encoder(tokenizer)
    return enc


def word_ids(tokenizer: Any, word: str) -> list[int]:
    """Token ids of ``word`` in its leading-space form (``" France"``), no special tokens.

    The form relations are tokenised in (:func:`prepare`), for prompts and multi-token
    words alike; on a tokenizer that adds a dummy prefix (SentencePiece) the bare word is
    encoded, so the ids are the same token(s) the word has inside a sentence.
    """
    return encoder_for(tokenizer).spaced(word.strip())


def continuation_ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` as it reads after earlier tokens, no special tokens.

    Plain BPE tokenizers encode ``text`` as is; a dummy-prefix tokenizer would add a
    space of its own, so a leading space is left to its prefix and text glued to the
    previous word is encoded behind a word that is then dropped.
    """
    return encoder_for(tokenizer).continuation(text)


def _adds_dummy_prefix(tokenizer: Any, encode) -> bool:
    """Whether the tokenizer turns ``"a"`` into the space-prefixed token by itself."""
    to_tokens = getattr(tokenizer, "convert_ids_to_tokens", None)
    if to_tokens is None:
        return False
    try:
        pieces = to_tokens(encode("a"))
    except Exception:  # exotic tokenizers: assume no dummy prefix
        return False
    return len(pieces) == 1 and pieces[0] in ("\u2581a", "\u0120a")
