"""Content preferences and positional profiles of heads, from parameters.

Per layer, for the chosen heads at once and the vocabulary in chunks of rows:

1. keys ``K`` of every token for every key head (``(n_kv, V, d_head)``, kept for the
   layer) and their covariance ``C`` over the vocabulary;
2. queries ``Q`` of every token for every head (never kept): their mean ``q̄`` and each
   query's *selectivity* ``scale * sqrt(q C q^T)``, the spread (std over key tokens) of
   its logits;
3. the *key-side preference* ``kappa(b) = scale * q̄ . k_b``: the logit the average
   query gives key token ``b`` (query-independent: e.g. a head that always looks at
   BOS or at punctuation);
4. for the most selective query tokens, the keys they prefer beyond that shared part:
   ``scale * (q_a - q̄) . k_b`` (the *query-specific* logit);
5. the positional profile from ``q̄`` and ``k̄`` (the mean key): ``s(Δ)`` for a key
   ``Δ`` tokens before the query (rotary: ``q̄`` rotated by ``Δ``; learned positions:
   the mean source plus the position embeddings through the same path);
6. the sampled profile: the softmax over distances of the exact logits of random query
   tokens on random key tokens, averaged (the expected attention by distance on random
   token sequences whose residual stream holds the source representations).

Content ignores position (the logit at distance 0, no rotation) and Gemma 2's soft-cap
(monotone for one logit; the means are of uncapped logits). Means are plain means over
the tokenizer's vocabulary. Nothing of size ``V x V`` is formed; memory is
the source representations (``V x d_model``) plus the keys of one layer.

Where the source rows come from a float32 stream after a prefix (the default
``through`` projection), that stream computes every token's queries and keys in each
block it passes; steps 1-2 take them from it
(:meth:`headmaps.projection.Sources.queries_keys`) instead of forming them again, which
adds the queries of one layer (``V x n_heads d_head``) to the memory and removes the
products that were most of this module's time.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterable, Sequence
from typing import Any

import numpy as np
import torch

from .. import projection as P
from ..errors import HeadmapsError
from ..io import versions
from ..models import HeadModel
from ..models import qk as Q
from ..models.weights import QKWeights
from ..projection.chunking import pass_rows
from ..salient.compute import layers_and_heads
from ..salient.tokens import token_strings, valid_mask
from ..steps import run_steps
from .results import AttentionPreferences, AttentionSummary, PositionalProfile

logger = logging.getLogger(__name__)


def residual(model: HeadModel, qk: QKWeights, layer: int, token_ids: torch.Tensor,
             positions: torch.Tensor | None, opts: P.ProjectionOptions) -> torch.Tensor:
    """Source representations of tokens at absolute positions, before the layer norm.

    ``base_sources`` of the projection options, plus the learned position embedding of
    each position when the model has them (GPT-2, OPT); rotary models ignore
    ``positions`` here (they act on queries and keys).

    Args:
        model: the model.
        qk: the layer's QK weights (their position scheme).
        layer: the layer (layer 0 reads the raw embeddings).
        token_ids: ``(n,)`` token ids.
        positions: ``(n,)`` absolute positions, or None (no position embedding added).
        opts: projection options.

    Returns:
        ``(n, d_model)`` float32.
    """
    x = P.base_sources(model, token_ids, opts, layer)
    return positioned(model, qk, opts, x, positions)


def positioned(model: HeadModel, qk: QKWeights, opts: P.ProjectionOptions, x: torch.Tensor,
               positions: torch.Tensor | None) -> torch.Tensor:
    """Source rows ``x`` placed at absolute ``positions``: the one place positions are added.

    Adds each position's learned embedding (GPT-2, OPT), less the one the rows already
    carry (:func:`headmaps.projection.carried_position`); rotary models act on queries
    and keys instead, so ``x`` comes back unchanged. ``positions`` broadcast against
    ``x``'s rows; None adds nothing.
    """
    pe = Q.position_embedding(qk.positions, positions, x.device)
    if isinstance(pe, float):
        return x + pe
    carried = P.carried_position(model, opts)
    return x + (pe - carried.to(x.device) if isinstance(carried, torch.Tensor) else pe)


def _positional(model: HeadModel, qk, layer: int, heads: torch.Tensor, q_mean: torch.Tensor,
                k_mean: torch.Tensor, x_mean: torch.Tensor | None, opts: P.ProjectionOptions,
                max_distance: int) -> torch.Tensor:
    """``(n_h, max_distance + 1)`` logits of a mean key ``Δ`` tokens before a mean query.

    ``x_mean``: the mean source row, read with learned positions only (None otherwise).
    """
    D = torch.arange(max_distance + 1, device=q_mean.device)
    kind = qk.positions.kind
    if kind == "learned":
        pos = torch.cat([D[-1:], D[-1] - D])  # query at max_distance, keys at max_distance - Δ
        x = positioned(model, qk, opts, x_mean[None, :], pos)
        x = Q.layer_input(qk, x, opts)
        q = Q.queries(qk, x[:1], heads)  # (n_h, 1, dh)
        k = Q.keys(qk, x[1:]).index_select(0, model.spec.kv_index().to(heads.device)[heads])
        s = Q.logits(qk, q, k)[:, 0]  # (n_h, D)
    else:
        q = Q.rotate(q_mean[:, None, :].expand(-1, len(D), -1), qk.positions, D)  # (n_h, D, dh)
        k = Q.rotate(k_mean[:, None, :], qk.positions, 0.0)  # (n_h, 1, dh)
        s = Q.logits(qk, q, k)[..., 0]
    window = qk.positions.sliding_window
    if window is not None:
        s[:, D >= window] = float("-inf")
    return s


def sample_ids(valid: torch.Tensor, n_samples: int, n_keys: int,
               seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random valid token ids: ``(n_samples,)`` queries and ``(n_samples, n_keys)`` keys."""
    g = torch.Generator().manual_seed(seed)
    pool = valid.nonzero().reshape(-1).cpu()
    qi = pool[torch.randint(len(pool), (n_samples,), generator=g)]
    return qi, pool[torch.randint(len(pool), (n_samples, n_keys), generator=g)]


