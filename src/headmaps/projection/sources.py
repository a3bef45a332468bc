"""Source rows of a token set for every layer, each computed once: :class:`Sources`."""

from __future__ import annotations

import torch

from ..errors import HeadmapsError
from ..models import HeadModel
from . import streamcache
from .chunking import STREAM_CHUNK_ROWS
from .options import STREAM_FIELDS, ProjectionOptions
from .prefix import concrete
from .stream import _advance, _alone_start, embed, stream_dtype, token_alone


def _reads_embedding(opts: ProjectionOptions, layer: int) -> bool:
    """Whether a block-0 source kind gives ``layer`` the (scaled) embedding itself."""
    return opts.source == "embedding" or (layer == 0 and not opts.mlp0_at_layer0)


def base_sources(model: HeadModel, token_ids: torch.Tensor, opts: ProjectionOptions,
                 layer: int = 1) -> torch.Tensor:
    """Source representations for heads of ``layer``, before its input norm; ``(n, d_model)``.

    Float32. For many layers in a row use :class:`Sources`, which computes each kind
    once (and advances ``token_alone`` block by block instead of from the start).

    Args:
        model: the model.
        token_ids: ``(n,)`` source token ids.
        opts: projection options.
        layer: the head's layer. Layer 0 reads the raw embedding unless
            ``opts.mlp0_at_layer0``; ``token_alone`` depends on the layer, the other
            kinds are the same for every layer > 0.
    """
    if opts.source == "token_alone":
        first, x = _alone_start(model, token_ids, opts)
        return token_alone(model, x, range(layer), first=first)
    e = embed(model, token_ids, opts)
    if _reads_embedding(opts, layer):
        return e
    with torch.no_grad():
        mlp_out = model.first_mlp()(e).float()
    return e + mlp_out if opts.source == "mlp0_residual" else mlp_out


#: ``token_alone`` shows a progress bar over blocks from this many rows on (a whole
#: vocabulary costs minutes on a CPU: one block's arithmetic per token and block).
CACHE_MIN_ROWS = 16384
#: :meth:`Sources.queries_keys` keeps a layer's queries (``n_heads d_head`` floats per
#: token) only while they take at most this many of the stream's own row buffers
#: (``d_model`` floats per token each; the stream holds two while it advances), so the
#: memory of a pass at most doubles; wider heads compute their queries themselves.
TAP_ROW_BUFFERS = 2
#: A :class:`Sources` keeps the ``token_alone`` rows of every layer it passes when all
#: its layers fit in this many bytes, so that a consumer that goes through the layers
#: several times (head types: eigen-copying, the positional sample, self-preference)
#: advances the stream once. A bigger set (a whole vocabulary) keeps nothing and
#: restarts when a layer is read out of order.
KEEP_BYTES = 1 << 30


