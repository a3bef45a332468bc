"""Approach A, batched: every head of every layer against every relation in one pass.

Per layer (DESIGN §7): ``W_O^h U`` is formed once for all heads, the sources of all
relations go through ``W_V`` together, and each head's logits over the vocabulary come
from one rank-``d_head`` product, computed in chunks of source rows so memory stays
bounded whatever the vocabulary. Instead of a top-k, a target's rank is counted: the
target is in the top-k of its row iff fewer than ``k`` entries are strictly greater
(ties count in the target's favour; with continuous weights they do not occur).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
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


def _normalise_relations(relations: Any) -> list[tuple[str, Any]]:
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
    for name, spec in _normalise_relations(relations):
        prep = rel_lib.prepare(model, spec, min_pairs=min_pairs)
        if not prep.valid:
            skipped[name] = (
                f"only {prep.n_pairs} of {prep.n_pairs + len(prep.dropped)} pairs are single tokens "
                f"for this model (need {min_pairs})"
            )
            continue
        src_ids = torch.as_tensor(np.asarray(prep.source_ids), dtype=torch.long)
        tgt_ids = torch.as_tensor(np.asarray(prep.target_ids), dtype=torch.long)
        kk = k.get(name) if isinstance(k, dict) else k
        if kk is None:
            kk = default_k(model, name if isinstance(spec, str) else None, bool((src_ids == tgt_ids).all()))
        if not 1 <= kk <= model.vocab_size:
            raise HeadmapsError(f"k={kk} is out of range for relation {name!r}: it must be between 1 and "
                                f"the vocabulary size {model.vocab_size}")
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


def _chunks(rows: torch.Tensor, n_unique: int, rows_per_chunk: int) -> Iterable[tuple[int, int, int, int]]:
    """(row_start, row_end, pair_start, pair_end) covering sorted ``rows`` chunk by chunk."""
    bounds = torch.searchsorted(rows, torch.arange(0, n_unique + rows_per_chunk, rows_per_chunk).clamp(max=n_unique))
    b = bounds.tolist()
    for i in range(len(b) - 1):
        r0 = i * rows_per_chunk
        r1 = min(r0 + rows_per_chunk, n_unique)
        if r0 >= r1:
            break
        yield r0, r1, b[i], b[i + 1]


def count_hits(
    Y: torch.Tensor,
    WOU: torch.Tensor,
    rows: torch.Tensor,
    targets: torch.Tensor,
    k: torch.Tensor,
    out_bias: torch.Tensor | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Whether each pair's target is in the top-k (and bottom-k) of its source's row, per head.

    Args:
        Y: ``(n_heads, n_rows, d_head)`` value vectors of the unique sources.
        WOU: ``(n_heads, d_head, vocab)`` each head's ``W_O^h U``.
        rows: ``(n_pairs,)`` sorted row of each pair in ``Y``.
        targets: ``(n_pairs,)`` target token ids.
        k: ``(n_pairs,)`` top-k per pair.
        out_bias: ``(vocab,)`` added to every row's logits, or None.
        chunk_bytes: memory bound of one chunk of logits.

    Returns:
        ``hits``, ``suppressed``: bool ``(n_heads, n_pairs)``.
    """
    H, S, _ = Y.shape
    V = WOU.shape[-1]
    rows_per_chunk = max(1, chunk_bytes // (4 * H * V))
    hits = torch.zeros(H, len(rows), dtype=torch.bool, device=Y.device)
    supp = torch.zeros_like(hits)
    for r0, r1, p0, p1 in _chunks(rows, S, rows_per_chunk):
        if p0 == p1:
            continue
        logits = torch.bmm(Y[:, r0:r1], WOU)  # (H, c, V)
        if out_bias is not None:
            logits += out_bias
        local = rows[p0:p1] - r0
        if not (len(local) == r1 - r0 and bool((local == torch.arange(r1 - r0, device=local.device)).all())):
            logits = logits.index_select(1, local)
        t = targets[p0:p1]
        tgt = logits.gather(2, t.view(1, -1, 1).expand(H, -1, 1)).squeeze(2)  # (H, p)
        kk = k[p0:p1]
        kmax = int(kk.max())
        kth = (kk - 1).view(1, -1, 1).expand(H, -1, 1)
        # In the top-k iff at least as large as the k-th largest value (ties favour the
        # target, as "fewer than k strictly greater" would); topk beats a full compare.
        top = torch.topk(logits, kmax, dim=-1, sorted=True).values.gather(2, kth).squeeze(2)
        hits[:, p0:p1] = tgt >= top
        bottom = torch.topk(logits, kmax, dim=-1, largest=False, sorted=True).values.gather(2, kth).squeeze(2)
        supp[:, p0:p1] = tgt <= bottom
        del logits
    return hits, supp


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
                          suppression=np.zeros((0, L, H), np.float32), n_pairs={}, k={}, skipped=skipped, **common)
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
        U_shared = None if opts.fold_norms else P.output_basis(model, opts)
        for layer in tqdm(todo, desc="scan", unit="layer", disable=not progress):
            a = model.attention(layer)
            X = P.layer_sources(base0 if layer == 0 else base, a, opts)
            b_v, b_o = P.layer_biases(a, opts)
            Y = torch.einsum("nd,kde->kne", X, a.W_V.float())
            if b_v is not None:
                Y = Y + b_v[:, None, :]
            Y = Y.index_select(0, kv_index).contiguous()  # (H, S, d_head)
            U = U_shared if U_shared is not None else P.output_basis(model, opts, a)
            WOU = torch.matmul(a.W_O.float(), U)  # (H, d_head, V)
            out_bias = b_o @ U if b_o is not None else None
            del a
            hits, sup = count_hits(Y, WOU, rows, targets, kvec, out_bias, chunk_bytes)
            for acc, h in ((scores, hits), (supp, sup)):
                per_rel = torch.zeros(H, R, dtype=torch.float64, device=dev)
                per_rel.index_add_(1, rel, h.to(torch.float64))
                acc[:, layer, :] = (per_rel.cpu() / counts).T.numpy()
            del WOU, Y
    return ScanResult(relations=batch.names, scores=scores, suppression=supp,
                      n_pairs=dict(zip(batch.names, batch.n_pairs)), k=k_used, skipped=skipped, **common)


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
        raise HeadmapsError(f"relation {name!r} cannot be scored on {model.model_id}: {res.skipped[name]}")
    return res[name]
