"""The comparison helpers of tests/near_ties.py excuse near-ties and nothing else."""

from __future__ import annotations

import numpy as np
import pytest

import headmaps as hm
from headmaps.scoring import scan
from near_ties import (
    assert_pair_hits_agree,
    assert_ranking_up_to_ties,
    assert_topk_up_to_ties,
    options_of,
    unsure_for_relations,
)
from tiny import tiny_model
from tiny_tokenizer import tiny_tokenizer

WORDS = [f"w{i}" for i in range(150)]


def test_ranking_allows_swaps_within_ties_and_at_the_cut_only():
    vals = np.array([5.0, 4.0, 3.0 + 1e-9, 3.0, 1.0])
    assert_ranking_up_to_ties([1, 2, 3, 4, 5], vals, [1, 2, 4, 3, 5], vals, 1e-6)
    assert_ranking_up_to_ties([1, 2, 3], [5.0, 4.0, 3.0], [1, 2, 9], [5.0, 4.0, 3.0], 1e-6)
    with pytest.raises(AssertionError):  # a swap across a clear gap
        assert_ranking_up_to_ties([1, 2, 3], vals[:3], [2, 1, 3], vals[:3], 1e-6)
    with pytest.raises(AssertionError):  # values beyond the tolerance
        assert_ranking_up_to_ties([1, 2], [5.0, 4.0], [1, 2], [5.0, 3.9], 1e-6)
    full = np.array([0.0, 2.0, 1.0, 2.0 + 1e-9])
    assert_topk_up_to_ties([1, 3], full, 1e-6)
    assert_topk_up_to_ties([3, 1], full, 1e-6)
    with pytest.raises(AssertionError):
        assert_topk_up_to_ties([1, 2], full, 1e-6)


def test_pair_hits_differing_on_a_sure_decision_fail():
    model = hm.load(tiny_model("llama"), tokenizer=tiny_tokenizer(WORDS))
    g = np.random.default_rng(0)
    rel = {"a": [(WORDS[s], WORDS[t]) for s, t in zip(g.choice(150, 60), g.choice(150, 60))]}
    hits: dict = {}
    res = scan(model, rel, k=5, projection="norms", pair_hits=hits)
    same = {"a": tuple(h.copy() for h in hits["a"])}
    assert assert_pair_hits_agree(model, rel, hits, same, options_of(res), k=5) == 0
    unsure = unsure_for_relations(model, rel, options_of(res), k=5)["a"]
    assert unsure.mean() < 0.01  # near-ties are rare: the comparison keeps its power
    layer, head, pair = np.argwhere(~unsure[0])[0]
    same["a"][0][layer, head, pair] ^= True
    with pytest.raises(AssertionError, match="beyond near-ties"):
        assert_pair_hits_agree(model, rel, hits, same, options_of(res), k=5)
