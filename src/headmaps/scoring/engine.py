"""Approach A, batched: every head of every layer against every relation in one pass.

Per layer: ``W_O^h U`` is formed once for all heads, the sources of all
relations go through ``W_V`` together, and each head's logits over the vocabulary come
from one rank-``d_head`` product, computed in chunks of source rows so memory stays
bounded whatever the vocabulary. Instead of a top-k, a target's rank is counted: the
target is in the top-k of its row iff fewer than ``k`` entries are strictly greater
(ties count in the target's favour; with continuous weights they do not occur).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import projection as P
from .. import relations as rel_lib
from ..errors import HeadmapsError
from ..io import versions
from ..models import HeadModel
from .results import DEFAULT_TAU, RelationScores, ScanResult

logger = logging.getLogger(__name__)

#: Upper bound on the bytes of one chunk of logits (n_heads x rows x vocab float32).
DEFAULT_CHUNK_BYTES = 256 * 2**20


def default_k(model: HeadModel, relation: str | None, pairs_are_copies: bool = False) -> int:
    """The paper's k: 1 for copying relations and 10 otherwise; 3 and 25 for vocabularies over 100k.

    Args:
        model: the model (its vocabulary size decides the scale).
        relation: a built-in relation name, or None for a custom set.
        pairs_are_copies: for custom sets, whether every pair maps a token to itself.
    """
    if relation is not None and relation in rel_lib.names():
        base = rel_lib.info(relation).default_k
    else:
        base = 1 if pairs_are_copies else 10
    if model.vocab_size > 100_000:
        return 3 if base == 1 else 25
    return base


@dataclass
class _Batch:
    """All valid relations' pairs, flattened and sorted by unique source row."""

    names: list[str]
    rows: torch.Tensor  # (P,) index into unique sources, sorted ascending
    targets: torch.Tensor  # (P,) target token ids
    rel: torch.Tensor  # (P,) relation index
    k: torch.Tensor  # (P,) top-k of each pair's relation
    unique_sources: torch.Tensor  # (S,) unique source token ids
    n_pairs: list[int]


def _relation_name(spec: Any) -> str:
    if isinstance(spec, str):
        return spec if spec in rel_lib.names() else _stem(spec)
    return "custom"


def _stem(path: str) -> str:
    from pathlib import Path

    return Path(path).stem


def normalise_relations(relations: Any) -> list[tuple[str, Any]]:
    """``"all"``, a name, a path, a list of pairs, a list of those, or a dict -> (name, spec)."""
    if isinstance(relations, str):
        if relations == "all":
            return [(n, n) for n in rel_lib.names()]
        return [(_relation_name(relations), relations)]
    if isinstance(relations, dict):
        return list(relations.items())
    relations = list(relations)
    if relations and isinstance(relations[0], (tuple, list)) and len(relations[0]) == 2 and all(
        isinstance(x, str) for x in relations[0]
    ):
        return [("custom", relations)]  # a single list of pairs
    out = [(_relation_name(r), r) for r in relations]
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise HeadmapsError(f"relation names must be unique, got {names}")
    return out


