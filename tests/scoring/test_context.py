"""The in-context score ``phi_ctx`` (headmaps.scoring.context).

* Its head outputs are the model's own: the output of every head at the source of the
  real two-token sequence ``[prefix, source]`` (a transformers forward pass), for several
  architectures. The stream computes in float32 against a float64 model, so rows agree to
  ``1e-4`` of their scale (float32 rounding, about ``6e-8`` per operation, through three
  blocks of products of depth <= 96, stays orders of magnitude below it).
* On heads built to attend to the prefix (the sink) or to the source, ``phi_ctx`` drops
  to near zero for the first while ``phi`` stays 1, and stays 1 for the second.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import headmaps as hm
from headmaps import projection as P
from headmaps.experiments import hooks as H
from headmaps.scoring import context as C
from headmaps.scoring import scan
from tiny import tiny_model
from tiny_tokenizer import tiny_tokenizer

WORDS = [f"w{i}" for i in range(150)]


def _values(m, layer, x, opts, kv):
    a = m.attention(layer)
    X = P.layer_sources(x, a, opts)
    b_v, _ = P.layer_biases(a, opts)
    v = torch.einsum("nd,kde->kne", X, a.W_V.float())
    if b_v is not None:
        v = v + b_v[:, None, :]
    return v.index_select(0, kv)


@pytest.mark.parametrize("arch", ["llama", "gemma3_text", "gpt2", "qwen2"])
def test_context_outputs_are_the_heads_outputs_after_the_prefix(arch):
    m = hm.load(tiny_model(arch), tokenizer=tiny_tokenizer(WORDS))
    opts = P.concrete(m, P.PRESETS["through"])
    pid = P.prefix_id(m, opts.prefix)
    ids = torch.arange(5, 45)
    kv = m.spec.kv_index()
    sources = P.Sources(m, ids, opts)
    seqs = torch.stack([torch.full_like(ids, pid), ids], 1)
    cap = H.capture(m, seqs, torch.ones_like(seqs))
    for layer in range(m.n_layers):
        w = C.source_weights(m, layer, sources, kv)
        assert w.shape == (m.n_heads, len(ids), 2)
        torch.testing.assert_close(w.sum(-1), torch.ones(m.n_heads, len(ids)))
        v_prefix = C.prefix_values(sources.prefix_at(layer), m.attention(layer), opts, kv)
        got = C.mix(w, v_prefix, _values(m, layer, sources.at(layer), opts, kv))
        want = cap.z[layer].transpose(0, 1).float()  # (H, n, d_head)
        scale = float(want.abs().max())
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * scale)


def test_no_prefix_no_context_score():
    m = hm.load(tiny_model("llama"), tokenizer=tiny_tokenizer(WORDS))
    ps = [(WORDS[i], WORDS[i + 1]) for i in range(30)]
    for preset in ("alone", "norms", "paper"):
        res = scan(m, {"a": ps}, k=3, projection=preset)
        assert res.phi_ctx is None and res.supp_ctx is None
        with pytest.raises(hm.HeadmapsError, match="no in-context score"):
            res["a"].heads(context=True)


SINK, SOURCE = 0, 1  # heads of layer 0 built to attend to the prefix / to the source


@pytest.fixture(scope="module")
def built():
    """A tiny GPT-2 whose layer-0 heads 0 and 1 attend (almost) only to the prefix and
    only to the source: both get a constant query ``q0``; keys read one zero-mean
    direction ``u`` that only the prefix's embedding holds, with opposite signs."""
    hf = tiny_model("gpt2", seed=1)
    tok = tiny_tokenizer(WORDS)
    m = hm.load(hf, tokenizer=tok)
    pid = P.prefix_id(m, P.concrete(m, P.PRESETS["through"]).prefix)
    d, nh = hf.config.n_embd, hf.config.n_head
    dh = d // nh
    g = torch.Generator().manual_seed(0)
    u = torch.randn(d, generator=g, dtype=torch.float64)
    u = u - u.mean()
    u = u / u.norm()
    q0 = torch.ones(dh, dtype=torch.float64)
    with torch.no_grad():
        for table in (hf.transformer.wte.weight, hf.transformer.wpe.weight):
            table -= torch.outer(table @ u, u)  # no token or position holds u ...
        hf.transformer.wte.weight[pid] += 4.0 * u * hf.transformer.wte.weight.norm(dim=1).mean()
        block = hf.transformer.h[0]
        block.ln_1.weight.fill_(1.0)
        block.ln_1.bias.zero_()
        block.attn.c_proj.bias.zero_()  # no constant output: each source its own top-1
        W, b = block.attn.c_attn.weight, block.attn.c_attn.bias  # Conv1D: x @ W + b
        b[2 * d:] = 0
        for head, sign in ((SINK, 1.0), (SOURCE, -1.0)):
            q, k = slice(head * dh, (head + 1) * dh), slice(d + head * dh, d + (head + 1) * dh)
            W[:, q] = 0
            b[q] = q0
            W[:, k] = sign * 50.0 * torch.outer(u, q0) / (q0 @ q0)
            b[k] = 0
    m = hm.load(hf, tokenizer=tok)  # ... but the prefix: its key decides each head
    opts = P.concrete(m, P.PRESETS["through"])
    word_ids = torch.tensor([tok.encode(" " + w, add_special_tokens=False)[0] for w in WORDS])
    src = P.Sources(m, word_ids, opts)
    a = m.attention(0)
    kv = m.spec.kv_index()
    Y = _values(m, 0, src.at(0), opts, kv)
    _, b_o = P.layer_biases(a, opts)
    relations = {}
    for head in (SINK, SOURCE):  # each source's target: the head's own top-1 under phi
        logits = (Y[head] @ a.W_O[head].float() + b_o) @ P.output_basis(m, opts, a)
        best = logits.argmax(-1)
        keep = torch.isin(best, word_ids)
        by_id = {int(i): w for i, w in zip(word_ids, WORDS)}
        relations[head] = [(WORDS[j], by_id[int(best[j])]) for j in range(len(WORDS)) if keep[j]]
        assert len(relations[head]) >= 40
        assert len({t for _, t in relations[head]}) >= 10  # not one token for every source
    return m, relations


