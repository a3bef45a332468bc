"""TransformerLens 4 ``TransformerBridge`` models in ``hm.load``: exact against the bridge's run.

Tiny random transformers models (GPT-2, GPT-NeoX with partial rotary, a Llama with
grouped-query attention; float64, no download) are saved with a tokenizer and booted with
``TransformerBridge.boot_transformers(folder)``, then used as booted, after
``enable_compatibility_mode()`` (folded norms, centred writing weights and unembedding,
folded value biases) and after compatibility mode without folding (every norm keeps its
gain, as the final norm does where a bridge adapter cannot fold it). Each head's output
must equal the bridge's ``hook_z @ W_O`` and each QK logit its ``hook_attn_scores``.
"""

from __future__ import annotations

import json
import re
import warnings

import pytest
import torch

# make test installs transformer-lens 4 in the test venv: a missing one fails, never skips
from transformer_lens.model_bridge import TransformerBridge

import headmaps as hm
import tiny_vocab
from lens_checks import assert_layer0_logits, assert_matches_lens
from tiny import tiny_model
from tiny_tokenizer import tiny_tokenizer

KINDS = ["gpt2", "gpt_neox", "llama"]  # llama: 8 query heads over 2 KV heads
MODES = {"booted": None, "compat": {}, "compat-unfolded": {"fold_ln": False}}


