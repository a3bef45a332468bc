"""Salient operations (approach B) against a plain implementation that forms W_VO and M."""

from __future__ import annotations

import html
import re

import numpy as np
import pytest
import torch

import headmaps as hm
from headmaps import projection as P
from headmaps.errors import HeadmapsError
from headmaps.salient import SalientAll, salient_all, salient_operations
from headmaps.salient.tokens import visible
from near_ties import assert_ranking_up_to_ties, assert_topk_up_to_ties
from tiny import tiny_model
from tiny_vocab import PUNCT, vocab_model

#: Ranks are compared up to near-ties (tests/near_ties.py) at the values' own tolerance:
#: the engine's float32 products (depth d_model = 64) are within ~sqrt(64) 2**-24 ~ 5e-7 of
#: the float64 plain ones, relative to the largest value, so rtol 1e-4 leaves a factor 200.
RANK_RTOL = 1e-4


def plain_full(model, layer, head, preset="paper", **options):
    """The obvious computation in float64: full W_VO (d x d), saliency (V,) and M (V x V)."""
    opts = hm.projection_for(model, preset, **options).for_salient().options
    ids = torch.arange(model.vocab_size)
    a = model.attention(layer)
    X = P.layer_sources(P.base_sources(model, ids, opts, layer), a, opts).double()
    W_V, W_O = (w.double() for w in model.ov(layer, head))
    b_v, b_o = P.layer_biases(a, opts)
    Z = X @ (W_V @ W_O)
    if b_v is not None:
        Z = Z + b_v[model.kv_head(head)].double() @ W_O
    if b_o is not None:
        Z = Z + b_o.double()
    sal = Z.norm(dim=-1) / X.norm(dim=-1)
    return sal, Z @ P.output_basis(model, opts, a).double()


def assert_like_plain(ops, model, layer, head, preset="paper", score_atol=1e-5, **options):
    """``ops`` are the plain top sources and targets up to near-ties of the float64 values.

    The targets are checked on the rows of the sources ``ops`` chose (a near-tie may swap
    a source in or out of the list), the values at rtol 1e-4 as before.
    """
    sal, M = plain_full(model, layer, head, preset, **options)
    assert_topk_up_to_ties(ops.token_ids, sal, RANK_RTOL * sal.abs().max(), what="sources")
    np.testing.assert_allclose(ops.saliency, sal[ops.token_ids].numpy(), rtol=1e-4)
    rows = M[torch.as_tensor(ops.token_ids)]
    assert_topk_up_to_ties(ops.target_ids, rows, RANK_RTOL * rows.abs().amax(-1).numpy(),
                           what="targets")
    want = rows.gather(1, torch.as_tensor(ops.target_ids)).numpy()
    np.testing.assert_allclose(ops.scores, want, rtol=1e-4, atol=score_atol)


def assert_same_operations(got, one, rtol=1e-5, atol=1e-6):
    """Two float32 computations of one head's operations (other batching) agree up to
    near-ties: sources ranked alike, and each source both lists hold has the same targets."""
    assert_ranking_up_to_ties(got.token_ids, got.saliency, one.token_ids, one.saliency,
                              rtol * np.abs(one.saliency).max(), "sources")
    row = {t: j for j, t in enumerate(one.token_ids.tolist())}
    for i, t in enumerate(got.token_ids.tolist()):
        if t in row:
            b = one.scores[row[t]]
            assert_ranking_up_to_ties(got.target_ids[i], got.scores[i], one.target_ids[row[t]], b,
                                      rtol * np.abs(b).max() + atol, f"targets of {t}")


@pytest.fixture(scope="module")
def llama():
    return hm.load(tiny_model("llama"))


@pytest.mark.parametrize("preset", ["paper", "norms", "embedding"])
@pytest.mark.parametrize("layer,head", [(0, 0), (1, 3), (2, 7)])
def test_agrees_with_plain_implementation(llama, preset, layer, head):
    ops = salient_operations(llama, layer, head, projection=preset)
    assert_like_plain(ops, llama, layer, head, preset)
    assert ops.tokens == [f"<{i}>" for i in ops.token_ids]  # no tokenizer
    assert ops.preset == preset


def test_biases_agree_with_plain_implementation():
    m = hm.load(tiny_model("gpt2"))
    for layer, head in [(0, 1), (2, 3)]:
        ops = salient_operations(m, layer, head, n_tokens=10, n_mappings=7,
                                 projection=hm.projection_for(m, "norms", output_bias=True))
        assert_like_plain(ops, m, layer, head, "norms", score_atol=1e-4, output_bias=True)
        assert ops.preset == "custom"