def test_built_heads_attend_where_they_were_built_to(built):
    m, _ = built
    opts = P.concrete(m, P.PRESETS["through"])
    src = P.Sources(m, torch.arange(5, 60), opts)
    w = C.source_weights(m, 0, src, m.spec.kv_index())
    assert w[SINK, :, 0].min() > 0.999  # on the prefix
    assert w[SOURCE, :, 1].min() > 0.999  # on the source itself


def test_sink_head_loses_its_score_in_context_source_head_keeps_it(built):
    m, rels = built
    res = scan(m, {"sink": rels[SINK], "source": rels[SOURCE]}, k=1, min_pairs=1)
    sink, source = res["sink"], res["source"]
    assert sink.scores[0, SINK] == 1.0 and source.scores[0, SOURCE] == 1.0
    # the sink head writes the prefix's value for every source: one fixed top-1 token
    assert sink.phi_ctx[0, SINK] <= 0.1
    assert source.phi_ctx[0, SOURCE] >= 0.95
    assert (0, SOURCE) in source.heads(tau=0.5, context=True)
    assert (0, SINK) not in sink.heads(tau=0.5, context=True)
    assert (0, SINK) in sink.heads(tau=0.5)
    # the control: attention taken from other heads breaks the built difference
    shuffled = scan(m, {"sink": rels[SINK]}, k=1, min_pairs=1, context_shuffle=0)
    assert np.isfinite(shuffled.phi_ctx).all()
    assert not np.array_equal(shuffled.phi_ctx, res.phi_ctx[:1])
