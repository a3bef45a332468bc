"""Every adapter against the real transformers model it reads.

For one tiny float64 model per architecture (and a few wiring variants), a forward
pass with hooks captures, per layer: the residual stream entering the block, the real
attention probabilities, the concatenated head outputs ``z`` entering the output
projection, the attention module's output and the block's output. The tests then
rebuild each of those from the HeadModel alone and require agreement to 1e-5 relative
error, head by head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
import torch

import headmaps as hm
from headmaps.errors import HeadmapsError, UnsupportedArchitectureError
from headmaps.models.adapters import adapter_for, supported_model_types
from headmaps.models.tensors import StateDictStore
from tiny import TINY_CONFIGS, TINY_VARIANTS, tiny_config, tiny_model

RTOL = 1e-5
ARCHS = sorted(TINY_CONFIGS) + sorted(TINY_VARIANTS)
_ATTN_NAMES = ("self_attn", "attn", "attention")
_OUT_PROJ_NAMES = ("o_proj", "c_proj", "dense", "out_proj")
_FINAL_NORMS = {
    "gpt2": "transformer.ln_f",
    "gptj": "transformer.ln_f",
    "gpt_neox": "gpt_neox.final_layer_norm",
    "opt": "model.decoder.final_layer_norm",
    "phi": "model.final_layernorm",
}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """``||a - b|| / ||b||`` (absolute when ``b`` is zero)."""
    den = b.norm().item()
    return (a - b).norm().item() / (den if den > 0 else 1.0)


def child(module: torch.nn.Module, names: tuple[str, ...]) -> torch.nn.Module:
    """The first child of ``module`` called one of ``names``."""
    for n in names:
        if hasattr(module, n):
            return getattr(module, n)
    raise AttributeError(f"{type(module).__name__} has none of {names}")


def decoder_layers(model: torch.nn.Module, n_layers: int) -> torch.nn.ModuleList:
    """The model's list of transformer blocks."""
    for _, mod in model.named_modules():
        if isinstance(mod, torch.nn.ModuleList) and len(mod) == n_layers:
            return mod
    raise AssertionError("no decoder layer list found")


def in_out_weight(proj: torch.nn.Module) -> torch.Tensor:
    """A projection's weight as ``(in_features, out_features)`` (Conv1D already is)."""
    return proj.weight.T if isinstance(proj, torch.nn.Linear) else proj.weight


@dataclass
class Case:
    """One tiny model, its HeadModel, and what its forward pass produced."""

    name: str
    model: torch.nn.Module
    m: hm.HeadModel
    ids: torch.Tensor
    logits: torch.Tensor
    resid: list = field(default_factory=list)  # (b, s, d) entering each block
    probs: list = field(default_factory=list)  # (b, n_heads, s, s)
    z: list = field(default_factory=list)  # (b, s, n_heads * d_head) entering W_O
    attn_out: list = field(default_factory=list)  # (b, s, d) attention module output
    block_out: list = field(default_factory=list)  # (b, s, d)

    @property
    def layers(self) -> torch.nn.ModuleList:
        return decoder_layers(self.model, self.m.n_layers)


def run_case(name: str) -> Case:
    """Build the tiny model, load it and run one hooked forward pass."""
    model = tiny_model(name)
    m = hm.load(model)
    n = m.n_layers
    cap: dict[str, list] = {k: [None] * n for k in ("resid", "probs", "z", "attn_out", "block_out")}
    handles = []

    def store(key, i, value):
        cap[key][i] = value.detach().clone()

    def store_attn(i, out):  # returns None: a hook's return value would replace the output
        store("attn_out", i, out[0])
        store("probs", i, out[1])

    for i, layer in enumerate(decoder_layers(model, n)):
        attn = child(layer, _ATTN_NAMES)
        proj = child(attn, _OUT_PROJ_NAMES)
        handles += [
            layer.register_forward_pre_hook(
                lambda mod, args, kwargs, i=i: store(
                    "resid", i, args[0] if args else kwargs["hidden_states"]),
                with_kwargs=True),
            layer.register_forward_hook(
                lambda mod, args, out, i=i: store(
                    "block_out", i, out[0] if isinstance(out, tuple) else out)),
            attn.register_forward_hook(lambda mod, args, out, i=i: store_attn(i, out)),
            proj.register_forward_pre_hook(lambda mod, args, i=i: store("z", i, args[0])),
        ]
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, m.vocab_size, (2, 11), generator=g)
    try:
        with torch.no_grad():
            logits = model(input_ids=ids).logits
    finally:
        for h in handles:
            h.remove()
    for key, vals in cap.items():
        assert all(v is not None for v in vals), f"{name}: hook {key} did not fire"
    return Case(name, model, m, ids, logits, **cap)