def test_paper_preset_uses_first_mlp_at_layer0(llama):
    """``paper`` by name, as a resolved Projection or as its options: the first-MLP trick."""
    paper = salient_operations(llama, 0, 2, projection="paper")
    assert paper.options["mlp0_at_layer0"] is True and paper.preset == "paper"
    for same in (hm.projection_for(llama, "paper"), P.PRESETS["paper"]):
        again = salient_operations(llama, 0, 2, projection=same)
        assert again.options == paper.options and again.preset == "paper"
        np.testing.assert_array_equal(again.token_ids, paper.token_ids)
    sal, _ = plain_full(llama, 0, 2, "paper")
    assert_topk_up_to_ties(paper.token_ids, sal, RANK_RTOL * sal.abs().max())
    # without the trick layer 0 reads the raw embedding, as the embedding preset does
    emb = salient_operations(llama, 0, 2, projection="embedding")
    assert not np.array_equal(emb.token_ids, paper.token_ids)
    assert not hm.projection_for(llama, "paper").options.mlp0_at_layer0  # only salient's


def test_batched_equals_per_head_and_chunking(llama):
    res = salient_all(llama, layers=[0, 2], chunk_rows=50)
    assert isinstance(res, SalientAll) and len(res) == 2 * llama.n_heads
    assert res.token_ids.shape == (2, llama.n_heads,
                                   15) and res.target_ids.shape == (2, llama.n_heads, 15, 5)
    for layer in (0, 2):
        for head in range(llama.n_heads):
            one = salient_operations(llama, layer, head)
            assert_same_operations(res[layer, head], one)
    with pytest.raises(IndexError, match="layers: 0, 2"):
        res[1, 0]


def test_save_load_roundtrip(llama, tmp_path):
    res = salient_all(llama, layers=[1], n_tokens=4, n_mappings=3)
    for name in ("salient.parquet", "salient.csv"):
        path = res.save(tmp_path / name)
        back = SalientAll.load(path)
        assert back.layers == [1] and back.n_heads == llama.n_heads
        np.testing.assert_array_equal(back.token_ids, res.token_ids)
        np.testing.assert_array_equal(back.target_ids, res.target_ids)
        np.testing.assert_allclose(back.scores, res.scores, rtol=1e-6)
        assert back[1, 5].tokens == res[1, 5].tokens
        assert back.header()["preset"] == P.DEFAULT_PRESET
    assert len(res.to_frame()) == 1 * llama.n_heads * 4 * 3
    assert SalientAll.load(tmp_path).layers == [1]  # folder -> salient.parquet


def test_range_and_option_errors(llama):
    with pytest.raises(IndexError, match="heads 0..7"):
        salient_operations(llama, 0, 8)
    with pytest.raises(IndexError, match="layers 0..2"):
        salient_operations(llama, 3, 0)
    with pytest.raises(HeadmapsError, match="tokenizer"):
        salient_operations(llama, 0, 0, skip_nonwords=True)
    with pytest.raises(HeadmapsError, match="skip_nonwords"):
        salient_operations(llama, 0, 0, skip_nonwords="sideways")


@pytest.fixture(scope="module")
def worded():
    model, tok = vocab_model()
    return hm.load(model, tokenizer=tok), tok


def test_token_strings_and_nonword_filter(worded):
    m, tok = worded
    junk = set(PUNCT) | {"[UNK]", "[PAD]"}
    ops = salient_operations(m, 1, 1, n_tokens=len(tok), n_mappings=len(tok))
    assert set(ops.tokens) >= junk  # without the filter every token shows up
    both = salient_operations(m, 1, 1, n_tokens=200, n_mappings=200, skip_nonwords=True)
    assert not set(both.tokens) & junk
    assert not {t for ts in both.targets for t in ts} & junk
    assert len(both.tokens) == len(tok) - len(junk)
    src = salient_operations(m, 1, 1, n_tokens=200, n_mappings=200, skip_nonwords="source")
    assert not set(src.tokens) & junk and {t for ts in src.targets for t in ts} & junk
    assert src.skip_nonwords == "source"
    # the same head without filter: saliency of the kept tokens is unchanged
    full = dict(zip(ops.tokens, ops.saliency))
    for t, s in zip(both.tokens, both.saliency):
        assert s == pytest.approx(full[t], rel=1e-6)


def test_text_and_dict(worded):
    m, _ = worded
    ops = salient_operations(m, 1, 0, n_tokens=3, n_mappings=2)
    table = ops.text()
    assert table.splitlines()[0].split()[:3] == ["#", "saliency", "token"]
    assert len(table.splitlines()) == 2 + 3
    d = ops.to_dict()
    assert len(d["tokens"]) == 3 and len(d["tokens"][0]["mappings"]) == 2
    back = type(ops).from_dict(d)
    assert back.tokens == ops.tokens and np.array_equal(back.target_ids, ops.target_ids)


def test_salient_all_repr_html(llama):
    res = salient_all(llama, layers=[0, 2], n_tokens=4, n_mappings=2)
    page = res._repr_html_(max_heads=5, n_tokens=2)
    assert "layers 0, 2 x" in page and f"{2 * llama.n_heads - 5} more heads" in page
    heads = re.findall(r"<tr>\s*<td>(\d+\.\d+)</td>", page)
    assert heads == ["0.0", "0.1", "0.2", "0.3", "0.4"]
    one = res[0, 1]
    expected = ", ".join(f"{visible(s)} → {visible(t[0])}" for s, t in
                         zip(one.tokens[:2], one.targets[:2]))
    assert f"<td>{html.escape(expected)}</td>" in page
