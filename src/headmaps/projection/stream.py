"""The ``token_alone`` stream: source tokens run through the blocks, alone or after a prefix."""

from __future__ import annotations

from typing import Any

import torch
from tqdm.auto import tqdm

from ..errors import HeadmapsError
from ..models import AttentionWeights, HeadModel
from ..models import qk as Q
from ..models.weights import MLPBlock, Norm, QKWeights, activation
from .chunking import STREAM_CHUNK_ROWS, stream_chunk_rows
from .options import ProjectionOptions
from .precision import STREAM_DTYPES
from .prefix import concrete, prefix_id


def embed(model: HeadModel, token_ids: torch.Tensor, opts: ProjectionOptions) -> torch.Tensor:
    """Embeddings of ``token_ids`` ``(n,)`` -> ``(n, d_model)`` float32, scaled if asked."""
    e = model.E[token_ids.to(model.E.device)].float()
    if opts.scale_embeddings and model.embedding_scale != 1.0:
        e = e * model.embedding_scale
    return e


PROGRESS_ROWS = 50_000


def carried_position(model: HeadModel, opts: ProjectionOptions) -> torch.Tensor | float:
    """The learned position embedding ``(d_model,)`` a source row already carries, or 0.

    ``token_alone`` after a prefix runs each source at position 1, so on models with
    learned absolute positions (GPT-2, OPT) its rows hold position 1's embedding; the QK
    side, which places a token at its own position, adds that position's embedding minus
    this one (:func:`headmaps.attention.compute.positioned`), exactly at layer 0. Other
    sources carry no position.
    """
    opts = concrete(model, opts)
    pos = model.qk(0).positions
    if opts.source != "token_alone" or not opts.prefix or pos.kind != "learned" or \
            pos.embedding is None:
        return 0.0
    return pos.embedding[pos.offset + 1].float()


def _alone_start(model: HeadModel, token_ids: torch.Tensor,
                 opts: ProjectionOptions) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Layer-0 streams of ``token_alone``: the prefix's ``(d_model,)`` (or None) and the sources'.

    With a prefix, learned position embeddings are added as the model adds them (prefix
    at position 0, source at 1); a lone token gets none.
    """
    opts = concrete(model, opts)
    x = embed(model, token_ids, opts).float()
    if not opts.prefix:
        return None, x
    first = embed(model, torch.tensor([prefix_id(model, opts.prefix)]), opts).float()[0]
    pos = model.qk(0).positions
    if pos.kind == "learned" and pos.embedding is not None:
        rows = pos.embedding[pos.offset:pos.offset + 2].float().to(x.device)
        first, x = first + rows[0], x + rows[1]
    return first.to(x.device), x


def _attend_after(qk: QKWeights, kv: torch.Tensor, k_first: torch.Tensor, x: torch.Tensor,
                  v_first: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Per-head outputs ``z`` ``(n_heads, n, d_head)`` of tokens at position 1 after a prefix.

    Args:
        qk: the layer's QK weights.
        kv: ``(n_heads,)`` key/value head of each query head.
        k_first: the prefix's rotated keys (position 0) ``(n_heads, 1, d_head)``.
        x: ``(n, d_model)`` residual streams of the tokens.
        v_first: the prefix's values ``(n_heads, 1, d_head)``.
        v: the tokens' values ``(n_heads, n, d_head)``.

    The weights come from the layer's queries and keys with its norms, rotary angles,
    scale, soft cap and window.
    """
    h = qk.input_norm(x).float()
    q = Q.rotate(Q.queries(qk, h, torch.arange(len(kv), device=x.device)), qk.positions, 1.0)
    k = Q.rotate(Q.keys(qk, h, kv), qk.positions, 1.0)
    s = torch.stack([(q * k_first).sum(-1), (q * k).sum(-1)], -1) * qk.scale  # (H, n, 2)
    if qk.softcap:
        s = qk.softcap * torch.tanh(s / qk.softcap)
    if Q.masked(qk, 1):
        s[..., 0] = float("-inf")
    w = torch.softmax(s, dim=-1)
    return w[..., :1] * v_first + w[..., 1:] * v