def _prepare(model: HeadModel, relations: Any, k: int | dict[str, int] | None, min_pairs: int):
    """Tokenise every relation; returns the batch, skipped reasons and k per relation."""
    names, src, tgt, rel, ks, n_pairs = [], [], [], [], [], []
    skipped: dict[str, str] = {}
    k_used: dict[str, int] = {}
    for name, spec in normalise_relations(relations):
        prep = rel_lib.prepare(model, spec, min_pairs=min_pairs)
        if not prep.valid:
            skipped[name] = (
                f"only {prep.n_pairs} of {prep.n_pairs + len(prep.dropped)} pairs are single "
                f"tokens for this model (need {min_pairs})"
            )
            continue
        src_ids = torch.as_tensor(np.asarray(prep.source_ids), dtype=torch.long)
        tgt_ids = torch.as_tensor(np.asarray(prep.target_ids), dtype=torch.long)
        kk = k.get(name) if isinstance(k, dict) else k
        if kk is None:
            kk = default_k(model, name if isinstance(spec, str) else None,
                           bool((src_ids == tgt_ids).all()))
        if not 1 <= kk <= model.vocab_size:
            raise HeadmapsError(f"k={kk} is out of range for relation {name!r}: it must be between "
                                f"1 and the vocabulary size {model.vocab_size}")
        k_used[name] = int(kk)
        i = len(names)
        names.append(name)
        n_pairs.append(len(src_ids))
        src.append(src_ids)
        tgt.append(tgt_ids)
        rel.append(torch.full_like(src_ids, i))
        ks.append(torch.full_like(src_ids, kk))
    if not names:
        return None, skipped, k_used
    src_all = torch.cat(src)
    unique, inverse = torch.unique(src_all, return_inverse=True)
    order = torch.argsort(inverse, stable=True)
    batch = _Batch(names, inverse[order], torch.cat(tgt)[order], torch.cat(rel)[order],
                   torch.cat(ks)[order], unique, n_pairs)
    return batch, skipped, k_used


