"""Approach A, batched: every head of every layer against every relation in one pass.

Per layer the sources of all relations go through ``W_V`` together, and
:func:`~headmaps.scoring.kernel.count_hits` decides for every head and pair whether the
target is in the top-k (bottom-k) of its row of ``X W_V^h W_O^h U``: exactly, by an
early exit that computes most rows over a small block of the vocabulary only, with
memory bounded whatever the vocabulary. ``U`` is folded once and shared by all layers
(:mod:`~headmaps.scoring.basis`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
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
from . import context as C
from .basis import SharedBasis, layer_readout
from .kernel import DEFAULT_CHUNK_BYTES, MixedRows, Scratch, count_hits
from .results import DEFAULT_TAU, RelationScores, ScanResult

logger = logging.getLogger(__name__)


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
    order: torch.Tensor  # (P,) position of each sorted pair in the relations' own pair order


#: Kept importable from here for callers of the earlier location.
normalise_relations = rel_lib.normalise
default_k = rel_lib.default_k


def _prepare(model: HeadModel, relations: Any, k: int | dict[str, int] | None, min_pairs: int):
    """Tokenise every relation; returns the batch, skipped reasons and k per relation."""
    chosen, skipped = rel_lib.select(model, relations, k, min_pairs)
    k_used = {c.name: c.k for c in chosen}
    if not chosen:
        return None, skipped, k_used
    src = [c.prepared.source_ids.long() for c in chosen]
    tgt = torch.cat([c.prepared.target_ids.long() for c in chosen])
    rel = torch.cat([torch.full_like(s, i) for i, s in enumerate(src)])
    ks = torch.cat([torch.full_like(s, c.k) for c, s in zip(chosen, src)])
    src_all = torch.cat(src)
    unique, inverse = torch.unique(src_all, return_inverse=True)
    order = torch.argsort(inverse, stable=True)
    batch = _Batch([c.name for c in chosen], inverse[order], tgt[order], rel[order], ks[order],
                   unique,
                   [len(s) for s in src], order)
    return batch, skipped, k_used


def scan(
    model: HeadModel,
    relations: Any = "all",
    *,
    k: int | dict[str, int] | None = None,
    projection: P.ProjectionLike = None,
    tau: float = DEFAULT_TAU,
    min_pairs: int = rel_lib.MIN_PAIRS,
    progress: bool = False,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    layers: Sequence[int] | None = None,
    exact_dense: bool = False,
    blocks: Sequence[int] | None = None,
    stats: dict[str, Any] | None = None,
    pair_hits: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    in_context: bool = True,
    tau_ctx: float | None = None,
    context_shuffle: int | None = None,
) -> ScanResult:
    """Score every head against many relations, sharing all per-layer work.

    Args:
        model: a :class:`HeadModel` (see :func:`headmaps.load`).
        relations: ``"all"`` (the built-in library), a name, a path to a JSON/CSV set,
            a list of ``(source, target)`` pairs, a list of names/paths, or a dict
            name -> any of those.
        k: top-k for all relations, a dict per relation, or None for the defaults
            (:func:`default_k`).
        projection: a :class:`~headmaps.projection.Projection` (used as it is), a preset
            name (``"paper"``, ``"norms"``, ``"through"``...), options, or None: the
            model's stored calibration (:func:`headmaps.calibrate`) if it has one, else
            :data:`headmaps.projection.DEFAULT_PRESET`; resolved by
            :func:`~headmaps.projection.projection_for`. ``ScanResult.calibration`` says
            how it was chosen.
        tau: threshold for "implements" (stored on the result for its analyses).
        min_pairs: a relation needs this many single-token pairs to be scored.
        progress: show a progress bar over layers.
        chunk_bytes: memory bound for one chunk of logits.
        layers: score only these layers (others are NaN); default all.
        exact_dense: compute every logit of every (head, source) instead of the exact
            early exit (same decisions; the baseline of ``benchmarks/bench_scan.py``).
        blocks: column boundaries of the early-exit cascade (default chosen from the
            vocabulary size and k, see :func:`headmaps.scoring.kernel.stage_bounds`).
        stats: if given, filled with the (head, source) rows that reached each stage of
            the cascade, summed over layers (see :func:`count_hits`).
        pair_hits: if given, filled with relation -> ``(hits, suppressed)``: bool arrays
            ``(n_layers, n_heads, n_pairs)`` saying for every head and kept pair (in the
            order of ``PreparedRelation.kept``) whether the target is in the top-k
            (bottom-k); the scores are their means over pairs. Layers not scored are False.
            For resampling pairs (the noise floor of :func:`headmaps.diff`).
        in_context: also compute the in-context scores ``phi_ctx``/``supp_ctx``
            (:mod:`headmaps.scoring.context`) where the projection reads its sources after
            a prefix (``through``); otherwise they are None.
        tau_ctx: threshold of the in-context score (default: ``tau``: both are hit rates
            over the same pairs, read at two outputs of the same head).
        context_shuffle: a control, not a score: with a seed, every head's two attention
            weights come from another head of the model (a seeded permutation over all
            heads), so ``phi_ctx`` keeps each head's values but not its attention.

    Returns:
        A :class:`ScanResult` with ``scores``/``suppression`` ``(n_relations, n_layers, n_heads)``.
        Relations with too few single-token pairs are listed in ``skipped`` with the reason.
    """
    proj = P.projection_for(model, projection)
    opts = proj.options
    model.require_tokenizer()
    batch, skipped, k_used = _prepare(model, relations, k, min_pairs)
    L, H = model.n_layers, model.n_heads
    info = model.info()
    common = dict(model_id=model.model_id, model_info=info, **proj.header(), tau=tau,
                  versions=versions(), tau_ctx=tau if tau_ctx is None else float(tau_ctx))
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
    n_all = int(sum(batch.n_pairs))
    per_pair = None if pair_hits is None else np.zeros((2, L, H, n_all), dtype=bool)
    ctx = None
    with torch.no_grad():
        sources = P.Sources(model, batch.unique_sources, opts)
        if in_context and sources.prefix_at(0) is not None:
            ctx = (np.zeros_like(scores), np.zeros_like(scores))
            if layers is not None:
                ctx[0][:], ctx[1][:] = np.nan, np.nan
        weights = _shuffled_weights(model, sources, kv_index, context_shuffle) \
            if ctx is not None and context_shuffle is not None else None
        # U folded once for all layers, its first columns cached (read by every row)
        shared = SharedBasis(model, opts, cache_bytes=chunk_bytes)
        scratch = Scratch()
        for layer in tqdm(todo, desc="scan", unit="layer", disable=not progress):
            a = model.attention(layer)
            X = P.layer_sources(sources.at(layer), a, opts)
            b_v, b_o = P.layer_biases(a, opts)
            Y = torch.einsum("nd,kde->kne", X, a.W_V.float())
            if b_v is not None:
                Y = Y + b_v[:, None, :]
            Y = Y.index_select(0, kv_index).contiguous()  # (H, S, d_head)
            W_O, b_o, U_columns = layer_readout(shared, a, a.W_O.float(), b_o)
            out_bias = None
            if b_o is not None:  # b_O U, a slice of the vocabulary at a time
                step = max(1, chunk_bytes // (4 * model.d_model))
                out_bias = torch.cat([b_o @ U_columns(slice(c, c + step))
                                      for c in range(0, model.vocab_size, step)])
            n_rows = Y.shape[1]
            mixed = None
            if ctx is not None:  # the in-context rows beside phi's: one pass shares W_O U
                w = weights[layer] if weights is not None else \
                    C.source_weights(model, layer, sources, kv_index)
                v_prefix = C.prefix_values(sources.prefix_at(layer), a, opts, kv_index)
                mixed = MixedRows(n_rows, w, v_prefix)  # their logits from phi's rows'
                Y = torch.cat([Y, C.mix(w, v_prefix, Y)], 1)
                rows_all, targets_all, k_all = (torch.cat([rows, rows + n_rows]),
                                                targets.repeat(2), kvec.repeat(2))
            else:
                rows_all, targets_all, k_all = rows, targets, kvec
            hits, sup = count_hits(Y, W_O, U_columns, model.vocab_size, rows_all, targets_all,
                                   k_all, out_bias, chunk_bytes, exact_dense=exact_dense,
                                   blocks=blocks, stats=stats, scratch=scratch, mixed=mixed)
            if ctx is not None:
                n_pairs = len(rows)
                ctx[0][:, layer], ctx[1][:, layer] = (_per_relation(h[:, n_pairs:], rel, counts, R)
                                                      for h in (hits, sup))
                hits, sup = hits[:, :n_pairs], sup[:, :n_pairs]
            del a
            if per_pair is not None:  # back to each relation's own pair order
                order = batch.order.numpy()
                per_pair[0, layer][:, order] = hits.cpu().numpy()
                per_pair[1, layer][:, order] = sup.cpu().numpy()
            scores[:, layer], supp[:, layer] = (_per_relation(h, rel, counts, R)
                                                for h in (hits, sup))
            del W_O, Y
    if per_pair is not None:
        ends = np.cumsum(batch.n_pairs)
        for name, a, b in zip(batch.names, ends - batch.n_pairs, ends):
            pair_hits[name] = (per_pair[0, :, :, a:b].copy(), per_pair[1, :, :, a:b].copy())
    return ScanResult(relations=batch.names, scores=scores, suppression=supp,
                      n_pairs=dict(zip(batch.names, batch.n_pairs)), k=k_used, skipped=skipped,
                      phi_ctx=None if ctx is None else ctx[0],
                      supp_ctx=None if ctx is None else ctx[1], **common)


def _per_relation(hits: torch.Tensor, rel: torch.Tensor, counts: torch.Tensor,
                  n_relations: int) -> np.ndarray:
    """Hit rates ``(n_relations, n_heads)`` from per-pair hits ``(n_heads, n_pairs)``."""
    per_rel = torch.zeros(hits.shape[0], n_relations, dtype=torch.float64, device=hits.device)
    per_rel.index_add_(1, rel, hits.to(torch.float64))
    return (per_rel.cpu() / counts).T.numpy()


def _shuffled_weights(model: HeadModel, sources: P.Sources, kv_index: torch.Tensor,
                      seed: int) -> list[torch.Tensor]:
    """Per layer, ``(n_heads, n, 2)`` weights taken from heads permuted over the model."""
    every = torch.stack([C.source_weights(model, layer, sources, kv_index)
                         for layer in range(model.n_layers)])  # (L, H, n, 2)
    L, H = every.shape[:2]
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(L * H))
    return list(every.reshape(L * H, *every.shape[2:])[perm].reshape(every.shape))


def relation_scores(
    model: HeadModel,
    relation: str | Sequence[tuple[str, str]],
    k: int | None = None,
    *,
    projection: P.ProjectionLike = None,
    tau: float = DEFAULT_TAU,
    min_pairs: int = rel_lib.MIN_PAIRS,
    exact_dense: bool = False,
) -> RelationScores:
    """Score every head for one relation (approach A).

    Args:
        model: the model.
        relation: a built-in name, a path to a JSON/CSV set, or a list of pairs.
        k: top-k (default: the relation's, see :func:`default_k`).
        projection: as in :func:`scan`.
        tau: threshold for "implements" (stored on the result: the default of its
            :meth:`~RelationScores.heads`).
        min_pairs: minimum single-token pairs.
        exact_dense: compute every logit instead of the exact early exit (see :func:`scan`).

    Returns:
        :class:`RelationScores` with ``scores``/``suppression`` ``(n_layers, n_heads)``.

    Raises:
        HeadmapsError: the relation has too few single-token pairs for this model.
    """
    name = rel_lib.relation_name(relation)
    res = scan(model, {name: relation}, k=k, projection=projection, tau=tau,
               min_pairs=min_pairs, exact_dense=exact_dense)
    if name in res.skipped:
        raise HeadmapsError(f"relation {name!r} cannot be scored on {model.model_id}: "
                            f"{res.skipped[name]}")
    return res[name]