def after_prefix_weights(qk: QKWeights, kv: torch.Tensor, first: torch.Tensor,
                         x: torch.Tensor) -> torch.Tensor:
    """Attention weights ``(n_heads, n, 2)`` of tokens at position 1 after a prefix.

    Each row of ``x`` is the query of the sequence ``[prefix, token]``: weight 0 is on the
    prefix (position 0), weight 1 on the token itself, with the layer's norms, rotary
    angles, scale, soft cap and window, as the ``through`` stream computes them.

    Args:
        qk: the layer's QK weights.
        kv: ``(n_heads,)`` key/value head of each query head.
        first: the prefix's residual ``(d_model,)`` entering the layer.
        x: ``(n, d_model)`` residual streams of the tokens entering the layer.
    """
    h = qk.input_norm(x).float()
    q = Q.rotate(Q.queries(qk, h, torch.arange(len(kv), device=x.device)), qk.positions, 1.0)
    k = Q.rotate(Q.keys(qk, h, kv), qk.positions, 1.0)
    k_first = _prefix_keys(qk, kv, first.to(x.device).float())
    s = torch.stack([(q * k_first).sum(-1), (q * k).sum(-1)], -1) * qk.scale
    if qk.softcap:
        s = qk.softcap * torch.tanh(s / qk.softcap)
    if Q.masked(qk, 1):
        s[..., 0] = float("-inf")
    return torch.softmax(s, dim=-1)