def sampled_profile(model: HeadModel, qk, heads: torch.Tensor, K: torch.Tensor,
                    base: torch.Tensor | None, opts: P.ProjectionOptions, valid: torch.Tensor,
                    max_distance: int, n_samples: int, seed: int,
                    queries: torch.Tensor | None = None) -> torch.Tensor:
    """``(n_h, max_distance + 1)`` expected attention by distance over random token sequences.

    ``n_samples`` queries (random valid tokens) each see ``max_distance + 1`` random valid
    key tokens at distances ``0..max_distance``; the softmax of their exact logits is
    averaged over queries. Unlike the mean-vector profile, content variation is kept.
    Shared by the QK half's positional profile and the head types' positional mass
    (:func:`headmaps.headtypes.static.positional_mass`).

    Args:
        model: the model.
        qk: the layer's QK parameters (``model.qk(layer)``).
        heads: ``(n_h,)`` the heads of the layer.
        K: ``(n_kv, n, dh)`` the keys of the rows of ``base``.
        base: ``(n, d)`` source representations of the tokens (the rows ``valid`` indexes).
        opts: the projection options ``base`` was made with.
        valid: ``(n,)`` bool, the rows a sampled query or key may be.
        max_distance: the largest query-key distance.
        n_samples: sampled queries.
        seed: seed of the token draws.
        queries: ``(n_h, n, dh)`` the queries of the rows, made already (the stream's,
            :meth:`headmaps.projection.Sources.queries_keys`); then ``base`` may be None
            (not with learned positions, which add a position to each row first).
    """
    n_d = max_distance + 1
    qi, ki = sample_ids(valid, n_samples, n_d, seed)
    qi, ki = qi.to(K.device), ki.to(K.device)
    D = torch.arange(n_d, device=K.device)
    kv = model.spec.kv_index().to(heads.device)[heads]
    if qk.positions.kind == "learned":
        pos = torch.cat([D[-1:], D[-1] - D])
        q = Q.queries(qk, Q.layer_input(qk, positioned(model, qk, opts, base[qi], pos[:1]), opts),
                      heads)  # (n_h, n, dh)
        xk = positioned(model, qk, opts, base[ki], pos[1:][None].expand(len(ki), -1))
        xk = Q.layer_input(qk, xk.reshape(-1, base.shape[1]), opts)
        k = Q.keys(qk, xk).index_select(0, kv).unflatten(1, (n_samples, n_d))  # (n_h, n, D, dh)
        s = (q[:, :, None, :] * k).sum(-1) * qk.scale
    else:
        q = queries[:, qi] if queries is not None else \
            Q.queries(qk, Q.layer_input(qk, base[qi], opts), heads)  # (n_h, n, dh)
        k = K[kv[:, None, None], ki[None]]  # (n_h, n, D, dh)
        s = Q.dots_at_distances(q, k, qk.positions, D) * qk.scale  # query D after its key
    if qk.softcap:
        s = qk.softcap * torch.tanh(s / qk.softcap)
    window = qk.positions.sliding_window
    if window is not None:
        s[..., D >= window] = float("-inf")
    return torch.softmax(s, dim=-1).mean(1)


