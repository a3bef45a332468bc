"""Hooks and per-head dynamic outputs against the real forward pass of tiny models.

* Forcing a head's attention at the last position onto the source token (a real
  intervention: the attention probabilities of the eager attention function are
  replaced) gives exactly the "without context" output computed from the normal run.
* The captured "with context" outputs add up, with the output bias, to the attention
  output at the last position.
* Right-padded batches equal unbatched passes.
* Zeroing a head changes the layer output by exactly ``z_h W_O^h`` at the last position.
"""

from __future__ import annotations

import sys

import pytest
import torch

import headmaps as hm
from headmaps.experiments import hooks as H
from headmaps.experiments.dynamic import head_outputs, head_values, pad_right, readout_basis
from tiny import TINY_CONFIGS, tiny_model

ARCHS = [a for a in ("llama", "gemma3_text", "gpt2", "gpt_neox", "opt", "phi", "phi3", "gptj",
                     "qwen3") if a in TINY_CONFIGS]
SEQS = [[5, 17, 33, 8, 90, 61, 12], [7, 3, 44, 120, 9], [11, 29, 200, 4, 66, 31]]
SOURCES = [2, 1, 3]  # before the last position


@pytest.fixture(scope="module", params=ARCHS)
def arch(request):
    """(model_type, HeadModel) for a tiny float64 model."""
    return request.param, hm.load(tiny_model(request.param))


def _batch():
    ids, mask = pad_right(SEQS, 0)
    return ids, mask, torch.tensor(SOURCES)


