"""Approach B: the salient operations of attention heads (docs/salient.md).

For head ``h`` the saliency of token ``t`` is ``sigma_t = ||x_t W_V W_O|| / ||x_t||``
over the whole vocabulary. ``W_VO`` (d x d) and ``M`` (|V| x |V|) are never formed:
with ``y_t = x_t W_V`` (d_head) and the Gram matrix ``G = W_O W_O^T`` (d_head x d_head),
``||x_t W_VO||^2 = y_t G y_t^T``. The vocabulary is processed in chunks of rows, for
all heads of a layer at once, so memory stays bounded for vocabularies of 262k tokens.
Only the ``n_tokens`` most salient rows of ``M`` are formed, to find their targets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterable, Sequence

import numpy as np
import torch

from .. import projection as P
from ..errors import HeadmapsError
from ..io import versions
from ..models import HeadModel
from ..steps import run_steps
from .results import SalientAll, SalientOperations
from .tokens import skip_label, skip_sides, token_strings, valid_mask, word_mask

logger = logging.getLogger(__name__)

class _Context(P.Vocabulary):
    """What every layer needs: the vocabulary's rows, the token filters, the strings.

    A :class:`~headmaps.projection.Vocabulary` with the source and target masks of
    ``skip_nonwords`` (``(V,)`` bool, on the model's device) and the decoded tokens.
    """

    def __init__(self, model: HeadModel, opts: P.ProjectionOptions,
                 skip_nonwords: bool | str | None,
                 chunk_rows: int, sources: P.Sources | None = None):
        V = model.vocab_size
        tok = model.tokenizer
        self.strings = token_strings(tok, V) if tok is not None else None
        skip_src, skip_tgt = skip_sides(skip_nonwords)
        if (skip_src or skip_tgt) and tok is None:
            raise HeadmapsError("skip_nonwords needs a tokenizer; load the model with one: "
                                "hm.load(model, tokenizer=...)")
        valid = valid_mask(tok, V)
        words = word_mask(tok, V, self.strings) & valid if (skip_src or skip_tgt) else valid
        self.src_mask = words if skip_src else valid
        self.tgt_mask = words if skip_tgt else valid
        if not bool(self.src_mask.any()):
            raise HeadmapsError("no source token is left after filtering")
        dev = model.E.device
        self.src_mask, self.tgt_mask = self.src_mask.to(dev), self.tgt_mask.to(dev)
        super().__init__(model, opts, chunk_rows, sources)

    def string(self, i: int) -> str:
        """Decoded token, or ``<id>`` without a tokenizer."""
        return self.strings[i] if self.strings is not None else f"<{i}>"


#: Bytes of the target logits formed at once (heads x kept tokens x vocabulary, float32).
TARGET_BYTES = 256 << 20


#: ``select(layer, saliency)``: the source token ids to keep per head instead of the most
#: salient ones; ``saliency`` is ``(n_h, V)`` float32 (``-inf`` where filtered out), the
#: answer ``(n_h, T)`` ids.
Selector = Callable[[int, np.ndarray], np.ndarray]


def _layer(ctx: _Context, layer: int, heads: Sequence[int], n_tokens: int,
           n_mappings: int, select: Selector | None = None) -> dict[str, torch.Tensor]:
    """Salient tokens (or the ones ``select`` picks) and their mappings for some heads of one layer.

    Returns:
        dict of ``token_ids``/``saliency`` ``(n_h, n_tokens)`` and ``target_ids``/``scores``
        ``(n_h, n_tokens, n_mappings)``, on the CPU.
    """
    model, opts = ctx.model, ctx.opts
    a = model.attention(layer)
    base = ctx.base(layer)
    V = base.shape[0]
    heads_t = torch.as_tensor(list(heads), dtype=torch.long, device=base.device)
    kv = model.spec.kv_index().to(base.device)[heads_t]
    W_V = a.W_V.float()  # (n_kv, d, dh)
    W_O = a.W_O.float().index_select(0, heads_t)  # (n_h, dh, d)
    b_v, b_o = P.layer_biases(a, opts)
    G = W_O @ W_O.transpose(1, 2)  # (n_h, dh, dh)
    w = W_O @ b_o if b_o is not None else None  # (n_h, dh)
    bb = float(b_o @ b_o) if b_o is not None else 0.0
    n_h, dh = len(heads), W_O.shape[1]
    # heads grouped by the value head they read: each group is one product per chunk, and
    # no per-head copy of the values is made
    groups = []
    for g in torch.unique(kv).tolist():
        js = (kv == g).nonzero().flatten()
        G_cat = G.index_select(0, js).permute(1, 0, 2).reshape(dh, -1)  # (dh, n_g dh)
        w_cat = w.index_select(0, js).T if w is not None else None  # (dh, n_g)
        groups.append((g, js, G_cat, w_cat))

    def saliency(rows: torch.Tensor) -> torch.Tensor:
        """``||x W_VO|| / ||x||`` of every head for source rows ``(c, d)`` -> ``(n_h, c)``.

        ``||y W_O||^2 = y G y^T`` with ``G = W_O W_O^T`` (and the output bias's terms).
        """
        X = P.layer_sources(rows, a, opts)  # (c, d)
        Y = torch.einsum("cd,kde->kce", X, W_V)  # (n_kv, c, dh)
        if b_v is not None:
            Y = Y + b_v[:, None, :]
        c = X.shape[0]
        sq = torch.empty(n_h, c, device=X.device)
        for g, js, G_cat, w_cat in groups:
            Yg = Y[g]  # (c, dh)
            YG = (Yg @ G_cat).view(c, len(js), dh)
            part = torch.bmm(YG, Yg.unsqueeze(2)).squeeze(2)  # (c, n_g)
            if w_cat is not None:
                part = part + 2 * (Yg @ w_cat) + bb
            sq.index_copy_(0, js, part.T)
        xn = X.norm(dim=-1)
        s = sq.clamp_min(0).sqrt() / xn.clamp_min(torch.finfo(xn.dtype).tiny)
        return torch.where(xn > 0, s, torch.zeros_like(s))

    sal = torch.empty(n_h, V, device=base.device)
    with torch.no_grad():
        for c0 in range(0, V, ctx.chunk_rows):
            sal[:, c0:c0 + ctx.chunk_rows] = saliency(base[c0:c0 + ctx.chunk_rows])
        sal.masked_fill_(~ctx.src_mask, float("-inf"))
        if select is None:
            T = min(n_tokens, int(ctx.src_mask.sum()))
            if ctx.screened:
                top_sal, top_ids = P.screen(sal, T, lambda u: saliency(ctx.exact(layer, u)))
            else:
                top_sal, top_ids = torch.topk(sal, T, dim=-1)
        else:
            top_ids = torch.as_tensor(np.asarray(select(layer, sal.cpu().numpy())),
                                      dtype=torch.long, device=sal.device).reshape(n_h, -1)
            top_sal = sal.gather(1, top_ids)
            T = top_ids.shape[1]
            if ctx.screened:  # the kept tokens' own saliency, from their exact rows
                u, inv = torch.unique(top_ids, return_inverse=True)
                top_sal = saliency(ctx.exact(layer, u)).gather(1, inv)
        rows_of = (lambda ids: ctx.exact(layer, ids)) if ctx.screened else (lambda ids: base[ids])
        U = P.output_basis(model, opts, a)  # (d, V)
        K = min(n_mappings, int(ctx.tgt_mask.sum()))
        tgt_ids = torch.empty(n_h, T, K, dtype=torch.long)
        tgt_scores = torch.empty(n_h, T, K)
        X = P.layer_sources(rows_of(top_ids.reshape(-1)), a, opts).view(n_h, T, -1)
        Y = torch.bmm(X, W_V.index_select(0, kv))  # (n_h, T, dh)
        if b_v is not None:
            Y = Y + b_v.index_select(0, kv)[:, None, :]
        Z = torch.bmm(Y, W_O)  # (n_h, T, d)
        if b_o is not None:
            Z = Z + b_o
        # all heads' rows against U at once (U is read once per group, not once per head),
        # in groups whose logits stay within TARGET_BYTES
        step = max(1, TARGET_BYTES // max(1, 4 * T * V))
        for j0 in range(0, n_h, step):
            z = Z[j0:j0 + step]
            logits = (z.reshape(-1, z.shape[-1]) @ U).masked_fill_(~ctx.tgt_mask, float("-inf"))
            t = torch.topk(logits.view(len(z), T, V), K, dim=-1)
            tgt_ids[j0:j0 + step], tgt_scores[j0:j0 + step] = t.indices.cpu(), t.values.cpu()
    return {"token_ids": top_ids.cpu(), "saliency": top_sal.cpu(),
            "target_ids": tgt_ids, "scores": tgt_scores}


def layers_and_heads(model: HeadModel, layers: Iterable[int] | None,
                     heads: Sequence[int] | None) -> tuple[list[int], list[int]]:
    """The layers and heads to compute (default all), checked against the model.

    Raises:
        HeadmapsError: no layers; IndexError: a layer or head out of range.
    """
    layers = list(range(model.n_layers)) if layers is None else [int(x) for x in layers]
    if not layers:
        raise HeadmapsError("no layers to compute")
    for layer in layers:
        model.check_layer(layer)
    heads = list(range(model.n_heads)) if heads is None else [int(h) for h in heads]
    for h in heads:
        model.check_head(layers[0], h)
    return layers, heads


def salient_operations(
    model: HeadModel,
    layer: int,
    head: int,
    n_tokens: int = 15,
    n_mappings: int = 5,
    *,
    projection: P.ProjectionLike = None,
    skip_nonwords: bool | str | None = False,
    chunk_rows: int = P.DEFAULT_CHUNK_ROWS,
) -> SalientOperations:
    """The most salient source tokens of one head and their top targets (approach B).

    Args:
        model: the model (see :func:`headmaps.load`).
        layer: the head's layer.
        head: the head within the layer (Hugging Face numbering).
        n_tokens: salient source tokens to keep.
        n_mappings: targets per source token.
        projection: a :class:`~headmaps.projection.Projection`, a preset name, options
            or None, resolved by :func:`~headmaps.projection.projection_for` as for
            relation scores; under ``paper`` the first-MLP trick is applied at layer 0
            too, like the reference code (:meth:`~headmaps.projection.Projection.for_salient`).
        skip_nonwords: drop tokens that are not words (punctuation, whitespace, byte
            fragments, special tokens) on the ``"source"`` side, the ``"target"`` side or
            ``"both"`` (``True``). Needs a tokenizer.
        chunk_rows: vocabulary rows per chunk (memory bound).

    Returns:
        :class:`SalientOperations` with ``n_tokens`` sources, most salient first.

    Raises:
        IndexError: ``layer`` or ``head`` out of range.
    """
    model.check_head(layer, head)
    res = salient_all(model, layers=[layer], heads=[head], n_tokens=n_tokens, n_mappings=n_mappings,
                      projection=projection, skip_nonwords=skip_nonwords,
                      chunk_rows=chunk_rows)
    ops = res[layer, 0]
    ops.head = head
    return ops


def salient_all(
    model: HeadModel,
    layers: Iterable[int] | None = None,
    n_tokens: int = 15,
    n_mappings: int = 5,
    *,
    projection: P.ProjectionLike = None,
    skip_nonwords: bool | str | None = False,
    heads: Sequence[int] | None = None,
    progress: bool = False,
    chunk_rows: int = P.DEFAULT_CHUNK_ROWS,
    select: Selector | None = None,
) -> SalientAll:
    """Salient operations of every head of ``layers`` (default: all), batched per layer.

    Per layer, the saliency of the whole vocabulary is computed for all heads together
    in chunks of ``chunk_rows`` rows (see the module docstring). Source
    representations of the vocabulary are computed once and kept (``V x d`` float32).

    Args:
        model: the model.
        layers: layers to compute (default: all).
        n_tokens: as in :func:`salient_operations`.
        n_mappings: as in :func:`salient_operations`.
        projection: as in :func:`salient_operations`.
        skip_nonwords: as in :func:`salient_operations`.
        chunk_rows: as in :func:`salient_operations`.
        heads: restrict to these heads of each layer (default: all); the result then
            numbers them ``0..len(heads)-1``.
        progress: show a progress bar over layers.
        select: instead of the ``n_tokens`` most salient tokens, the source tokens
            ``select(layer, saliency)`` returns per head (``saliency``: ``(n_h, V)`` over the
            whole vocabulary, ``-inf`` where filtered out; the answer: ``(n_h, T)`` ids);
            their mappings come from the same projection. Held-out tokens for scoring
            descriptions are chosen this way (:mod:`headmaps.describe.sampling`).

    Returns:
        :class:`SalientAll`; ``res[layer, head]`` gives one head's :class:`SalientOperations`.
    """
    layers = None if layers is None else list(layers)
    steps = salient_steps(model, layers, n_tokens, n_mappings, projection=projection,
                          skip_nonwords=skip_nonwords, heads=heads, chunk_rows=chunk_rows,
                          select=select)
    total = model.n_layers if layers is None else len(layers)
    return run_steps({"salient": steps}, total, progress)["salient"]


def salient_steps(
    model: HeadModel,
    layers: Iterable[int] | None = None,
    n_tokens: int = 15,
    n_mappings: int = 5,
    *,
    projection: P.ProjectionLike = None,
    skip_nonwords: bool | str | None = False,
    heads: Sequence[int] | None = None,
    chunk_rows: int = P.DEFAULT_CHUNK_ROWS,
    sources: P.Sources | None = None,
    select: Selector | None = None,
) -> Generator[int, None, SalientAll]:
    """:func:`salient_all` one layer at a time: yields each layer when done, returns the result.

    With ``sources`` (a :class:`~headmaps.projection.Sources` over the whole vocabulary
    in the same projection), the source rows come from it, so several consumers stepped
    layer by layer together (:func:`headmaps.analyse`) advance one stream. ``select`` is
    :func:`salient_all`'s.
    """
    if n_tokens < 1 or n_mappings < 1:
        raise HeadmapsError(f"n_tokens and n_mappings must be at least 1, got {n_tokens} and "
                            f"{n_mappings}")
    layers, heads = layers_and_heads(model, layers, heads)
    proj = P.projection_for(model, projection).for_salient()
    ctx = _Context(model, proj.options, skip_nonwords, chunk_rows, sources)
    parts = []
    for layer in layers:
        parts.append(_layer(ctx, layer, heads, n_tokens, n_mappings, select))
        logger.info("salient operations of layer %d done", layer)
        yield layer
    stack = {k: torch.stack([p[k] for p in parts]).numpy() for k in parts[0]}
    used = np.unique(np.concatenate([stack["token_ids"].ravel(), stack["target_ids"].ravel()]))
    strings = {int(i): ctx.string(int(i)) for i in used}
    return SalientAll(
        layers=layers, n_heads=len(heads), token_ids=stack["token_ids"].astype(np.int64),
        saliency=stack["saliency"].astype(np.float32),
        target_ids=stack["target_ids"].astype(np.int64),
        scores=stack["scores"].astype(np.float32), strings=strings, model_id=model.model_id,
        model_info=model.info(), **proj.header(), skip_nonwords=skip_label(skip_nonwords),
        versions=versions(),
    )