def _merge(run_v: torch.Tensor | None, run_i: torch.Tensor | None, v: torch.Tensor, i: torch.Tensor,
           n: int, largest: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the ``n`` largest (or smallest) of two candidate lists along the last axis."""
    if run_v is None:
        return v, i
    cat_v, cat_i = torch.cat([run_v, v], -1), torch.cat([run_i, i], -1)
    best_v, pos = torch.topk(cat_v, n, dim=-1, largest=largest, sorted=True)
    return best_v, cat_i.gather(-1, pos)


#: Columns per block of the two-stage top-k below; also the granularity of vocabulary slices.
TOPK_BLOCK = 64


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


def _kth_excluding(vals: torch.Tensor, idx: torch.Tensor, targets: torch.Tensor, k: torch.Tensor,
                   largest: bool) -> torch.Tensor:
    """The k-th best value of each pair's row with the pair's own target left out.

    Args:
        vals: ``(H, P, k_max + 1)`` best values of each pair's row, sorted.
        idx: ``(H, P, k_max + 1)`` their columns.
        targets: ``(P,)`` target column of each pair.
        k: ``(P,)`` k of each pair.
        largest: best means largest (top-k) or smallest (bottom-k).
    """
    fill = float("-inf") if largest else float("inf")
    masked = vals.masked_fill(idx == targets.view(1, -1, 1), fill)
    masked = torch.sort(masked, dim=-1, descending=largest).values
    return masked.gather(2, (k - 1).view(1, -1, 1).expand(vals.shape[0], -1, 1)).squeeze(2)


def count_hits(
    Y: torch.Tensor,
    W_O: torch.Tensor,
    U_columns: Callable[[slice | torch.Tensor], torch.Tensor],
    vocab_size: int,
    rows: torch.Tensor,
    targets: torch.Tensor,
    k: torch.Tensor,
    out_bias: torch.Tensor | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Whether each pair's target is in the top-k (and bottom-k) of its source's row, per head.

    The vocabulary is processed in slices and the source rows in chunks, so memory is
    bounded by ``chunk_bytes`` whatever the vocabulary: per slice, ``W_O^h U[:, slice]``
    is formed for every head, each chunk's logits are reduced to their best ``k_max + 1``
    values, and the candidates are merged across slices. A target is in the top-k iff its
    logit is at least the k-th largest of the *other* entries of its row (ties count in
    its favour); leaving the target out keeps the decision exact even though its own
    logit is computed separately.

    Args:
        Y: ``(n_heads, n_rows, d_head)`` value vectors of the unique sources (float32).
        W_O: ``(n_heads, d_head, d_model)`` output weights (float32).
        U_columns: returns float32 ``(d_model, n)`` columns of the output basis for a
            slice or index tensor of the vocabulary.
        vocab_size: columns of the output basis.
        rows: ``(n_pairs,)`` sorted row of each pair in ``Y``.
        targets: ``(n_pairs,)`` target token ids.
        k: ``(n_pairs,)`` top-k per pair.
        out_bias: ``(vocab,)`` added to every row's logits, or None.
        chunk_bytes: memory bound of one slice of ``W_O U`` and of one chunk of logits.

    Returns:
        ``hits``, ``suppressed``: bool ``(n_heads, n_pairs)``.
    """
    H, S, d_head = Y.shape
    V = vocab_size
    n_keep = int(k.max()) + 1
    # the pair's own target logit, from W_O U[:, target]
    WOU_t = torch.matmul(W_O, U_columns(targets))  # (H, d_head, P)
    tgt = torch.einsum("hpd,hdp->hp", Y[:, rows], WOU_t)
    del WOU_t
    if out_bias is not None:
        tgt = tgt + out_bias[targets]
    d_model = W_O.shape[-1]
    # Per vocabulary column, forming W_O U first costs H*d_head*(d_model + S) multiply-adds
    # and projecting (Y W_O) costs H*S*d_model: with few sources (a single small relation
    # on a big model) the second order is cheaper.
    sources_first = S * d_model < d_head * (d_model + S)
    YO = torch.bmm(Y, W_O) if sources_first else None  # (H, S, d_model)
    width = d_model if sources_first else d_head
    vocab_step = max(1, min(V, chunk_bytes // (4 * H * width)))
    if TOPK_BLOCK <= vocab_step < V:  # whole blocks per slice, for best_k
        vocab_step -= vocab_step % TOPK_BLOCK
    rows_per_chunk = max(1, chunk_bytes // (4 * H * vocab_step))
    # One logits buffer reused for every chunk: allocating a fresh multi-hundred-MB tensor
    # per chunk costs page faults that roughly halve the matmul rate on a CPU.
    buffer = torch.empty(H * min(rows_per_chunk, S) * vocab_step, dtype=Y.dtype, device=Y.device)
    top_v = top_i = bot_v = bot_i = None
    for c0 in range(0, V, vocab_step):
        cols = slice(c0, min(c0 + vocab_step, V))
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
    kth_top = _kth_excluding(top_v[:, rows], top_i[:, rows], targets, k, largest=True)
    kth_bot = _kth_excluding(bot_v[:, rows], bot_i[:, rows], targets, k, largest=False)
    return tgt >= kth_top, tgt <= kth_bot


def scan(
    model: HeadModel,
    relations: Any = "all",
    *,
    k: int | dict[str, int] | None = None,
    preset: str | P.ProjectionOptions | None = None,
    tau: float = DEFAULT_TAU,
    min_pairs: int = 30,
    progress: bool = False,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    layers: Sequence[int] | None = None,
    **options: Any,
) -> ScanResult:
    """Score every head against many relations, sharing all per-layer work.

    Args:
        model: a :class:`HeadModel` (see :func:`headmaps.load`).
        relations: ``"all"`` (the built-in library), a name, a path to a JSON/CSV set,
            a list of ``(source, target)`` pairs, a list of names/paths, or a dict
            name -> any of those.
        k: top-k for all relations, a dict per relation, or None for the defaults
            (:func:`default_k`).
        preset: ``"paper"``, ``"norms"``, ``"embedding"`` or a ProjectionOptions
            (default :data:`headmaps.projection.DEFAULT_PRESET`).
        tau: threshold for "implements" (stored on the result for its analyses).
        min_pairs: a relation needs this many single-token pairs to be scored.
        progress: show a progress bar over layers.
        chunk_bytes: memory bound for one chunk of logits.
        layers: score only these layers (others are NaN); default all.
        **options: overrides of :class:`~headmaps.projection.ProjectionOptions` fields.

    Returns:
        A :class:`ScanResult` with ``scores``/``suppression`` ``(n_relations, n_layers, n_heads)``.
        Relations with too few single-token pairs are listed in ``skipped`` with the reason.
    """
    opts = P.resolve_options(preset, **options)
    model.require_tokenizer()
    batch, skipped, k_used = _prepare(model, relations, k, min_pairs)
    L, H = model.n_layers, model.n_heads
    info = model.info()
    common = dict(model_id=model.model_id, model_info=info, preset=P.preset_name(preset, opts),
                  options=opts.to_dict(), tau=tau, versions=versions())
    if batch is None:
        return ScanResult(relations=[], scores=np.zeros((0, L, H), np.float32),
                          suppression=np.zeros((0, L, H), np.float32), n_pairs={}, k={},
                          skipped=skipped, **common)
    dev = model.E.device
    rows, targets, rel, kvec = (t.to(dev) for t in (batch.rows, batch.targets, batch.rel, batch.k))
    R = len(batch.names)
    counts = torch.tensor(batch.n_pairs, dtype=torch.float64)
    todo = range(L) if layers is None else sorted(set(layers))
    for layer in todo:
        model.check_layer(layer)
    scores = np.full((R, L, H), np.nan if layers is not None else 0.0, np.float32)
    supp = scores.copy()
    kv_index = model.spec.kv_index().to(dev)
    with torch.no_grad():
        base0 = P.base_sources(model, batch.unique_sources, opts, layer0=True)
        base = P.base_sources(model, batch.unique_sources, opts) if L > 1 else base0
        for layer in tqdm(todo, desc="scan", unit="layer", disable=not progress):
            a = model.attention(layer)
            X = P.layer_sources(base0 if layer == 0 else base, a, opts)
            b_v, b_o = P.layer_biases(a, opts)
            Y = torch.einsum("nd,kde->kne", X, a.W_V.float())
            if b_v is not None:
                Y = Y + b_v[:, None, :]
            Y = Y.index_select(0, kv_index).contiguous()  # (H, S, d_head)
            W_O = a.W_O.float()

            def U_columns(cols, a=a):
                return P.output_basis(model, opts, a, cols)

            out_bias = None
            if b_o is not None:  # b_O U, a slice of the vocabulary at a time
                step = max(1, chunk_bytes // (4 * model.d_model))
                out_bias = torch.cat([b_o @ U_columns(slice(c, c + step))
                                      for c in range(0, model.vocab_size, step)])
            hits, sup = count_hits(Y, W_O, U_columns, model.vocab_size, rows, targets, kvec,
                                   out_bias, chunk_bytes)
            del a
            for acc, h in ((scores, hits), (supp, sup)):
                per_rel = torch.zeros(H, R, dtype=torch.float64, device=dev)
                per_rel.index_add_(1, rel, h.to(torch.float64))
                acc[:, layer, :] = (per_rel.cpu() / counts).T.numpy()
            del W_O, Y
    return ScanResult(relations=batch.names, scores=scores, suppression=supp,
                      n_pairs=dict(zip(batch.names, batch.n_pairs)), k=k_used, skipped=skipped,
                      **common)


def relation_scores(
    model: HeadModel,
    relation: str | Sequence[tuple[str, str]],
    k: int | None = None,
    preset: str | P.ProjectionOptions | None = None,
    *,
    min_pairs: int = 30,
    **options: Any,
) -> RelationScores:
    """Score every head for one relation (approach A).

    Args:
        model: the model.
        relation: a built-in name, a path to a JSON/CSV set, or a list of pairs.
        k: top-k (default: the relation's, see :func:`default_k`).
        preset: projection preset (see :func:`scan`).
        min_pairs: minimum single-token pairs.
        **options: projection option overrides.

    Returns:
        :class:`RelationScores` with ``scores``/``suppression`` ``(n_layers, n_heads)``.

    Raises:
        HeadmapsError: the relation has too few single-token pairs for this model.
    """
    name = _relation_name(relation) if isinstance(relation, str) else "custom"
    res = scan(model, {name: relation}, k=k, preset=preset, min_pairs=min_pairs, **options)
    if name in res.skipped:
        raise HeadmapsError(f"relation {name!r} cannot be scored on {model.model_id}: "
                            f"{res.skipped[name]}")
    return res[name]
