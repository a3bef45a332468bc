"""Approach A, batched: every head of every layer against every relation in one pass.

Per layer (DESIGN §7) the sources of all relations go through ``W_V`` together, and
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
from .basis import SharedBasis, head_output_gain
from .kernel import DEFAULT_CHUNK_BYTES, count_hits
from .results import DEFAULT_TAU, RelationScores, ScanResult

logger = logging.getLogger(__name__)


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
    exact_dense: bool = False,
    blocks: Sequence[int] | None = None,
    stats: dict[str, Any] | None = None,
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
        exact_dense: compute every logit of every (head, source) instead of the exact
            early exit (same decisions; the baseline of ``benchmarks/bench_scan.py``).
        blocks: column boundaries of the early-exit cascade (default chosen from the
            vocabulary size and k, see :func:`headmaps.scoring.kernel.stage_bounds`).
        stats: if given, filled with the (head, source) rows that reached each stage of
            the cascade, summed over layers (see :func:`count_hits`).
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
        # U folded once for all layers, its first columns cached (read by every row)
        shared = SharedBasis(model, opts, cache_bytes=chunk_bytes)
        for layer in tqdm(todo, desc="scan", unit="layer", disable=not progress):
            a = model.attention(layer)
            X = P.layer_sources(base0 if layer == 0 else base, a, opts)
            b_v, b_o = P.layer_biases(a, opts)
            Y = torch.einsum("nd,kde->kne", X, a.W_V.float())
            if b_v is not None:
                Y = Y + b_v[:, None, :]
            Y = Y.index_select(0, kv_index).contiguous()  # (H, S, d_head)
            W_O = a.W_O.float()
            if shared.layer_compatible(a):
                U_columns = shared
                gain = head_output_gain(model, a, opts)
                if gain is not None:  # Gemma's post-attention norm: into the left factor
                    W_O = W_O * gain
                    b_o = b_o * gain if b_o is not None else None
            else:
                def U_columns(cols, a=a):
                    return P.output_basis(model, opts, a, cols)

            out_bias = None
            if b_o is not None:  # b_O U, a slice of the vocabulary at a time
                step = max(1, chunk_bytes // (4 * model.d_model))
                out_bias = torch.cat([b_o @ U_columns(slice(c, c + step))
                                      for c in range(0, model.vocab_size, step)])
            hits, sup = count_hits(Y, W_O, U_columns, model.vocab_size, rows, targets, kvec,
                                   out_bias, chunk_bytes, exact_dense=exact_dense, blocks=blocks,
                                   stats=stats)
            del a
            for acc, h in ((scores, hits), (supp, sup)):
                per_rel = torch.zeros(H, R, dtype=torch.float64, device=dev)
                per_rel.index_add_(1, rel, h.to(torch.float64))
                acc[:, layer, :] = (per_rel.cpu() / counts).T.numpy()
            del W_O, Y
    return ScanResult(relations=batch.names, scores=scores, suppression=supp,
                      n_pairs=dict(zip(batch.names, batch.n_pairs)), k=k_used, skipped=skipped, **common)


def relation_scores(
    model: HeadModel,
    relation: str | Sequence[tuple[str, str]],
    k: int | None = None,
    preset: str | P.ProjectionOptions | None = None,
    *,
    min_pairs: int = 30,
    exact_dense: bool = False,
    **options: Any,
) -> RelationScores:
    """Score every head for one relation (approach A).

    Args:
        model: the model.
        relation: a built-in name, a path to a JSON/CSV set, or a list of pairs.
        k: top-k (default: the relation's, see :func:`default_k`).
        preset: projection preset (see :func:`scan`).
        min_pairs: minimum single-token pairs.
        exact_dense: compute every logit instead of the exact early exit (see :func:`scan`).
        **options: projection option overrides.

    Returns:
        :class:`RelationScores` with ``scores``/``suppression`` ``(n_layers, n_heads)``.

    Raises:
        HeadmapsError: the relation has too few single-token pairs for this model.
    """
    name = _relation_name(relation) if isinstance(relation, str) else "custom"
    res = scan(model, {name: relation}, k=k, preset=preset, min_pairs=min_pairs,
               exact_dense=exact_dense, **options)
    if name in res.skipped:
        raise HeadmapsError(f"relation {name!r} cannot be scored on {model.model_id}: {res.skipped[name]}")
    return res[name]
