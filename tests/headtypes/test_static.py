"""Static head-type scores on tiny models with heads built by hand to be a type."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import headmaps as hm
from headmaps import projection as P
from headmaps.cli import main
from headmaps.experiments import behaviour as B
from headmaps.headtypes import static as S
from headmaps.headtypes.validate import auroc, compare, positives
from headmaps.models import qk as Q
from tiny import tiny_model

OPTS = P.PRESETS["norms"]


def _cols(head: int, dh: int) -> slice:
    return slice(head * dh, (head + 1) * dh)


def make_copying(model, layer: int, head: int) -> None:
    """Set ``W_O^h = W_V^T G^T`` with ``G = U_S X_S``: the token-space OV circuit is PSD.

    So the head copies.
    """
    m = hm.load(model)
    ids = S.token_subset(m, None)
    a = m.attention(layer)
    X = P.layer_sources(P.base_sources(m, ids, OPTS, layer), a, OPTS)
    G = P.output_basis(m, OPTS, a, columns=ids) @ X
    W_V = a.W_V[m.kv_head(head)].to(G.dtype)
    W_O = W_V.T @ G.T  # (dh, d)
    o = model.model.layers[layer].self_attn.o_proj
    with torch.no_grad():
        o.weight[:, _cols(head, m.d_head)] = (W_O / W_O.norm() * 10).T.to(o.weight.dtype)


def make_previous_token(model, layer: int, head: int, size: float = 60.0) -> None:
    """Constant query and key (from biases only) whose rotary logit peaks at distance 1."""
    m = hm.load(model)
    attn = model.model.layers[layer].self_attn
    dh, kv = m.d_head, m.kv_head(head)
    qk = m.qk(layer)
    k = torch.zeros(dh, dtype=torch.float64)
    k[: dh // 2] = size  # first member of every rotary pair
    q = Q.rotate(k[None, None, :], qk.positions, -1.0)[0, 0]  # rotate(q, Δ=1) == k
    with torch.no_grad():
        attn.q_proj.weight[_cols(head, dh)] = 0
        attn.k_proj.weight[_cols(kv, dh)] = 0
        attn.q_proj.bias[_cols(head, dh)] = q.to(attn.q_proj.bias.dtype)
        attn.k_proj.bias[_cols(kv, dh)] = k.to(attn.k_proj.bias.dtype)


@pytest.fixture(scope="module")
def built():
    """Tiny Qwen2 (rotary, q/k biases, 4 heads, 2 KV heads, 3 layers) with heads of known type.

    0.2: previous-token; 1.1: copying OV whose keys read what 0.2 writes (induction);
    2.3: copying; 2.2: queries equal to its keys (self-preference, duplicate-token).
    """
    model = tiny_model("qwen2")
    make_previous_token(model, 0, 2)
    make_copying(model, 2, 3)
    make_copying(model, 1, 1)
    m = hm.load(model)
    with torch.no_grad():
        # 1.1 reads the output of 0.2 through its key: W_K = (W_V W_O of 0.2)^T-ish
        W_V, W_O = m.ov(0, 2)
        k_proj = model.model.layers[1].self_attn.k_proj
        dh = m.d_head
        k_proj.weight[_cols(m.kv_head(1), dh)] = ((W_V @ W_O).T @ W_V).T.to(k_proj.weight.dtype) * 5
        # 2.2: queries equal to its keys
        attn = model.model.layers[2].self_attn
        kv = m.kv_head(2)
        attn.q_proj.weight[_cols(2, dh)] = attn.k_proj.weight[_cols(kv, dh)] * 8
        attn.q_proj.bias[_cols(2, dh)] = attn.k_proj.bias[_cols(kv, dh)] * 8
    return model


def _argmax(a: np.ndarray) -> tuple[int, int]:
    return tuple(int(x) for x in np.unravel_index(np.nanargmax(a), a.shape))


def test_eigen_copying_ranks_the_constructed_heads_first(built):
    m = hm.load(built)
    src = P.Sources(m, S.token_subset(m, None), OPTS)
    eig = S.eigen_copying(m, src)
    assert eig.shape == (3, 4)
    assert eig[2, 3] > 0.99 and eig[1, 1] > 0.99  # PSD token-space circuit: all eigenvalues >= 0
    assert eig[2, 3] == eig[2].max() and eig[1, 1] == eig[1].max()
    others = np.delete(eig.ravel(), [1 * 4 + 1, 2 * 4 + 3])
    assert others.max() < 0.9


def test_eigen_copying_equals_full_matrix_eigenvalues(built):
    m = hm.load(built)
    ids = S.token_subset(m, 50)
    src = P.Sources(m, ids, OPTS)
    eig = S.eigen_copying(m, src, layers=[1])
    a = m.attention(1)
    X = P.layer_sources(src.at(1), a, OPTS)
    U = P.output_basis(m, OPTS, a, columns=ids)
    for h in range(m.n_heads):
        W_V, W_O = m.ov(1, h)
        # (50, 50), rank d_head
        lam = torch.linalg.eigvals((X @ W_V.float() @ W_O.float() @ U).double())
        assert eig[0, h] == pytest.approx(float(lam.sum().real / lam.abs().sum()), abs=1e-3)


def test_previous_token_static_and_behaviour_agree(built):
    m = hm.load(built)
    src = P.Sources(m, S.token_subset(m, None), OPTS)
    prev = S.previous_token_mass(m, src, max_distance=8)
    assert _argmax(prev) == (0, 2) and prev[0, 2] > 0.9
    ids = torch.randint(3, m.vocab_size, (2, 40), generator=torch.Generator().manual_seed(0))
    beh = B.previous_token_scores(m, ids)
    assert _argmax(beh) == (0, 2) and beh[0, 2] > 0.9


def test_k_composition_and_induction_rank_the_circuit_first(built):
    res = hm.head_types(hm.load(built), relations=False, n_partners=4, max_distance=8)
    kc = S.k_composition(hm.load(built), [(0, 2)])
    assert np.isnan(kc[0]).all()  # nothing composes with a head of its own layer
    assert _argmax(kc[..., 0]) in {(1, 0), (1, 1)}  # 1.0 shares 1.1's key head
    # 1.1's keys read 0.2's output but its queries are random: K-composition sees the
    # circuit, the query-aware induction score (static.induction_match) must not call it
    # an induction head (tests/experiments/test_behaviour_built.py builds a real one)
    assert _argmax(res.components["k_composition"]) in {(1, 0), (1, 1)}
    assert not res.labels["induction"].any()
    assert res.top("previous_token", 1)[0][:2] == (0, 2)
    assert res.heads_of("previous_token") == [(0, 2)]
    assert res.top("copying", 2)[0][:2] in {(1, 1), (2, 3)}


def test_self_preference_ranks_the_symmetric_head_first(built):
    m = hm.load(built)
    sp = S.self_preference(m, P.Sources(m, S.token_subset(m, None), OPTS))
    assert _argmax(sp) == (2, 2) and sp[2, 2] > 2
    res = hm.head_types(m, relations=False, n_partners=4, max_distance=8)
    assert res.top("duplicate_token", 1)[0][:2] == (2, 2)


def test_attention_patterns_are_the_models_own(built):
    m = hm.load(built)
    ids = torch.randint(3, m.vocab_size, (2, 12), generator=torch.Generator().manual_seed(1))
    A = B.attention_patterns(m, ids)
    with torch.no_grad():
        ref = built(input_ids=ids, output_attentions=True).attentions
    assert A.shape == (3, 2, 4, 12, 12)
    for layer in range(3):
        assert torch.allclose(A[layer], ref[layer].float(), atol=1e-6)
    assert torch.allclose(A.sum(-1), torch.ones(()), atol=1e-5)


def test_induction_detector_on_repeated_tokens(built):
    m = hm.load(built)
    pool = torch.arange(3, m.vocab_size)
    ids = B.repeated_random(m, 10, 3, seed=0, pool=pool)
    assert ids.shape == (3, 20) and torch.equal(ids[:, :10], ids[:, 10:])
    assert all(len(set(r[:10].tolist())) == 10 for r in ids)
    ind, dup = B.repeat_scores(m, 10, 3, seed=0, pool=pool)
    A = B.attention_patterns(m, ids)
    expected_ind = float(np.mean([A[1, :, 1, 10 + j, j + 1].mean() for j in range(9)]))
    assert ind[1, 1] == pytest.approx(expected_ind, abs=1e-6)
    expected_dup = float(A[2, :, 0, 10 + torch.arange(10), torch.arange(10)].mean())
    assert dup[2, 0] == pytest.approx(expected_dup, abs=1e-6)
    # the previous-token head attends to the token before: from n+j that is never j+1 or j (n > 2)
    assert ind[0, 2] < 0.05 and dup[0, 2] < 0.05


def test_result_round_trip_and_frame(built, tmp_path):
    res = hm.head_types(hm.load(built), relations=False, n_partners=4, max_distance=8)
    assert set(res.skipped) == {"copying_relation", "copying_suppression", "successor_relation"}
    assert np.isnan(res.scores["successor"]).all()
    assert res.thresholds["copying"].startswith("robust z of the eigen copying score >= 3.5")
    frame = res.to_frame()
    assert len(frame) == 12 and {"previous_token", "is_induction", "c_eigen_copying",
                                 "types"} <= set(frame.columns)
    assert "previous_token" in frame.set_index(["layer", "head"]).loc[(0, 2), "types"]
    back = hm.HeadTypes.load(res.save(tmp_path / "t.parquet"))
    for t in res.scores:
        assert np.allclose(back.scores[t], res.scores[t], equal_nan=True)
        assert np.array_equal(back.labels[t], res.labels[t])
    assert back.params == res.params and back.thresholds == res.thresholds


def test_lazy_path_gives_the_same_types(built, tmp_path):
    model = built.float()
    model.save_pretrained(tmp_path, max_shard_size="30KB")
    lz, ea = hm.load(tmp_path, lazy=True), hm.load(model)
    a = hm.head_types(lz, relations=False, n_partners=4, max_distance=8)
    b = hm.head_types(ea, relations=False, n_partners=4, max_distance=8)
    for t in a.scores:
        assert np.allclose(a.scores[t], b.scores[t], rtol=1e-4, atol=1e-5, equal_nan=True), t
    built.double()


def test_validation_metrics():
    s = np.array([0.9, 0.8, 0.1, 0.2, 0.3])
    assert auroc(s, np.array([1, 1, 0, 0, 0], bool)) == 1.0
    assert auroc(-s, np.array([1, 1, 0, 0, 0], bool)) == 0.0
    assert auroc(np.zeros(4), np.array([1, 0, 0, 0], bool)) == 0.5
    assert positives(np.arange(40.0), 0.05).sum() == 2


def test_compare_finds_the_constructed_previous_token_head(built):
    m = hm.load(built)
    res = hm.head_types(m, relations=False, n_partners=4, max_distance=8)
    ids = torch.randint(3, m.vocab_size, (2, 40), generator=torch.Generator().manual_seed(0))
    beh = {"previous_token": B.previous_token_scores(m, ids)}
    table = compare(res, beh, top_fraction=0.05, k=1).set_index("type")
    assert table.loc["previous_token", "auroc"] == 1.0
    assert table.loc["previous_token", "precision_at_1"] == 1.0


def test_bad_arguments_are_clear(built):
    with pytest.raises(hm.HeadmapsError, match="n_tokens"):
        hm.head_types(hm.load(built), n_tokens=1)
    with pytest.raises(hm.HeadmapsError, match="profile must be"):
        hm.head_types(hm.load(built), relations=False, profile=np.zeros((3, 4)))


def test_cli_types_prints_the_table(built, tmp_path, capsys):
    built.save_pretrained(tmp_path / "m")
    out = tmp_path / "types.csv"
    assert main(["types", str(tmp_path / "m"), "--no-relations", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "previous_token" in text and "0.2" in text and out.exists()
    assert main(["types", str(tmp_path / "m"), "--tokens", "1"]) == 2


def test_learned_positions_work_and_bound_the_distance():
    m = hm.load(tiny_model("gpt2"))
    res = hm.head_types(m, relations=False, max_distance=16, n_partners=4)
    assert res.scores["previous_token"].shape == (3, 4)
    assert np.isfinite(res.scores["induction"]).all()
    with pytest.raises(hm.HeadmapsError, match="max_distance=64 exceeds"):
        hm.head_types(m, relations=False)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma3_text"])
@pytest.mark.parametrize("preset", ["through", "paper"])
def test_write_keys_equal_the_keys_of_the_formed_write(arch, preset):
    """llama: RMSNorm, grouped keys; gpt2: LayerNorm centring and bias, key bias; gemma3:
    key norm. The factored keys (width d_head) against the keys of ``v @ W_O`` formed and
    normed (width d_model): both in float32, products of different shapes, so relative to
    the keys' size, 1e-4 (float32's 6e-8 grown over sums of a few hundred terms)."""
    m = hm.load(tiny_model(arch))
    opts = hm.projection_for(m, preset).options
    g = torch.Generator().manual_seed(0)
    v = torch.randn(50, m.d_head, generator=g)
    W_O = m.attention(0).W_O[1].float()
    qk = m.qk(1)
    want = Q.keys(qk, Q.layer_input(qk, v @ W_O, opts))
    got = S.write_keys(qk, v, W_O, opts)
    assert got.shape == want.shape
    assert float((got - want).abs().max()) <= 1e-4 * float(want.abs().max())