@pytest.fixture(scope="module", params=ARCHS)
def case(request) -> Case:
    return run_case(request.param)


# ---- per-head exactness ------------------------------------------------------------------
def test_every_head_output_matches_forward_pass(case: Case):
    m, dh = case.m, case.m.d_head
    for layer, block in enumerate(case.layers):
        a = m.attention(layer)
        proj_w = in_out_weight(child(child(block, _ATTN_NAMES), _OUT_PROJ_NAMES)).detach()
        x = a.input_norm(case.resid[layer])
        for h in range(m.n_heads):
            kv = m.kv_head(h)
            v = x @ a.W_V[kv] + (a.b_V[kv] if a.b_V is not None else 0)
            z_pred = case.probs[layer][:, h] @ v  # (b, s, d_head)
            z_real = case.z[layer][..., h * dh:(h + 1) * dh]
            assert rel_err(z_pred, z_real) <= RTOL, f"{case.name} z of {layer}.{h}"
            out_pred = z_pred @ a.W_O[h]
            out_real = z_real @ proj_w[h * dh:(h + 1) * dh]
            assert rel_err(out_pred, out_real) <= RTOL, f"{case.name} head {layer}.{h}"


def test_heads_plus_output_bias_sum_to_attention_output(case: Case):
    m = case.m
    for layer in range(m.n_layers):
        a = m.attention(layer)
        z = case.z[layer].unflatten(-1, (m.n_heads, m.d_head))  # (b, s, H, d_head)
        total = torch.einsum("bshk,hkd->bsd", z, a.W_O)
        if a.b_O is not None:
            total = total + a.b_O
        assert rel_err(total, case.attn_out[layer]) <= RTOL


def test_ov_matches_attention_weights(case: Case):
    m = case.m
    a = m.attention(m.n_layers - 1)
    W_V, W_O = m.ov(m.n_layers - 1, m.n_heads - 1)
    assert W_V.shape == (m.d_model, m.d_head) and W_O.shape == (m.d_head, m.d_model)
    assert torch.equal(W_V, a.W_V[m.kv_head(m.n_heads - 1)])
    assert torch.equal(W_O, a.W_O[m.n_heads - 1])


# ---- embeddings, final norm, unembedding ----------------------------------------------------
def test_embedding_matches_input_embeddings(case: Case):
    model, m = case.model, case.m
    expected = model.get_input_embeddings()(case.ids)
    for name, mod in model.named_modules():
        if name.endswith("project_in") and mod is not None:
            expected = mod(expected)
    assert m.E.shape == (m.vocab_size, m.d_model)
    assert rel_err(m.E[case.ids] * m.embedding_scale, expected) <= RTOL


def test_logits_from_final_norm_and_unembedding(case: Case):
    m = case.m
    assert m.U.shape == (m.d_model, m.vocab_size)
    logits = m.final_norm(case.block_out[-1]) @ m.U
    if m.unembedding_bias is not None:
        logits = logits + m.unembedding_bias
    cap = getattr(case.model.config, "final_logit_softcapping", None)
    if cap:
        logits = cap * torch.tanh(logits / cap)
    assert rel_err(logits, case.logits) <= RTOL


def test_final_norm_matches_module(case: Case):
    module = case.model.get_submodule(_FINAL_NORMS.get(case.m.spec.family, "model.norm"))
    x = torch.randn(3, 5, case.m.d_model, dtype=torch.float64) * 3 + 0.5
    assert rel_err(case.m.final_norm(x), module(x)) <= RTOL