def _forcing(monkeypatch, model, layers, last, src):
    """Replace the eager attention function of ``model``'s modules by one whose
    probabilities at the last position are one-hot on the source, in ``layers``."""
    mods = H.layer_modules(model)
    layer_of = {id(m.attention): i for i, m in enumerate(mods)}
    module = sys.modules[type(mods[0].attention).__module__]
    orig = module.eager_attention_forward

    def forced(attn, query, key, value, attention_mask, *args, **kwargs):
        out, w = orig(attn, query, key, value, attention_mask, *args, **kwargs)
        if layer_of[id(attn)] not in layers:
            return out, w
        w = w.clone()
        b = torch.arange(w.shape[0])
        w[b, :, last] = 0
        w[b, :, last, src] = 1
        v = value.repeat_interleave(query.shape[1] // value.shape[1], dim=1)
        return torch.matmul(w.to(v.dtype), v).transpose(1, 2).contiguous(), w

    model.hf_model.config._attn_implementation = "eager"
    monkeypatch.setattr(module, "eager_attention_forward", forced)


def test_forced_attention_equals_static_projection_of_source(arch, monkeypatch):
    """Every layer forced at once (source before the last position): exact equality."""
    _, m = arch
    ids, mask, src = _batch()
    normal = H.capture(m, ids, mask, src)
    _, without = head_outputs(m, normal)
    last = H.last_positions(mask)
    _forcing(monkeypatch, m, set(range(m.n_layers)), last, src)
    forced = H.capture(m, ids, mask, src)
    for layer in range(m.n_layers):
        W_O = m.attention(layer).W_O
        got = torch.einsum("bhe,hed->bhd", forced.z[layer], W_O)
        torch.testing.assert_close(got, without[layer], rtol=1e-9, atol=1e-10)
        # and it is the static projection of the source's attention input
        a = m.attention(layer)
        x = normal.attn_in[layer]
        for h in range(m.n_heads):
            kv = m.kv_head(h)
            v = x @ a.W_V[kv] + (a.b_V[kv] if a.b_V is not None else 0)
            torch.testing.assert_close(got[:, h], v @ a.W_O[h], rtol=1e-9, atol=1e-10)


def test_attention_to_source_is_the_models_attention_weight(arch):
    """``to_source`` equals the weight transformers reports (``output_attentions``), and
    the pass leaves the model's attention kernel as it found it."""
    _, m = arch
    ids, mask, src = _batch()
    before = m.hf_model.config._attn_implementation
    cap = H.capture(m, ids, mask, src, to_source=True)
    assert m.hf_model.config._attn_implementation == before
    m.hf_model.config._attn_implementation = "eager"
    try:
        with torch.no_grad():
            out = m.hf_model.base_model(input_ids=ids, attention_mask=mask, output_attentions=True)
    finally:
        m.hf_model.config._attn_implementation = before
    last, b = H.last_positions(mask), torch.arange(len(SEQS))
    for layer in range(m.n_layers):
        want = out.attentions[layer][b, :, last, src].float()
        torch.testing.assert_close(cap.to_source[layer], want, rtol=1e-6, atol=1e-7)
    assert cap.to_source.min() >= 0 and cap.to_source.max() <= 1


def test_attention_to_source_is_one_when_forced(arch, monkeypatch):
    _, m = arch
    ids, mask, src = _batch()
    last = H.last_positions(mask)
    _forcing(monkeypatch, m, {0}, last, src)
    cap = H.capture(m, ids, mask, src, to_source=True)
    torch.testing.assert_close(cap.to_source[0], torch.ones_like(cap.to_source[0]))
    if m.n_layers > 1:
        assert cap.to_source[1:].max() < 1


def test_forced_onto_last_position_one_layer(arch, monkeypatch):
    """Source at the last position: forcing one layer matches the normal-run value."""
    _, m = arch
    ids, mask, _ = _batch()
    last = H.last_positions(mask)
    normal = H.capture(m, ids, mask, last)
    _, without = head_outputs(m, normal)
    layer = m.n_layers - 1
    _forcing(monkeypatch, m, {layer}, last, last)
    forced = H.capture(m, ids, mask, last)
    got = torch.einsum("bhe,hed->bhd", forced.z[layer], m.attention(layer).W_O)
    torch.testing.assert_close(got, without[layer], rtol=1e-9, atol=1e-10)


def test_with_context_outputs_sum_to_attention_output(arch):
    """sum_h z_h W_O^h + b_O equals the output projection's output at the last position."""
    _, m = arch
    ids, mask, src = _batch()
    mods = H.layer_modules(m)
    last = H.last_positions(mask)
    outs = {}

    def grab(i):
        def fn(_mod, _args, out):
            outs[i] = out[torch.arange(out.shape[0]), last]
        return fn

    with H.hooked([(mod.out_proj, "forward", grab(i)) for i, mod in enumerate(mods)]):
        cap = H.capture(m, ids, mask, src)
    with_ctx, _ = head_outputs(m, cap)
    for layer in range(m.n_layers):
        a = m.attention(layer)
        total = with_ctx[layer].sum(1) + (a.b_O if a.b_O is not None else 0)
        torch.testing.assert_close(total, outs[layer], rtol=1e-9, atol=1e-10)
    assert all(not mod.out_proj._forward_pre_hooks for mod in mods), "hooks were not removed"


def test_right_padding_equals_unbatched(arch):
    _, m = arch
    ids, mask, src = _batch()
    batched = H.capture(m, ids, mask, src)
    for i, seq in enumerate(SEQS):
        one = H.capture(m, torch.tensor([seq]), torch.ones(1, len(seq), dtype=torch.long),
                        src[i:i + 1])
        # GPT-J computes attention scores in float32, hence the tolerance
        torch.testing.assert_close(batched.z[:, i], one.z[:, 0], rtol=1e-6, atol=1e-8)
        torch.testing.assert_close(batched.attn_in[:, i], one.attn_in[:, 0], rtol=1e-6, atol=1e-8)


def test_last_positions():
    """Left and right padding. (The experiments pad on the right: transformers' eager
    attention turns fully masked rows of left padding into NaN.)"""
    mask = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 1], [1, 1, 1, 1]])
    assert H.last_positions(mask).tolist() == [1, 3, 3]