class Sources:
    """Source representations of a fixed token set for every layer, each computed once.

    ``at(layer)`` gives what :func:`base_sources` gives. For ``token_alone`` the stream
    advances block by block: layers read in increasing order cost one block each, and
    the rows of each layer read are kept while they fit in ``keep_bytes``, so reading the
    layers again (another consumer, another pass) costs nothing. :meth:`subset` gives a
    view on some of the tokens that takes its rows from this stream as it passes (the
    union of the token sets of a call advances once).

    Args:
        model: the model.
        token_ids: ``(n,)`` source token ids.
        opts: projection options (``prefix="auto"`` is resolved here).
        chunk_rows: rows computed at a time (bounds the MLP's ``(rows, d_mlp)`` hidden
            layer when the set is the whole vocabulary).
        dtype: the stream's compute dtype (see :func:`stream_dtype`; default float32).
            A whole-vocabulary stream takes ``opts.stream_dtype``
            (:func:`headmaps.projection.vocabulary_sources`).
        keep_bytes: bytes of rows kept across layers (see :data:`KEEP_BYTES`).
        cache: store and read the ``token_alone`` rows of each layer on disk
            (:mod:`headmaps.streamcache`); None: for sets of at least
            :data:`CACHE_MIN_ROWS` tokens (a vocabulary), where recomputing costs minutes.
    """

    def __init__(self, model: HeadModel, token_ids: torch.Tensor, opts: ProjectionOptions,
                 chunk_rows: int = 16384, *, dtype: str | torch.dtype | None = None,
                 keep_bytes: int | None = None, cache: bool | None = None):
        self.model, self.ids, self.opts = model, token_ids, concrete(model, opts)
        self.chunk_rows = max(1, int(chunk_rows))
        self.dtype = stream_dtype(dtype)
        self.keep_bytes = KEEP_BYTES if keep_bytes is None else int(keep_bytes)
        self._fixed: dict[bool, torch.Tensor] = {}
        self._alone: tuple[int, torch.Tensor | None, torch.Tensor] | None = None
        self._kept: dict[int, tuple[torch.Tensor | None, torch.Tensor]] = {}
        self._views: list[SourcesView] = []
        self._exact: ExactRows | None = None
        self._tap: tuple[torch.Tensor, torch.Tensor] | None = None
        #: blocks this object advanced the stream through (a full pass: n_layers - 1)
        self.blocks_advanced = 0
        use = len(token_ids) >= CACHE_MIN_ROWS if cache is None else bool(cache)
        self._cache_key: str | None = None
        if use and self.opts.source == "token_alone":
            if streamcache.budget() > 0:
                what = {k: v for k, v in self.opts.to_dict().items() if k not in STREAM_FIELDS}
                self._cache_key = streamcache.key(model, what, self.dtype, token_ids)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def screened(self) -> bool:
        """Whether :meth:`at` gives screening rows (a reduced-precision ``token_alone`` stream).

        A consumer that decides a top-k (salient operations) then ranks on these rows
        and decides on :meth:`exact` rows of its candidates, so its answers are the
        float32 stream's; consumers that average over the rows or only rank them (the QK
        half, the head types' sample) read them as they are (see
        :mod:`headmaps.projection.precision` for when a stream is screened).
        """
        return self.opts.source == "token_alone" and self.dtype != torch.float32

    def exact(self, layer: int, token_ids: torch.Tensor) -> torch.Tensor:
        """``(n, d_model)`` float32-stream rows of ``token_ids`` before ``layer``'s input norm.

        For a float32 stream (or a block-0 source) these are the rows of :meth:`at`; for a
        screened stream they come from a float32 stream of just these tokens
        (:class:`ExactRows`, shared by every consumer of this object).
        """
        if not self.screened:
            order = torch.argsort(self.ids)
            pos = torch.searchsorted(self.ids[order], token_ids.to(self.ids.device))
            return self.at(layer).index_select(0, order[pos])
        if self._exact is None:
            self._exact = ExactRows(self.model, self.opts, self.chunk_rows)
        return self._exact.rows(layer, token_ids)

    def _keep(self, layer: int, first: torch.Tensor | None, x: torch.Tensor) -> None:
        if self.model.n_layers * x.numel() * x.element_size() <= self.keep_bytes:
            self._kept[layer] = (first, x)

    def at(self, layer: int) -> torch.Tensor:
        """``(n, d_model)`` float32 representations before ``layer``'s input norm."""
        if self.opts.source == "token_alone":
            if layer in self._kept:
                return self._kept[layer][1]
            if self._alone is not None and self._alone[0] == layer:
                return self._alone[2]
            hit = self._cached(layer)
            if hit is not None:
                self._alone = (layer, *hit)
                self._passed(layer, *hit)
                return hit[1]
            if self._alone is None or layer < self._alone[0]:
                self._alone = self._restart(layer)
            while self._alone[0] < layer:
                self._step()
            return self._alone[2]
        key = _reads_embedding(self.opts, layer)
        if key not in self._fixed:
            ids, step = self.ids, self.chunk_rows
            with torch.no_grad():
                self._fixed[key] = torch.cat([
                    base_sources(self.model, ids[i:i + step], self.opts, 0 if key else 1)
                    for i in range(0, max(len(ids), 1), step)])
        return self._fixed[key]

    def _step(self, tap: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        """Advance the ``token_alone`` stream one block (``tap``: see :func:`_advance`)."""
        done, first, x = self._alone
        step = min(self.chunk_rows, STREAM_CHUNK_ROWS)
        first, x = _advance(self.model, x, range(done, done + 1), step, first, self.dtype,
                            tap=tap)
        self.blocks_advanced += 1
        self._alone = (done + 1, first, x)
        self._passed(done + 1, first, x)
        if self._cache_key is not None:
            streamcache.store(self._cache_key, done + 1, first, x, self.dtype)

    def queries_keys(self, layer: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Queries and keys of the rows entering ``layer``, from the stream's own pass.

        A ``token_alone`` stream after a prefix computes every token's queries and keys
        in ``layer``'s block (its attention over ``[prefix, token]``); this advances the
        stream through that block and keeps them, so a consumer of the whole
        vocabulary's queries (the QK half) needs no product of its own. They are what
        :func:`headmaps.models.qk.queries` (every head) and ``keys`` give for the rows of
        :meth:`at` through the layer's input norm, up to float32 rounding (one fused
        product instead of two); for a :attr:`screened` stream, up to bfloat16 rounding
        (its product's operands and output, 2^-9 relative each): the QK half of a
        screened report ranks on the screen's rows anyway, and its own float32 products
        of them cost 7-13 % of the report (docs/results/report-floor.md, eighth round).
        The stream then stands at ``layer + 1``: read :meth:`at` for ``layer`` first, if
        needed (reading it later restarts the stream unless the rows are kept).

        Returns:
            ``(n_heads, n, d_head)`` queries and ``(n_kv, n, d_head)`` keys, float32,
            not rotated, valid until the next call (the buffers are reused); or None,
            with nothing advanced, where the stream does not compute them: no prefix,
            norms not folded, the last layer (the stream never passes its block), rows of
            ``layer + 1`` already kept or cached, or queries bigger than the stream's own
            two row buffers (:data:`TAP_ROW_BUFFERS`).
        """
        model, opts = self.model, self.opts
        s = model.spec
        n, d = len(self.ids), model.d_model
        if (opts.source != "token_alone" or not opts.prefix or not opts.fold_norms
                or layer >= model.n_layers - 1 or layer + 1 in self._kept
                or s.n_heads * s.d_head > TAP_ROW_BUFFERS * d):
            return None
        if self._cache_key is not None and streamcache.has(self._cache_key, layer + 1):
            return None
        rows = self.at(layer)
        if self._alone[0] != layer:  # the rows were kept: go on from them
            self._alone = (layer, self._kept[layer][0], rows)
        if self._tap is None or self._tap[0].device != rows.device:
            # one pair of buffers for every layer: a fresh one per layer page-faults
            self._tap = (torch.empty(s.n_heads, n, s.d_head, device=rows.device),
                         torch.empty(s.n_kv_heads, n, s.d_head, device=rows.device))
        self._step(self._tap)
        return self._tap

    def prefix_at(self, layer: int) -> torch.Tensor | None:
        """The prefix's residual ``(d_model,)`` float32 entering ``layer``, or None.

        None when the rows are not the second token of ``[prefix, token]`` (a projection
        without a prefix, or a block-0 source).
        """
        if self.opts.source != "token_alone" or not self.opts.prefix:
            return None
        self.at(layer)
        if layer in self._kept:
            return self._kept[layer][0]
        return self._alone[1]

    def _cached(self, layer: int) -> tuple[torch.Tensor | None, torch.Tensor] | None:
        """``layer``'s rows from the on-disk cache, or None."""
        if self._cache_key is None:
            return None
        return streamcache.load(self._cache_key, layer, self.ids.device)

    def _restart(self, layer: int) -> tuple[int, torch.Tensor | None, torch.Tensor]:
        """The nearest state at or below ``layer`` to advance from: kept, cached, or layer 0."""
        below = [k for k in self._kept if k < layer]
        start = max(below) if below else 0
        for k in range(layer - 1, start, -1):
            hit = self._cached(k)
            if hit is not None:
                return (k, *hit)
        if below:
            return (start, *self._kept[start])
        first, x = _alone_start(self.model, self.ids, self.opts)
        self._passed(0, first, x)
        return (0, first, x)

    def _passed(self, layer: int, first: torch.Tensor | None, x: torch.Tensor) -> None:
        """The stream reached ``layer``: keep its rows if they fit, and feed the views."""
        self._keep(layer, first, x)
        for v in self._views:
            v._take(layer, x)

    def subset(self, token_ids: torch.Tensor) -> SourcesView:
        """A view on ``token_ids`` (each in this set) taking its rows as the stream passes.

        Create views before the stream's pass: each keeps its own rows of every layer
        the stream goes through (a small set: bounded by its size), and reads this
        stream for any other layer.

        Raises:
            HeadmapsError: a token id not in this set.
        """
        return SourcesView(self, token_ids)


class SourcesView:
    """Rows of some tokens of a :class:`Sources`, with the same ``at(layer)``.

    See :meth:`Sources.subset`. The rows are the stream's own: on a screened stream
    (:attr:`Sources.screened`), the screen's. Its consumer (the head types' token sample)
    averages over them and ranks nothing, so bfloat16 rounding moves its answers by about
    as much as it moves the rows (docs/results/report-floor.md, ninth round); the float32
    rows of the same tokens, :meth:`Sources.exact`, cost a float32 stream of the sample
    through every block.
    """

    def __init__(self, parent: Sources, token_ids: torch.Tensor):
        self.parent, self.model, self.opts = parent, parent.model, parent.opts
        self.ids = token_ids.to(parent.ids.device)
        order = torch.argsort(parent.ids)
        sorted_ids = parent.ids[order]
        pos = torch.searchsorted(sorted_ids, self.ids).clamp_max(max(len(sorted_ids) - 1, 0))
        if len(self.ids) and (len(sorted_ids) == 0 or
                              not bool((sorted_ids[pos] == self.ids).all())):
            raise HeadmapsError("a subset's token ids must all be in the source set")
        self.rows = order[pos]
        self._own: dict[int, torch.Tensor] = {}
        if parent.opts.source == "token_alone":
            parent._views.append(self)

    def __len__(self) -> int:
        return len(self.ids)

    def _take(self, layer: int, x: torch.Tensor) -> None:
        if layer not in self._own:
            self._own[layer] = x.index_select(0, self.rows)

    def at(self, layer: int) -> torch.Tensor:
        """``(n, d_model)`` float32 rows of the view's tokens before ``layer``'s input norm.

        On a screened stream these are the screen's rows (see the class docstring).
        """
        if layer in self._own:
            return self._own[layer]
        return self.parent.at(layer).index_select(0, self.rows)


class ExactRows:
    """The float32 ``token_alone`` rows of a growing token set, one layer after another.

    The check side of a screened stream (:attr:`Sources.screened`): consumers rank the
    whole vocabulary on reduced-precision rows and ask for the float32 rows of their
    candidates only. Rows already held advance one block per layer; a token asked for
    the first time at layer ``l`` runs through ``l`` blocks once. Layers are asked in
    increasing order (an earlier layer restarts from the embeddings).
    """

    def __init__(self, model: HeadModel, opts: ProjectionOptions,
                 chunk_rows: int = STREAM_CHUNK_ROWS):
        self.model, self.opts = model, concrete(model, opts)
        self.chunk_rows = max(1, min(int(chunk_rows), STREAM_CHUNK_ROWS))
        self.layer = 0
        self.ids = torch.empty(0, dtype=torch.long, device=model.E.device)
        self.x = torch.empty(0, model.d_model, device=model.E.device)
        self.first: torch.Tensor | None = None
        self._row: dict[int, int] = {}
        self._blocks: dict = {}  # laid-out float32 blocks, reused by every catch-up

    def _go(self, x: torch.Tensor, first: torch.Tensor | None, start: int,
            stop: int) -> tuple[torch.Tensor | None, torch.Tensor]:
        if stop <= start:
            return first, x
        return _advance(self.model, x, range(start, stop), self.chunk_rows, first,
                        torch.float32, self._blocks)

    def rows(self, layer: int, token_ids: torch.Tensor) -> torch.Tensor:
        """``(n, d_model)`` float32 rows of ``token_ids`` ``(n,)`` entering ``layer``."""
        if layer < self.layer:  # start again, keeping the laid-out blocks
            blocks = self._blocks
            self.__init__(self.model, self.opts, self.chunk_rows)
            self._blocks = blocks
        if len(self.ids):
            self.first, self.x = self._go(self.x, self.first, self.layer, layer)
        self.layer = layer
        ids = token_ids.to(self.ids.device).long()
        new = torch.unique(ids[[int(i) not in self._row for i in ids.tolist()]]) if len(ids) \
            else ids
        if len(new):
            first, x = _alone_start(self.model, new, self.opts)
            first, x = self._go(x, first, 0, layer)
            if self.first is None:
                self.first = first
            for i in new.tolist():
                self._row[i] = len(self._row)
            self.ids, self.x = torch.cat([self.ids, new]), torch.cat([self.x, x])
        index = torch.tensor([self._row[int(i)] for i in ids.tolist()], dtype=torch.long,
                             device=self.x.device)
        return self.x.index_select(0, index)