def _prefix_keys(qk: QKWeights, kv: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
    """Rotated keys ``(n_heads, 1, d_head)`` of the prefix residual ``first`` at position 0."""
    return Q.rotate(Q.keys(qk, qk.input_norm(first[None]).float(), kv), qk.positions, 0.0)


def token_alone_reference(model: HeadModel, x: torch.Tensor, blocks: range,
                          chunk_rows: int = 16384, first: torch.Tensor | None = None
                          ) -> tuple[torch.Tensor | None, torch.Tensor]:
    """:func:`token_alone` head by head in float32, as it was first written (a baseline).

    Kept for the tests and ``benchmarks/bench_projection.py``: it forms every query head's
    value separately (``index_select`` over the value heads), rotates queries and keys, and
    converts each chunk's operands on the fly. Same arguments, meaning and result as
    :func:`advance` in float32: ``(prefix residual or None, rows)``.
    """
    x = x.float()
    kv = model.spec.kv_index().to(x.device)
    step = max(1, int(chunk_rows))

    def values(a: AttentionWeights, W_V: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        v = torch.einsum("nd,kde->kne", a.input_norm(rows).float(), W_V)
        if a.b_V is not None:
            v = v + a.b_V.float()[:, None, :]
        return v.index_select(0, kv)  # (H, n, dh)

    def block(a: AttentionWeights, W_O: torch.Tensor, mlp: MLPBlock, rows: torch.Tensor,
              z: torch.Tensor) -> torch.Tensor:
        attn = torch.einsum("hne,hed->nd", z, W_O)
        if a.b_O is not None:
            attn = attn + a.b_O.float()
        if a.post_norm is not None:
            attn = a.post_norm(attn).float()
        if model.parallel_attn_mlp:
            return rows + attn + mlp(rows).float()
        mid = rows + attn
        return mid + mlp(mid).float()

    with torch.no_grad():
        bar = tqdm(blocks, desc="token_alone sources", unit="block", leave=False,
                   disable=x.shape[0] < PROGRESS_ROWS or len(blocks) < 2)
        for layer in bar:
            a, mlp = model.attention(layer), model.mlp(layer)
            W_V, W_O = a.W_V.float(), a.W_O.float()
            if first is not None:  # the prefix's keys and values, once per block
                qk = model.qk(layer)
                k_first = _prefix_keys(qk, kv, first)
                v_first = values(a, W_V, first[None])
            out = torch.empty_like(x)
            for c in range(0, x.shape[0], step):
                xc = x[c:c + step]
                z = values(a, W_V, xc)
                if first is not None:
                    z = _attend_after(qk, kv, k_first, xc, v_first, z)
                out[c:c + step] = block(a, W_O, mlp, xc, z)
            if first is not None:
                first = block(a, W_O, mlp, first[None], v_first)[0]
            x = out
    return first, x


def stream_dtype(dtype: str | torch.dtype | None = None) -> torch.dtype:
    """A stream's compute dtype as a torch dtype: ``dtype`` (a name or a dtype), else float32.

    Which dtype a whole-vocabulary stream uses is decided by
    :func:`~headmaps.projection.precision.choose` (``ProjectionOptions.stream_dtype``);
    this only checks and converts.

    Raises:
        HeadmapsError: an unsupported dtype.
    """
    if isinstance(dtype, torch.dtype):
        if dtype not in STREAM_DTYPES.values():
            raise HeadmapsError(f"stream dtype {dtype} is not supported; use one of "
                                f"{', '.join(STREAM_DTYPES)}")
        return dtype
    name = dtype or "float32"
    if name not in STREAM_DTYPES:
        raise HeadmapsError(f"unknown stream dtype {name!r}; use one of {', '.join(STREAM_DTYPES)}")
    return STREAM_DTYPES[name]


def _same_norm(a: Norm, b: Norm) -> bool:
    """Whether two norms compute the same function (a layer's OV and QK input norms)."""
    def same(x: torch.Tensor | None, y: torch.Tensor | None) -> bool:
        if x is None or y is None:
            return x is None and y is None
        return x.shape == y.shape and torch.equal(x, y)

    return a.kind == b.kind and a.eps == b.eps and same(a.weight, b.weight) and \
        same(a.bias, b.bias)


class _Block:
    """One block's weights laid out for the stream: fused and converted once, in ``dtype``.

    All value heads are one product ``x W`` with the value weights side by side,
    ``(d, n_kv d_head)``; after a prefix the query and key weights sit beside them,
    ``(d, (n_heads + 2 n_kv) d_head)``. A lone token's heads each output their own value,
    so the heads that read one value head share it and their ``W_O`` sum to one
    ``(n_kv d_head, d)`` matrix; after a prefix each head weights its value by its own
    attention, and the output is one ``(n, n_heads d_head) x (n_heads d_head, d)``
    product plus the prefix's part, a constant per head. The MLP's up and gate matrices
    sit side by side too. Products take their operands in ``dtype`` and return float32.
    """

    def __init__(self, model: HeadModel, layer: int, dtype: torch.dtype, prefix: bool):
        a, mlp, s = model.attention(layer), model.mlp(layer), model.spec
        self.a, self.mlp, self.dtype = a, mlp, dtype
        self.parallel = model.parallel_attn_mlp
        self.H, self.kv, self.dh = s.n_heads, s.n_kv_heads, s.d_head
        self.g = self.H // self.kv  # query heads per value head (ArchSpec.kv_head)
        W_V, W_O = a.W_V.float(), a.W_O.float()  # (kv, d, dh), (H, dh, d)
        d = W_V.shape[1]
        wv = W_V.permute(1, 0, 2).reshape(d, self.kv * self.dh)
        self.b_V = a.b_V.float().reshape(-1) if a.b_V is not None else None
        self.b_O = a.b_O.float() if a.b_O is not None else None
        self.W_O_heads = W_O
        self.qk = model.qk(layer) if prefix else None
        self.shared_norm = True
        if self.qk is None:
            self.W_in = wv.to(dtype).contiguous()
            self.W_O = W_O.view(self.kv, self.g, self.dh, d).sum(1).reshape(-1, d).to(dtype)
        else:
            qk = self.qk
            wq = qk.W_Q.float().permute(1, 0, 2).reshape(d, self.H * self.dh)
            wk = qk.W_K.float().permute(1, 0, 2).reshape(d, self.kv * self.dh)
            self.shared_norm = _same_norm(a.input_norm, qk.input_norm)
            if self.shared_norm:
                self.W_in = torch.cat([wq, wk, wv], 1).to(dtype).contiguous()
            else:
                self.W_in = wv.to(dtype).contiguous()
                self.W_qk = torch.cat([wq, wk], 1).to(dtype).contiguous()
            self.b_Q = qk.b_Q.float().reshape(-1) if qk.b_Q is not None else None
            self.b_K = qk.b_K.float().reshape(-1) if qk.b_K is not None else None
            self.W_O = W_O.reshape(self.H * self.dh, d).to(dtype)
        m = mlp.mlp
        self.gated = m.W_gate is not None
        up = [m.W_in.float()] + ([m.W_gate.float()] if self.gated else [])
        self.W_up = torch.cat(up, 1).to(dtype).contiguous()
        self.b_up = m.b_in.float() if m.b_in is not None else None
        self.W_down = m.W_out.float().to(dtype).contiguous()
        self.b_down = m.b_out.float() if m.b_out is not None else None
        self.act = activation(m.act)
        self.d_mlp = m.W_in.shape[1]

    def _mm(self, x: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
        """``x W`` with the operands in the block's dtype; in that dtype (add it to float32)."""
        return x.to(self.dtype) @ W

    def ffn(self, x: torch.Tensor) -> torch.Tensor:
        """What the MLP adds to the residual ``x`` ``(n, d)``: ``post(MLP(pre(x)))``.

        The hidden layer stays in the block's dtype (it only feeds the down product).
        """
        h = self._mm(self.mlp.pre_norm(x), self.W_up)
        b = self.b_up.to(h.dtype) if self.b_up is not None else None
        if self.gated:  # in place where it is safe: this pass is memory-bound
            up, gate = h[:, :self.d_mlp], h[:, self.d_mlp:]
            h = self.act(gate).mul_(up + b if b is not None else up)
        else:
            h = self.act(h.add_(b) if b is not None else h)
        y = self._mm(h, self.W_down).float()
        if self.b_down is not None:
            y = y + self.b_down
        post = self.mlp.post_norm
        return post(y).float() if post is not None else y

    def finish(self, x: torch.Tensor, attn: torch.Tensor, ffn: Any = None) -> torch.Tensor:
        """The residual after the block, from its input ``x`` and the heads' summed output."""
        ffn = ffn or self.ffn
        if self.b_O is not None:
            attn = attn + self.b_O
        if self.a.post_norm is not None:
            attn = self.a.post_norm(attn).float()
        if self.parallel:
            return x + attn + ffn(x)
        mid = x + attn
        return mid + ffn(mid)

    def values(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, n_kv, d_head)`` float32 values of residuals ``x`` ``(n, d)``, exactly (float32)."""
        v = torch.einsum("nd,kde->nke", self.a.input_norm(x).float(), self.a.W_V.float())
        return v + self.a.b_V.float() if self.a.b_V is not None else v

    def alone(self, x: torch.Tensor) -> torch.Tensor:
        """The residual after the block of lone tokens ``x`` ``(n, d)`` float32."""
        v = self._mm(self.a.input_norm(x), self.W_in)  # (n, kv dh)
        if self.b_V is not None:
            v = v + self.b_V.to(v.dtype)
        return self.finish(x, self._mm(v, self.W_O).float())

    def prefix_terms(self, first: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The prefix's key and output terms in this block, from its residual ``(d,)``.

        Returns:
            ``kf`` ``(n_kv, d_head)``: its key rotated to position 0 and back by one, so a
            query at position 1 scores it without being rotated itself; and ``C``
            ``(n_heads, d)``: each head's output when it attends to the prefix only.
        """
        qk, kvi = self.qk, torch.arange(self.kv, device=first.device)
        k = Q.keys(qk, qk.input_norm(first[None]).float(), kvi)  # (kv, 1, dh)
        kf = Q.rotate(Q.rotate(k, qk.positions, 0.0), qk.positions, -1.0)[:, 0]
        v = self.values(first[None])[0].repeat_interleave(self.g, 0)  # (H, dh)
        return kf, torch.einsum("he,hed->hd", v, self.W_O_heads)

    def prefix_alone(self, first: torch.Tensor) -> torch.Tensor:
        """The prefix's residual ``(d,)`` after the block: a lone token at position 0.

        Float32 with the weights as stored, whatever the block's dtype (one row).
        """
        v = self.values(first[None])[0].repeat_interleave(self.g, 0)  # (H, dh)
        attn = torch.einsum("he,hed->d", v, self.W_O_heads)[None]
        return self.finish(first[None], attn, lambda r: self.mlp(r).float())[0]

    def after(self, x: torch.Tensor, kf: torch.Tensor, C: torch.Tensor,
              tap: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """The residual after the block of tokens ``x`` ``(n, d)`` at position 1 after a prefix.

        ``tap``: ``(n_heads, n, d_head)`` and ``(n_kv, n, d_head)`` tensors that receive the
        tokens' queries and keys as this block computes them (bias and per-head norms in,
        no rotation: :func:`headmaps.models.qk.queries` and ``keys`` of the normed rows).
        """
        qk, n, H, kv, dh, g = self.qk, x.shape[0], self.H, self.kv, self.dh, self.g
        h = self.a.input_norm(x)
        if self.shared_norm:
            out = self._mm(h, self.W_in)
            qko, v = out[:, :(H + kv) * dh].float(), out[:, (H + kv) * dh:].float()
        else:
            qko, v = self._mm(qk.input_norm(x), self.W_qk).float(), self._mm(h, self.W_in).float()
        q, k = qko[:, :H * dh], qko[:, H * dh:]
        if self.b_Q is not None:
            q = q + self.b_Q
        if self.b_K is not None:
            k = k + self.b_K
        if self.b_V is not None:
            v = v + self.b_V
        q, k = q.reshape(n, kv, g, dh), k.reshape(n, kv, 1, dh)
        if qk.q_norm is not None:
            q = qk.q_norm(q).float()
        if qk.k_norm is not None:
            k = qk.k_norm(k).float()
        if tap is not None:
            tap[0].copy_(q.reshape(n, H, dh).transpose(0, 1))
            tap[1].copy_(k.reshape(n, kv, dh).transpose(0, 1))
        pos = qk.positions  # query and key at one position: the rotation cancels, its scaling not
        if pos.kind == "rotary" and pos.inv_freq is not None and pos.attention_scaling != 1.0:
            sc = torch.ones(dh, device=x.device)
            sc[:pos.rotary_dim] = pos.attention_scaling ** 2
            k = k * sc
        # both keys in one batched product (n, kv, g, dh) x (n, kv, dh, 2): an elementwise
        # product and sum per key moved the queries through memory twice
        keys = torch.cat([kf[None, :, None, :].expand(n, kv, 1, dh), k], 2)
        s = torch.matmul(q, keys.transpose(-1, -2)) * qk.scale  # (n, kv, g, 2)
        if qk.softcap:
            s = qk.softcap * torch.tanh(s / qk.softcap)
        if Q.masked(qk, 1):
            s[..., 0] = float("-inf")
        w = torch.softmax(s, dim=-1)  # (n, kv, g, 2)
        z = (w[..., 1:] * v.reshape(n, kv, 1, dh)).reshape(n, H * dh)
        return self.finish(x, self._mm(z, self.W_O).float() + w[..., 0].reshape(n, H) @ C)


def _advance(model: HeadModel, x: torch.Tensor, blocks: range, chunk_rows: int,
             first: torch.Tensor | None, dtype: torch.dtype,
             kept: dict[int, _Block] | None = None,
             tap: tuple[torch.Tensor, torch.Tensor] | None = None
             ) -> tuple[torch.Tensor | None, torch.Tensor]:
    """:func:`token_alone`'s work: ``(prefix residual or None, rows)`` after ``blocks``.

    ``kept``: laid-out blocks by layer, reused and filled (for a caller that passes the
    same blocks many times with few rows, where laying out the weights would dominate).
    ``tap``: for one block after a prefix, ``(n_heads, n, d_head)`` and ``(n_kv, n,
    d_head)`` tensors filled with the rows' queries and keys (see :meth:`_Block.after`).
    """
    if tap is not None and (len(blocks) != 1 or first is None):
        raise ValueError("a tap reads the queries of one block after a prefix")
    x = x.float()
    most = max(1, int(chunk_rows))
    with torch.no_grad():
        bar = tqdm(blocks, desc="token_alone sources", unit="block", leave=False,
                   disable=x.shape[0] < PROGRESS_ROWS or len(blocks) < 2)
        for layer in bar:
            b = kept.get(layer) if kept is not None else None
            if b is None:
                b = _Block(model, layer, dtype, first is not None)
                if kept is not None:
                    kept[layer] = b
            step = min(most, stream_chunk_rows(b.d_mlp, b.gated, dtype, x.device))
            out = torch.empty_like(x)
            if first is None:
                for c in range(0, x.shape[0], step):
                    out[c:c + step] = b.alone(x[c:c + step])
            else:
                kf, C = b.prefix_terms(first)
                for c in range(0, x.shape[0], step):
                    part = None if tap is None else (tap[0][:, c:c + step], tap[1][:, c:c + step])
                    out[c:c + step] = b.after(x[c:c + step], kf, C, part)
                first = b.prefix_alone(first)
            x = out
    return first, x


def token_alone(model: HeadModel, x: torch.Tensor, blocks: range,
                chunk_rows: int = STREAM_CHUNK_ROWS,
                first: torch.Tensor | None = None,
                dtype: str | torch.dtype | None = None) -> torch.Tensor:
    """Advance residual streams ``x`` ``(n, d_model)`` through ``blocks`` of a lone token.

    Each row is the residual of a one-token sequence, so every attention head attends to
    that token with probability 1 and its output is its value: block ``l`` adds
    ``post_attn(sum_h (LN_1(x) W_V^h + b_V^h) W_O^h + b_O)`` and its MLP (after the
    attention, or beside it for parallel blocks), all biases and norms as in the model.
    Learned position embeddings are not added (the token has no position here, as in
    the other source representations).

    With ``first`` (the residual ``(d_model,)`` of a prefix token at position 0), each
    row is instead the second token of the sequence ``[prefix, token]``: its heads mix
    the prefix's value and its own with the model's attention weights, and the prefix
    advances as a lone token.

    The work is a few large matrix products per block and chunk (see :class:`_Block`).
    With ``dtype=bfloat16`` their operands are rounded to bfloat16 (products accumulate
    in float32); the residual stream, norms, attention weights and the prefix's own row
    stay float32.

    Args:
        model: the model (each block's weights are read once).
        x: ``(n, d_model)`` residual streams entering block ``blocks.start``.
        blocks: the blocks to pass, in order.
        chunk_rows: the most rows computed at a time (bounds the MLP's ``(rows, d_mlp)``
            hidden layer when ``x`` is the whole vocabulary); each block takes fewer
            where its hidden layer would not fit the CPU's cache
            (:func:`~headmaps.projection.chunking.stream_chunk_rows`).
        first: the prefix's residual entering ``blocks.start``, or None.
        dtype: compute dtype of the products (see :func:`stream_dtype`).

    Returns:
        ``(n, d_model)`` float32: the residual entering block ``blocks.stop`` (
        :func:`advance` also returns the prefix's).
    """
    return _advance(model, x, blocks, chunk_rows, first, stream_dtype(dtype))[1]


def advance(model: HeadModel, x: torch.Tensor, blocks: range,
            first: torch.Tensor | None = None, *, chunk_rows: int = STREAM_CHUNK_ROWS,
            dtype: str | torch.dtype | None = None) -> tuple[torch.Tensor | None, torch.Tensor]:
    """:func:`token_alone` with a fixed return type: ``(prefix residual or None, rows)``."""
    return _advance(model, x, blocks, chunk_rows, first, stream_dtype(dtype))


