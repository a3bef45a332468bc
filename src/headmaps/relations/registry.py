"""The built-in relations: names, metadata, pairs and the shared neutral templates.

Built-in data lives in ``relations/data/<name>.json`` (package data) and is validated
strictly on first use; :func:`resolve` also accepts a path to a user file.
"""

from __future__ import annotations

import json
import logging
from functools import cache, lru_cache
from pathlib import Path

from .errors import RelationDataError, UnknownRelationError
from .io import SUFFIXES, read_json, read_relation_file
from .schema import CUSTOM_CATEGORY, PLACEHOLDER, Pair, RelationInfo

logger = logging.getLogger(__name__)

DATA_DIR = Path(__file__).parent / "data"
TEMPLATES_FILE = "templates.json"

#: The 21 built-in relations, by category (the paper's 20 in its order, then successor).
BUILTIN: dict[str, tuple[str, ...]] = {
    "algorithmic": ("copying", "name_copying", "word_first_letter", "word_last_letter",
                    "year_to_following",
                    "successor"),
    "knowledge": ("country_to_capital", "country_to_language", "object_to_superclass",
                  "product_to_company",
                  "work_to_location"),
    "linguistic": ("antonym", "adj_to_comparative", "adj_to_superlative", "noun_to_pronoun",
                   "verb_to_past_tense",
                   "word_to_homophone", "word_to_synonym", "word_to_compound"),
    "translation": ("english_to_french", "english_to_spanish"),
}
_NAMES: tuple[str, ...] = tuple(name for group in BUILTIN.values() for name in group)
_CATEGORY: dict[str, str] = {name: cat for cat, group in BUILTIN.items() for name in group}


def names() -> list[str]:
    """The built-in relation names by category (algorithmic, knowledge, linguistic, translation)."""
    return list(_NAMES)


def categories() -> dict[str, list[str]]:
    """Category -> the built-in relation names in it."""
    return {cat: list(group) for cat, group in BUILTIN.items()}


def category_of(name: str) -> str:
    """The category of a relation as a scan names it: its built-in category, else ``"custom"``.

    A scan keeps only relation names, so a user set is ``"custom"`` whatever its file says.
    """
    return _CATEGORY.get(name, CUSTOM_CATEGORY)


def is_builtin(name: object) -> bool:
    """Whether ``name`` is a built-in relation name."""
    return isinstance(name, str) and name in _NAMES


def resolve(name_or_path: str | Path) -> tuple[RelationInfo, list[Pair]]:
    """Metadata and pairs of a built-in relation or a user file.

    Args:
        name_or_path: a built-in name (see :func:`names`) or a path to a ``.json``,
            ``.csv`` or ``.tsv`` file.

    Raises:
        UnknownRelationError: neither a built-in name nor an existing file.
        RelationDataError: the file is malformed.
    """
    if is_builtin(name_or_path):
        info, pairs = _builtin(str(name_or_path))
        return info, list(pairs)
    path = Path(name_or_path)
    if path.is_file():
        return read_relation_file(path)
    looks_like_file = path.suffix.lower() in SUFFIXES or len(path.parts) > 1
    what = (f"no such file {str(path)!r} and no" if looks_like_file
            else f"{str(name_or_path)!r} is not a")
    raise UnknownRelationError(f"{what} built-in relation; available: {', '.join(_NAMES)} "
                               f"(or give a path to a {'/'.join(SUFFIXES)} file)")


def load(name_or_path: str | Path) -> list[Pair]:
    """The (source, target) pairs of a built-in relation or a user file.

    Args:
        name_or_path: a built-in name or a path to a ``.json``/``.csv``/``.tsv`` file.

    Returns:
        A new list of ``(source, target)`` string tuples, without leading spaces.

    Raises:
        UnknownRelationError: neither a built-in name nor an existing file.
        RelationDataError: the file is malformed.
    """
    return resolve(name_or_path)[1]


def info(name_or_path: str | Path) -> RelationInfo:
    """Metadata of a built-in relation or a user file (see :class:`RelationInfo`)."""
    return resolve(name_or_path)[0]


#: The template sets of the correlation experiment: headmaps' own, the paper's four
#: (as published, the comparison set), and both (headmaps' then the paper's others).
TEMPLATE_SETS = ("headmaps", "paper", "both")

_TEMPLATE_KEYS = {"headmaps": "templates", "paper": "paper_templates"}


@lru_cache(maxsize=2)
def _template_list(key: str) -> tuple[str, ...]:
    path = DATA_DIR / TEMPLATES_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise RelationDataError(f"{path}: line {err.lineno} column {err.colno}: invalid JSON "
                                f"({err.msg})") from None
    items = doc.get(key) if isinstance(doc, dict) else None
    if not isinstance(items, list) or not items:
        raise RelationDataError(f"{path}: expected an object with a non-empty {key!r} list")
    for i, t in enumerate(items):
        if not isinstance(t, str) or t.count(PLACEHOLDER) != 1:
            raise RelationDataError(f"{path}: {key} {i}: must be a string holding {PLACEHOLDER} "
                                    "exactly once")
    return tuple(items)


def templates(which: str = "headmaps") -> list[str]:
    """Neutral templates for the correlation experiment; each holds ``<X>`` once.

    Args:
        which: ``"headmaps"`` (the library's own six, the default), ``"paper"`` (the four
            the MAPS paper reports, as published: the like-for-like comparison set) or
            ``"both"`` (headmaps' set, then the paper's templates it does not hold).

    Raises:
        ValueError: ``which`` is not one of :data:`TEMPLATE_SETS`.
    """
    if which not in TEMPLATE_SETS:
        raise ValueError(f"unknown template set {which!r}; choose one of "
                         f"{', '.join(TEMPLATE_SETS)}")
    if which == "both":
        own = list(_template_list("templates"))
        return own + [t for t in _template_list("paper_templates") if t not in own]
    return list(_template_list(_TEMPLATE_KEYS[which]))


@cache
def _builtin(name: str) -> tuple[RelationInfo, tuple[Pair, ...]]:
    path = DATA_DIR / f"{name}.json"
    if not path.is_file():
        raise RelationDataError(f"{path}: built-in relation file missing (broken installation?)")
    info, pairs = read_json(path, strict=True)
    if info.name != name:
        raise RelationDataError(f"{path}: field 'name' is {info.name!r}, expected {name!r}")
    if name not in BUILTIN[info.category]:
        raise RelationDataError(f"{path}: field 'category' is {info.category!r}, expected the "
                                f"category listing {name!r}")
    logger.debug("loaded built-in relation %s (%d pairs)", name, len(pairs))
    return info, tuple(pairs)
