"""The relation data format: metadata fields, pair validation and :class:`RelationInfo`.

A relation document is a JSON object::

    {"schema_version": 1, "name": "country_to_capital", "category": "knowledge",
     "description": "...", "default_k": 10, "source_note": "...",
     "prompt_template": "The capital of <X> is", "pairs": [["France", "Paris"], ...]}

Built-in files must carry every field (``strict=True``); user files may carry any subset
of the metadata (or be a bare list of pairs, see :mod:`headmaps.relations.io`). Extra
keys (``rule``, ``excluded``, ``notes`` ...) are kept in :attr:`RelationInfo.extra`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import RelationDataError

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
#: The four relation categories, in display order.
CATEGORIES: tuple[str, ...] = ("algorithmic", "knowledge", "linguistic", "translation")
#: Category given to user sets that do not name one.
CUSTOM_CATEGORY = "custom"
#: The placeholder that templates replace with the source string.
PLACEHOLDER = "<X>"
#: k used when a user set gives none (the paper's k for non-copying relations).
DEFAULT_K = 10

Pair = tuple[str, str]

_TEXT_FIELDS = ("name", "category", "description", "source_note", "prompt_template")
_REQUIRED = ("schema_version", *_TEXT_FIELDS, "default_k", "pairs")


@dataclass(frozen=True)
class RelationInfo:
    """Metadata of one relation.

    Attributes:
        name: canonical name (file stem for user files without a name).
        category: one of :data:`CATEGORIES`, or ``"custom"`` for user sets.
        description: one line saying what maps to what.
        default_k: the paper's k for this relation (1 for copying relations, else 10).
        source_note: where the facts come from.
        prompt_template: few-shot prompt for the causal experiment; ``<X>`` is replaced by
            the source string as is, and the template is written so that the answer is the
            next token in its leading-space form (e.g. ``"The capital of <X> is"``).
        n_pairs: number of (source, target) pairs in the set.
        extra: any further metadata (e.g. ``rule``, ``excluded``).
    """

    name: str
    category: str
    description: str
    default_k: int
    source_note: str
    prompt_template: str | None
    n_pairs: int
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def fill(self, source: str) -> str:
        """The causal prompt for ``source`` (``prompt_template`` with ``<X>`` replaced)."""
        if not self.prompt_template:
            raise RelationDataError(f"relation {self.name!r} has no prompt_template")
        return self.prompt_template.replace(PLACEHOLDER, source)


def validate_pairs(items: Any, origin: str, *, strict: bool, unit: str = "item",
                   numbers: Iterable[int] | None = None) -> list[Pair]:
    """Check a sequence of ``[source, target]`` items and return it as tuples.

    Args:
        items: the raw items (lists/tuples of two strings).
        origin: the file (or description) named in error messages.
        strict: built-in data: surrounding whitespace and duplicate pairs are errors.
            Otherwise whitespace is stripped and duplicates dropped, with a warning.
        unit: what an item is called in messages (``"item"`` or ``"line"``).
        numbers: the number reported for each item (default: 0-based index).

    Raises:
        RelationDataError: naming ``origin``, the item and the problem.
    """
    if not isinstance(items, list | tuple):
        raise RelationDataError(f"{origin}: 'pairs' must be a list of [source, target] pairs, "
                                f"got {type(items).__name__}")
    nums = list(numbers) if numbers is not None else list(range(len(items)))
    out: list[Pair] = []
    seen: set[Pair] = set()
    stripped = dropped = 0
    for num, item in zip(nums, items):
        where = f"{origin}: {unit} {num}"
        if not isinstance(item, list | tuple) or len(item) != 2:
            raise RelationDataError(f"{where}: expected a [source, target] pair, got "
                                    f"{_short(item)}")
        pair = []
        for role, value in zip(("source", "target"), item):
            if not isinstance(value, str):
                raise RelationDataError(f"{where}: {role} must be a string, got {_short(value)}")
            if value != value.strip():
                if strict:
                    raise RelationDataError(f"{where}: {role} {value!r} has leading/trailing "
                                            f"whitespace (headmaps adds the leading space itself)")
                value = value.strip()
                stripped += 1
            if not value:
                raise RelationDataError(f"{where}: {role} is empty")
            pair.append(value)
        tup = (pair[0], pair[1])
        if tup in seen:
            if strict:
                raise RelationDataError(f"{where}: duplicate pair {list(tup)}")
            dropped += 1
            continue
        seen.add(tup)
        out.append(tup)
    if not out:
        raise RelationDataError(f"{origin}: no pairs")
    if stripped:
        logger.warning("%s: stripped surrounding whitespace from %d strings", origin, stripped)
    if dropped:
        logger.warning("%s: dropped %d duplicate pairs", origin, dropped)
    return out


def parse_document(doc: Any, origin: str, *, strict: bool,
                   default_name: str) -> tuple[RelationInfo, list[Pair]]:
    """Validate a relation document (JSON object) and split it into metadata and pairs.

    Args:
        doc: the decoded JSON object.
        origin: the file named in error messages.
        strict: require every field (built-in data) and reject duplicates/whitespace.
        default_name: name used when the document has none (user files: the file stem).

    Raises:
        RelationDataError: on a missing or mistyped field or a bad pair.
    """
    if not isinstance(doc, Mapping):
        raise RelationDataError(f"{origin}: expected a JSON object or a list of pairs, got "
                                f"{type(doc).__name__}")
    if strict:
        missing = [k for k in _REQUIRED if k not in doc]
        if missing:
            raise RelationDataError(f"{origin}: missing field(s) {', '.join(missing)}")
    elif "pairs" not in doc:
        raise RelationDataError(f"{origin}: object has no 'pairs' field")
    version = doc.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise RelationDataError(f"{origin}: field 'schema_version': unsupported version "
                                f"{version!r} (this headmaps reads {SCHEMA_VERSION})")
    for key in _TEXT_FIELDS:
        if key in doc and not (isinstance(doc[key], str) and doc[key].strip()):
            raise RelationDataError(f"{origin}: field {key!r} must be a non-empty string, got "
                                    f"{_short(doc[key])}")
    category = doc.get("category", CUSTOM_CATEGORY)
    allowed = CATEGORIES if strict else (*CATEGORIES, CUSTOM_CATEGORY)
    if category not in allowed:
        raise RelationDataError(f"{origin}: field 'category': {category!r} is not one of "
                                f"{', '.join(allowed)}")
    k = doc.get("default_k", DEFAULT_K)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise RelationDataError(f"{origin}: field 'default_k' must be a positive integer, got "
                                f"{_short(k)}")
    template = doc.get("prompt_template")
    if template is not None and PLACEHOLDER not in template:
        raise RelationDataError(f"{origin}: field 'prompt_template' must contain {PLACEHOLDER}")
    pairs = validate_pairs(doc["pairs"], origin, strict=strict, unit="pair")
    known = {*_REQUIRED}
    info = RelationInfo(
        name=doc.get("name", default_name),
        category=category,
        description=doc.get("description", ""),
        default_k=k,
        source_note=doc.get("source_note", ""),
        prompt_template=template,
        n_pairs=len(pairs),
        extra={key: value for key, value in doc.items() if key not in known},
    )
    return info, pairs


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