def _layer(ctx: P.Vocabulary, mask: torch.Tensor, layer: int, heads: Sequence[int], n_keys: int,
           n_queries: int, n_pairs: int,
           max_distance: int, n_samples: int = 256, seed: int = 0,
           from_stream: bool = False) -> dict[str, Any]:
    """Everything of :func:`attention_summary` for some heads of one layer (CPU arrays).

    ``mask``: ``(V,)`` bool, the tokens the means, rankings and samples are over.
    ``from_stream``: take the queries and keys from the stream's pass through the layer
    where it computes them (for a caller that reads the next layer too: the stream then
    passes this block anyway).
    """
    model, opts = ctx.model, ctx.opts
    qk = model.qk(layer)
    if qk.positions.kind == "learned":
        n_pos = qk.positions.embedding.shape[0] - qk.positions.offset
        if max_distance >= n_pos:
            raise HeadmapsError(f"max_distance={max_distance} exceeds the model's "
                                f"{n_pos} positions")
    # a stream after a prefix computes every token's queries and keys in this layer's
    # block: take them (and skip the rows) rather than make them again
    tapped = ctx.queries_keys(layer) if from_stream and qk.positions.kind != "learned" else None
    base = ctx.base(layer) if tapped is None else None
    V, dev = mask.shape[0], mask.device
    heads_t = torch.as_tensor(list(heads), dtype=torch.long, device=dev)
    kv = model.spec.kv_index().to(dev)[heads_t]
    n_valid = float(mask.sum())
    w = mask.float() / n_valid
    cr = ctx.chunk_rows
    n_h, dh = len(heads), model.d_head
    with torch.no_grad():
        # pass 1: keys of every token (and their covariance); pass 2: each token's queries
        # once, for their mean and their selectivity (without the stream's, the rows are
        # normed again: keeping them measured no faster, and costs a vocabulary of rows)
        if tapped is None:
            K = torch.empty(model.spec.n_kv_heads, V, dh, device=dev)
            for c in range(0, V, cr):
                K[:, c:c + cr] = Q.keys(qk, Q.layer_input(qk, base[c:c + cr], opts))
            Qh = None
        else:
            Qh, K = Q.select_heads(tapped[0], heads_t), tapped[1]
        k_mean = torch.einsum("v,kve->ke", w, K)
        Kc = (K - k_mean[:, None, :]) * mask[None, :, None]
        C = (Kc.transpose(1, 2) @ Kc / n_valid).index_select(0, kv)  # (n_h, dh, dh)
        del Kc
        q_sum = torch.zeros(n_h, dh, device=dev)
        sel = torch.empty(n_h, V, device=dev)
        # the pass reads each chunk's product Q C back with Q: chunks that stay in the cache
        qr = pass_rows(2 * n_h * dh * 4, cr, dev)
        for c in range(0, V, qr):
            Qc = Qh[:, c:c + qr] if Qh is not None else \
                Q.queries(qk, Q.layer_input(qk, base[c:c + qr], opts), heads_t)  # (n_h, c, dh)
            q_sum += w[c:c + qr] @ Qc  # (a weighted sum; einsum took 6x as long here)
            sel[:, c:c + qr] = torch.linalg.vecdot(Qc @ C, Qc).clamp_min(0).sqrt() * \
                abs(qk.scale)
        q_mean = q_sum
        sel.masked_fill_(~mask, float("-inf"))
        # (n_h, V)
        kappa = torch.stack([K[kv[j]] @ q_mean[j] for j in range(len(heads))]) * qk.scale
        kappa.masked_fill_(~mask, float("-inf"))
        nk, nq = min(n_keys, int(n_valid)), min(n_queries, int(n_valid))
        top_k = torch.topk(kappa, nk, dim=-1)
        top_q = torch.topk(sel, nq, dim=-1)
        if Qh is not None:
            Qq = torch.stack([Qh[j, top_q.indices[j]] for j in range(n_h)])  # (n_h, nq, dh)
        else:
            Xq = Q.layer_input(qk, base[top_q.indices.reshape(-1)], opts)
            Qq = Q.queries(qk, Xq, heads_t)  # (n_h, n_h * nq, dh): each head's own rows below
            Qq = torch.stack([Qq[j, j * nq:(j + 1) * nq] for j in range(n_h)])  # (n_h, nq, dh)
        spec = torch.stack([(Qq[j] - q_mean[j]) @ K[kv[j]].T for j in range(len(heads))]) * qk.scale
        spec.masked_fill_(~mask, float("-inf"))  # (n_h, nq, V): query-specific logits
        npairs = min(n_pairs, int(n_valid))
        pairs = torch.topk(spec, npairs, dim=-1)
        sampled = sampled_profile(model, qk, heads_t, K, base, opts, mask, max_distance,
                                  n_samples, seed + layer, queries=Qh)
        prof = _positional(model, qk, layer, heads_t, q_mean, k_mean.index_select(0, kv),
                           None if base is None else w @ base, opts, max_distance)
    return {
        "key_ids": top_k.indices.cpu(), "key_scores": top_k.values.cpu(),
        "query_ids": top_q.indices.cpu(), "selectivity": top_q.values.cpu(),
        "pair_ids": pairs.indices.cpu(), "pair_scores": pairs.values.cpu(),
        "profile": prof.cpu(), "sampled": sampled.cpu(), "key_spread": _std(kappa, mask).cpu(),
        "positions": qk.positions.describe(),
    }


