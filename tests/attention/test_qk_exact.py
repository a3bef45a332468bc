"""The parameter-only QK logit equals the model's own pre-softmax score.

For a tiny float64 model of every family (and rotary variants: partial rotary, GPT-J's
interleaved pairs, linear / llama3 / YaRN scaled frequencies, GPT-2's per-layer
scale), the residual stream entering a layer is replaced (hook in) by the source
representations headmaps uses (plus learned position embeddings where the model has
them), and the score the attention computes before its softmax is read out. It must
equal :func:`headmaps.attention_logits` for every head, at several distances.
"""

from __future__ import annotations

import contextlib

import pytest
import torch

import headmaps as hm
from headmaps import projection as P
from headmaps.attention.compute import residual
from tiny import ROPE_VARIANTS, TINY_CONFIGS, TINY_VARIANTS, tiny_model

ARCHS = sorted(TINY_CONFIGS) + sorted(TINY_VARIANTS) + sorted(ROPE_VARIANTS)
_ATTN_NAMES = ("self_attn", "attn", "attention")
RTOL = 2e-5


def decoder_layers(model: torch.nn.Module, n_layers: int) -> torch.nn.ModuleList:
    for _, mod in model.named_modules():
        if isinstance(mod, torch.nn.ModuleList) and len(mod) == n_layers:
            return mod
    raise AssertionError("no decoder layer list found")


@contextlib.contextmanager
def capture_scores(attn: torch.nn.Module, out: list):
    """Record the input of every softmax called while ``attn`` runs (the pre-softmax scores)."""
    real = torch.nn.functional.softmax
    active = []

    def spy(x, *args, **kwargs):
        if active:
            out.append(x.detach().clone())
        return real(x, *args, **kwargs)

    h1 = attn.register_forward_pre_hook(lambda *a: active.append(1))
    h2 = attn.register_forward_hook(lambda *a: active.clear())
    torch.nn.functional.softmax = spy
    try:
        yield
    finally:
        torch.nn.functional.softmax = real
        h1.remove()
        h2.remove()


def model_scores(model, m: hm.HeadModel, layer: int, resid: torch.Tensor) -> torch.Tensor:
    """The ``(n_heads, T, T)`` pre-softmax scores of ``layer`` with its input set to ``resid``."""
    block = decoder_layers(model, m.n_layers)[layer]
    attn = next(getattr(block, n) for n in _ATTN_NAMES if hasattr(block, n))

    def set_input(mod, args, kwargs):
        x = resid[None].to(torch.float64)
        if args:
            return (x, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": x}

    hook = block.register_forward_pre_hook(set_input, with_kwargs=True)
    got: list = []
    try:
        with capture_scores(attn, got), torch.no_grad():
            model(input_ids=torch.full((1, resid.shape[0]), 5))
    finally:
        hook.remove()
    assert len(got) == 1, f"expected one softmax in the attention of layer {layer}, saw {len(got)}"
    return got[0][0]


@pytest.fixture(scope="module", params=ARCHS)
def case(request):
    model = tiny_model(request.param)
    return request.param, model, hm.load(model)


def test_logit_equals_model_pre_softmax_score(case):
    name, model, m = case
    opts = P.PRESETS[P.DEFAULT_PRESET]
    assert opts.fold_norms  # the default preset is the model's own path
    g = torch.Generator().manual_seed(3)
    for layer in (0, m.n_layers - 1):
        qk = m.qk(layer)
        for distance in (0, 1, 3):
            learned = qk.positions.kind == "learned"
            qpos = distance + (2 if learned else 0)  # learned positions: not only from position 0
            T = qpos + 1
            ids = torch.randint(3, m.vocab_size, (T,), generator=g)
            resid = residual(m, qk, layer, ids, torch.arange(T), opts)
            scores = model_scores(model, m, layer, resid)  # (H, T, T)
            kpos = qpos - distance
            for h in range(m.n_heads):
                mine = hm.attention_logits(m, layer, h, ids[qpos:qpos + 1], ids[kpos:kpos + 1],
                                           distance,
                                           query_position=qpos)[0, 0].double()
                real = scores[h, qpos, kpos]
                assert torch.isclose(mine, real, rtol=RTOL, atol=1e-6), \
                    f"{name} {layer}.{h} Δ={distance}: {mine.item()} vs {real.item()}"


def test_positions_describe_the_config(case):
    name, model, m = case
    pos = m.qk(0).positions
    cfg = model.config
    if name.startswith(("gpt2", "opt")):
        assert pos.kind == "learned"
        assert pos.offset == (2 if name.startswith("opt") else 0)
        return
    assert pos.kind == "rotary"
    assert pos.interleaved == name.startswith("gptj")
    if name == "gptj":
        expected_dim = cfg.rotary_dim
    else:
        frac = (getattr(cfg, "rope_parameters", None) or {}).get("partial_rotary_factor", 1.0)
        expected_dim = int(m.d_head * frac)
    assert pos.rotary_dim == expected_dim and pos.inv_freq.shape == (expected_dim // 2,)
    if name in ("phi", "gpt_neox"):
        assert pos.rotary_dim < m.d_head  # partial rotary really is exercised
    if name == "llama-rope_yarn":
        assert pos.attention_scaling != 1.0


def test_gemma3_local_and_global_layers_differ():
    m = hm.load(tiny_model("gemma3_text"))
    local, glob = m.qk(0).positions, m.qk(1).positions
    assert local.sliding_window == 4 and glob.sliding_window is None
    assert not torch.allclose(local.inv_freq, glob.inv_freq)
    assert m.qk(0).q_norm is not None and m.qk(0).k_norm is not None


def test_sliding_window_masks_far_keys():
    m = hm.load(tiny_model("gemma2"))
    assert torch.isinf(hm.attention_logits(m, 0, 0, [5], [6], 4)).all()
    prof = hm.positional_profile(m, 0, 0, max_distance=8)
    assert torch.isinf(torch.as_tensor(prof.logits[4:])).all() and prof.weights[4:].sum() == 0
