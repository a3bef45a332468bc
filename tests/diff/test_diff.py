"""`hm.diff` on tiny models: itself, a built copy head, remapped vocabularies, bad shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import headmaps as hm
from headmaps.diff import HeadDiff, ShapeMismatchError
from near_ties import options_of, unsure_for_relations
from tiny import tiny_model
from tiny_tokenizer import tiny_tokenizer
from tiny_vocab import set_mapping, vocab_model

WORDS = [f"w{i}" for i in range(150)]
COPY = [(w, w) for w in WORDS]
#: The head replaced by a copy head in ``built``.
COPY_HEAD = (1, 0)


@pytest.fixture(scope="module")
def base():
    return hm.load(tiny_model("llama"), tokenizer=tiny_tokenizer(WORDS))


@pytest.fixture(scope="module")
def itself(base):
    return hm.diff(base, base, {"copy": COPY, "rand": _random_pairs(0)}, types=True)


def _random_pairs(seed: int, n: int = 80) -> list[tuple[str, str]]:
    g = np.random.default_rng(seed)
    return [(WORDS[s], WORDS[t]) for s, t in zip(g.choice(150, n), g.choice(150, n))]


def test_diff_with_itself_marks_nothing(itself):
    d = itself
    n_rand = len(set(_random_pairs(0)))  # duplicate pairs are dropped
    assert d.relations == ["copy", "rand"] and d.n_pairs == {"copy": 150, "rand": n_rand}
    assert d.matching == "position" and d.vocab["equal"] and d.vocab["shared"] == 152
    assert not d.changed.any() and not d.supp_changed.any()
    assert (d.floor == 0).all() and (d.change == 0).all()
    assert all(d.ranking(r).empty for r in d.relations)
    assert d.gained_lost("copy") == {"gained": [], "lost": []}
    h = d.heads
    assert (h["wvo_change"] == 0).all() and (h["wqk_change"] == 0).all()
    assert np.nanmax(h["ov_read_angle"]) < 1e-4 and np.nanmax(h["ov_write_angle"]) < 1e-4
    assert (h["salient_source_overlap"] == 1).all() and (h["salient_mapping_overlap"] == 1).all()
    assert (h["profile_tv"] == 0).all()
    assert d.types and all(gl == {"gained": [], "lost": []}
                           for gl in d.types_gained_lost().values())
    assert (h["type_copying_a"] == h["type_copying_b"]).all()


@pytest.fixture(scope="module")
def built():
    """A tiny Llama and a copy whose head 1.0 maps every word to itself, exactly."""
    model, tok = vocab_model(n_layers=3)
    a = hm.load(model, tokenizer=tok)
    model_b, _ = vocab_model(n_layers=3)
    vocab = tok.get_vocab()
    P = torch.zeros(len(tok), len(tok), dtype=torch.float64)
    for w, i in vocab.items():
        if not w.startswith("["):
            P[i, i] = 1.0
    set_mapping(model_b, *COPY_HEAD, P, preset="paper")
    return a, hm.load(model_b, tokenizer=tok), [(w, w) for w in vocab if not w.startswith("[")]


def test_built_copy_head_comes_out_first_for_copying(built):
    a, b, pairs = built
    d = hm.diff(a, b, {"copying": pairs}, projection="paper", salient=False, qk=False)
    top = d.ranking("copying")
    assert top["head"][0] == "1.0"
    r = d.relations.index("copying")
    assert d.scores_b[r][COPY_HEAD] == 1.0 and d.scores_a[r][COPY_HEAD] < d.tau
    assert d.changed[r][COPY_HEAD] and d.change[r][COPY_HEAD] > 10 * d.floor[r][COPY_HEAD]
    assert "1.0" in d.gained_lost("copying")["gained"]
    # nothing else was touched: no other head moves, in scores or weights
    others = np.ones((3, 2), bool)
    others[COPY_HEAD] = False
    assert not d.changed[r][others].any()
    assert (d.heads["wvo_change"][others] == 0).all() and d.heads["wvo_change"][COPY_HEAD] > 0.5
    assert (d.heads["wqk_change"] == 0).all()
    assert "1.0" in d.summary_markdown()


def test_vocabularies_are_mapped_by_token_string(base):
    """B is A with token ids relabelled and a different word list: the shared words agree."""
    words_b = WORDS[20:] + [f"x{i}" for i in range(20)]  # 130 shared words
    g = np.random.default_rng(1)
    words_b = [words_b[i] for i in g.permutation(len(words_b))]
    tok_b = tiny_tokenizer(words_b)
    va, vb = base.tokenizer.get_vocab(), tok_b.get_vocab()
    V = base.vocab_size
    perm = np.full(V, -1)  # A id -> B id: shared strings first, the rest in order
    for w, i in va.items():
        if w in vb:
            perm[i] = vb[w]
    free = iter(sorted(set(range(V)) - set(perm[perm >= 0].tolist())))
    perm = np.array([p if p >= 0 else next(free) for p in perm])
    hf_b = tiny_model("llama")
    with torch.no_grad():
        for w in (hf_b.model.embed_tokens.weight, hf_b.lm_head.weight):
            w[torch.as_tensor(perm)] = w.clone()
    b = hm.load(hf_b, tokenizer=tok_b)
    d = hm.diff(base, b, {"copy": COPY, "rand": _random_pairs(2, 200)}, salient=False, qk=False)
    assert d.vocab == {"size_a": V, "size_b": V, "equal": False, "shared": 132,
                       "by": "token string"}
    assert d.n_pairs["copy"] == 130
    # B's logit rows are A's, permuted: the engine computes each column at another place of
    # other blocks, so the decisions agree up to near-ties of A's logits (tests/near_ties.py;
    # A's pairs are a superset of the pairs both models share). A flip or two stays within the
    # noise floor: nothing is marked changed.
    unsure = unsure_for_relations(base, {"copy": COPY, "rand": _random_pairs(2, 200)},
                                  options_of(d), k=d.k)
    for r, name in enumerate(d.relations):
        assert (np.abs(d.change[r]) <= unsure[name][0].sum(-1) / d.n_pairs[name] + 1e-6).all()
        assert (np.abs(d.supp_change[r])
                <= unsure[name][1].sum(-1) / d.n_pairs[name] + 1e-6).all()
    assert not d.changed.any()
    assert d.scores_a[0].max() > 0  # something to compare: the relabelled model agrees
    assert "132 token strings shared" in d.summary_markdown()


def test_too_few_shared_pairs_skips_the_relation(base):
    tok_b = tiny_tokenizer([f"x{i}" for i in range(150)])
    b = hm.load(tiny_model("llama"), tokenizer=tok_b)
    with pytest.raises(hm.HeadmapsError, match="no relation can be scored on both"):
        hm.diff(base, b, {"copy": COPY}, salient=False, qk=False)


def test_mismatched_shapes_are_a_one_line_error(base):
    other = hm.load(tiny_model("qwen2"), tokenizer=tiny_tokenizer(WORDS))
    with pytest.raises(ShapeMismatchError) as err:
        hm.diff(base, other)
    msg = str(err.value)
    assert "\n" not in msg and "n_heads 8 vs 4" in msg and "position" in msg


def test_save_load_round_trip(itself, tmp_path):
    itself.save(tmp_path / "d")
    back = HeadDiff.load(tmp_path / "d")
    assert back.to_frame().equals(itself.to_frame())
    assert back.head_frame().equals(itself.head_frame())
    assert back.header() == itself.header()
    assert back.summary_markdown() == itself.summary_markdown()
    with pytest.raises(hm.HeadmapsError, match="folder, not a file"):
        itself.save(tmp_path / "d.parquet")
    with pytest.raises(hm.HeadmapsError, match="no result file"):
        HeadDiff.load(tmp_path / "nothing")


def test_frames_html_and_figure(built, pdf_backend):
    a, b, pairs = built
    d = hm.diff(a, b, {"copying": pairs}, projection="paper", qk=False, n_boot=200)
    f = d.to_frame()
    assert len(f) == 1 * 3 * 2 and set(f.columns) >= {"relation", "layer", "head", "scores_a",
                                                      "scores_b", "change", "floor", "changed"}
    row = f[(f["layer"] == 1) & (f["head"] == 0)].iloc[0]
    assert row.changed and row.scores_b == 1.0
    hf = d.head_frame()
    assert len(hf) == 6 and "salient_mapping_overlap" in hf.columns
    assert hf.set_index(["layer", "head"]).loc[(1, 0), "salient_mapping_overlap"] < 1
    html = d._repr_html_()
    assert "copying" in html and "1.0" in html
    fig = d.figure()
    assert len(fig.axes) >= 3 and "copying" in fig.axes[0].get_title()
    d_none = hm.diff(a, b, None, salient=False, qk=False)
    assert d_none.relations == [] and len(d_none.figure().axes) >= 1
    assert "Relation scores" not in d_none.summary_markdown()


def test_ranking_beyond_floor_orders_by_excess():
    d = HeadDiff("a", "b", 1, 3, ["r"], scores_a=np.array([[[0.1, 0.5, 0.3]]], np.float32),
                 scores_b=np.array([[[0.4, 0.1, 0.32]]], np.float32),
                 supp_a=np.zeros((1, 1, 3), np.float32), supp_b=np.zeros((1, 1, 3), np.float32),
                 floor=np.array([[[0.05, 0.3, 0.05]]], np.float32),
                 supp_floor=np.zeros((1, 1, 3), np.float32),
                 heads={"wvo_change": np.zeros((1, 3), np.float32)})
    top = d.ranking("r")
    assert list(top["head"]) == ["0.0", "0.1"]  # 0.25 and 0.1 beyond; 0.2 within its floor
    assert d.gained_lost("r") == {"gained": ["0.0"], "lost": ["0.1"]}
    assert len(d.ranking("r", changed_only=False)) == 3
    with pytest.raises(hm.HeadmapsError, match="not in this diff"):
        d.ranking("nope")


def test_without_tokenizers_only_the_weights_are_compared(tiny_llama_hm):
    m2 = tiny_model("llama")
    with torch.no_grad():
        m2.model.layers[2].self_attn.o_proj.weight[:, 8:16] *= 2  # head 2.1's W_O doubled
    d = hm.diff(tiny_llama_hm, hm.load(m2), None, salient=False, qk=False)
    assert d.vocab["by"] == "id (no tokenizer)" and d.vocab["equal"]
    w = d.heads["wvo_change"]
    assert w[2, 1] == pytest.approx(1.0, rel=1e-6)  # ||2 W - W|| / ||W||
    assert np.count_nonzero(w) == 1 and d.heads["ov_write_angle"][2, 1] < 1e-4
    with pytest.raises(hm.HeadmapsError, match="has no tokenizer"):
        hm.diff(tiny_llama_hm, tiny_llama_hm)
    for bad in ({"n_boot": 0}, {"alpha": 1.5}):
        with pytest.raises(hm.HeadmapsError, match="must be"):
            hm.diff(tiny_llama_hm, tiny_llama_hm, None, **bad)


def test_each_model_advances_one_shared_stream(base, monkeypatch):
    """The salient operations and the QK half of each model read one vocabulary stream,
    stepped together (headmaps.steps.run_steps), as a report's parts do."""
    from headmaps.projection import vocabulary as V

    made = []
    real = V.vocabulary_sources
    monkeypatch.setattr(V, "vocabulary_sources",
                        lambda m, opts, *a: made.append(m) or real(m, opts, *a))
    d = hm.diff(base, base, None, projection="through")
    assert made == [base, base]  # one stream per model, none made by the parts
    assert d.salient_a is not None and d.profile_a is not None
    assert {"salient", "qk"} <= set(d.seconds)
