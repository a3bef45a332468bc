"""select(): the one path from a "relations" argument to the relations a scorer uses, with k."""

from __future__ import annotations

import pytest
from relations_fakes import FakeModel, FakeTokenizer

import headmaps as hm
from headmaps.relations import MIN_PAIRS, choose_k, default_k, normalise, select

WORDS = [f" w{i}" for i in range(40)]


@pytest.fixture
def model():
    return FakeModel(FakeTokenizer(WORDS), vocab_size=2000)


def some_pairs(n: int, copies: bool = False):
    return [(f"w{i}", f"w{i if copies else (i + 1) % 40}") for i in range(n)]


def test_normalise_forms():
    assert normalise("all") == [(n, n) for n in hm.relations.names()]
    assert normalise("country_to_capital") == [("country_to_capital", "country_to_capital")]
    assert normalise("data/my_set.json") == [("my_set", "data/my_set.json")]
    ps = some_pairs(3)
    assert normalise(ps) == [("custom", ps)]
    assert normalise({"a": ps}) == [("a", ps)]
    with pytest.raises(hm.HeadmapsError, match="unique"):
        normalise(["x/a.json", "y/a.json"])


def test_select_skips_with_one_wording_and_chooses_k(model):
    chosen, skipped = select(model, {"ok": some_pairs(35), "copies": some_pairs(35, True),
                                     "few": some_pairs(5)})
    assert [c.name for c in chosen] == ["ok", "copies"]
    assert [c.k for c in chosen] == [10, 1]  # custom sets: 10, or 1 when every pair is a copy
    assert chosen[0].prepared.n_pairs == 35
    assert skipped == {"few": "only 5 of 5 pairs are single tokens for this model (need "
                              f"{MIN_PAIRS})"}


def test_k_per_relation_and_range(model):
    chosen, _ = select(model, {"a": some_pairs(35), "b": some_pairs(35)}, k={"a": 4}, min_pairs=30)
    assert [c.k for c in chosen] == [4, 10]
    with pytest.raises(hm.HeadmapsError, match="between 1 and the vocabulary size 2000"):
        select(model, {"a": some_pairs(35)}, k=2001)
    prep = hm.relations.prepare(model, some_pairs(35))
    assert choose_k(model, "a", some_pairs(35), 7, prep) == 7


def test_large_vocabularies_get_the_papers_larger_k():
    big = FakeModel(FakeTokenizer(WORDS), vocab_size=200_000)
    assert default_k(big, "copying") == 3 and default_k(big, "country_to_capital") == 25
    assert default_k(big, None, pairs_are_copies=True) == 3


def test_scan_and_dynamic_use_the_same_selection():
    """The engine and the experiments keep the same relations, pairs and k.

    And they word a skip the same way.
    """
    from headmaps.experiments.dynamic import single_token_pairs
    from headmaps.scoring import scan
    from tiny import tiny_model
    from tiny_tokenizer import tiny_tokenizer

    words = [f"w{i}" for i in range(60)]
    m = hm.load(tiny_model("llama"), tokenizer=tiny_tokenizer(words))
    rels = {"a": [(words[i], words[i + 1]) for i in range(40)], "few": [(words[0], words[1])] * 3}
    res = scan(m, rels, k={"a": 5})
    prompts, skipped = single_token_pairs(m, rels, {"a": 5}, None, MIN_PAIRS, 0)
    assert res.skipped == skipped and "single tokens" in skipped["few"]
    assert [p.name for p in prompts] == res.relations and prompts[0].k == res.k["a"] == 5
