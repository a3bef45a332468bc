"""The rewrite loop: explain, score, keep the best of several candidate descriptions per head.

Candidates are scored on one held-out sample and the kept one is scored again on a fresh
sample, so that its score is not inflated by the choice (:func:`refine_descriptions`).
"""

from __future__ import annotations

import math
from typing import Any

from tqdm.auto import tqdm

from ..errors import HeadmapsError
from ..salient import SalientAll
from .base import Description
from .pattern import PatternDescriber
from .results import DescriptionScore, DescriptionScores
from .scoring import score_descriptions


def _gain(s: DescriptionScore) -> float:
    """What a candidate is chosen by: score minus baseline (the score alone without one)."""
    if not s.scored:
        return -math.inf
    return s.score - (0.0 if math.isnan(s.baseline) else s.baseline)


def refine_descriptions(
    model: Any,
    salient: SalientAll,
    describer: Any,
    n_cands: int = 3,
    *,
    seed: int = 0,
    progress: bool = False,
    **score_options: Any,
) -> tuple[list[Description], DescriptionScores]:
    """Explain, score, keep: the best of ``n_cands`` candidate descriptions per head.

    Every candidate (``describer.candidates(ops, n_cands)``: the pattern describer's next
    patterns, or an LLM's sampled answers) is scored on one held-out sample; the one with
    the best score above its shuffled baseline is kept (the first on ties or when none is
    scored: a candidate that fits every head gains nothing), and its score is
    then **re-measured on a fresh held-out sample** (none of the tokens shown or used for
    the choice), so that the kept score is not inflated by the choice.

    Args:
        model: the model.
        salient: the salient operations to describe (their tokens are the shown ones).
        describer: a describer with ``candidates(ops, n)`` (:class:`PatternDescriber`,
            :class:`LLMDescriber`).
        n_cands: candidates per head.
        seed: seed of the selection sample (the fresh one uses ``seed + 1``).
        progress: show progress bars.
        **score_options: passed to :func:`score_descriptions` (``scorer``, ``n_salient``...).

    Returns:
        ``(kept descriptions, their scores on the fresh sample)``; each score has
        ``candidates`` and ``selection_score`` set.

    Raises:
        HeadmapsError: ``n_cands < 1`` or a describer without candidates.
    """
    if n_cands < 1:
        raise HeadmapsError(f"n_cands must be at least 1, got {n_cands}")
    if not hasattr(describer, "candidates"):
        raise HeadmapsError(f"describer {getattr(describer, 'name', describer)!r} cannot give "
                            "candidate descriptions")
    if isinstance(describer, PatternDescriber):
        score_options.setdefault("describer", describer)
    per_head = [describer.candidates(ops, n_cands)
                for ops in tqdm(salient, total=len(salient), desc="candidates", unit="head",
                                disable=not progress)]
    flat = [d for ds in per_head for d in ds]
    first = score_descriptions(model, flat, salient, seed=seed, progress=progress,
                               **score_options)
    kept: list[Description] = []
    chosen: list[tuple[int, float]] = []
    i = 0
    for ds in per_head:
        scores = first.scores[i:i + len(ds)]
        i += len(ds)
        best = max(range(len(ds)), key=lambda j: (_gain(scores[j]), -j))
        kept.append(ds[best])
        chosen.append((len(ds), scores[best].score))
    used = {(s.layer, s.head): s.token_ids for s in first.scores}
    final = score_descriptions(model, kept, salient, seed=seed + 1, progress=progress,
                               exclude=used, **score_options)
    for s, (n, sel) in zip(final.scores, chosen):
        s.candidates, s.selection_score = n, sel
    final.llm_calls += first.llm_calls
    final.cache_hits += first.cache_hits
    final.seconds += first.seconds
    return kept, final
