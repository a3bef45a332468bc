"""The batched engine against the plain per-head reference, presets, k, errors, save/load.

The engine computes ``(X W_V) (W_O U)`` in float32 blocks where the reference forms
``X (W_V W_O) U`` head by head: their logits agree to rounding only (CPU-dependent), so
scores are compared up to near-ties of the logits (tests/near_ties.py). The integer
problems at the end are exact in any order of arithmetic and are compared bitwise.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

import headmaps as hm
from headmaps import projection as P
from headmaps.scoring import (
    RelationScores,
    ScanResult,
    reference_scores,
    relation_scores,
    scan,
)
from near_ties import assert_scores_up_to_ties, unsure_decisions
from tiny import tiny_model
from tiny_tokenizer import tiny_tokenizer

WORDS = [f"w{i}" for i in range(150)]


@pytest.fixture(scope="module")
def model():
    tok = tiny_tokenizer(WORDS)
    m = tiny_model("llama")  # vocab 211 >= 152 tokens; rows beyond the tokenizer are unused
    return hm.load(m, tokenizer=tok)


def pairs(seed: int, n: int = 60):
    g = np.random.default_rng(seed)
    src = g.choice(len(WORDS), n)  # repeats on purpose: shared source rows
    tgt = g.choice(len(WORDS), n)
    return [(WORDS[s], WORDS[t]) for s, t in zip(src, tgt)]


def ids(model, pairs_):
    enc = lambda w: model.tokenizer.encode(" " + w, add_special_tokens=False)[0]  # noqa: E731
    return (torch.tensor([enc(s) for s, _ in pairs_]), torch.tensor([enc(t) for _, t in pairs_]))


@pytest.mark.parametrize("preset", ["paper", "norms", "embedding", "alone"])
@pytest.mark.parametrize("k", [1, 7])
def test_batched_equals_reference(model, preset, k):
    rels = {"a": pairs(0), "b": pairs(1, 45)}
    # a tiny chunk forces many chunks, chunk borders inside runs of equal sources
    res = scan(model, rels, k=k, projection=preset, chunk_bytes=4 * 8 * 211 * 5)
    opts = P.PRESETS[preset]
    for name, ps in rels.items():
        s, sp = reference_scores(model, *ids(model, ps), k, opts)
        unsure = unsure_decisions(model, *ids(model, ps), k, opts)
        assert_scores_up_to_ties(res[name].scores, s, unsure[0], name)
        assert_scores_up_to_ties(res[name].suppression, sp, unsure[1], name)
    assert res.scores.shape == (2, model.n_layers, model.n_heads)


def test_biases_option_matches_reference(model):
    ps = pairs(2)
    opts = replace(P.PRESETS["paper"], value_bias=True, output_bias=True)
    res = scan(model, {"a": ps}, k=5, projection=opts)
    s, sp = reference_scores(model, *ids(model, ps), 5, opts)
    unsure = unsure_decisions(model, *ids(model, ps), 5, opts)
    assert_scores_up_to_ties(res["a"].scores, s, unsure[0])
    assert res.preset == "custom" and res.options["value_bias"] is True


def test_k_equal_to_vocab_hits_everything(model):
    """With k = |V| every target is in every top-k: all scores are exactly 1."""
    res = relation_scores(model, pairs(6), k=model.vocab_size)
    assert res.n_pairs == 60
    assert (res.scores == 1).all() and (res.suppression == 1).all()


def test_heads_default_to_the_scans_own_tau(model):
    """RelationScores.heads() thresholds at the tau its scores were computed with."""
    grid = np.array([[0.2, 0.4], [0.1, 0.35]], np.float32)
    rs = RelationScores("r", grid, grid, n_pairs=20, k=3, tau=0.3)
    assert rs.heads() == [(0, 1), (1, 1)]
    assert rs.heads(0.15) == [(0, 0), (0, 1), (1, 1)]
    scores = scan(model, {"a": pairs(7)}, k=60, tau=0.3)["a"]
    assert scores.tau == 0.3
    want = [tuple(map(int, x)) for x in np.argwhere(scores.scores >= 0.3)]
    assert scores.heads() == want and 0 < len(want) < len(scores.heads(0.15))
    assert relation_scores(model, pairs(7), k=60, tau=0.3).heads() == want


def test_k_larger_than_vocab_is_a_clear_error(model):
    with pytest.raises(hm.HeadmapsError, match="between 1 and the vocabulary size"):
        relation_scores(model, pairs(3), k=model.vocab_size + 1)


def test_invalid_relation_is_skipped_with_reason(model):
    multi = [(f"{a} {a}", b) for a, b in pairs(4)]  # every source is two tokens
    res = scan(model, {"good": pairs(5), "multi": multi}, k=3)
    assert res.relations == ["good"]
    assert "single tokens" in res.skipped["multi"]
    with pytest.raises(hm.HeadmapsError, match="cannot be scored"):
        relation_scores(model, multi)


def test_unknown_preset_and_option(model):
    with pytest.raises(hm.HeadmapsError, match="unknown preset"):
        scan(model, {"a": pairs(0)}, projection="nope")
    with pytest.raises(hm.HeadmapsError, match="unknown projection option"):
        hm.projection_for(model, colour="red")


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_save_load_round_trip(model, tmp_path, suffix):
    res = scan(model, {"a": pairs(0), "b": pairs(1)}, k=4)
    path = res.save(tmp_path / f"scores.{suffix}")
    assert path.with_suffix(".json").is_file()
    back = ScanResult.load(path)
    np.testing.assert_array_equal(back.scores, res.scores)
    np.testing.assert_array_equal(back.suppression, res.suppression)
    assert back.relations == res.relations and back.k == res.k and back.n_pairs == res.n_pairs
    assert back.options == res.options and back.preset == res.preset
    np.testing.assert_array_equal(back.phi_ctx, res.phi_ctx)
    np.testing.assert_array_equal(back.supp_ctx, res.supp_ctx)
    assert back.tau_ctx == res.tau_ctx
    frame = back.to_frame()
    assert list(frame.columns) == ["relation", "layer", "head", "score", "suppression",
                                   "phi_ctx", "supp_ctx"]
    assert len(frame) == 2 * model.n_layers * model.n_heads
    plain = scan(model, {"a": pairs(0)}, k=4, in_context=False)
    assert plain.phi_ctx is None and list(plain.to_frame().columns)[-1] == "suppression"
    plain.save(tmp_path / "plain")
    assert ScanResult.load(tmp_path / "plain").phi_ctx is None


def test_folder_save_and_load(model, tmp_path):
    res = scan(model, {"a": pairs(0)}, k=4)
    res.save(tmp_path)
    assert (tmp_path / "scores.parquet").is_file()
    assert ScanResult.load(tmp_path).relations == ["a"]


def test_analyses(model):
    res = scan(model, {"a": pairs(0), "b": pairs(1)}, k=40, tau=0.15)
    heads = res.relation_heads()
    expected = {f"{layer}.{h}" for layer, h in np.argwhere(res.scores[0] >= 0.15)}
    assert set(heads["a"]) == expected
    dist = res.layer_distribution()
    assert dist.shape == (model.n_layers, 2) and dist.values.sum() == (res.scores >= 0.15).sum()
    multi = res.multi_relation_heads()
    assert ((res.scores >= 0.15).sum(0) >= 2).sum() == len(multi)
    gqa = res.gqa_agreement()
    assert gqa["group_size"].iloc[0] == model.n_heads // model.n_kv_heads
    top = res.top_heads("a", n=3)
    assert list(top["score"]) == sorted(res.scores[0].ravel())[::-1][:3]
    assert "# headmaps scan" in res.summary_markdown()


@pytest.mark.parametrize("preset", ["paper", "norms"])
def test_few_sources_take_the_other_order_with_same_scores(model, preset):
    """With fewer sources than d_head the engine projects (Y W_O) U instead of Y (W_O U)."""
    few = pairs(7, n=5)
    opts = replace(P.PRESETS[preset], output_bias=True)
    res = scan(model, {"few": few}, k=3, projection=opts, min_pairs=1,
               chunk_bytes=4 * 8 * 64 * 9)
    s, sp = reference_scores(model, *ids(model, few), 3, opts)
    unsure = unsure_decisions(model, *ids(model, few), 3, opts)
    assert_scores_up_to_ties(res["few"].scores, s, unsure[0])
    assert_scores_up_to_ties(res["few"].suppression, sp, unsure[1])


# ---- the engine's inner loop on a wide vocabulary --------------

def test_count_hits_on_a_wide_vocabulary_matches_full_logits():
    """The engine's slices (counts per slice, reused buffer) against full logits, exact integers."""
    from headmaps.scoring.kernel import count_hits

    g = torch.Generator().manual_seed(0)
    H, S, d_head, d_model, V, P_ = 3, 40, 8, 16, 64 * 70 + 17, 90
    Y = torch.randint(-2, 3, (H, S, d_head), generator=g).float()
    W_O = torch.randint(-2, 3, (H, d_head, d_model), generator=g).float()
    U = torch.randint(-2, 3, (d_model, V), generator=g).float()
    rows = torch.sort(torch.randint(0, S, (P_,), generator=g)).values
    logits = torch.einsum("hsd,hde,ev->hsv", Y, W_O, U)[:, rows]  # (H, P, V), exact integers
    targets = torch.randint(0, V, (P_,), generator=g)
    # a third of the targets at the top of head 0's row, a third at the bottom of head 1's
    targets[0::3] = logits[0, 0::3].argmax(-1)
    targets[1::3] = logits[1, 1::3].argmin(-1)
    k = torch.randint(1, 8, (P_,), generator=g)
    hits, supp = count_hits(Y, W_O, lambda cols: U[:, cols], V, rows, targets, k,
                            chunk_bytes=4 * H * d_head * 64 * 40)  # slices of 2560 columns + a rest
    tgt = logits.gather(2, targets.view(1, -1, 1).expand(H, -1, 1)).squeeze(2)
    others = logits.scatter(2, targets.view(1, -1, 1).expand(H, -1, 1), float("nan"))
    above = (others >= tgt.unsqueeze(2)).sum(2)  # NaN: the target left out; ties count against it
    below = (others <= tgt.unsqueeze(2)).sum(2)
    assert torch.equal(hits, above < k)
    assert torch.equal(supp, below < k)
    assert hits.any() and not hits.all() and supp.any()


