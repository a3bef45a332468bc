"""Multi-token generalisation: static scores (single-token pairs) against dynamic scores
on sources of several tokens, read at the last source token."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import projection as P
from ..models import HeadModel
from .correlation import _result
from .dynamic import dynamic_scores
from .results import CorrelationResult


def multitoken(
    model: HeadModel,
    relations: Any = "all",
    templates: Sequence[str] | None = None,
    k: int | dict[str, int] | None = None,
    preset: str | P.ProjectionOptions | None = None,
    *,
    max_pairs: int | None = None,
    min_pairs: int = 10,
    first_target_token: bool = False,
    fold_norms_dynamic: bool = True,
    batch_size: int = 32,
    seed: int = 0,
    progress: bool = False,
    **options: Any,
) -> CorrelationResult:
    """Correlation of static scores with dynamic scores on multi-token sources.

    The static score of a head cannot read a source of several tokens, so it comes from
    the relation's single-token pairs (as in :func:`correlation`); the dynamic scores use
    the relation's pairs whose source is several tokens and whose target is one token.
    With context, the head's output at the last position is read; without context, its
    attention is forced onto the last source token.

    Args:
        model: a HeadModel with its transformers model.
        relations, templates, k, preset, max_pairs, fold_norms_dynamic, batch_size, seed,
            progress, **options: as for :func:`correlation`.
        min_pairs: a relation needs this many multi-token pairs, and this many
            single-token pairs for its static score.
        first_target_token: also use pairs whose target is several tokens, scored on
            the target's first token (the library's sets are mostly single-token words,
            and copying relations have multi-token targets whenever the source is).

    Returns:
        :class:`CorrelationResult` with ``kind="multitoken"``; ``n_pairs`` counts the
        multi-token pairs.
    """
    dyn = dynamic_scores(model, relations, templates, k, max_pairs=max_pairs, min_pairs=min_pairs,
                         multitoken=True, first_target_token=first_target_token, fold_norms=fold_norms_dynamic, batch_size=batch_size,
                         seed=seed, progress=progress)
    return _result(model, dyn, preset, "multitoken", options)
