"""TransformerLens 3 ``HookedTransformer`` models: exact in ``hm.load``, and the whole analysis.

One venv holds one TransformerLens version: ``make test`` runs this folder in a small
second venv with transformer-lens 3 (``.venv-tl3``), the rest of the suite on
transformer-lens 4 (``tests/models/test_bridge.py``).

Models are built from ``HookedTransformerConfig`` with random weights (no download), in
float64, once as built and once after TransformerLens's own load-time processing (folded
layer norms, centred writing weights, centred unembedding). Each head's output computed
from the HeadModel's weights must equal TransformerLens's ``hook_z`` through ``W_O``, and
each QK logit its ``hook_attn_scores``, on the same input.
"""

from __future__ import annotations

import json
import re
import warnings

import pytest
import torch

# the TL 3 venv installs transformer-lens 3: a missing one fails, never skips
import transformer_lens as tl

import headmaps as hm
import tiny_vocab
from lens_checks import assert_layer0_logits, assert_matches_lens

CONFIGS = {
    "gpt2": dict(normalization_type="LN", act_fn="gelu_new", positional_embedding_type="standard",
                 original_architecture="GPT2LMHeadModel"),
    "neox": dict(normalization_type="LN", act_fn="gelu", positional_embedding_type="rotary",
                 rotary_dim=4,
                 parallel_attn_mlp=True, original_architecture="GPTNeoXForCausalLM"),
    "gptj": dict(normalization_type="LN", act_fn="gelu_new", positional_embedding_type="rotary",
                 rotary_dim=4, rotary_adjacent_pairs=True, parallel_attn_mlp=True,
                 original_architecture="GPTJForCausalLM"),
    "llama_gqa": dict(normalization_type="RMS", act_fn="silu", positional_embedding_type="rotary",
                      gated_mlp=True, n_key_value_heads=2,
                      original_architecture="LlamaForCausalLM"),
}


def lens_model(kind: str, processed: bool, d_vocab: int = 61):
    """A random-weight HookedTransformer (every parameter perturbed so biases and gains matter)."""
    cfg = tl.HookedTransformerConfig(n_layers=3, d_model=32, n_ctx=24, d_head=8, n_heads=4,
                                     d_mlp=48,
                                     d_vocab=d_vocab, dtype=torch.float64, seed=0,
                                     **CONFIGS[kind])
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


