"""Composition scores against explicit matrices, on tiny random models.

Tolerances: the library's big products run in float32, the references here in float64,
so every comparison is relative, 1e-4 (raw) or 1e-3 (through the sample).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import headmaps as hm
from headmaps import projection as P
from headmaps.composition import compute as C
from headmaps.composition.run import sample_tokens
from tiny import tiny_model


def _D(norm, d: int) -> torch.Tensor:
    """``C diag(γ)`` as a full ``d x d`` matrix (the reference forms it; the library never)."""
    D = torch.diag(norm.weight.double())
    if norm.kind == "layernorm":
        D = (torch.eye(d, dtype=torch.float64) - 1.0 / d) @ D
    return D


def _gain(norm, dh: int) -> torch.Tensor:
    return torch.ones(dh, dtype=torch.float64) if norm is None else norm.weight.double()


def raw_reference(m, lg: int, g: int, lh: int, h: int) -> dict[str, float]:
    """Elhage's three scores from the full ``d x d`` matrices, folded as the docstring says."""
    d, dh, kv = m.d_model, m.d_head, m.spec.kv_index()
    ag, qk, ah = m.attention(lg), m.qk(lh), m.attention(lh)
    post = ag.post_norm.weight.double() if ag.post_norm is not None else 1.0
    OVg = _D(ag.input_norm, d) @ ag.W_V[kv[g]].double() @ ag.W_O[g].double() * post
    Dh = _D(qk.input_norm, d)
    QK = (Dh @ (qk.W_Q[h].double() * _gain(qk.q_norm, dh))) @ \
        (Dh @ (qk.W_K[kv[h]].double() * _gain(qk.k_norm, dh))).T
    OVh = Dh @ ah.W_V[kv[h]].double() @ ah.W_O[h].double()
    return {"K": float((OVg @ QK.T).norm() / (OVg.norm() * QK.norm())),
            "Q": float((OVg @ QK).norm() / (OVg.norm() * QK.norm())),
            "V": float((OVg @ OVh).norm() / (OVg.norm() * OVh.norm()))}


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma3_text"])
def test_raw_scores_equal_the_full_matrices(arch):
    """llama: grouped-query attention (8 heads, 2 key heads); gpt2: LayerNorm centring;
    gemma3: post-attention and query/key norms."""
    m = hm.load(tiny_model(arch))
    res = hm.composition(m, n_tokens=40)
    pairs = [(0, 0, 1, m.n_heads - 1), (0, m.n_heads - 1, 2, 0), (1, 1, 2, 2)]
    for lg, g, lh, h in pairs:
        want = raw_reference(m, lg, g, lh, h)
        for k in "QKV":
            assert res.scores["raw"][k][lh, h, lg, g] == pytest.approx(want[k], rel=1e-4), (k, g, h)


def projection_reference(m, opts, ids, lg: int, g: int, lh: int, h: int) -> float:
    """K-composition from the sample's own rows: ``||Q_h K_g^T|| / ||Q_h K̃_h^T||``."""
    from headmaps.models import qk as Q

    kv = m.spec.kv_index()
    src = P.Sources(m, ids, opts)
    ag, qk = m.attention(lg), m.qk(lh)
    Xg = ag.input_norm(src.at(lg)).double()
    post = 1.0
    if ag.post_norm is not None:  # its gain over its median scale on the layer's output
        o = sum(Xg @ ag.W_V[kv[j]].double() @ ag.W_O[j].double() for j in range(m.n_heads))
        post = ag.post_norm.weight.double() / float(
            o.pow(2).mean(-1).add(ag.post_norm.eps).sqrt().median())
    Xg = Xg - Xg.mean(0)
    A = Xg @ ag.W_V[kv[g]].double() @ ag.W_O[g].double() * post  # g's centred writes
    base = src.at(lh).double()
    s_h = float(base.pow(2).mean(-1).add(qk.input_norm.eps).sqrt().median())
    read = A * qk.input_norm.weight.double() / s_h
    Xh = qk.input_norm(base)
    k_raw = Xh @ qk.W_K[kv[h]].double()
    gain = 1.0
    if qk.k_norm is not None:
        s_k = float(k_raw.pow(2).mean(-1).add(qk.k_norm.eps).sqrt().median())
        gain = qk.k_norm.weight.double() / s_k
    Kg = read @ qk.W_K[kv[h]].double() * gain
    q = Q.queries(qk, Xh.float(), torch.tensor([h]))[0].double()
    k = Q.keys(qk, Xh.float(), kv[h:h + 1])[0].double()
    k = k - k.mean(0)
    return float((q @ Kg.T).norm() / (q @ k.T).norm())


