"""The relation library: 21 built-in relations, user sets, and the tokenisation filter.

Example::

    import headmaps as hm
    hm.relations.names()                          # the 21 built-in names
    pairs = hm.relations.load("country_to_capital")   # [("Afghanistan", "Kabul"), ...]
    hm.relations.info("country_to_capital").prompt_template  # "The capital of <X> is"
    prep = hm.relations.prepare(model, "country_to_capital")
    prep.n_pairs, prep.valid, prep.source_ids, prep.target_ids
    chosen, skipped = hm.relations.select(model, "all")   # what every scorer uses, with k

User sets: ``load("my_pairs.json")`` or ``load("my_pairs.csv")`` (see :mod:`.io`).
"""

from .errors import (
    InvalidRelationError,
    RelationDataError,
    RelationError,
    TokenizerError,
    UnknownRelationError,
)
from .io import read_csv, read_json, read_relation_file
from .registry import BUILTIN, categories, info, is_builtin, load, names, resolve, templates
from .schema import CATEGORIES, PLACEHOLDER, RelationInfo
from .selection import (
    SelectedRelation,
    choose_k,
    default_k,
    normalise,
    relation_name,
    select,
    skip_reason,
)
from .tokenisation import MIN_PAIRS, PreparedRelation, continuation_ids, prepare, word_ids

__all__ = [
    "BUILTIN", "CATEGORIES", "InvalidRelationError", "MIN_PAIRS", "PLACEHOLDER", "PreparedRelation",
    "RelationDataError", "RelationError", "RelationInfo", "SelectedRelation", "TokenizerError",
    "UnknownRelationError", "categories", "choose_k", "continuation_ids", "default_k", "info",
    "is_builtin", "load", "names",
    "normalise", "prepare", "read_csv", "read_json", "read_relation_file", "relation_name",
    "resolve",
    "select", "skip_reason", "templates", "word_ids",
]
