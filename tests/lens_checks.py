"""Exactness checks shared by the TransformerLens 3 and 4 tests: the HeadModel against TL's own run.

Both lines name their hooks the same way (``blocks.{l}.attn.hook_z``, ``hook_pattern``,
``hook_attn_scores``, ``hook_resid_pre``...), so one set of checks serves a TL 3
``HookedTransformer`` and a TL 4 ``TransformerBridge`` (booted or in compatibility mode).
"""

from __future__ import annotations

import torch

from headmaps.models import qk as Q


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def per_head_outputs(m, cache, layer: int) -> torch.Tensor:
    """``(b, q, h, d_model)``: each head's output from our OV weights and TL's pattern."""
    kv = m.spec.kv_index()
    a = m.attention(layer)
    x = a.input_norm(cache[f"blocks.{layer}.hook_resid_pre"])                  # (b, k, d)
    v = torch.einsum("bkd,hde->bkhe", x, a.W_V[kv])                              # (b, k, h, dh)
    if a.b_V is not None:
        v = v + a.b_V[kv]
    z = torch.einsum("bhqk,bkhe->bqhe", cache[f"blocks.{layer}.attn.hook_pattern"], v)
    return torch.einsum("bqhe,hed->bqhd", z, a.W_O)


def scores(m, cache, layer: int) -> torch.Tensor:
    """``(b, h, q, k)`` attention logits from the HeadModel's QK weights (rotary applied)."""
    qk = m.qk(layer)
    kv = m.spec.kv_index()
    out = []
    for resid in cache[f"blocks.{layer}.hook_resid_pre"]:                         # (n, d)
        x = qk.input_norm(resid).float()  # the QK functions compute in float32
        pos = torch.arange(len(x), dtype=torch.float32)
        q = Q.rotate(Q.queries(qk, x, torch.arange(m.n_heads)), qk.positions, pos)
        k = Q.rotate(Q.keys(qk, x), qk.positions, pos)[kv]
        out.append(Q.logits(qk, q, k))
    return torch.stack(out).double()


def assert_matches_lens(lens, m, tokens: torch.Tensor, tol: float = 1e-5, *,
                        check_scores: bool = True, check_logits: bool = True) -> None:
    """Every per-head output, attention logit and pattern, the first MLP and the logits agree.

    ``lens`` is the TL model (``HookedTransformer`` or ``TransformerBridge``) ``m`` was
    loaded from; per-head outputs are compared with TL's ``hook_z @ W_O`` per head, QK
    logits with ``hook_attn_scores`` where TL does not mask them (``check_scores``: some
    bridge adapters, GPT-J and OPT, record the pattern there), their softmax with
    ``hook_pattern``, and the final norm and unembedding with TL's logits (``check_logits``:
    Gemma 2's final soft cap is not part of the HeadModel).
    """
    with torch.no_grad():
        logits, cache = lens.run_with_cache(tokens)
    n = tokens.shape[1]
    for layer in range(m.n_layers):
        window = m.qk(layer).positions.sliding_window  # TL masks keys further back
        causal = torch.ones(n, n, dtype=torch.bool).tril()
        if window:
            causal &= torch.ones(n, n, dtype=torch.bool).triu(1 - window)
        theirs = torch.einsum("bqhe,hed->bqhd", cache[f"blocks.{layer}.attn.hook_z"],
                              lens.blocks[layer].attn.W_O.detach())
        assert rel_err(per_head_outputs(m, cache, layer), theirs) <= tol, ("OV", layer)
        s = scores(m, cache, layer)
        if check_scores:
            s_tl = cache[f"blocks.{layer}.attn.hook_attn_scores"]
            assert rel_err(s[..., causal], s_tl[..., causal]) <= tol, ("QK", layer)
        pattern = torch.softmax(s.masked_fill(~causal, float("-inf")), -1)
        assert rel_err(pattern, cache[f"blocks.{layer}.attn.hook_pattern"]) <= tol, ("QK", layer)
    mlp_in = cache["blocks.0.hook_resid_pre" if m.parallel_attn_mlp else "blocks.0.hook_resid_mid"]
    assert rel_err(m.first_mlp()(mlp_in), cache["blocks.0.hook_mlp_out"]) <= tol
    if not check_logits:
        return
    resid = cache[f"blocks.{m.n_layers - 1}.hook_resid_post"]
    final = m.final_norm(resid) @ m.U
    if m.unembedding_bias is not None:
        final = final + m.unembedding_bias
    assert rel_err(final, logits) <= tol


def assert_layer0_logits(lens, m, tokens: torch.Tensor, tol: float = 1e-5) -> None:
    """``hm.attention_logits`` at layer 0 equals TL's score of every query on every key before it.

    At layer 0 the residual stream is the token's embedding (plus its learned position
    embedding, where the model has them), which is the source representation headmaps uses
    there; so the parameter-only logit must be the model's own.
    """
    import headmaps as hm

    with torch.no_grad():
        _, cache = lens.run_with_cache(tokens[:1])
    s_tl = cache["blocks.0.attn.hook_attn_scores"][0]                              # (h, q, k)
    ids = tokens[0]
    for head in range(m.n_heads):
        for q in range(len(ids)):
            for k in range(q + 1):
                s = hm.attention_logits(m, 0, head, ids[q:q + 1], ids[k:k + 1], q - k,
                                        query_position=q)
                want = float(s_tl[head, q, k])
                assert abs(float(s[0, 0]) - want) <= tol * max(1.0, abs(want)), (head, q, k)