def boot(kind: str, folder, mode: str = "booted"):
    """A bridge over ``tiny_model(kind)`` saved to ``folder``, in ``mode`` (see ``MODES``)."""
    tiny_model(kind).save_pretrained(folder)
    tiny_tokenizer(["Paris", "France", "Rome"]).save_pretrained(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bridge = TransformerBridge.boot_transformers(str(folder), device="cpu",
                                                     dtype=torch.float64)
        if MODES[mode] is not None:
            bridge.enable_compatibility_mode(disable_warnings=True, **MODES[mode])
    return bridge


def tokens(m) -> torch.Tensor:
    return torch.randint(0, m.vocab_size, (2, 12), generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("kind", KINDS)
def test_per_head_outputs_and_scores_equal_the_bridge(kind, mode, tmp_path):
    bridge = boot(kind, tmp_path, mode)
    m = hm.load(bridge)
    assert m.adapter.family == "transformer_lens_bridge" and "bridge" in m.origin
    assert (m.n_layers, m.n_heads, m.n_kv_heads) == (3, *{"llama": (8, 2)}.get(kind, (4, 4)))
    gain = m.attention(0).input_norm.weight
    if mode == "compat":  # folded into W_Q/W_K/W_V: the norm that remains has gain 1
        assert torch.equal(gain, torch.ones_like(gain))
        assert torch.equal(m.final_norm.weight, torch.ones_like(gain))
    else:  # the tiny models' gains are perturbed (tests/tiny.py): they are read as they are
        assert not torch.allclose(gain, torch.ones_like(gain))
    assert_matches_lens(bridge, m, tokens(m))


def test_compatibility_mode_is_read_as_processed(tmp_path):
    booted = hm.load(boot("gpt2", tmp_path / "a"))
    bridge = boot("gpt2", tmp_path / "b", "compat")
    compat = hm.load(bridge)
    assert "compatibility mode" in compat.origin
    a, c = booted.attention(1), compat.attention(1)
    assert a.b_V is not None and torch.count_nonzero(a.b_V)
    # value biases folded into b_O, writing weights centred, unembedding centred
    assert c.b_V is None or not torch.count_nonzero(c.b_V)
    assert not torch.allclose(a.b_O, c.b_O)
    assert float(c.W_O.mean(-1).abs().max()) < 1e-6 < float(a.W_O.mean(-1).abs().max())
    assert float(compat.U.mean(0).abs().max()) < 1e-6
    assert torch.equal(c.W_V, bridge.blocks[1].attn.W_V.detach())


def test_gqa_stays_grouped(tmp_path):
    bridge = boot("llama", tmp_path, "compat")
    m = hm.load(bridge)
    assert m.attention(1).W_V.shape == (2, 64, 8) and m.qk(1).W_K.shape == (2, 64, 8)
    for head in range(m.n_heads):  # query head h reads value head h // 4
        W_V, W_O = m.ov(1, head)
        assert torch.equal(W_V, bridge.blocks[1].attn.W_V[head // 4].detach())
        assert torch.equal(W_O, bridge.blocks[1].attn.W_O[head].detach())


def test_bridge_tokenizer_and_positions(tmp_path):
    m = hm.load(boot("gpt2", tmp_path, "compat"))
    assert m.tokenizer is not None and m.tokenizer.convert_tokens_to_ids("Paris") > 1
    pos = m.qk(0).positions
    assert pos.kind == "learned" and pos.embedding.shape == (64, 64)
    neox = hm.load(boot("gpt_neox", tmp_path / "neox"))
    rot = neox.qk(2).positions
    assert rot.kind == "rotary" and rot.rotary_dim == 4  # partial rotary: a quarter of d_head


@pytest.mark.parametrize("kind", KINDS)
def test_layer0_attention_logits_equal_the_bridge(kind, tmp_path):
    bridge = boot(kind, tmp_path, "compat")
    m = hm.load(bridge)
    assert_layer0_logits(bridge, m, tokens(m)[:, :6])


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    """A GQA Llama bridge in compatibility mode over the tiny word vocabulary, analysed."""
    folder = tmp_path_factory.mktemp("bridge")
    tiny_model("llama").save_pretrained(folder)
    tiny_vocab.tokenizer().save_pretrained(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bridge = TransformerBridge.boot_transformers(str(folder), device="cpu",
                                                     dtype=torch.float64)
        bridge.enable_compatibility_mode(disable_warnings=True)
    m = hm.load(bridge)
    result = hm.analyse(m, relations=["copying", "successor"])
    path = hm.report(result, tmp_path_factory.mktemp("report") / "bridge.html")
    return m, result, path


def test_bridge_gets_the_whole_analysis(analysed):
    m, result, path = analysed
    assert result.parts() == ["scan", "salient", "descriptions", "attention", "types"]
    assert result.scan.scores.shape[1:] == (3, 8)
    assert result.attention.layers == [0, 1, 2]
    page = path.read_text(encoding="utf-8")
    data = json.loads(re.search(r'id="hm-data">(.*?)</script>', page, re.S).group(1))
    assert (data["nL"], data["nH"]) == (3, 8) and {"names", "heads"} <= set(data["types"])
    assert '"a":' in re.search(r'id="hm-ex">(.*?)</script>', page, re.S).group(1)  # QK half


def test_attention_summary_and_head_types_on_a_bridge(analysed):
    m, _, _ = analysed
    att = hm.attention_summary(m, [1], max_distance=6, n_keys=3)
    assert att.key_ids.shape[:2] == (1, 8) and att.positions[0].startswith("rotary (default")
    types = hm.head_types(m, relations=False, n_partners=4, max_distance=8)
    assert types.scores["previous_token"].shape == (3, 8)


#: the other architectures headmaps reads, as far as TransformerLens 4.3 boots them (its Phi
#: adapter fails in compatibility mode; with qk_layernorm it refuses to boot)
OTHER = {k: ("booted", "compat") for k in ("mistral", "qwen2", "qwen3", "gemma", "gemma2",
                                          "gemma3_text", "phi3", "gptj", "opt",
                                          "gpt_neox-sequential")}
OTHER["phi"] = ("booted",)


@pytest.mark.parametrize("kind,mode", [(k, mode) for k, modes in OTHER.items() for mode in modes])
def test_every_other_architecture_equals_the_bridge(kind, mode, tmp_path):
    bridge = boot(kind, tmp_path, mode)
    m = hm.load(bridge)
    assert_matches_lens(bridge, m, tokens(m), check_scores=kind not in ("gptj", "opt"),
                        check_logits=kind != "gemma2")


def test_validation_experiments_name_what_is_missing(analysed):
    from headmaps.experiments.hooks import hf_model_of

    m, _, _ = analysed
    assert m.hf_model is None
    with pytest.raises(hm.HeadmapsError, match="TransformerLens model"):
        hf_model_of(m)


@pytest.mark.slow
def test_smollm2_through_a_bridge_scores_as_loaded_directly(smollm2, tmp_path):
    """The built-in SmolLM2 (Llama GQA, 9 heads over 3 KV heads) booted as a bridge."""
    smollm2.hf_model.save_pretrained(tmp_path)
    smollm2.tokenizer.save_pretrained(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bridge = TransformerBridge.boot_transformers(str(tmp_path), device="cpu",
                                                     dtype=torch.float32)
        bridge.enable_compatibility_mode(disable_warnings=True)
    m = hm.load(bridge)
    assert (m.n_layers, m.n_heads, m.n_kv_heads) == (30, 9, 3)
    want = hm.relation_scores(smollm2, "country_to_capital")
    got = hm.relation_scores(m, "country_to_capital")
    # folded norms and the centred unembedding change no top-k: at most a pair at the
    # boundary may flip (measured: none)
    assert got.n_pairs == want.n_pairs
    assert float(abs(got.scores - want.scores).max()) <= 1 / want.n_pairs + 1e-6
    assert [h[:2] for h in got.top_heads(3)] == [h[:2] for h in want.top_heads(3)]
