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


@pytest.mark.parametrize("stored", [False, True], ids=["no calibration", "stored calibration"])
def test_a_resolved_projection_is_used_as_it_is_and_recorded_everywhere(model, stored,
                                                                        monkeypatch, tmp_path):
    monkeypatch.setenv("HEADMAPS_CALIBRATIONS", str(tmp_path))
    if stored:
        store(Calibration(model_id=model.model_id, fingerprint=fingerprint(model),
                          choice="embedding", options=P.ProjectionOptions(
                              source="embedding").to_dict(), median_r=0.5, n_pairs=8), model)
    proj = hm.projection_for(model)
    assert proj.calibration["status"] == ("calibrated" if stored else "uncalibrated")
    assert str(proj) == proj.label == proj.record()["label"]
    if stored:  # resolved once: the store is not read again
        calibration_path(model).unlink()
    made = {"scan": hm.scan(model, ["copying"], preset=proj),
            "salient_all": hm.salient_all(model, [1], preset=proj),
            "attention_summary": hm.attention_summary(model, [1], preset=proj),
            "head_types": hm.head_types(model, relations=False, preset=proj),
            "composition": hm.composition(model, n_tokens=32, preset=proj),
            "analyse": hm.analyse(model, relations=["copying"], describe="none", preset=proj)}
    for entry, res in made.items():
        assert P.record_of(res) == proj.record(), entry
    if not stored:  # resolving on every call gives the same record
        assert P.record_of(hm.scan(model, ["copying"])) == proj.record()
    fast = hm.scan(model, ["copying"], preset=proj, stream_dtype="float32")
    assert fast.options["stream_dtype"] == "float32"  # how the stream runs may still be given


def test_a_resolved_projection_refuses_another_model_and_options_beside_it(model):
    proj = hm.projection_for(model, "norms", fold_norms=False)
    assert proj.name == "custom" and not proj.options.fold_norms
    other, tok = vocab_model(n_layers=2, seed=4)
    with pytest.raises(hm.HeadmapsError, match="resolved for") as err:
        hm.scan(hm.load(other, tokenizer=tok), ["copying"], preset=proj)
    assert "\n" not in str(err.value)
    with pytest.raises(hm.HeadmapsError, match="beside a resolved projection"):
        hm.scan(model, ["copying"], preset=proj, fold_norms=True)
