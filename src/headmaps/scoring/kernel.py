"""The one top-k hit test of the package: is a target in the top-k (bottom-k) of its row?

Every scorer (static scans, dynamic scores of the experiments) asks the same question of
rows of logits ``y_h W_O^h U``: is the pair's target among the ``k`` largest (and among
the ``k`` smallest) entries of its row? :func:`count_hits` answers it without ever
holding a whole row set in memory, and by default without computing most of it.

**The rule.** A target is in the top-k iff fewer than ``k`` *other* entries of its row are
at least as large as its logit: ties count against the target. Equivalently, iff its
logit is strictly larger than the k-th largest of the other entries; the bottom-k mirrors
this. So a row that gives the target no strict advantage over ``k`` others is a miss: a
zeroed head (every logit equal), a constant head, or a row of ties scores 0, for every
``k``, instead of claiming every pair. For rows of ordinary float logits, exact ties with
the target have probability ~0 and the rule changes no score.

**Early exit (exact).** Any subset of columns that already holds ``k`` entries at or above
the target proves a miss, since the k-th largest over a subset never exceeds the k-th largest
over the whole row. So the vocabulary is read in a cascade of growing blocks
(:func:`stage_bounds`): every (head, row) gets the first block; only those with a pair
still undecided (possibly in the top-k, or possibly in the bottom-k) get the next block,
and so on to the end of the vocabulary. The best and worst ``k_max + 1`` candidates of
each row are merged across blocks exactly as the dense path merges its slices, and the
final test is the same expression on the same candidate lists, so the decisions equal the
dense path's (``exact_dense=True``) wherever the two compute the same logit values.

**Memory.** Every buffer (a slice of ``W_O U``, of ``U``, of the logits, of the stacked
continuing rows) is bounded by ``chunk_bytes``, whatever the vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

#: Upper bound on the bytes of one chunk of logits (n_heads x rows x vocab float32).
DEFAULT_CHUNK_BYTES = 256 * 2**20

#: Columns per block of the two-stage top-k below; also the granularity of vocabulary slices.
TOPK_BLOCK = 64

#: Each block of the early-exit cascade is this many times wider than the one before.
CASCADE_GROWTH = 8

#: The first block has at least this many columns, and at least ``FIRST_BLOCK_PER_K``
#: columns per kept candidate (``k_max + 1``).
FIRST_BLOCK_MIN = 2048
FIRST_BLOCK_PER_K = 128

UColumns = Callable[[slice | torch.Tensor], torch.Tensor]


def stage_bounds(vocab_size: int, n_keep: int, blocks: Sequence[int] | None = None) -> list[int]:
    """Column boundaries of the early-exit cascade: ``[b_1, b_2, ..., vocab_size]``.

    A block of ``B`` columns holds about ``r B / V`` entries above a target of rank ``r``
    among ``V``, so it refutes targets ranked beyond about ``k V / B``: the first block
    must be wide compared with ``k`` (``FIRST_BLOCK_PER_K`` columns per candidate, at
    least ``FIRST_BLOCK_MIN``). Each later block is ``CASCADE_GROWTH`` times wider; it
    costs no more than the previous one as long as at most one (head, row) in
    ``CASCADE_GROWTH`` continues, which the measured stage fractions satisfy
    (``benchmarks/bench_scan.py``). A block that would reach past half of the vocabulary
    is replaced by the rest of it. Ids come in tokenizer order: the first ids are the
    frequent tokens, which refute more targets than a random block.

    Args:
        vocab_size: columns of the output basis.
        n_keep: candidates kept per row (``k_max + 1``).
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
    first += -first % TOPK_BLOCK
    bounds, b = [], first
    while b <= vocab_size // 2:
        bounds.append(b)
        b *= CASCADE_GROWTH
    return bounds + [vocab_size]


