"""The one top-k hit test of the package: is a target in the top-k (bottom-k) of its row?

Every scorer (static scans, dynamic scores of the experiments) asks the same question of
rows of logits ``y_h W_O^h U``: is the pair's target among the ``k`` largest (and among
the ``k`` smallest) entries of its row? :func:`count_hits` answers it without ever
holding a whole row set in memory, and by default without computing most of it.

**The rule.** A target is in the top-k iff fewer than ``k`` *other* entries of its row are
at least as large as its logit: ties count against the target. The bottom-k mirrors this
(fewer than ``k`` others at most as large). So a row that gives the target no strict
advantage over ``k`` others is a miss: a zeroed head (every logit equal), a constant head,
or a row of ties scores 0, for every ``k``, instead of claiming every pair. For rows of
ordinary float logits, exact ties with the target have probability ~0 and the rule
changes no score.

**Counting, not sorting.** The test needs one number per pair and side: how many other
entries of the row tie or beat the target's logit. That count is a sum over any partition
of the row's columns, so each block of columns adds its own count (one comparison pass per
pair over the block) and no candidate list is sorted, merged or kept.

**Early exit (exact).** Counts only grow as columns are read, so a pair whose counts
already reach ``k`` on both sides is a miss on both, whatever the rest of its row holds.
The vocabulary is read in a cascade of growing blocks (:func:`stage_bounds`): every
(head, row) gets the first block; only those with a pair still undecided (possibly in the
top-k, or possibly in the bottom-k) get the next block, and so on to the end of the
vocabulary. A pair's final counts are then either complete or already at ``k``, so the
decisions equal the dense path's (``exact_dense=True``) wherever the two compute the same
logit values. The paths form a continuing row's logits through products of other shapes
than the dense one, so on another CPU's kernels they may differ in the last bits: exactness
rests on identical arithmetic, and a decision can flip only where another entry lies
within rounding of the target.

**Memory.** Every buffer (a slice of ``W_O U``, of ``U``, of the logits, of the rows
gathered for a pair's own pass) is bounded by ``chunk_bytes``, and the comparison flags by
a quarter of the default chunk, whatever the vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

#: Upper bound on the bytes of one chunk of logits (n_heads x rows x vocab float32).
DEFAULT_CHUNK_BYTES = 256 * 2**20

#: Comparison flags held at a time (float32): a quarter of the default logits chunk.
FLAG_ELEMENTS = DEFAULT_CHUNK_BYTES // 16

#: Column slices and the first block are whole multiples of this many columns.
COLUMN_ALIGN = 64

#: Each boundary of the early-exit cascade is this many times the one before (see
#: :func:`stage_bounds`).
CASCADE_GROWTH = 2

#: The first block has at least this many columns, and at least ``FIRST_BLOCK_PER_K``
#: columns per unit of ``k_max + 1``.
FIRST_BLOCK_MIN = 2048
FIRST_BLOCK_PER_K = 128

UColumns = Callable[[slice | torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class MixedRows:
    """Rows of ``Y`` that mix a fixed prefix row with another row of ``Y``, per head.

    Row ``n_base + i`` of head ``h`` is ``weights[h, i, 0] prefix[h] + weights[h, i, 1]
    Y[h, i]`` with the two weights summing to 1, as the in-context rows of
    :mod:`headmaps.scoring.context` are. Its logits are then the same mix of its base row's
    logits and the prefix's, so wherever a block forms a mixed row's base row too (the
    first block, where one chunk holds every row; a later one where both go on), the mixed
    row's logits are formed from its base row's: two multiply-adds per column instead of
    ``d_head`` or ``d_model``. The decisions are the direct product's up to near-ties: the
    same linear map, associated otherwise.

    Attributes:
        n_base: rows ``n_base .. 2 n_base`` of ``Y`` are mixed, row ``n_base + i`` from row ``i``.
        weights: ``(H, n_base, 2)``: the weight on the prefix, then on the base row.
        prefix: ``(H, 1, d_head)``: the prefix's row per head.
    """

    n_base: int
    weights: torch.Tensor
    prefix: torch.Tensor


def stage_bounds(vocab_size: int, n_keep: int, blocks: Sequence[int] | None = None) -> list[int]:
    """Column boundaries of the early-exit cascade: ``[b_1, b_2, ..., vocab_size]``.

    A block of ``B`` columns holds about ``r B / V`` entries above a target of rank ``r``
    among ``V``, so it refutes targets ranked beyond about ``k V / B``: the first block
    must be wide compared with ``k`` (``FIRST_BLOCK_PER_K`` columns per unit of
    ``k_max + 1``, at least ``FIRST_BLOCK_MIN``). Ids come in tokenizer order: the first
    ids are the frequent tokens, which refute more targets than a random block.

    After it, each boundary is ``CASCADE_GROWTH`` (2) times the one before, up to the end
    of the vocabulary. A (head, row) still undecided at column ``c`` is either a hit on a
    side, which must read every column whatever the blocks, or a miss whose ``k``-th rival
    lies somewhere beyond ``c``; a block ending at ``g c`` makes such a row read up to
    ``(g - 1) c`` columns it did not need. The first block refutes most rows (about 3 %
    of SmolLM2-135M's and 19 % of Gemma 3 270M's rows continue), but past it most rows
    continue (58-90 % per block on both models), so a wide next block pays its whole
    width for most rows; doubling keeps that waste below the columns already read, and a
    block's fixed cost (gathering its rows) is small beside its product while it holds
    thousands of columns. Measured over every layer of the built-in relations, blocks
    that double read 15 % fewer (head, row, column) entries than blocks growing 8-fold on
    Gemma 3 270M's 262,144 columns and 5 % fewer on SmolLM2's 49,152
    (``docs/results/scan-speed.md``).

    Args:
        vocab_size: columns of the output basis.
        n_keep: ``k_max + 1``, the entries that can decide a pair.
        blocks: explicit boundaries (increasing, each < ``vocab_size``) instead of the
            default; ``[]`` means a single stage over the whole vocabulary (dense).

    Returns:
        Increasing boundaries ending with ``vocab_size``; ``[vocab_size]`` alone is the
        dense path.
    """
    if blocks is not None:
        bounds = sorted({int(b) for b in blocks if 0 < int(b) < vocab_size})
        return bounds + [vocab_size]
    first = max(FIRST_BLOCK_MIN, FIRST_BLOCK_PER_K * n_keep)
    first += -first % COLUMN_ALIGN
    bounds, b = [], first
    while b < vocab_size:
        bounds.append(b)
        b *= CASCADE_GROWTH
    return bounds + [vocab_size]


class Scratch:
    """Buffers reused by every :func:`count_hits` call of one scan (pass the same object).

    A fresh multi-hundred-MB tensor per chunk or per layer costs page faults on first touch
    (on a 2-core CPU about 65 ms per 250 MB, as long as the comparisons of that chunk), so
    the logits and the comparison flags live in buffers that only grow. They are freed with
    this object.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, numel: int, like: torch.Tensor) -> torch.Tensor:
        """A flat buffer of at least ``numel`` elements of ``like``'s dtype and device."""
        buf = self._buffers.get(name)
        if buf is None or buf.numel() < numel or buf.dtype != like.dtype or \
                buf.device != like.device:
            buf = self._buffers[name] = torch.empty(numel, dtype=like.dtype, device=like.device)
        return buf[:numel]

    def count(self, rows: torch.Tensor, t: torch.Tensor, above: bool) -> torch.Tensor:
        """Entries of ``rows`` ``(..., vc)`` at or above (below) ``t`` ``(..., 1)``, int32."""
        # Comparisons written as 0/1 floats into a reused buffer and summed: on a CPU this
        # is several times faster than summing a fresh bool tensor (exact below 2**24
        # columns). A quarter of a logits chunk at a time keeps the buffer small.
        vc = rows.shape[-1]
        flat, t = rows.reshape(-1, vc), t.expand(*rows.shape[:-1], 1).reshape(-1, 1)
        step = max(1, FLAG_ELEMENTS // vc)
        out = torch.empty(flat.shape[0], dtype=torch.int32, device=rows.device)
        for r in range(0, flat.shape[0], step):
            part = flat[r:r + step]
            flags = self.get("flags", part.numel(), part).view(part.shape)
            (torch.ge if above else torch.le)(part, t[r:r + step], out=flags)
            out[r:r + step] = flags.sum(-1)
        return out.view(rows.shape[:-1])


class _Counts:
    """Per pair and side, how many other entries of its row tie or beat its target so far.

    Each entry names a row of the logits it is counted on (``pos``, sorted), a threshold
    per batch row (``t``: the target's logit), the target's column (``cols``), whose own
    entry is left out, and its ``k``. A row with several entries (a source with several
    targets) is read once per side, at its highest target logit (top) and its lowest
    (bottom): that count is exact for the entry that holds it and a lower bound for the
    others (their targets are lower, so at least as many entries beat them). An entry
    needs its own pass over the row only while the bound leaves it below ``k``; the rest
    are misses on that side whatever their exact count, and keep the bound.

    Args:
        pos: ``(E,)`` row of each entry, sorted.
        t: ``(B, E)`` target logits.
        cols: ``(E,)`` target columns.
        k: ``(E,)`` top-k of each entry.
        scratch: the comparison buffer.
        start: ``(above, below)`` int32 ``(B, E)`` counts of the columns read before (the
            bound test needs the whole count so far); default zeros.
    """

    def __init__(self, pos: torch.Tensor, t: torch.Tensor, cols: torch.Tensor, k: torch.Tensor,
                 scratch: Scratch, start: tuple[torch.Tensor, torch.Tensor] | None = None):
        self.pos, self.t, self.cols, self.k = pos.contiguous(), t, cols, k
        self.scratch = scratch
        if start is None:
            start = (torch.zeros(t.shape, dtype=torch.int32, device=t.device),) * 2
        self.above, self.below = (c.clone() for c in start)

    def add(self, logits: torch.Tensor, r0: int, c0: int) -> None:
        """Count on ``logits`` ``(B, n, vc)``: rows ``r0 .. r0 + n``, columns ``c0 .. c0 + vc``."""
        B, n, vc = logits.shape
        a, b = torch.searchsorted(self.pos, torch.tensor([r0, r0 + n], device=self.pos.device)
                                  ).tolist()
        if a == b:
            return
        pos, t, k = self.pos[a:b] - r0, self.t[:, a:b], self.k[a:b]
        own = (self.cols[a:b] >= c0) & (self.cols[a:b] < c0 + vc)
        own_v = logits[:, pos[own], self.cols[a:b][own] - c0]  # the target's own entry here
        for above, acc in ((True, self.above), (False, self.below)):
            extreme = t.new_full((B, n), float("-inf") if above else float("inf"))
            extreme.scatter_reduce_(1, pos.expand(B, -1), t, "amax" if above else "amin")
            held = t == extreme[:, pos]  # exact: a copy of the entry's own value
            own_beyond = torch.zeros_like(t, dtype=torch.int32)
            own_beyond[:, own] = ((own_v >= t[:, own]) if above else (own_v <= t[:, own])).int()
            # exact where the entry holds the row's extreme; else a lower bound (the own
            # entry, as this product computed it, may lie beyond the extreme by rounding)
            count = self.scratch.count(logits, extreme.unsqueeze(-1), above)[:, pos]
            count -= torch.where(held, own_beyond, own.int().expand(B, -1))
            need = ~held & (acc[:, a:b] + count < k)
            if bool(need.any()):
                hb, eb = need.nonzero(as_tuple=True)
                for s in range(0, len(hb), n):  # gathered rows: at most one chunk at a time
                    h, e = hb[s:s + n], eb[s:s + n]
                    count[h, e] = (self.scratch.count(logits[h, pos[e]], t[h, e].unsqueeze(-1),
                                                    above) - own_beyond[h, e])
            acc[:, a:b] += count

    def part(self, rows: torch.Tensor) -> tuple[torch.Tensor, _Counts]:
        """The entries on ``rows`` (bool per row), renumbered to those rows alone."""
        e = rows[self.pos].nonzero().squeeze(1)
        local = torch.cumsum(rows, 0) - 1
        return e, _Counts(local[self.pos[e]], self.t[:, e], self.cols[e], self.k[e], self.scratch,
                          (self.above[:, e], self.below[:, e]))


def _slice_width(per_column_floats: int, n_cols: int, chunk_bytes: int) -> int:
    """Columns per slice so that one slice of ``per_column_floats`` float32 fits the bound."""
    step = max(1, min(n_cols, chunk_bytes // (4 * per_column_floats)))
    if COLUMN_ALIGN <= step < n_cols:
        step -= step % COLUMN_ALIGN
    return step


def _count_all_rows(Y, W_O, U_columns: UColumns, c_start: int, c_end: int, out_bias,
                    chunk_bytes: int, counts: _Counts, mixed: MixedRows | None = None,
                    tally: dict[str, int] | None = None) -> None:
    """Count every pair of every head on columns ``[c_start, c_end)`` (``counts``: B = heads).

    With ``mixed``, where one chunk holds every row, the mixed rows' logits are formed
    from their base rows' and the prefix's (:class:`MixedRows`) instead of their own
    product; ``tally["mixed"]`` adds the (head, row, column) entries so formed.
    """
    H, S, d_head = Y.shape
    d_model = W_O.shape[-1]

    def plan(n: int) -> tuple[bool, int, int]:
        # Per vocabulary column, forming W_O U first costs H*d_head*(d_model + n)
        # multiply-adds and projecting (Y W_O) costs H*n*d_model: with few sources (a
        # single small relation on a big model) the second order is cheaper.
        first = n * d_model < d_head * (d_model + n)
        step = _slice_width(H * (d_model if first else d_head), c_end - c_start, chunk_bytes)
        return first, step, max(1, chunk_bytes // (4 * H * step))

    derive = mixed is not None and S == 2 * mixed.n_base
    if derive:
        sources_first, vocab_step, rows_per_chunk = plan(mixed.n_base)
        derive = rows_per_chunk >= S
    if not derive:
        sources_first, vocab_step, rows_per_chunk = plan(S)
    n_prod = mixed.n_base if derive else S  # the rows whose logits are products
    YO = torch.bmm(Y[:, :n_prod], W_O) if sources_first else None  # (H, n_prod, d_model)
    prefix_out = torch.bmm(mixed.prefix, W_O).squeeze(1) if derive else None  # (H, d_model)
    # One logits buffer reused for every chunk: allocating a fresh multi-hundred-MB tensor
    # per chunk costs page faults that roughly halve the matmul rate on a CPU.
    buffer = counts.scratch.get("logits", H * min(rows_per_chunk, S) * vocab_step, Y)
    for c0 in range(c_start, c_end, vocab_step):
        cols = slice(c0, min(c0 + vocab_step, c_end))
        U_c = U_columns(cols)
        WOU = None if sources_first else torch.matmul(W_O, U_c)  # (H, d_head, vc)
        vc = U_c.shape[-1]
        for r0 in range(0, n_prod, rows_per_chunk):
            n_rows = min(rows_per_chunk, n_prod - r0)
            logits = buffer[:H * n_rows * vc].view(H, n_rows, vc)
            if sources_first:
                torch.matmul(YO[:, r0:r0 + n_rows], U_c, out=logits)
            else:
                torch.bmm(Y[:, r0:r0 + n_rows], WOU, out=logits)
            if out_bias is not None:
                logits += out_bias[cols]
            counts.add(logits, r0, c0)
        if derive:  # the base rows' logits are the whole first part of the buffer
            base = buffer[:H * n_prod * vc].view(H, n_prod, vc)
            mix = buffer[H * n_prod * vc:2 * H * n_prod * vc].view(H, n_prod, vc)
            prefix = prefix_out @ U_c  # (H, vc)
            if out_bias is not None:
                prefix += out_bias[cols]
            torch.mul(base, mixed.weights[..., 1:], out=mix)
            mix.addcmul_(mixed.weights[..., :1], prefix.unsqueeze(1))
            counts.add(mix, n_prod, c0)
            if tally is not None:
                tally["mixed"] += mix.numel()
        del WOU, U_c


def _count_some_rows(Y, W_O, heads, srcs, U_columns: UColumns, c_start: int, c_end: int,
                     out_bias, chunk_bytes: int, counts: _Counts,
                     mixed: MixedRows | None = None,
                     tally: dict[str, int] | None = None) -> None:
    """Count the entries of ``counts`` (B = 1) on the (head, row) rows given, ``[c_start, c_end)``.

    Per vocabulary column, a head with ``n`` rows costs ``n d_model`` multiply-adds when
    its rows go through ``W_O^h`` first and are stacked with the other such heads' rows
    into one product with the shared ``U`` (sources first), and ``d_head (d_model + n)``
    when ``W_O^h U`` is formed for it; each head takes the cheaper form. A mixed row
    (``mixed``) whose base row is among the rows given takes its logits from its base
    row's instead (:class:`MixedRows`).

    Args:
        Y: ``(H, S, d_head)`` value-side rows of every head.
        W_O: ``(H, d_head, d_model)`` output weights.
        heads: ``(N,)`` head of each (head, row), sorted by head.
        srcs: ``(N,)`` row of each (head, row).
        U_columns: gives the ``(d_model, n)`` unembedding columns of a slice or index.
        c_start: first vocabulary column.
        c_end: end (exclusive) of the vocabulary columns.
        out_bias: ``(V,)`` bias added to every logit, or None.
        chunk_bytes: memory budget of one chunk of logits.
        counts: entries on the ``N`` rows, added to in place.
        mixed: the rows of ``Y`` that are mixes of others, or None.
        tally: ``tally["mixed"]`` adds the entries formed from base rows.
    """
    if mixed is not None:
        keys = heads * Y.shape[1] + srcs  # sorted
        base_keys = keys - mixed.n_base
        at = torch.searchsorted(keys, base_keys).clamp(max=len(keys) - 1)
        derived = (srcs >= mixed.n_base) & (keys[at] == base_keys)
        if bool(derived.any()):
            computed = ~derived
            e_d, part_d = counts.part(derived)
            e_c, part_c = counts.part(computed)
            j = derived.nonzero().squeeze(1)
            sink = _FromBase(part_d, (torch.cumsum(computed, 0) - 1)[at[j]], heads[j],
                             mixed.weights[heads[j], srcs[j] - mixed.n_base],
                             torch.bmm(mixed.prefix, W_O).squeeze(1), out_bias,
                             int(computed.sum()), tally)
            _count_by_form(Y, W_O, heads[computed], srcs[computed], U_columns, c_start, c_end,
                           out_bias, chunk_bytes, part_c, sink)
            for e, part in ((e_d, part_d), (e_c, part_c)):
                counts.above[:, e] = part.above
                counts.below[:, e] = part.below
            return
    _count_by_form(Y, W_O, heads, srcs, U_columns, c_start, c_end, out_bias, chunk_bytes,
                   counts, None)


class _FromBase:
    """The mixed rows of one stage whose base rows are computed: counted slice by slice.

    Args:
        counts: the mixed rows' entries (rows numbered as the mixed rows, in order).
        base: ``(N_d,)`` each mixed row's base among the computed rows (increasing).
        heads: ``(N_d,)`` each mixed row's head (sorted).
        weights: ``(N_d, 2)`` the weight on the prefix, then on the base row.
        prefix_out: ``(H, d_model)`` the prefix's row through each head's ``W_O``.
        out_bias: ``(V,)`` or None.
        n_computed: how many rows are computed.
        tally: ``tally["mixed"]`` adds the entries formed, or None.
    """

    def __init__(self, counts: _Counts, base: torch.Tensor, heads: torch.Tensor,
                 weights: torch.Tensor, prefix_out: torch.Tensor, out_bias, n_computed: int,
                 tally: dict[str, int] | None = None):
        self.counts, self.base, self.heads, self.weights = counts, base, heads, weights
        self.prefix_out, self.out_bias, self.n_computed = prefix_out, out_bias, n_computed
        self.tally = tally

    def __call__(self, logits: torch.Tensor, ids: torch.Tensor, c0: int, U_c: torch.Tensor,
                 cols: slice) -> None:
        """Count the mixed rows whose base rows are ``ids`` on ``logits`` ``(n, vc)`` (bias in)."""
        where = torch.full((self.n_computed,), -1, dtype=torch.long, device=ids.device)
        where[ids] = torch.arange(len(ids), device=ids.device)
        loc = where[self.base]
        sel = loc >= 0
        if not bool(sel.any()):
            return
        j = sel.nonzero().squeeze(1)
        prefix = self.prefix_out @ U_c  # (H, vc): the prefix's logits
        if self.out_bias is not None:
            prefix += self.out_bias[cols]
        w = self.weights[j]
        out = self.counts.scratch.get("mixed", len(j) * logits.shape[1], logits
                                      ).view(len(j), logits.shape[1])
        torch.index_select(logits, 0, loc[j], out=out).mul_(w[:, 1:])
        present, n_per = torch.unique_consecutive(self.heads[j], return_counts=True)
        a = 0
        for h, n in zip(present.tolist(), n_per.tolist()):
            out[a:a + n].addcmul_(w[a:a + n, :1], prefix[h:h + 1])
            a += n
        if self.tally is not None:
            self.tally["mixed"] += out.numel()
        e, sub = self.counts.part(sel)
        sub.add(out.unsqueeze(0), 0, c0)
        self.counts.above[:, e] = sub.above
        self.counts.below[:, e] = sub.below


def _count_by_form(Y, W_O, heads, srcs, U_columns: UColumns, c_start: int, c_end: int,
                   out_bias, chunk_bytes: int, counts: _Counts, sink: _FromBase | None) -> None:
    """:func:`_count_some_rows` on rows that are all computed, split by the cheaper form."""
    d_head, d_model = W_O.shape[1], W_O.shape[2]
    present, per_head = torch.unique_consecutive(heads, return_counts=True)
    heavy = per_head * d_model > d_head * (d_model + per_head)  # per head: form W_O^h U
    row_heavy = torch.repeat_interleave(heavy, per_head)
    for per_head_form in (False, True):
        rows = row_heavy == per_head_form
        if bool(rows.all()):
            _count_rows(Y, W_O, heads, srcs, U_columns, c_start, c_end, out_bias, chunk_bytes,
                        per_head_form, counts, sink)
        elif bool(rows.any()):
            e, part = counts.part(rows)
            _count_rows(Y, W_O, heads[rows], srcs[rows], U_columns, c_start, c_end, out_bias,
                        chunk_bytes, per_head_form, part, sink, rows.nonzero().squeeze(1))
            counts.above[:, e] = part.above
            counts.below[:, e] = part.below


def _count_rows(Y, W_O, heads, srcs, U_columns: UColumns, c_start: int, c_end: int, out_bias,
                chunk_bytes: int, per_head_form: bool, counts: _Counts,
                sink: _FromBase | None = None, ids: torch.Tensor | None = None) -> None:
    """:func:`_count_some_rows` for rows that all take one form (``heads`` sorted).

    ``sink`` is handed each chunk's logits with ``ids``, the rows' indices among the
    computed rows (default ``0 .. N``), to count the mixed rows formed from them.
    """
    d_head, d_model = W_O.shape[1], W_O.shape[2]
    N = len(heads)
    present, per_head = torch.unique_consecutive(heads, return_counts=True)
    width = max(d_model, d_head) if per_head_form else d_model
    rows_per_chunk = min(N, max(1, chunk_bytes // (4 * width)))
    vocab_step = _slice_width(max(width, rows_per_chunk), c_end - c_start, chunk_bytes)
    ends = torch.cumsum(per_head, 0).tolist()
    segments = list(zip(present.tolist(), [0] + ends[:-1], ends))
    buffer = counts.scratch.get("logits", rows_per_chunk * vocab_step, Y)
    for r0 in range(0, N, rows_per_chunk):
        r1 = min(N, r0 + rows_per_chunk)
        segs = [(h, max(a, r0), min(b, r1)) for h, a, b in segments if a < r1 and b > r0]
        if not per_head_form:  # the chunk's rows, each through its own head's W_O: (n, d_model)
            left = torch.cat([Y[h, srcs[a:b]] @ W_O[h] for h, a, b in segs])
        for c0 in range(c_start, c_end, vocab_step):
            cols = slice(c0, min(c0 + vocab_step, c_end))
            U_c = U_columns(cols)
            vc = U_c.shape[-1]
            logits = buffer[:(r1 - r0) * vc].view(r1 - r0, vc)
            if not per_head_form:
                torch.matmul(left, U_c, out=logits)
            else:
                for h, a, b in segs:
                    torch.matmul(Y[h, srcs[a:b]], W_O[h] @ U_c, out=logits[a - r0:b - r0])
            if out_bias is not None:
                logits += out_bias[cols]
            counts.add(logits.unsqueeze(0), r0, c0)
            if sink is not None:
                sink(logits, torch.arange(r0, r1, device=heads.device) if ids is None
                     else ids[r0:r1], c0, U_c, cols)


def count_hits(
    Y: torch.Tensor,
    W_O: torch.Tensor,
    U_columns: UColumns,
    vocab_size: int,
    rows: torch.Tensor,
    targets: torch.Tensor,
    k: torch.Tensor,
    out_bias: torch.Tensor | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    *,
    exact_dense: bool = False,
    blocks: Sequence[int] | None = None,
    stats: dict[str, Any] | None = None,
    scratch: Scratch | None = None,
    mixed: MixedRows | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Whether each pair's target is in the top-k (and bottom-k) of its source's row, per head.

    Logits of row ``s`` of head ``h`` are ``Y[h, s] W_O[h] U (+ out_bias)``. The target's
    own logit is computed from its column alone, and its own entry is left out of the
    count, so the decision is exact (see the module docstring). By default the vocabulary
    is read in the early-exit cascade of :func:`stage_bounds`; with ``exact_dense`` every
    row reads every column.

    Args:
        Y: ``(n_heads, n_rows, d_head)`` value vectors of the unique sources (float32).
        W_O: ``(n_heads, d_head, d_model)`` output weights (float32), with any per-layer
            gain between the head and ``U`` already folded in.
        U_columns: returns float32 ``(d_model, n)`` columns of the output basis for a
            slice or index tensor of the vocabulary.
        vocab_size: columns of the output basis.
        rows: ``(n_pairs,)`` sorted row of each pair in ``Y``.
        targets: ``(n_pairs,)`` target token ids.
        k: ``(n_pairs,)`` top-k per pair.
        out_bias: ``(vocab,)`` added to every row's logits, or None.
        chunk_bytes: memory bound of one slice of ``W_O U`` and of one chunk of logits.
        exact_dense: read every column for every row (the baseline of the benchmark).
        blocks: explicit cascade boundaries (see :func:`stage_bounds`).
        stats: if given, ``stats["mixed"]`` (the (head, row, column) logits formed from
            base rows, ``mixed``), ``stats["rows"]`` (n_heads * n_rows) and ``stats["stages"]``
            (list of ``[first column, end column, (head, row) computed]``) are added to.
        scratch: buffers to reuse across calls (one :class:`Scratch` per scan); default
            a fresh one.
        mixed: rows of ``Y`` that mix a prefix row with another row (:class:`MixedRows`):
            their logits come from their base rows' in the first block (where one chunk
            holds every row) and past it wherever both go on.

    Returns:
        ``hits``, ``suppressed``: bool ``(n_heads, n_pairs)``.
    """
    H, S, _ = Y.shape
    # the pair's own target logit, from W_O U[:, target] (each distinct target once)
    uniq, inv = torch.unique(targets, return_inverse=True)
    WOU_t = torch.matmul(W_O, U_columns(uniq))  # (H, d_head, T)
    tgt = torch.einsum("hpd,hdp->hp", Y[:, rows], WOU_t[:, :, inv])
    del WOU_t
    if out_bias is not None:
        tgt = tgt + out_bias[targets]
    bounds = [vocab_size] if exact_dense else stage_bounds(vocab_size, int(k.max()) + 1, blocks)
    scratch = Scratch() if scratch is None else scratch
    counts = _Counts(rows, tgt, targets, k, scratch)
    tally = {"mixed": 0}
    _count_all_rows(Y, W_O, U_columns, 0, bounds[0], out_bias, chunk_bytes, counts, mixed, tally)
    above, below = counts.above, counts.below
    reached = [H * S]
    for c0, c1 in zip(bounds, bounds[1:]):
        heads, pairs = ((above < k) | (below < k)).nonzero(as_tuple=True)  # still undecided
        # rows are sorted, so (head, row) keys come sorted and each pair's position too
        keys, pos = torch.unique(heads * S + rows[pairs], return_inverse=True)
        reached.append(len(keys))
        if not len(keys):
            break
        more = _Counts(pos, tgt[heads, pairs].unsqueeze(0), targets[pairs], k[pairs], scratch,
                       (above[heads, pairs].unsqueeze(0), below[heads, pairs].unsqueeze(0)))
        _count_some_rows(Y, W_O, keys // S, keys % S, U_columns, c0, c1, out_bias, chunk_bytes,
                         more, mixed, tally)
        above[heads, pairs] = more.above[0]
        below[heads, pairs] = more.below[0]
    if stats is not None:
        stats["rows"] = stats.get("rows", 0) + H * S
        stats["mixed"] = stats.get("mixed", 0) + tally["mixed"]
        starts = [0] + bounds[:-1]
        old = stats.setdefault("stages", [])
        for i, (a, b) in enumerate(zip(starts, bounds)):
            n = reached[i] if i < len(reached) else 0
            if i < len(old) and old[i][:2] == [a, b]:
                old[i][2] += n
            else:
                old.append([a, b, n])
    return above < k, below < k