def test_pair_hits_are_the_per_pair_decisions_in_kept_order(model):
    """``pair_hits``: one bool per (layer, head, kept pair); their means are the scores."""
    rels = {"a": pairs(7, 40), "b": pairs(8, 35)}
    hits: dict = {}
    res = scan(model, rels, k=3, projection="norms", pair_hits=hits)
    opts = P.PRESETS["norms"]
    for name in rels:
        h, s = hits[name]
        prep = hm.relations.prepare(model, rels[name])
        assert h.shape == s.shape == (model.n_layers, model.n_heads, prep.n_pairs)
        np.testing.assert_allclose(h.mean(-1), res[name].scores, atol=1e-6)
        np.testing.assert_allclose(s.mean(-1), res[name].suppression, atol=1e-6)
        for j in (0, 5, prep.n_pairs - 1):  # each pair alone, through the plain reference
            src, tgt = prep.source_ids[j:j + 1], prep.target_ids[j:j + 1]
            one, sup = reference_scores(model, src, tgt, 3, opts)
            unsure = unsure_decisions(model, src, tgt, 3, opts)[..., 0]  # (2, L, H)
            # other float32 arithmetic than the engine's: equal except on near-ties
            sure = ~unsure[0]
            np.testing.assert_array_equal(h[:, :, j][sure], one.astype(bool)[sure])
            sure = ~unsure[1]
            np.testing.assert_array_equal(s[:, :, j][sure], sup.astype(bool)[sure])
