"""Calibration on SmolLM2-135M with small bounds (slow: loads the real model)."""

from __future__ import annotations

import pytest

import headmaps as hm
from headmaps.projection import calibration as C


@pytest.mark.slow
def test_calibrate_smollm2_small(smollm2):
    cal = hm.calibrate(smollm2, ["country_to_capital", "copying"], max_pairs=4, n_templates=1,
                       seed=1)
    assert cal.sample["relations"] == {"country_to_capital": 4, "copying": 4}
    assert cal.n_pairs == 8 and len(cal.sample["templates"]) == 1 and cal.sample["seed"] == 1
    names = [c["name"] for c in cal.candidates]
    assert names[:3] == ["paper", "norms", "embedding"] and cal.choice in names
    # SmolLM2 has no biases and embedding scale 1: six distinct block-0 projections, and
    # token_alone alone and after its three special tokens; after <|endoftext|>, the
    # document-start rule's token, it is the `through` preset (tried first, so named so)
    assert len(names) == 10
    assert {n for n in names if "after" in n} == {
        f"token_alone+fold+after {t}" for t in ("<|im_start|>", "<|im_end|>")}
    through = next(c for c in cal.candidates if c["name"] == "through")
    assert through["options"]["prefix"] == "<|endoftext|>"
    winner = next(c for c in cal.candidates if c["name"] == cal.choice)
    assert cal.median_r == pytest.approx(winner["median_r"])
    assert all(c["median_r"] is None or c["median_r"] <= cal.median_r + 0.01
               for c in cal.candidates)
    stored = hm.load_calibration(smollm2)
    assert stored is not None and stored.choice == cal.choice
    assert C.calibration_path(smollm2).name.startswith("smollm2-135m-")
    res = hm.scan(smollm2, "country_to_capital")
    assert res.calibration["choice"] == cal.choice and res.options == cal.options