def _std(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Std over the masked entries of each row of ``x``."""
    v = x[:, mask]
    return v.std(dim=-1)


def attention_summary(
    model: HeadModel,
    layers: Iterable[int] | None = None,
    *,
    heads: Sequence[int] | None = None,
    max_distance: int = 64,
    n_keys: int = 10,
    n_queries: int = 5,
    n_pairs: int = 5,
    projection: P.ProjectionLike = None,
    n_samples: int = 256,
    seed: int = 0,
    chunk_rows: int = P.DEFAULT_CHUNK_ROWS,
    progress: bool = False,
) -> AttentionSummary:
    """The QK half of every head of ``layers`` (default all), from parameters.

    See the module docstring for what is computed. Per layer, all heads go through
    batched products over the vocabulary in chunks of ``chunk_rows``; the layer's
    tensors are read on demand (lazy checkpoints too).

    Args:
        model: the model (see :func:`headmaps.load`).
        layers: layers to compute (default all).
        heads: restrict to these heads of each layer (default all); the result numbers
            them ``0..len(heads)-1``.
        max_distance: the positional profile covers distances ``0..max_distance``.
        n_keys: key tokens kept by key-side preference.
        n_queries: most selective query tokens kept.
        n_pairs: preferred key tokens kept per query token.
        projection: the projection of source representations and norm folding (a
            :class:`~headmaps.projection.Projection`, a preset name, options or None,
            resolved by :func:`~headmaps.projection.projection_for`); with
            ``fold_norms`` the logits are the model's own for those residual vectors.
        n_samples: random query tokens for the sampled profile (each sees random key
            tokens at every distance; the softmax of the exact logits is averaged).
        seed: seed of that sample.
        chunk_rows: vocabulary rows per chunk.
        progress: show a progress bar over layers.

    Returns:
        :class:`AttentionSummary`; ``res.preferences(l, h)`` and ``res.profile_at(l, h)``
        give one head.
    """
    layers = None if layers is None else list(layers)
    steps = summary_steps(model, layers, heads=heads, max_distance=max_distance, n_keys=n_keys,
                          n_queries=n_queries, n_pairs=n_pairs, projection=projection,
                          n_samples=n_samples, seed=seed, chunk_rows=chunk_rows)
    total = model.n_layers if layers is None else len(layers)
    return run_steps({"attention": steps}, total, progress)["attention"]


def summary_steps(
    model: HeadModel,
    layers: Iterable[int] | None = None,
    *,
    heads: Sequence[int] | None = None,
    max_distance: int = 64,
    n_keys: int = 10,
    n_queries: int = 5,
    n_pairs: int = 5,
    projection: P.ProjectionLike = None,
    n_samples: int = 256,
    seed: int = 0,
    chunk_rows: int = P.DEFAULT_CHUNK_ROWS,
    sources: P.Sources | None = None,
) -> Generator[int, None, AttentionSummary]:
    """:func:`attention_summary` one layer at a time: yields each layer, returns the result.

    With ``sources`` (a :class:`~headmaps.projection.Sources` over the whole vocabulary
    in the same projection) the source rows come from it; see
    :func:`headmaps.salient.compute.salient_steps`.
    """
    for name, v in (("n_keys", n_keys), ("n_queries", n_queries), ("n_pairs", n_pairs)):
        if v < 1:
            raise HeadmapsError(f"{name} must be at least 1, got {v}")
    if max_distance < 1:
        raise HeadmapsError(f"max_distance must be at least 1, got {max_distance}")
    if n_samples < 1:
        raise HeadmapsError(f"n_samples must be at least 1, got {n_samples}")
    layers, heads = layers_and_heads(model, layers, heads)
    proj = P.projection_for(model, projection)
    ctx = P.Vocabulary(model, proj.options, chunk_rows, sources)
    tok, V = model.tokenizer, model.vocab_size
    mask = valid_mask(tok, V).to(model.E.device)
    parts = []
    wanted = set(layers)
    for layer in layers:
        parts.append(_layer(ctx, mask, layer, heads, n_keys, n_queries, n_pairs, max_distance,
                            n_samples, seed, from_stream=layer + 1 in wanted))
        logger.info("QK summary of layer %d done", layer)
        yield layer
    arr = {k: torch.stack([p[k] for p in parts]).numpy() for k in parts[0] if k != "positions"}
    used = np.unique(np.concatenate([arr[k].ravel() for k in ("key_ids", "query_ids", "pair_ids")]))
    return AttentionSummary(
        layers=layers, n_heads=len(heads), profile=arr["profile"].astype(np.float32),
        sampled=arr["sampled"].astype(np.float32),
        key_ids=arr["key_ids"].astype(np.int64), key_scores=arr["key_scores"].astype(np.float32),
        query_ids=arr["query_ids"].astype(np.int64),
        selectivity=arr["selectivity"].astype(np.float32),
        pair_ids=arr["pair_ids"].astype(np.int64),
        pair_scores=arr["pair_scores"].astype(np.float32),
        key_spread=arr["key_spread"].astype(np.float32), positions=[p["positions"] for p in parts],
        strings=_strings(tok, V, used), model_id=model.model_id,
        model_info=model.info(), **proj.header(), versions=versions(),
    )


def _strings(tok: Any, V: int, ids: np.ndarray) -> dict[int, str]:
    """Token id -> decoded token (``<id>`` without a tokenizer) for ``ids``."""
    strings = token_strings(tok, V) if tok is not None else None
    return {int(i): strings[int(i)] if strings is not None else f"<{int(i)}>" for i in ids}


def attention_preferences(model: HeadModel, layer: int, head: int, n_keys: int = 10,
                          n_queries: int = 10, n_pairs: int = 5, *,
                          projection: P.ProjectionLike = None,
                          chunk_rows: int = P.DEFAULT_CHUNK_ROWS) -> AttentionPreferences:
    """What one head's queries look for in keys, by content (position ignored).

    Args:
        model: the model.
        layer: layer of the head (Hugging Face numbering).
        head: head index within the layer.
        n_keys: key tokens kept by key-side preference (the logit the average query
            gives each key token).
        n_queries: most selective query tokens (largest spread of their logits over keys).
        n_pairs: preferred key tokens per query token, by the query-specific logit.
        projection: as in :func:`attention_summary`.
        chunk_rows: as in :func:`attention_summary`.

    Returns:
        :class:`AttentionPreferences`.
    """
    model.check_head(layer, head)
    res = attention_summary(model, [layer], heads=[head], n_keys=n_keys, n_queries=n_queries,
                            n_pairs=n_pairs, projection=projection, chunk_rows=chunk_rows,
                            max_distance=1)
    p = res.preferences(layer, 0)
    p.head = head
    return p


def positional_profile(model: HeadModel, layer: int, head: int, max_distance: int = 64, *,
                       projection: P.ProjectionLike = None,
                       chunk_rows: int = P.DEFAULT_CHUNK_ROWS) -> PositionalProfile:
    """The logit a head gives a key ``0..max_distance`` tokens back, content averaged out.

    Args:
        model: the model.
        layer: layer of the head.
        head: head index within the layer.
        max_distance: largest distance.
        projection: as in :func:`attention_summary`.
        chunk_rows: as in :func:`attention_summary`.

    Returns:
        :class:`PositionalProfile` (logits, softmax weights, previous-token and self mass,
        preferred distance, flatness).
    """
    model.check_head(layer, head)
    res = attention_summary(model, [layer], heads=[head], n_keys=1, n_queries=1, n_pairs=1,
                            projection=projection, chunk_rows=chunk_rows,
                            max_distance=max_distance)
    p = res.profile_at(layer, 0)
    p.head = head
    return p


def attention_logits(model: HeadModel, layer: int, head: int,
                     query_ids: Sequence[int] | torch.Tensor,
                     key_ids: Sequence[int] | torch.Tensor, distance: int = 0, *,
                     query_position: int | None = None,
                     projection: P.ProjectionLike = None) -> torch.Tensor:
    """Parameter-only attention logits of query tokens on key tokens ``distance`` back.

    With ``fold_norms`` (the default projection) this is exactly the pre-softmax score the
    model computes when its residual stream entering ``layer`` holds the source
    representations (plus learned position embeddings, where the model has them).

    Args:
        model: the model.
        layer: layer of the head.
        head: head index within the layer.
        query_ids: ``(n,)`` query token ids.
        key_ids: ``(m,)`` key token ids.
        distance: how many tokens the key precedes the query.
        query_position: absolute position of the query (default ``distance``: the key at
            position 0); only learned absolute positions depend on it.
        projection: as in :func:`attention_summary`.

    Returns:
        ``(n, m)`` float32 logits.
    """
    model.check_head(layer, head)
    if distance < 0:
        raise HeadmapsError(f"distance must be >= 0 (a key at or before the query), got {distance}")
    opts = P.projection_for(model, projection).options
    qk = model.qk(layer)
    qpos = distance if query_position is None else int(query_position)
    if qpos < distance:
        raise HeadmapsError(f"query_position {qpos} is before the key ({distance} tokens back)")
    dev = model.E.device
    qi = torch.as_tensor(query_ids, dtype=torch.long, device=dev).reshape(-1)
    ki = torch.as_tensor(key_ids, dtype=torch.long, device=dev).reshape(-1)
    h = torch.tensor([head], device=dev)
    with torch.no_grad():
        xq = Q.layer_input(qk, residual(model, qk, layer, qi, torch.full_like(qi, qpos), opts),
                           opts)
        xk = Q.layer_input(qk, residual(model, qk, layer, ki,
                                          torch.full_like(ki, qpos - distance), opts), opts)
        q = Q.rotate(Q.queries(qk, xq, h), qk.positions, float(qpos))
        k = Q.rotate(Q.keys(qk, xk, torch.tensor([model.kv_head(head)], device=dev)), qk.positions,
                     float(qpos - distance))
        s = Q.logits(qk, q, k)[0]
    if Q.masked(qk, distance):
        s = torch.full_like(s, float("-inf"))
    return s
