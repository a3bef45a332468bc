"""The vocabulary stream: the source rows of every token, one pass shared by every part.

Salient operations and the QK half read the whole vocabulary at every layer, and the head
types a sample of it. :func:`vocabulary_sources` (or
:meth:`~headmaps.projection.Projection.vocabulary`) makes the one
:class:`~headmaps.projection.Sources` over the vocabulary that a report's parts share,
stepped layer by layer together (:func:`headmaps.steps.run_steps`); :class:`Vocabulary`
is how a consumer reads it (a shared one, or its own), and :func:`screen` decides a top-k
on exact rows when the stream is a bfloat16 screen.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..models import HeadModel
from .options import ProjectionOptions
from .prefix import concrete
from .sources import Sources

#: Vocabulary rows processed at once when computing saliency and source representations.
DEFAULT_CHUNK_ROWS = 8192

#: A screened stream's candidates per head: this many times the tokens kept, at least
#: :data:`SCREEN_MIN`. A token outside them would need its screening score off by more
#: than the gap between rank ``keep`` and rank ``SCREEN_FACTOR * keep``;
#: docs/results/projection.md measures the float32 answers kept.
SCREEN_FACTOR = 4
SCREEN_MIN = 64


def vocabulary_sources(model: HeadModel, opts: ProjectionOptions,
                       chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Sources:
    """The source rows of the whole vocabulary, in the stream dtype ``opts`` choose.

    A ``token_alone`` stream runs in ``opts.stream_dtype`` as
    :func:`~headmaps.projection.concrete` decides it for the model's device (bfloat16 only
    where native: a screen, decided on float32 rows of the candidates); the block-0
    sources are float32.

    Returns:
        :class:`~headmaps.projection.Sources` over ``arange(vocab_size)``: ``at(layer)``
        gives ``(V, d_model)`` rows.
    """
    opts = concrete(model, opts)
    dtype = opts.stream_dtype if opts.source == "token_alone" else None
    return Sources(model, torch.arange(model.vocab_size, device=model.E.device), opts,
                   chunk_rows=chunk_rows, dtype=dtype)


class Vocabulary:
    """The whole vocabulary's source rows in one projection, read layer by layer.

    Args:
        model: the model.
        opts: the projection options the consumer reads.
        chunk_rows: vocabulary rows a consumer processes at once (memory bound).
        sources: a shared whole-vocabulary stream (:func:`vocabulary_sources`); used when
            it is in ``opts``' projection over the whole vocabulary, else a new one is made.
    """

    def __init__(self, model: HeadModel, opts: ProjectionOptions,
                 chunk_rows: int = DEFAULT_CHUNK_ROWS, sources: Sources | None = None):
        self.model, self.opts = model, opts
        self.chunk_rows = max(1, int(chunk_rows))
        if sources is not None and (sources.opts != concrete(model, opts)
                                    or len(sources) != model.vocab_size):
            sources = None  # another projection or token set: not shareable
        self._sources = sources if sources is not None else vocabulary_sources(
            model, opts, self.chunk_rows)
        #: whether :meth:`base` gives screening rows (decide on :meth:`exact` rows)
        self.screened = self._sources.screened

    def base(self, layer: int) -> torch.Tensor:
        """Source rows of the whole vocabulary for ``layer``: ``(V, d_model)`` float32."""
        return self._sources.at(layer)

    def queries_keys(self, layer: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Every token's queries and keys at ``layer`` from the stream's own pass, or None.

        See :meth:`headmaps.projection.Sources.queries_keys` (the stream moves on to
        ``layer + 1``).
        """
        return self._sources.queries_keys(layer)

    def exact(self, layer: int, token_ids: torch.Tensor) -> torch.Tensor:
        """Float32-stream rows ``(n, d_model)`` of ``token_ids`` ``(n,)`` for ``layer``."""
        return self._sources.exact(layer, token_ids)


def screen(scores: torch.Tensor, keep: int, exact: Callable[[torch.Tensor], torch.Tensor]
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """The top ``keep`` of each row of ``scores`` ``(n_h, V)``, decided on exact scores.

    Args:
        scores: screening scores (``-inf`` where excluded).
        keep: entries kept per row.
        exact: ``(u,)`` token ids -> their exact scores ``(n_h, u)``.

    Returns:
        ``(values, ids)``, each ``(n_h, keep)``: the exact top ``keep`` among each row's
        ``max(SCREEN_FACTOR * keep, SCREEN_MIN)`` best screened entries.
    """
    n_cand = min(max(SCREEN_FACTOR * keep, SCREEN_MIN), scores.shape[1])
    cand = torch.topk(scores, n_cand, dim=-1)
    union, inverse = torch.unique(cand.indices, return_inverse=True)  # (u,), (n_h, n_cand)
    full = exact(union)  # (n_h, u)
    rows = torch.arange(scores.shape[0], device=scores.device)[:, None]
    own = torch.where(torch.isfinite(cand.values), full[rows, inverse], float("-inf"))
    mine = torch.full_like(full, float("-inf"))  # each row sees its own candidates only
    mine[rows, inverse] = own
    top = torch.topk(mine, keep, dim=-1)
    return top.values, union[top.indices]