def tokens(m) -> torch.Tensor:
    return torch.randint(0, m.vocab_size, (2, 10), generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("processed", [False, True], ids=["as-built", "folded-centred"])
@pytest.mark.parametrize("kind", list(CONFIGS))
def test_per_head_outputs_and_scores_equal_transformer_lens(kind, processed):
    model = lens_model(kind, processed)
    m = hm.load(model)
    assert m.adapter.family == "transformer_lens"
    assert (m.n_layers, m.n_heads, m.d_model, m.d_head, m.vocab_size) == (3, 4, 32, 8, 61)
    assert m.n_kv_heads == (2 if kind == "llama_gqa" else 4)
    if processed:
        assert model.cfg.normalization_type.endswith("Pre")
        assert m.attention(0).input_norm.weight is None and m.qk(0).input_norm.weight is None
    assert_matches_lens(model, m, tokens(m))
    assert torch.equal(m.E, model.W_E.detach())


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_layer0_attention_logits_equal_transformer_lens(kind):
    model = lens_model(kind, processed=True)
    m = hm.load(model)
    assert_layer0_logits(model, m, tokens(m)[:, :6])


def test_positions_as_transformer_lens_stores_them():
    m = hm.load(lens_model("gpt2", processed=True))
    pos = m.qk(1).positions
    assert pos.kind == "learned" and pos.embedding.shape == (24, 32)
    for kind, interleaved in (("neox", False), ("gptj", True)):
        model = lens_model(kind, processed=False)
        rot = hm.load(model).qk(2).positions
        assert (rot.kind, rot.rotary_dim, rot.interleaved) == ("rotary", 4, interleaved)
        # the frequencies TransformerLens computes: base ** (-2i / rotary_dim)
        want = 10000.0 ** (-torch.arange(0, 4, 2, dtype=torch.float64) / 4)
        torch.testing.assert_close(rot.inv_freq.double(), want, rtol=1e-6, atol=0)
        assert rot.attention_scaling == pytest.approx(1.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rotary_frequencies_from_long_low_precision_tables(dtype):
    cfg = tl.HookedTransformerConfig(n_layers=1, d_model=32, n_ctx=4096, d_head=16, n_heads=2,
                                     d_mlp=32, d_vocab=11, dtype=dtype, act_fn="silu",
                                     normalization_type="RMS", positional_embedding_type="rotary",
                                     rotary_dim=16, rotary_base=500000)
    rot = hm.load(tl.HookedTransformer(cfg)).qk(0).positions
    want = 500000.0 ** (-torch.arange(0, 16, 2, dtype=torch.float64) / 16)
    # the last table row pins each frequency to within the tables' rounding / 4095
    torch.testing.assert_close(rot.inv_freq.double(), want, rtol=1e-5, atol=1e-6)


def test_unsupported_positions_are_one_line_errors():
    model = lens_model("neox", processed=False)
    model.cfg.positional_embedding_type = "alibi"
    with pytest.raises(hm.UnsupportedArchitectureError, match="alibi"):
        hm.load(model).qk(0)


def test_gated_mlp_with_bias_after_the_gate_is_refused():
    model = lens_model("llama_gqa", processed=False)
    with torch.no_grad():
        model.blocks[0].mlp.b_in.fill_(0.5)
    with pytest.raises(hm.UnsupportedArchitectureError, match="b_in"):
        hm.load(model).first_mlp()


def test_lens_model_ov_and_qk_read_the_grouped_heads():
    model = lens_model("llama_gqa", processed=True)
    m = hm.load(model)
    assert m.model_id and "TransformerLens" in m.origin
    W_V, W_O = m.ov(1, 3)
    assert W_V.shape == (32, 8) and W_O.shape == (8, 32)
    assert torch.equal(W_V, m.attention(1).W_V[m.kv_head(3)])
    assert m.qk(1).W_K.shape == (2, 32, 8)  # one per key head, never expanded
    assert torch.equal(m.qk(1).W_K[m.kv_head(3)], model.blocks[1].attn.W_K[3].detach())


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    """A folded GQA HookedTransformer over the tiny word vocabulary, analysed and reported."""
    tok = tiny_vocab.tokenizer()
    m = hm.load(lens_model("llama_gqa", processed=True, d_vocab=len(tok)), tokenizer=tok)
    result = hm.analyse(m, relations=["copying", "successor"])
    path = hm.report(result, tmp_path_factory.mktemp("report") / "lens3.html")
    return m, result, path


def test_hooked_transformer_gets_the_whole_analysis(analysed):
    m, result, path = analysed
    assert result.parts() == ["scan", "salient", "descriptions", "attention", "types"]
    assert result.attention.layers == [0, 1, 2]
    assert result.types.scores["copying"].shape == (3, 4)
    page = path.read_text(encoding="utf-8")
    data = json.loads(re.search(r'id="hm-data">(.*?)</script>', page, re.S).group(1))
    assert (data["nL"], data["nH"]) == (3, 4) and {"names", "heads"} <= set(data["types"])
    assert '"a":' in re.search(r'id="hm-ex">(.*?)</script>', page, re.S).group(1)  # QK half


def test_attention_summary_and_head_types_on_hooked_transformer(analysed):
    m, result, _ = analysed
    att = hm.attention_summary(m, [1], max_distance=6, n_keys=3)
    assert att.positions == ["rotary (transformer_lens, 8 dims, rotate-half, theta ~ 1e+04)"]
    assert att.key_ids.shape[:2] == (1, 4)
    types = hm.head_types(m, relations=False, n_partners=4, max_distance=8)
    assert types.scores["previous_token"].shape == (3, 4)
