"""From what a caller passes as "relations" to the relations a scorer uses, with their k.

Every scorer (static scans, dynamic scores, the experiments) goes through
:func:`select`: normalise the argument, tokenise each relation (:func:`.prepare`), skip
those with too few single-token pairs (one wording, :func:`skip_reason`), and choose each
relation's top-k (one resolver, :func:`choose_k`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import HeadmapsError
from .registry import info, names
from .tokenisation import MIN_PAIRS, PreparedRelation, prepare

#: Vocabularies above this size get the paper's larger k (3 for copying, 25 otherwise).
LARGE_VOCAB = 100_000


def relation_name(spec: Any) -> str:
    """A built-in name as is, a path's stem, ``"custom"`` for a list of pairs."""
    if isinstance(spec, str | Path):
        return spec if spec in names() else Path(spec).stem
    return "custom"


def normalise(relations: Any) -> list[tuple[str, Any]]:
    """``"all"``, a name, a path, a list of pairs, a list of those, or a dict -> (name, spec).

    Raises:
        HeadmapsError: two relations would get the same name.
    """
    if isinstance(relations, str | Path):
        if relations == "all":
            return [(n, n) for n in names()]
        return [(relation_name(relations), relations)]
    if isinstance(relations, Mapping):
        return list(relations.items())
    relations = list(relations)
    if relations and isinstance(relations[0], tuple | list) and len(relations[0]) == 2 and all(
        isinstance(x, str) for x in relations[0]
    ):
        return [("custom", relations)]  # a single list of pairs
    out = [(relation_name(r), r) for r in relations]
    seen = [n for n, _ in out]
    if len(set(seen)) != len(seen):
        raise HeadmapsError(f"relation names must be unique, got {seen}")
    return out


def default_k(model: Any, relation: str | None, pairs_are_copies: bool = False) -> int:
    """The paper's k: 1 for copying relations and 10 otherwise; 3 and 25 for vocabularies over 100k.

    Args:
        model: the model (its vocabulary size decides the scale).
        relation: a built-in relation name, or None for a custom set.
        pairs_are_copies: for custom sets, whether every pair maps a token to itself.
    """
    if relation is not None and relation in names():
        base = info(relation).default_k
    else:
        base = 1 if pairs_are_copies else 10
    if model.vocab_size > LARGE_VOCAB:
        return 3 if base == 1 else 25
    return base


def choose_k(model: Any, name: str, spec: Any, k: int | Mapping[str, int] | None,
             prepared: PreparedRelation) -> int:
    """The top-k of one relation: ``k`` (or ``k[name]``), else :func:`default_k`.

    Raises:
        HeadmapsError: k outside ``1 .. vocab_size``.
    """
    kk = k.get(name) if isinstance(k, Mapping) else k
    if kk is None:
        copies = bool(prepared.n_pairs) and bool((prepared.source_ids == prepared.target_ids).all())
        kk = default_k(model, name if isinstance(spec, str) else None, copies)
    if not 1 <= kk <= model.vocab_size:
        raise HeadmapsError(f"k={kk} is out of range for relation {name!r}: it must be between 1 "
                            "and "
                            f"the vocabulary size {model.vocab_size}")
    return int(kk)


def skip_reason(prepared: PreparedRelation) -> str:
    """Why a relation with too few single-token pairs is left out (the one wording)."""
    return (f"only {prepared.n_pairs} of {prepared.n_total} pairs are single tokens for this model "
            f"(need {prepared.min_pairs})")


@dataclass
class SelectedRelation:
    """A relation a scorer will use.

    Attributes:
        name: its name in results.
        spec: what the caller passed (a built-in name, a path, or pairs).
        prepared: its single-token pairs for the model.
        k: its top-k.
    """

    name: str
    spec: Any
    prepared: PreparedRelation
    k: int


def select(model: Any, relations: Any, k: int | Mapping[str, int] | None = None,
           min_pairs: int = MIN_PAIRS) -> tuple[list[SelectedRelation], dict[str, str]]:
    """Normalise, tokenise, skip and choose k: the relations a scorer uses.

    Args:
        model: a HeadModel with a tokenizer.
        relations: ``"all"``, a name, a path, a list of pairs, a list of names/paths, or a
            dict name -> any of those (see :func:`normalise`).
        k: top-k for all relations, a dict per relation, or None for the defaults.
        min_pairs: single-token pairs a relation needs.

    Returns:
        The usable relations in order, and relation -> why it was skipped.
    """
    out, skipped = [], {}
    for name, spec in normalise(relations):
        prep = prepare(model, spec, min_pairs=min_pairs)
        if not prep.valid:
            skipped[name] = skip_reason(prep)
            continue
        out.append(SelectedRelation(name, spec, prep, choose_k(model, name, spec, k, prep)))
    return out, skipped
