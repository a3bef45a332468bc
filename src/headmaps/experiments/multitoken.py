"""Multi-token generalisation: static scores against dynamic scores on longer sources.

Static scores come from single-token pairs; dynamic scores from sources of several
tokens, read at the last source token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..models import HeadModel
from .correlation import correlation_result, run_dynamic
from .options import RunOptions
from .results import CorrelationResult


def multitoken(
    model: HeadModel,
    relations: Any = "all",
    templates: Sequence[str] | None = None,
    *,
    run: RunOptions | None = None,
    first_target_token: bool = False,
    fold_norms_dynamic: bool = True,
    **kwargs: Any,
) -> CorrelationResult:
    """Correlation of static scores with dynamic scores on multi-token sources.

    The static score of a head cannot read a source of several tokens, so it comes from
    the relation's single-token pairs (as in :func:`correlation`); the dynamic scores use
    the relation's pairs whose source is several tokens and whose target is one token.
    With context, the head's output at the last position is read; without context, its
    attention is forced onto the last source token.

    Args:
        model: a HeadModel with its transformers model.
        relations: as for :func:`correlation`.
        templates: as for :func:`correlation`.
        fold_norms_dynamic: as for :func:`correlation`.
        run: as for :func:`correlation`, except that ``min_pairs`` (default 10) counts
            multi-token pairs, and as many single-token pairs are needed for the static
            score.
        first_target_token: also use pairs whose target is several tokens, scored on
            the target's first token (the library's sets are mostly single-token words,
            and copying relations have multi-token targets whenever the source is).
        **kwargs: fields of :class:`RunOptions` (``projection=`` among them).

    Returns:
        :class:`CorrelationResult` with ``kind="multitoken"``; ``n_pairs`` counts the
        multi-token pairs.
    """
    run = RunOptions.from_kwargs(run, kwargs, min_pairs=10)
    dyn = run_dynamic(model, relations, templates, run, fold_norms_dynamic, multitoken=True,
                      first_target_token=first_target_token)
    return correlation_result(model, dyn, run, "multitoken")
