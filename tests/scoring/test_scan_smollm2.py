"""Approach A on the real SmolLM2-135M (one model load for the module)."""

from __future__ import annotations

import pytest

import headmaps as hm
from near_ties import assert_scans_agree


@pytest.fixture(scope="module")
def smollm2():
    return hm.load("smollm2-135m")


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["paper", "norms"])
def test_country_to_capital_heads_in_upper_half(smollm2, preset):
    m = smollm2
    res = hm.relation_scores(m, "country_to_capital", projection=preset)
    layer, head, score = res.top_heads(1)[0]
    assert score >= 0.5 and layer >= m.n_layers // 2
    assert res.n_pairs >= 30 and res.k == 10


@pytest.mark.slow
def test_early_exit_equals_dense_for_all_relations(smollm2):
    """The default early exit and the dense engine agree on every relation, layer and head."""
    stats: dict = {}
    e_hits: dict = {}
    d_hits: dict = {}
    early = hm.scan(smollm2, "all", stats=stats, pair_hits=e_hits)
    dense = hm.scan(smollm2, "all", exact_dense=True, pair_hits=d_hits)
    assert early.relations == dense.relations and len(early.relations) >= 15
    # the cascade's blocks and the dense slices are products of other shapes (and continuing
    # rows another association): equal decisions except on near-ties (tests/near_ties.py)
    assert_scans_agree(smollm2, "all", early, e_hits, dense, d_hits)
    assert early.scores.max() >= 0.5  # relation heads found, not an all-miss agreement
    reached = [n / stats["rows"] for _, _, n in stats["stages"]]
    assert reached[0] == 1 and 0 < reached[-1] < 0.2  # most rows stop early, some go to the end