@pytest.mark.parametrize("arch", ["llama", "gemma3_text"])
def test_projection_scores_equal_the_sample_reference(arch):
    m = hm.load(tiny_model(arch))
    res = hm.composition(m, n_tokens=60, kinds=("K",), projection="norms")
    opts = P.PRESETS["norms"]
    ids = sample_tokens(m, 60, 0)
    for lg, g, lh, h in [(0, 0, 1, m.n_heads - 1), (0, 1, 2, 0), (1, 2, 2, 1)]:
        want = projection_reference(m, opts, ids, lg, g, lh, h)
        assert res.scores["projection"]["K"][lh, h, lg, g] == pytest.approx(want, rel=1e-3)
    assert set(res.scores["projection"]) == {"K"} or res.kinds == ("K",)


def test_the_methods_agree_on_white_centred_rows():
    """With unit norm gains, rows of zero mean and identity covariance at every layer and
    a typical scale of 1, the projection's numerator is the raw one: projection score =
    raw score x ||W_OV^g|| (its denominator is then Elhage's ||W_QK^h||, ||W_OV^h||)."""
    model = tiny_model("llama")
    with torch.no_grad():
        for layer in model.model.layers:
            layer.input_layernorm.weight.fill_(1.0)
    m = hm.load(model)
    d, n = m.d_model, 4 * m.d_model
    X = torch.randn(n, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    X = X - X.mean(0)
    evals, evecs = torch.linalg.eigh(X.T @ X / n)
    X = X @ evecs @ torch.diag(evals.rsqrt()) @ evecs.T  # white: X^T X / n = I, mean 0
    w_proj = C.writers(m, [0], {0: X})
    w_raw = C.writers(m, [0])
    proj = C.pair_scores(w_proj, C.reader(m, 1, X))
    raw = C.pair_scores(w_raw, C.reader(m, 1), raw=True)
    for k in "QKV":
        want = (raw[k] * w_raw.norm[None, :]).numpy()
        np.testing.assert_allclose(proj[k].numpy(), want, rtol=1e-4)


def test_grouped_query_heads_share_key_side_but_not_query_side():
    """Heads of one key/value group read a write with the same keys: their raw
    K-composition differs only through their queries; V-composition of two query heads
    of one group differs only through W_O. And a writer's value head is its own."""
    m = hm.load(tiny_model("llama"))
    res = hm.composition(m, n_tokens=40, kinds=("K",))
    kv = m.spec.kv_index().tolist()
    assert kv == [0, 0, 0, 0, 1, 1, 1, 1]
    w = C.writers(m, [0])
    a = m.attention(0)
    for g in (0, 5):  # value head 0 and 1
        G = _D(a.input_norm, m.d_model) @ a.W_V[kv[g]].double()
        np.testing.assert_allclose((w.left[g].T @ w.left[g]).numpy(), (G.T @ G).numpy(),
                                   rtol=1e-6, atol=1e-9)
    # K-composition of a head changes when its key head changes: heads 3 and 4 differ
    assert not np.allclose(res.scores["raw"]["K"][1, 3], res.scores["raw"]["K"][1, 4])


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma3_text"])
def test_induction_kind_is_head_types_match_for_every_pair(arch):
    """The composition's induction kind equals headtypes' induction_match on the same
    sample for every pair (grouped keys on llama, centring on gpt2, key and post norms on
    gemma3), and its raw method the same on the embeddings. One code path (the
    InductionMatch stepper), the same rows: float32 rounding only, relative 1e-5."""
    from dataclasses import replace

    from headmaps.headtypes.static import induction_match

    m = hm.load(tiny_model(arch))
    res = hm.composition(m, kinds=("induction",), n_tokens=40)
    ids = sample_tokens(m, 40)
    L, H = m.n_layers, m.n_heads
    every = [(a, b) for a in range(L) for b in range(H)]
    opts = hm.projection_for(m, None).options
    for method, o in (("projection", opts), ("raw", replace(opts, source="embedding", prefix=""))):
        ref = induction_match(m, P.Sources(m, ids, o), every).reshape(L, H, L, H)
        got = res.grid("induction", method)
        assert np.array_equal(np.isnan(got), np.isnan(ref))
        assert np.isnan(got[:, :, -1]).all()  # nothing reads the last layer's writes
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
