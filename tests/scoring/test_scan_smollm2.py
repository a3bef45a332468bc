"""Approach A on the real SmolLM2-135M."""

from __future__ import annotations

import pytest

import headmaps as hm


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["paper", "norms"])
def test_country_to_capital_heads_in_upper_half(smollm2, preset):
    m = smollm2
    res = hm.relation_scores(m, "country_to_capital", preset=preset)
    layer, head, score = res.top_heads(1)[0]
    assert score >= 0.5 and layer >= m.n_layers // 2
    assert res.n_pairs >= 30 and res.k == 10