def test_ablation_removes_exactly_the_head(arch):
    _, m = arch
    ids, mask, src = _batch()
    mods = H.layer_modules(m)
    last = H.last_positions(mask)
    layer, head = m.n_layers // 2, m.n_heads - 1
    outs = {}

    def grab(key):
        def fn(_mod, _args, out):
            outs[key] = out.clone()
        return fn

    with H.hooked([(mods[layer].out_proj, "forward", grab("normal"))]):
        cap = H.capture(m, ids, mask, src)
    hooks = H.ablation_hooks(m, [(layer, head)], mask)
    with H.hooked([(mods[layer].out_proj, "forward", grab("ablated"))]):
        H.forward_base(m, ids, mask, hooks)
    with_ctx, _ = head_outputs(m, cap)
    diff = outs["normal"] - outs["ablated"]
    b = torch.arange(len(SEQS))
    torch.testing.assert_close(diff[b, last], with_ctx[layer, :, head], rtol=1e-9, atol=1e-10)
    diff[b, last] = 0
    assert diff.abs().max() == 0  # other positions untouched
    assert not mods[layer].out_proj._forward_pre_hooks


def test_hooks_removed_on_error(arch):
    _, m = arch
    mods = H.layer_modules(m)

    def boom(*_):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        with H.hooked([(mods[0].out_proj, "pre", boom)]):
            H.forward_base(m, *_batch()[:2])
    assert not mods[0].out_proj._forward_pre_hooks


@pytest.mark.parametrize("model_type", [a for a in ("gemma3_text", "llama") if a in TINY_CONFIGS])
def test_readout_basis_is_direct_logit_attribution(model_type):
    """A head output alone, through the post-attention norm, the final norm and U, gives
    logits proportional (positive factor) to its projection on the readout basis."""
    m = hm.load(tiny_model(model_type))
    layer = 1
    a = m.attention(layer)
    o = torch.randn(m.d_model, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x = a.post_norm(o) if a.post_norm is not None else o
    true = m.final_norm(x) @ m.U.double()
    ours = o @ readout_basis(m, layer).double()
    c = (true @ ours) / (ours @ ours)
    assert c > 0
    # the readout basis is float32
    torch.testing.assert_close(true, c * ours, rtol=1e-4, atol=1e-6 * float(true.abs().max()))


def test_head_values_gqa_mapping():
    """Query heads of one KV group read the same value vector without context."""
    m = hm.load(tiny_model("llama"))
    cap = H.capture(m, *_batch())
    _, without = head_values(m, cap, 0)
    group = m.n_heads // m.n_kv_heads
    for h in range(m.n_heads):
        torch.testing.assert_close(without[h], without[(h // group) * group])


def test_cached_prefix_ablation_equals_full_pass(arch):
    """The causal experiment's shortcut: prefix cache + last token == full forward pass,
    with and without ablated heads, and the cache can be reused."""
    _, m = arch
    seqs = torch.tensor([SEQS[0], [3, 9, 27, 81, 43, 129, 7]])
    heads = [(0, 1), (m.n_layers - 1, 0)]
    full_mask = torch.ones_like(seqs)
    one = torch.ones(len(seqs), 1, dtype=torch.long)
    cache = H.prefix_cache(m, seqs[:, :-1])
    for hs in ([], heads, []):
        full = H.next_token_logits(m, seqs, full_mask, H.ablation_hooks(m, hs, full_mask))
        cached = H.next_token_logits_cached(m, cache, seqs[:, -1:], H.ablation_hooks(m, hs, one))
        torch.testing.assert_close(cached, full, rtol=1e-6, atol=1e-8)
    assert not torch.allclose(
        H.next_token_logits(m, seqs, full_mask),
        H.next_token_logits(m, seqs, full_mask, H.ablation_hooks(m, heads, full_mask)))