def test_unembedding_matches_lm_head(case: Case):
    model, m = case.model, case.m
    head = model.get_output_embeddings()
    tied = head.weight is model.get_input_embeddings().weight
    assert m.tied_embeddings == (tied and not case.name.startswith("opt-projected"))
    if m.tied_embeddings:
        assert torch.equal(m.U, m.E.T)
    if not case.name.startswith("opt-projected"):
        assert torch.equal(m.U, head.weight.detach().T)
    bias = getattr(head, "bias", None)
    if bias is None:
        assert m.unembedding_bias is None
    else:
        assert torch.equal(m.unembedding_bias, bias.detach())


# ---- first MLP ---------------------------------------------------------------------------
def real_first_mlp(case: Case, x: torch.Tensor) -> torch.Tensor:
    """Block 0's MLP path written out from the transformers modules."""
    block, fam = case.layers[0], case.m.spec.family
    if fam == "gpt2":
        return block.mlp(block.ln_2(x))
    if fam == "gptj":
        return block.mlp(block.ln_1(x))
    if fam == "phi":
        return block.mlp(block.input_layernorm(x))
    if fam == "opt":
        return block.fc2(block.activation_fn(block.fc1(block.final_layer_norm(x))))
    if hasattr(block, "pre_feedforward_layernorm"):
        return block.post_feedforward_layernorm(block.mlp(block.pre_feedforward_layernorm(x)))
    return block.mlp(block.post_attention_layernorm(x))