def _merge(run_v: torch.Tensor | None, run_i: torch.Tensor | None, v: torch.Tensor, i: torch.Tensor,
           n: int, largest: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the ``n`` largest (or smallest) of two candidate lists along the last axis."""
    if run_v is None:
        return v, i
    cat_v, cat_i = torch.cat([run_v, v], -1), torch.cat([run_i, i], -1)
    best_v, pos = torch.topk(cat_v, min(n, cat_v.shape[-1]), dim=-1, largest=largest, sorted=True)
    return best_v, cat_i.gather(-1, pos)


def _pad(v: torch.Tensor, i: torch.Tensor, n: int,
         largest: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad candidate lists to ``n`` entries with -inf/+inf values at column -1 (no column)."""
    short = n - v.shape[-1]
    if short <= 0:
        return v, i
    fill = float("-inf") if largest else float("inf")
    v = torch.cat([v, v.new_full((*v.shape[:-1], short), fill)], -1)
    i = torch.cat([i, i.new_full((*i.shape[:-1], short), -1)], -1)
    return v, i


def best_k(logits: torch.Tensor, n: int, largest: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``n`` largest (or smallest) values of each row and their columns, sorted.

    Same result as ``torch.topk(logits, n, dim=-1, largest=largest, sorted=True)`` (up to
    which column is named among exactly equal values), about twice as fast on a CPU for
    the wide rows of a vocabulary slice: the rows are cut into blocks of ``TOPK_BLOCK``
    columns, and the ``n`` best values of a row lie in the ``n`` blocks with the best
    block maxima (each of them is at most its own block's maximum), so a cheap
    block reduction and a top-k over ``n * TOPK_BLOCK`` gathered columns suffice.

    Args:
        logits: ``(..., vc)``.
        n: values to keep per row, ``n <= vc``.
        largest: largest (top-k) or smallest (bottom-k).

    Returns:
        ``values``, ``columns``: ``(..., n)``.
    """
    vc, b = logits.shape[-1], TOPK_BLOCK
    if vc % b or vc // b < 4 * n:
        return torch.topk(logits, n, dim=-1, largest=largest, sorted=True)
    blocks = logits.view(*logits.shape[:-1], vc // b, b)
    block_best = blocks.amax(-1) if largest else blocks.amin(-1)
    _, block_idx = torch.topk(block_best, n, dim=-1, largest=largest, sorted=False)
    gathered = blocks.gather(-2, block_idx.unsqueeze(-1).expand(*block_idx.shape, b))
    values, pos = torch.topk(gathered.flatten(-2), n, dim=-1, largest=largest, sorted=True)
    return values, block_idx.gather(-1, pos // b) * b + pos % b


def _count_beyond(vals: torch.Tensor, idx: torch.Tensor, targets: torch.Tensor, tgt: torch.Tensor,
                  largest: bool) -> torch.Tensor:
    """How many candidates of each pair's row, its own target left out, tie or beat the target.

    With candidate lists of ``k_max + 1`` entries this count is at least ``k`` iff the
    k-th best other entry ties or beats the target, so ``count < k`` is the hit test
    (ties count against the target; padding entries of +-inf never count, as the
    target's logit is finite).

    Args:
        vals: ``(H, P, k_max + 1)`` best values per pair.
        idx: ``(H, P, k_max + 1)`` their columns.
        targets: ``(P,)`` target column of each pair.
        tgt: ``(H, P)`` target logits.
        largest: beat means larger (top-k) or smaller (bottom-k).
    """
    beyond = vals >= tgt.unsqueeze(2) if largest else vals <= tgt.unsqueeze(2)
    return (beyond & (idx != targets.view(1, -1, 1))).sum(2)


class _Candidates:
    """The best and worst ``n_keep`` logits (and their columns) of every (head, row) so far."""

    def __init__(self, top_v, top_i, bot_v, bot_i, n_keep: int):
        self.n_keep = n_keep
        self.top_v, self.top_i = _pad(top_v, top_i, n_keep, True)
        self.bot_v, self.bot_i = _pad(bot_v, bot_i, n_keep, False)

    def decide(self, rows, targets, tgt, k) -> tuple[torch.Tensor, torch.Tensor]:
        """Whether each pair is in the top-k and bottom-k of the columns seen, ``(H, P)`` each."""
        above = _count_beyond(self.top_v[:, rows], self.top_i[:, rows], targets, tgt, largest=True)
        below = _count_beyond(self.bot_v[:, rows], self.bot_i[:, rows], targets, tgt, largest=False)
        return above < k, below < k

    def add(self, heads, srcs, tv, ti, bv, bi) -> None:
        """Merge new candidates ``(N, n_keep)`` of the (head, row) ``(heads[j], srcs[j])``."""
        n = self.n_keep
        tv, ti = _merge(self.top_v[heads, srcs], self.top_i[heads, srcs], tv, ti, n, True)
        bv, bi = _merge(self.bot_v[heads, srcs], self.bot_i[heads, srcs], bv, bi, n, False)
        self.top_v[heads, srcs], self.top_i[heads, srcs] = tv, ti
        self.bot_v[heads, srcs], self.bot_i[heads, srcs] = bv, bi


def _slice_width(per_column_floats: int, n_cols: int, chunk_bytes: int) -> int:
    """Columns per slice so that one slice of ``per_column_floats`` float32 fits the bound."""
    step = max(1, min(n_cols, chunk_bytes // (4 * per_column_floats)))
    if TOPK_BLOCK <= step < n_cols:  # whole blocks per slice, for best_k
        step -= step % TOPK_BLOCK
    return step


def _all_rows_best(Y, W_O, U_columns: UColumns, c_start: int, c_end: int, n_keep: int,
                   out_bias, chunk_bytes: int):
    """Best/worst ``n_keep`` logits of every (head, row) over columns ``[c_start, c_end)``.

    Returns ``top_v, top_i, bot_v, bot_i`` ``(H, S, <= n_keep)`` (columns absolute).
    """
    H, S, d_head = Y.shape
    d_model = W_O.shape[-1]
    # Per vocabulary column, forming W_O U first costs H*d_head*(d_model + S) multiply-adds
    # and projecting (Y W_O) costs H*S*d_model: with few sources (a single small relation
    # on a big model) the second order is cheaper.
    sources_first = S * d_model < d_head * (d_model + S)
    YO = torch.bmm(Y, W_O) if sources_first else None  # (H, S, d_model)
    width = d_model if sources_first else d_head
    vocab_step = _slice_width(H * width, c_end - c_start, chunk_bytes)
    rows_per_chunk = max(1, chunk_bytes // (4 * H * vocab_step))
    # One logits buffer reused for every chunk: allocating a fresh multi-hundred-MB tensor
    # per chunk costs page faults that roughly halve the matmul rate on a CPU.
    buffer = torch.empty(H * min(rows_per_chunk, S) * vocab_step, dtype=Y.dtype, device=Y.device)
    n_keep = min(n_keep, c_end - c_start)
    top_v = top_i = bot_v = bot_i = None
    for c0 in range(c_start, c_end, vocab_step):
        cols = slice(c0, min(c0 + vocab_step, c_end))
        U_c = U_columns(cols)
        WOU = None if sources_first else torch.matmul(W_O, U_c)  # (H, d_head, vc)
        vc = U_c.shape[-1]
        n_best = min(n_keep, vc)
        sl_tv, sl_ti, sl_bv, sl_bi = [], [], [], []
        for r0 in range(0, S, rows_per_chunk):
            n_rows = min(rows_per_chunk, S - r0)
            logits = buffer[:H * n_rows * vc].view(H, n_rows, vc)
            if sources_first:
                torch.matmul(YO[:, r0:r0 + n_rows], U_c, out=logits)
            else:
                torch.bmm(Y[:, r0:r0 + n_rows], WOU, out=logits)
            if out_bias is not None:
                logits += out_bias[cols]
            tv, ti = best_k(logits, n_best, largest=True)
            bv, bi = best_k(logits, n_best, largest=False)
            sl_tv.append(tv)
            sl_ti.append(ti + c0)
            sl_bv.append(bv)
            sl_bi.append(bi + c0)
        del WOU, U_c
        top_v, top_i = _merge(top_v, top_i, torch.cat(sl_tv, 1), torch.cat(sl_ti, 1), n_keep, True)
        bot_v, bot_i = _merge(bot_v, bot_i, torch.cat(sl_bv, 1), torch.cat(sl_bi, 1), n_keep, False)
    return top_v, top_i, bot_v, bot_i


def _some_rows_best(Y, W_O, heads, srcs, U_columns: UColumns, c_start: int, c_end: int, n_keep: int,
                    out_bias, chunk_bytes: int):
    """Best/worst ``n_keep`` logits over ``[c_start, c_end)`` of the (head, row) pairs given.

    Per vocabulary column, a head with ``n`` rows costs ``n d_model`` multiply-adds when
    its rows go through ``W_O^h`` first and are stacked with the other such heads' rows
    into one product with the shared ``U`` (sources first), and ``d_head (d_model + n)``
    when ``W_O^h U`` is formed for it; each head takes the cheaper form.

    Args:
        Y: ``(H, S, d_head)`` value-side rows of every head.
        W_O: ``(H, d_head, d_model)`` output weights.
        heads: ``(N,)`` head of each (head, row), sorted by head.
        srcs: ``(N,)`` row of each (head, row).
        U_columns: gives the ``(d_model, n)`` unembedding columns of a slice or index.
        c_start: first vocabulary column.
        c_end: end (exclusive) of the vocabulary columns.
        n_keep: how many best and worst logits to keep.
        out_bias: ``(V,)`` bias added to every logit, or None.
        chunk_bytes: memory budget of one chunk of logits.

    Returns:
        ``(N, n_keep)`` values and absolute columns, top then bottom.
    """
    d_head, d_model = W_O.shape[1], W_O.shape[2]
    present, per_head = torch.unique_consecutive(heads, return_counts=True)
    heavy = per_head * d_model > d_head * (d_model + per_head)  # per head: form W_O^h U
    row_heavy = torch.repeat_interleave(heavy, per_head)
    parts = []
    for sel, per_head_form in ((~row_heavy, False), (row_heavy, True)):
        idx = sel.nonzero().squeeze(1)
        if len(idx):
            parts.append((idx, _rows_best(Y, W_O, heads[idx], srcs[idx], U_columns, c_start, c_end,
                                          n_keep, out_bias, chunk_bytes, per_head_form)))
    if len(parts) == 1:
        return parts[0][1]
    out = [torch.empty((len(heads), n_keep), dtype=t.dtype, device=t.device) for t in parts[0][1]]
    for idx, res in parts:
        for o, r in zip(out, res):
            o[idx] = r
    return tuple(out)


def _rows_best(Y, W_O, heads, srcs, U_columns: UColumns, c_start: int, c_end: int, n_keep: int,
               out_bias, chunk_bytes: int, per_head_form: bool):
    """:func:`_some_rows_best` for rows that all take one form (``heads`` sorted)."""
    d_head, d_model = W_O.shape[1], W_O.shape[2]
    N = len(heads)
    present, per_head = torch.unique_consecutive(heads, return_counts=True)
    width = max(d_model, d_head) if per_head_form else d_model
    rows_per_chunk = min(N, max(1, chunk_bytes // (4 * width)))
    vocab_step = _slice_width(max(width, rows_per_chunk), c_end - c_start, chunk_bytes)
    ends = torch.cumsum(per_head, 0).tolist()
    segments = list(zip(present.tolist(), [0] + ends[:-1], ends))
    outs: list[tuple[torch.Tensor, ...]] = []
    buffer = torch.empty(rows_per_chunk * vocab_step, dtype=Y.dtype, device=Y.device)
    for r0 in range(0, N, rows_per_chunk):
        r1 = min(N, r0 + rows_per_chunk)
        segs = [(h, max(a, r0), min(b, r1)) for h, a, b in segments if a < r1 and b > r0]
        if not per_head_form:  # the chunk's rows, each through its own head's W_O: (n, d_model)
            left = torch.cat([Y[h, srcs[a:b]] @ W_O[h] for h, a, b in segs])
        top_v = top_i = bot_v = bot_i = None
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
            n_best = min(n_keep, vc)
            tv, ti = best_k(logits, n_best, largest=True)
            bv, bi = best_k(logits, n_best, largest=False)
            top_v, top_i = _merge(top_v, top_i, tv, ti + c0, n_keep, True)
            bot_v, bot_i = _merge(bot_v, bot_i, bv, bi + c0, n_keep, False)
        outs.append((*_pad(top_v, top_i, n_keep, True), *_pad(bot_v, bot_i, n_keep, False)))
    return tuple(torch.cat(parts) for parts in zip(*outs))


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
) -> tuple[torch.Tensor, torch.Tensor]:
    """Whether each pair's target is in the top-k (and bottom-k) of its source's row, per head.

    Logits of row ``s`` of head ``h`` are ``Y[h, s] W_O[h] U (+ out_bias)``. The target's
    own logit is computed from its column alone, and the decision leaves the target's
    column out of the candidates, so it is exact (see the module docstring). By default
    the vocabulary is read in the early-exit cascade of :func:`stage_bounds`; with
    ``exact_dense`` every row reads every column.

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
        stats: if given, ``stats["rows"]`` (n_heads * n_rows) and ``stats["stages"]``
            (list of ``[first column, end column, (head, row) computed]``) are added to.

    Returns:
        ``hits``, ``suppressed``: bool ``(n_heads, n_pairs)``.
    """
    H, S, _ = Y.shape
    n_keep = int(k.max()) + 1
    # the pair's own target logit, from W_O U[:, target] (each distinct target once)
    uniq, inv = torch.unique(targets, return_inverse=True)
    WOU_t = torch.matmul(W_O, U_columns(uniq))  # (H, d_head, T)
    tgt = torch.einsum("hpd,hdp->hp", Y[:, rows], WOU_t[:, :, inv])
    del WOU_t
    if out_bias is not None:
        tgt = tgt + out_bias[targets]
    bounds = [vocab_size] if exact_dense else stage_bounds(vocab_size, n_keep, blocks)
    cand = _Candidates(*_all_rows_best(Y, W_O, U_columns, 0, bounds[0], n_keep, out_bias,
                                       chunk_bytes),
                       n_keep)
    reached = [H * S]
    for c0, c1 in zip(bounds, bounds[1:]):
        maybe_hit, maybe_supp = cand.decide(rows, targets, tgt, k)
        open_pair = maybe_hit | maybe_supp  # (H, P): a hit or a suppression is still possible
        open_row = torch.zeros(H, S, dtype=torch.int32, device=Y.device)
        open_row.index_add_(1, rows, open_pair.to(torch.int32))
        heads, srcs = open_row.nonzero(as_tuple=True)  # sorted by head
        reached.append(len(heads))
        if not len(heads):
            break
        cand.add(heads, srcs, *_some_rows_best(Y, W_O, heads, srcs, U_columns, c0, c1, n_keep,
                                               out_bias, chunk_bytes))
    if stats is not None:
        stats["rows"] = stats.get("rows", 0) + H * S
        starts = [0] + bounds[:-1]
        old = stats.setdefault("stages", [])
        for i, (a, b) in enumerate(zip(starts, bounds)):
            n = reached[i] if i < len(reached) else 0
            if i < len(old) and old[i][:2] == [a, b]:
                old[i][2] += n
            else:
                old.append([a, b, n])
    return cand.decide(rows, targets, tgt, k)
