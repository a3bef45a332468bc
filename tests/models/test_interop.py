"""TransformerLens and nnsight models in ``hm.load``: the HeadModel matches their own forward.

TransformerLens models are built from ``HookedTransformerConfig`` with random weights
(no download), in float64, once as built and once after TransformerLens's own load-time
processing (folded layer norms, centred writing weights, centred unembedding). Each
head's output computed from the HeadModel's weights must equal TransformerLens's
``hook_z`` through ``W_O`` on the same input.
"""

from __future__ import annotations

import warnings

# make test installs the [lens] and [nnsight] extras: a missing one fails, never skips
import nnsight  # noqa: E402
import pytest
import torch
import transformer_lens as tl  # noqa: E402

import headmaps as hm

CONFIGS = {
    "gpt2": dict(normalization_type="LN", act_fn="gelu_new", positional_embedding_type="standard",
                 original_architecture="GPT2LMHeadModel"),
    "neox": dict(normalization_type="LN", act_fn="gelu", positional_embedding_type="rotary",
                 rotary_dim=4,
                 parallel_attn_mlp=True, original_architecture="GPTNeoXForCausalLM"),
    "llama_gqa": dict(normalization_type="RMS", act_fn="silu", positional_embedding_type="rotary",
                      gated_mlp=True, n_key_value_heads=2,
                      original_architecture="LlamaForCausalLM"),
}


def lens_model(kind: str, processed: bool):
    """A random-weight HookedTransformer (every parameter perturbed so biases and gains matter)."""
    cfg = tl.HookedTransformerConfig(n_layers=3, d_model=32, n_ctx=24, d_head=8, n_heads=4,
                                     d_mlp=48,
                                     d_vocab=61, dtype=torch.float64, seed=0, **CONFIGS[kind])
    model = tl.HookedTransformer(cfg)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
        if cfg.gated_mlp:  # TransformerLens's gated conversions leave b_in zero (see interop.py)
            for block in model.blocks:
                block.mlp.b_in.zero_()
    if processed:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.process_weights_(fold_ln=True, center_writing_weights=True, center_unembed=True)
    model.eval()
    model.requires_grad_(False)
    return model


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("processed", [False, True], ids=["as-built", "folded-centred"])
@pytest.mark.parametrize("kind", list(CONFIGS))
def test_per_head_outputs_equal_transformer_lens(kind, processed):
    model = lens_model(kind, processed)
    m = hm.load(model)
    cfg = model.cfg
    assert (m.n_layers, m.n_heads, m.d_model, m.d_head, m.vocab_size) == (3, 4, 32, 8, 61)
    assert m.n_kv_heads == (2 if kind == "llama_gqa" else 4)
    if processed:
        assert cfg.normalization_type.endswith("Pre") and m.attention(0).input_norm.weight is None

    tokens = torch.randint(0, cfg.d_vocab, (2, 10), generator=torch.Generator().manual_seed(2))
    logits, cache = model.run_with_cache(tokens)
    kv = m.spec.kv_index()
    for layer in range(m.n_layers):
        a = m.attention(layer)
        x = a.input_norm(cache[f"blocks.{layer}.hook_resid_pre"])              # (b, q, d)
        v = torch.einsum("bkd,hde->bkhe", x, a.W_V[kv])                          # (b, k, h, d_head)
        if a.b_V is not None:
            v = v + a.b_V[kv]
        z = torch.einsum("bhqk,bkhe->bqhe", cache[f"blocks.{layer}.attn.hook_pattern"], v)
        ours = torch.einsum("bqhe,hed->bqhd", z, a.W_O)                          # per-head outputs
        theirs = torch.einsum("bqhe,hed->bqhd", cache[f"blocks.{layer}.attn.hook_z"],
                              model.blocks[layer].attn.W_O)
        assert rel_err(ours, theirs) <= 1e-5, (kind, layer)

    # embedding, first MLP block, final norm + unembedding
    assert torch.equal(m.E, model.W_E.detach())
    mlp_in = cache["blocks.0.hook_resid_pre" if cfg.parallel_attn_mlp
                   else "blocks.0.hook_resid_mid"]
    assert rel_err(m.first_mlp()(mlp_in), cache["blocks.0.hook_mlp_out"]) <= 1e-5
    resid = cache[f"blocks.{cfg.n_layers - 1}.hook_resid_post"]
    final = m.final_norm(resid) @ m.U + m.unembedding_bias
    assert rel_err(final, logits) <= 1e-5


def test_gated_mlp_with_bias_after_the_gate_is_refused():
    model = lens_model("llama_gqa", processed=False)
    with torch.no_grad():
        model.blocks[0].mlp.b_in.fill_(0.5)
    with pytest.raises(hm.UnsupportedArchitectureError, match="b_in"):
        hm.load(model).first_mlp()


def test_lens_model_ov_reads_the_value_head():
    m = hm.load(lens_model("llama_gqa", processed=True))
    assert m.model_id and "TransformerLens" in m.source
    W_V, W_O = m.ov(1, 3)
    assert W_V.shape == (32, 8) and W_O.shape == (8, 32)
    assert torch.equal(W_V, m.attention(1).W_V[m.kv_head(3)])


def test_nnsight_language_model_is_its_transformers_model(tiny_llama):
    from tiny_tokenizer import tiny_tokenizer

    tok = tiny_tokenizer(["Paris", "France"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lm = nnsight.LanguageModel(tiny_llama, tokenizer=tok)
    m = hm.load(lm)
    direct = hm.load(tiny_llama)
    assert m.tokenizer is tok and m.hf_model is tiny_llama
    assert "nnsight" in m.source
    for layer in range(m.n_layers):
        assert torch.equal(m.attention(layer).W_O, direct.attention(layer).W_O)
        assert torch.equal(m.attention(layer).W_V, direct.attention(layer).W_V)
