"""One resolve: every entry point projects the same way for the same model and arguments.

The rule (explicit option > stored calibration > default) is
:func:`headmaps.projection.resolve`; scan, salient operations, the QK half
(``attention_logits``, ``attention_preferences``, ``attention_summary``), head types and
``analyse`` each record (or compute with) what it returns, with and without a stored
calibration.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import headmaps as hm
from headmaps import projection as P
from headmaps.projection.calibration import Calibration, calibration_path, fingerprint, store
from tiny_vocab import vocab_model

CASES = [
    ({}, "nothing given"),
    ({"preset": "through"}, "a preset"),
    ({"preset": "norms", "fold_norms": False}, "a preset and an override"),
    ({"source": "token_alone", "prefix": "[PAD]", "fold_norms": True}, "overrides only"),
    ({"calibration": False}, "calibration off"),
]


@pytest.fixture(scope="module")
def model():
    m, tok = vocab_model(n_layers=2, seed=3)
    return hm.load(m, tokenizer=tok)


def recorded(model, kw):
    """The projection options each entry point used, by entry point."""
    got = {
        "scan": hm.scan(model, ["copying"], **kw).options,
        "salient_operations": hm.salient_operations(model, 1, 0, **kw).options,
        "attention_summary": hm.attention_summary(model, [1], **kw).options,
        "head_types": hm.head_types(model, relations=False, **kw).options,
    }
    preset = {k: v for k, v in kw.items() if k in ("preset", "calibration")}
    overrides = {k: v for k, v in kw.items() if k not in preset}
    if overrides:
        preset["preset"] = P.explicit(kw.get("preset"), overrides)[0]
    res = hm.analyse(model, relations=["copying"], describe="none", **preset)
    for part in ("scan", "salient", "attention", "types"):
        got[f"analyse.{part}"] = getattr(res, part).options
    return got


@pytest.mark.parametrize("stored", [False, True], ids=["no calibration", "stored calibration"])
def test_every_entry_point_resolves_the_same_projection(model, stored, monkeypatch, tmp_path):
    monkeypatch.setenv("HEADMAPS_CALIBRATIONS", str(tmp_path))
    if stored:
        chosen = P.ProjectionOptions(source="embedding")
        store(Calibration(model_id=model.model_id, fingerprint=fingerprint(model),
                          choice="embedding", options=chosen.to_dict(), median_r=0.5,
                          n_pairs=8), model)
        assert calibration_path(model).is_file()
    for kw, why in CASES:
        overrides = {k: v for k, v in kw.items() if k not in ("preset", "calibration")}
        want, _, info = P.resolve(model, kw.get("preset"), overrides, kw.get("calibration"))
        assert want.prefix != P.AUTO_PREFIX
        if stored and not kw:
            assert info["status"] == "calibrated"
        for entry, options in recorded(model, kw).items():
            assert options == want.to_dict(), f"{entry} with {why}"
        # the functions that return tensors compute with the same options
        q, k = torch.arange(5, 12), torch.arange(3, 20)
        assert torch.equal(hm.attention_logits(model, 1, 0, q, k, **kw),
                           hm.attention_logits(model, 1, 0, q, k, preset=want))
        a = hm.attention_preferences(model, 1, 0, **kw)
        b = hm.attention_preferences(model, 1, 0, preset=want)
        assert np.array_equal(a.key_ids, b.key_ids) and np.allclose(a.key_scores, b.key_scores)


def test_salient_paper_keeps_the_reference_layer0_choice(model):
    """The one documented difference: salient operations under the explicit ``paper`` preset
    read the first-MLP trick at layer 0 too, as the reference code does."""
    opts, name, _ = P.resolve(model, "paper", salient=True)
    assert opts.mlp0_at_layer0 and name == "paper"
    assert hm.salient_operations(model, 1, 0, preset="paper").options == opts.to_dict()
    assert not P.resolve(model, "paper")[0].mlp0_at_layer0


def test_auto_prefix_is_the_rule_token_everywhere(model):
    token = P.document_prefix(model.tokenizer)[0]
    opts, name, _ = P.resolve(model, "through")
    assert opts.prefix == token and name == "through"
    assert P.label(name, opts) == f"through (after {token})"
    direct = P.Sources(model, torch.arange(4, 9), P.PRESETS["through"]).at(1)
    explicit = P.Sources(model, torch.arange(4, 9), opts).at(1)
    assert torch.equal(direct, explicit)
