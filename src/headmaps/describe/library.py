"""The relation library as the pattern describer sees it: lookup tables and category sets.

Everything is keyed by the casefolded, stripped token text, so that ``" France"`` and
``"france"`` match the library's ``"France"``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

#: relation name -> (label of its sources, label of its targets) as plural nouns; None
#: where the set is too generic to be a category (any English word).
LABELS: dict[str, tuple[str | None, str | None]] = {
    "country_to_capital": ("countries", "capital cities"),
    "country_to_language": ("countries", "languages"),
    "adj_to_comparative": ("adjectives", "comparatives"),
    "adj_to_superlative": ("adjectives", "superlatives"),
    "antonym": (None, None),
    "copying": (None, None),
    "english_to_french": (None, "French words"),
    "english_to_spanish": (None, "Spanish words"),
    "name_copying": ("names", "names"),
    "noun_to_pronoun": ("nouns", "pronouns"),
    "object_to_superclass": ("objects", "superclasses"),
    "product_to_company": ("products", "companies"),
    "verb_to_past_tense": ("verbs", "past-tense verbs"),
    "word_first_letter": (None, None),  # letters: the first/last-letter rules cover them
    "word_last_letter": (None, None),
    "word_to_compound": (None, "compound words"),
    "word_to_homophone": (None, None),
    "word_to_synonym": (None, None),
    "work_to_location": ("works", "locations"),
    "year_to_following": ("years", "years"),
}


def key(text: str) -> str:
    """Comparison key of a token or library string: stripped and casefolded."""
    return text.strip().casefold()


def labels_for(name: str) -> tuple[str | None, str | None]:
    """Source and target labels of a relation (derived from ``a_to_b`` names when unknown)."""
    if name in LABELS:
        return LABELS[name]
    if "_to_" in name:
        a, b = name.split("_to_", 1)
        return a.replace("_", " "), b.replace("_", " ")
    return None, None


@dataclass
class LibraryRelation:
    """One relation prepared for matching.

    Attributes:
        name: relation name.
        family: its category in the library (algorithmic, knowledge, ...).
        description: one line from the library.
        forward: source key -> target keys (multi-word targets also by first word).
        inverse: target key -> source keys.
        sources, targets: single-word keys of the sources and targets.
    """

    name: str
    family: str
    description: str = ""
    forward: dict[str, set[str]] = field(default_factory=dict)
    inverse: dict[str, set[str]] = field(default_factory=dict)
    sources: set[str] = field(default_factory=set)
    targets: set[str] = field(default_factory=set)

    @classmethod
    def from_pairs(cls, name: str, pairs: Iterable[tuple[str, str]], family: str = "",
                   description: str = "") -> LibraryRelation:
        """Build the lookup tables from ``(source, target)`` strings."""
        rel = cls(name, family, description)
        for s, t in pairs:
            ks, kt = key(s), key(t)
            if not ks or not kt:
                continue
            t_forms = {kt} | ({kt.split()[0]} if " " in kt else set())
            s_forms = {ks} | ({ks.split()[0]} if " " in ks else set())
            for f in s_forms:
                rel.forward.setdefault(f, set()).update(t_forms)
            for f in t_forms:
                rel.inverse.setdefault(f, set()).update(s_forms)
            if " " not in ks:
                rel.sources.add(ks)
            if " " not in kt:
                rel.targets.add(kt)
        return rel


def load_library(names: Iterable[str] | None = None) -> list[LibraryRelation]:
    """The built-in relation library (``headmaps.relations``) prepared for matching.

    Returns an empty list (and logs a warning) when the library cannot be read.
    """
    try:
        from .. import relations as lib

        wanted = list(names) if names is not None else list(lib.names())
        out = []
        for n in wanted:
            info = lib.info(n)
            out.append(LibraryRelation.from_pairs(n, lib.load(n),
                                                  getattr(info, "category", "") or "",
                                                  getattr(info, "description", "") or ""))
        return out
    except (ImportError, AttributeError) as err:
        logger.warning("relation library unavailable (%s); describing without it", err)
        return []


def category_sets(
    relations: Iterable[LibraryRelation],
) -> dict[str, tuple[set[str], set[str], set[str]]]:
    """Label -> (keys, relation names, families) from the relations' source/target sets.

    Sets with the same label (the countries of country_to_capital and of
    country_to_language) are merged.
    """
    out: dict[str, tuple[set[str], set[str], set[str]]] = {}
    for rel in relations:
        src_label, tgt_label = labels_for(rel.name)
        for label, keys in ((src_label, rel.sources), (tgt_label, rel.targets)):
            if label is None or not keys:
                continue
            entry = out.setdefault(label, (set(), set(), set()))
            entry[0].update(keys)
            entry[1].add(rel.name)
            if rel.family:
                entry[2].add(rel.family)
    return out


def from_mapping(relations: Mapping[str, object]) -> list[LibraryRelation]:
    """User relations: name -> list of pairs, or name -> ``(family, pairs)``."""
    out = []
    for name, spec in relations.items():
        if isinstance(spec, LibraryRelation):
            out.append(spec)
        elif isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str):
            out.append(LibraryRelation.from_pairs(name, spec[1], spec[0]))
        else:
            out.append(LibraryRelation.from_pairs(name, spec))  # type: ignore[arg-type]
    return out