def test_first_mlp_matches_modules_on_random_inputs(case: Case):
    x = torch.randn(4, 7, case.m.d_model, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = real_first_mlp(case, x)
    assert rel_err(case.m.first_mlp()(x), expected) <= RTOL


def test_first_mlp_matches_block_zero_in_forward_pass(case: Case):
    """What block 0 adds besides attention is first_mlp of the right input (wiring check)."""
    m = case.m
    resid, attn_out, out = case.resid[0], case.attn_out[0], case.block_out[0]
    post = m.attention(0).post_norm
    attn_contrib = post(attn_out) if post is not None else attn_out
    mlp_in = resid if m.parallel_attn_mlp else resid + attn_contrib
    assert rel_err(m.first_mlp()(mlp_in), out - resid - attn_contrib) <= RTOL


# ---- architecture-specific facts -----------------------------------------------------------
@pytest.mark.parametrize(
    "name, parallel",
    [("gptj", True), ("phi", True), ("gpt_neox", True), ("gpt_neox-sequential", False),
     ("gpt2", False), ("llama", False), ("gemma3_text", False), ("opt", False)],
)
def test_parallel_flag(name, parallel):
    assert adapter_for(tiny_config(name), StateDictStore({})).spec.parallel_attn_mlp is parallel


@pytest.mark.parametrize(
    "name, kv",
    [("llama", [0, 0, 0, 0, 1, 1, 1, 1]), ("gemma3_text", [0, 0, 0, 0]),
     ("gemma", [0, 0, 0, 0]), ("qwen2", [0, 0, 1, 1]), ("gpt2", [0, 1, 2, 3])],
)
def test_kv_head_mapping(name, kv):
    spec = adapter_for(tiny_config(name), StateDictStore({})).spec
    assert [spec.kv_head(h) for h in range(spec.n_heads)] == kv
    assert spec.kv_index().tolist() == kv
    assert spec.n_kv_heads == max(kv) + 1


@pytest.fixture(scope="module")
def gemma_cases() -> dict[str, Case]:
    return {n: run_case(n) for n in ("gemma", "gemma2", "gemma3_text")}


@pytest.mark.parametrize("name", ["gemma", "gemma2", "gemma3_text"])
def test_gemma_conventions(gemma_cases, name):
    case = gemma_cases[name]
    m, block = case.m, case.layers[1]
    assert m.embedding_scale == pytest.approx(math.sqrt(m.d_model))
    assert m.spec.norm_kind == "rmsnorm"
    a = m.attention(1)
    assert a.input_norm.gain_offset == 1.0
    assert torch.allclose(a.input_norm.weight, 1 + block.input_layernorm.weight.detach())
    if name == "gemma":
        assert a.post_norm is None
        assert m.first_mlp().post_norm is None
    else:
        x = torch.randn(5, m.d_model, dtype=torch.float64) * 2
        assert rel_err(a.post_norm(x), block.post_attention_layernorm(x)) <= RTOL
        assert m.first_mlp().post_norm is not None


def _gemma3_multimodal_config(text_config):
    from transformers import Gemma3Config

    return Gemma3Config(text_config=text_config.to_dict(),
                        vision_config=dict(hidden_size=16, intermediate_size=32,
                                           num_hidden_layers=1,
                                           num_attention_heads=2, image_size=28, patch_size=14))


@pytest.mark.parametrize("text_prefix, head_name", [
    ("model.language_model.", "lm_head.weight"),
    ("language_model.model.", "language_model.lm_head.weight"),
])
def test_gemma3_multimodal_layout(gemma_cases, text_prefix, head_name):
    text = gemma_cases["gemma3_text"]
    sd = {}
    for k, v in text.model.state_dict().items():
        sd[head_name if k == "lm_head.weight" else text_prefix + k.removeprefix("model.")] = v
    sd["model.vision_tower.dummy.weight"] = torch.zeros(1)
    adapter = adapter_for(_gemma3_multimodal_config(text.model.config), StateDictStore(sd))
    assert adapter.spec == text.m.spec
    for layer in range(text.m.n_layers):
        mine, ref = adapter.attention(layer), text.m.attention(layer)
        assert torch.equal(mine.W_V, ref.W_V) and torch.equal(mine.W_O, ref.W_O)
        assert torch.equal(mine.post_norm.weight, ref.post_norm.weight)
        mq, rq = adapter.qk(layer), text.m.qk(layer)
        assert torch.equal(mq.W_Q, rq.W_Q) and torch.equal(mq.W_K, rq.W_K)
        assert torch.equal(mq.q_norm.weight, rq.q_norm.weight)
        assert torch.equal(mq.positions.inv_freq, rq.positions.inv_freq)
    assert torch.equal(adapter.embedding(), text.m.E)
    assert torch.equal(adapter.final_norm().weight, text.m.final_norm.weight)


def test_neox_hub_names():
    """Hub checkpoints call the NeoX LM head ``embed_out``; transformers 5 calls it ``lm_head``."""
    model = tiny_model("gpt_neox")
    sd = {("embed_out.weight" if k == "lm_head.weight" else k): v
          for k, v in model.state_dict().items()}
    adapter = adapter_for(model.config, StateDictStore(sd))
    assert torch.equal(adapter.unembedding(), model.lm_head.weight.detach().T)
    assert not torch.equal(adapter.unembedding(), adapter.embedding().T)


# ---- refusals and errors -------------------------------------------------------------------
def test_opt_post_norm_is_refused():
    from transformers import OPTConfig

    config = OPTConfig(**dict(TINY_CONFIGS["opt"][1], do_layer_norm_before=False))
    with pytest.raises(HeadmapsError, match="do_layer_norm_before"):
        adapter_for(config, StateDictStore({}))


def test_unsupported_architecture_names_type_and_lists_supported():
    from transformers import BertConfig

    with pytest.raises(UnsupportedArchitectureError) as err:
        adapter_for(BertConfig(), StateDictStore({}))
    msg = str(err.value)
    assert "'bert'" in msg
    for mt in ("gpt2", "gpt_neox", "gptj", "opt", "llama", "mistral", "qwen2", "qwen3",
               "gemma", "gemma2", "gemma3_text", "phi", "phi3"):
        assert mt in supported_model_types()
        assert mt in msg


def test_unsupported_in_memory_model():
    import transformers

    config = transformers.BloomConfig(hidden_size=16, n_layer=1, n_head=2, vocab_size=32)
    model = transformers.AutoModelForCausalLM.from_config(config)
    with pytest.raises(UnsupportedArchitectureError, match="bloom"):
        hm.load(model)
