"""Content preferences, positional profiles and the all-heads summary against brute force.

On tiny models the whole vocabulary x vocabulary logit matrix is small, so every ranked
quantity is checked against it, computed through :func:`headmaps.attention_logits`
(itself proved exact against the model in test_qk_exact.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import headmaps as hm
from headmaps.errors import HeadmapsError
from near_ties import assert_ranking_up_to_ties, assert_topk_up_to_ties
from tiny import prefixed_tiny, tiny_model

#: Ranks are compared up to near-ties at the values' own tolerance (rtol 1e-4 of the largest
#: |value|, as the values): the engine's float32 logits (depth d_model = 64) are within
#: ~sqrt(64) 2**-24 ~ 5e-7 of the float64 ones, relative, so 1e-4 leaves a factor 200.
RANK_RTOL = 1e-4


def rank_atol(values) -> float:
    return RANK_RTOL * float(np.abs(np.asarray(values)).max()) + 1e-6


@pytest.fixture(scope="module", params=["llama", "qwen3", "gemma2"])
def tiny_hm(request):
    """Rotary models: at distance 0 the logit is the content-only one.

    Learned positions add P[0].
    """
    return request.param, hm.load(tiny_model(request.param))


def full_logits(m: hm.HeadModel, layer: int, head: int, distance: int = 0) -> torch.Tensor:
    ids = torch.arange(m.vocab_size)
    return hm.attention_logits(m, layer, head, ids, ids, distance).double()


def test_key_side_preference_is_mean_query_logit(tiny_hm):
    name, m = tiny_hm
    layer, head = 1, m.n_heads - 1
    A = full_logits(m, layer, head)  # (V queries, V keys)
    kappa = A.mean(0)
    prefs = hm.attention_preferences(m, layer, head, n_keys=8, n_queries=4, n_pairs=3,
                                     chunk_rows=50)
    assert_topk_up_to_ties(prefs.key_ids, kappa, rank_atol(kappa), what="keys")
    assert np.allclose(prefs.key_scores, kappa[prefs.key_ids].numpy(), rtol=1e-4, atol=1e-6)
    # selectivity: std over keys of each query's logits; the top queries by it
    sel = A.std(1, unbiased=False)
    assert_topk_up_to_ties(prefs.query_ids, sel, rank_atol(sel), what="queries")
    assert np.allclose(prefs.selectivity, sel[prefs.query_ids].numpy(), rtol=1e-4)
    # pairs: the query-specific logit A[a, b] - kappa[b]
    for a, ids, scores in zip(prefs.query_ids, prefs.pair_ids, prefs.pair_scores):
        spec = A[a] - kappa
        assert_topk_up_to_ties(ids, spec, rank_atol(spec), what=f"pairs of query {int(a)}")
        assert np.allclose(scores, spec[ids].numpy(), rtol=1e-4, atol=1e-6)


def test_rotary_profile_is_mean_logit_over_token_pairs():
    m = hm.load(tiny_model("phi"))  # partial rotary, biases, parallel block
    layer, head = 2, 1
    prof = hm.positional_profile(m, layer, head, max_distance=6, chunk_rows=64)
    expected = [full_logits(m, layer, head, d).mean().item() for d in range(7)]
    assert np.allclose(prof.logits, expected, rtol=1e-4, atol=1e-6)
    w = np.exp(np.array(expected) - max(expected))
    assert np.allclose(prof.weights, w / w.sum(), atol=1e-6)
    assert prof.mean_prev_mass == pytest.approx(prof.weights[1])
    assert prof.preferred_distance == int(np.argmax(expected))


def test_learned_profile_uses_position_embeddings():
    m = hm.load(tiny_model("opt"))
    prof = hm.positional_profile(m, 1, 0, max_distance=5)
    qk = m.qk(1)
    # the mean source at query position 5 and key positions 5 - d, through the model's path
    ids = torch.arange(m.vocab_size)
    from headmaps import projection as P

    x_mean = P.base_sources(m, ids, P.PRESETS[P.DEFAULT_PRESET]).mean(0)
    pe = qk.positions.embedding.float()
    xq = qk.input_norm(x_mean + pe[5 + 2])
    qv = xq @ qk.W_Q[0].float() + qk.b_Q[0].float()
    for d in range(6):
        xk = qk.input_norm(x_mean + pe[5 - d + 2])
        kv = xk @ qk.W_K[0].float() + qk.b_K[0].float()
        assert prof.logits[d] == pytest.approx(float(qv @ kv) * qk.scale, rel=1e-4, abs=1e-6)


def test_summary_matches_single_heads_and_round_trips(tmp_path):
    m = hm.load(tiny_model("gemma3_text"))
    res = hm.attention_summary(m, max_distance=6, n_keys=4, n_queries=3, n_pairs=2, chunk_rows=40)
    assert res.profile.shape == (m.n_layers, m.n_heads, 7)
    one = hm.attention_preferences(m, 2, 3, n_keys=4, n_queries=3, n_pairs=2)
    two = res.preferences(2, 3)
    # other chunking (chunk_rows) and batching: the same keys up to near-ties of the scores,
    # which agree to rtol 1e-5 as the profiles below
    assert_ranking_up_to_ties(one.key_ids, one.key_scores, two.key_ids, two.key_scores,
                              1e-5 * float(np.abs(one.key_scores).max()))
    assert np.allclose(hm.positional_profile(m, 2, 3, max_distance=6).logits, res.profile[2, 3],
                       rtol=1e-5)
    frame = res.to_frame()
    assert len(frame) == m.n_layers * m.n_heads
    assert {"layer", "head", "kind", "prev_mass", "self_mass", "preferred_distance",
            "top_key"} <= set(frame)
    for path in (tmp_path / "out", tmp_path / "a.csv"):
        res.save(path)
        back = hm.AttentionSummary.load(path)
        for name in back._ARRAYS:
            assert np.array_equal(getattr(back, name), getattr(res, name)), name
        assert back.positions == res.positions and back.strings == res.strings
        assert back.preferences(1, 0).key_tokens == res.preferences(1, 0).key_tokens


@pytest.mark.parametrize("arch", ["llama", "gemma3_text"])
def test_summary_from_the_streams_queries_equals_its_own(arch, monkeypatch):
    """After a prefix the QK half takes each layer's queries and keys from the stream's
    pass where the stream goes on to the next layer, and gives what its own products give,
    up to near-ties of float32 rounding."""
    from headmaps import projection as P

    m, opts = prefixed_tiny(arch)
    args = dict(projection=opts, max_distance=6, n_keys=4, n_queries=3, n_pairs=2,
                chunk_rows=40)
    taken, real = [], P.Sources.queries_keys

    def spy(self, layer):
        out = real(self, layer)
        taken.append(out is not None)
        return out

    monkeypatch.setattr(P.Sources, "queries_keys", spy)
    tapped = hm.attention_summary(m, **args)
    assert taken == [True] * (m.n_layers - 1)  # the stream never passes the last block
    hm.attention_summary(m, [1], **args)
    assert len(taken) == m.n_layers - 1  # one layer: passing its block would cost more
    monkeypatch.setattr(P.Sources, "queries_keys", lambda self, layer: None)
    own = hm.attention_summary(m, **args)
    for ids, vals in (("key_ids", "key_scores"), ("query_ids", "selectivity"),
                      ("pair_ids", "pair_scores")):
        a, b = getattr(own, vals), getattr(tapped, vals)
        assert_ranking_up_to_ties(getattr(own, ids), a, getattr(tapped, ids), b,
                                  rank_atol(a), what=ids)
    for name in ("profile", "sampled", "key_spread"):
        assert np.allclose(getattr(tapped, name), getattr(own, name), rtol=RANK_RTOL,
                           atol=1e-6), name


def test_load_rejects_other_results(tmp_path):
    m = hm.load(tiny_model("llama"))
    hm.salient_all(m, layers=[0], n_tokens=2, n_mappings=1).save(tmp_path)
    with pytest.raises(HeadmapsError, match="not a headmaps attention summary"):
        hm.AttentionSummary.load(tmp_path / "salient.parquet")


def test_bad_arguments_are_clear():
    m = hm.load(tiny_model("gpt2"))
    with pytest.raises(HeadmapsError, match="max_distance"):
        hm.positional_profile(m, 0, 0, max_distance=64)  # 64 positions: 0..63
    with pytest.raises(HeadmapsError, match="n_keys"):
        hm.attention_preferences(m, 0, 0, n_keys=0)
    with pytest.raises(HeadmapsError, match="distance"):
        hm.attention_logits(m, 0, 0, [1], [2], -1)
    with pytest.raises(IndexError, match="head 9"):
        hm.attention_preferences(m, 0, 9)


def test_lazy_path_reads_qk_tensors_layer_by_layer(tmp_path):
    model = tiny_model("llama").float()
    model.save_pretrained(tmp_path, max_shard_size="30KB")
    lz, ea = hm.load(tmp_path, lazy=True), hm.load(model)
    store = lz.adapter.store
    store.trace = []
    q = lz.qk(1)
    names = {n for n, _ in store.trace}
    p = "model.layers.1."
    assert names == {p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight",
                     p + "input_layernorm.weight"}
    assert torch.equal(q.W_Q, ea.qk(1).W_Q) and torch.equal(q.W_K, ea.qk(1).W_K)
    a = hm.attention_summary(lz, max_distance=4)
    b = hm.attention_summary(ea, max_distance=4)
    assert np.allclose(a.profile, b.profile, rtol=1e-5, atol=1e-7)
    assert np.array_equal(a.key_ids, b.key_ids)


@pytest.mark.parametrize("arch", ["phi", "opt"])
def test_sampled_profile_is_mean_softmax_over_sampled_sequences(arch):
    from headmaps.attention.compute import sample_ids

    m = hm.load(tiny_model(arch))
    layer, head, D, n = 1, 2, 5, 7
    res = hm.attention_summary(m, [layer], max_distance=D, n_samples=n, seed=4)
    prof = res.profile_at(layer, head)
    qi, ki = sample_ids(torch.ones(m.vocab_size, dtype=torch.bool), n, D + 1, 4 + layer)
    expected = np.zeros(D + 1)
    for a, keys in zip(qi.tolist(), ki.tolist()):
        # query at position D, key for distance d at position D - d (learned positions use them)
        s = torch.stack([hm.attention_logits(m, layer, head, [a], [keys[d]], d,
                                             query_position=D)[0, 0]
                         for d in range(D + 1)])
        expected += torch.softmax(s.double(), 0).numpy() / n
    assert np.allclose(prof.sampled, expected, rtol=1e-4, atol=1e-6)
    assert prof.sampled.sum() == pytest.approx(1, abs=1e-5)


@pytest.mark.slow
def test_smollm2_layer1_previous_token_head():
    """On the real SmolLM2-135M, head 1.0 is a static previous-token head (its real attention
    at distance 1 is among the 10 highest on random tokens: docs/results/attention.md); with
    the default projection its layer holds the model's clearest previous-token head, 1.2."""
    m = hm.load("smollm2-135m")
    res = hm.attention_summary(m, [1], max_distance=16, n_keys=3, n_queries=2, n_pairs=2,
                               n_samples=64)
    prof = res.profile_at(1, 0)
    assert prof.preferred_distance == 1 and prof.sampled_prev_mass > 0.4
    profiles = [res.profile_at(1, h) for h in range(m.n_heads)]
    best = max(profiles, key=lambda p: p.prev_mass)
    assert best.kind() == "previous-token" and best.prev_mass > 0.5
    flat = [p for p in profiles if p.preferred_distance != 1]
    assert max(p.prev_mass for p in flat) < prof.prev_mass
