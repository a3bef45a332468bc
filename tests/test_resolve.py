"""One resolver: every entry point projects the same way for the same model and arguments.

The rule (explicit option > stored calibration > default) is
:func:`headmaps.projection_for`; every entry point resolves its ``projection=`` with it
and records the result (``projection.record()``), with and without a stored calibration.
"""

from __future__ import annotations

import pickle

import pytest
import torch

import headmaps as hm
from headmaps import experiments as ex
from headmaps import projection as P
from headmaps.projection.calibration import Calibration, calibration_path, fingerprint, store
from tiny_vocab import COUNTRY_CAPITAL, vocab_model

#: ``projection_for`` arguments; the first three are also what an entry point may be given.
CASES = [
    ({}, "nothing given"),
    ({"preset": "through"}, "a preset"),
    ({"preset": P.PRESETS["norms"]}, "options"),
    ({"preset": "norms", "fold_norms": False}, "a preset and an override"),
    ({"source": "token_alone", "prefix": "[PAD]", "fold_norms": True}, "overrides only"),
    ({"calibration": False}, "calibration off"),
]


@pytest.fixture(scope="module")
def model():
    m, tok = vocab_model(n_layers=2, seed=3)
    return hm.load(m, tokenizer=tok)


def results(model, projection):
    """Every entry point's result for ``projection=projection``, by entry point."""
    capitals = {"capitals": COUNTRY_CAPITAL}
    return {
        "scan": hm.scan(model, ["copying"], projection=projection),
        "relation_scores": hm.relation_scores(model, "copying", projection=projection),
        "salient_operations": hm.salient_operations(model, 1, 0, projection=projection),
        "salient_all": hm.salient_all(model, [1], projection=projection),
        "attention_summary": hm.attention_summary(model, [1], projection=projection),
        "head_types": hm.head_types(model, relations=False, projection=projection),
        "composition": hm.composition(model, n_tokens=32, projection=projection),
        "analyse": hm.analyse(model, relations=["copying"], describe="none",
                              projection=projection),
        "diff": hm.diff(model, model, ["copying"], salient=False, n_boot=10,
                        projection=projection),
        "track": hm.track([model], relations=["copying"], types=False, workers=1,
                          projection=projection),
        "correlation": ex.correlation(model, capitals, ["apple <X>"], k=1, min_pairs=10,
                                      max_pairs=8, projection=projection),
    }


def parts(report):
    return {f"analyse.{p}": getattr(report, p) for p in ("salient", "attention", "types")}


def store_embedding_calibration(model):
    store(Calibration(model_id=model.model_id, fingerprint=fingerprint(model),
                      choice="embedding", options=P.PRESETS["embedding"].to_dict(),
                      median_r=0.5, n_pairs=8), model)
    assert calibration_path(model).is_file()


@pytest.mark.parametrize("stored", [False, True], ids=["no calibration", "stored calibration"])
def test_every_entry_point_resolves_the_same_projection(model, stored, monkeypatch, tmp_path):
    monkeypatch.setenv("HEADMAPS_CALIBRATIONS", str(tmp_path))
    if stored:
        store_embedding_calibration(model)
    for kw, why in CASES:
        want = hm.projection_for(model, **kw)
        assert want.options.prefix != P.AUTO_PREFIX
        assert want.calibration.get("status") == ("calibrated" if stored and not kw else
                                                  "uncalibrated" if not kw or "calibration" in kw
                                                  else None)
        # what an entry point can be given: the same arguments, the resolved value, or a
        # function of the model (for calls that load the model themselves)
        given = [want, lambda m, kw=kw: hm.projection_for(m, **kw)]
        if set(kw) <= {"preset"}:
            given.append(kw.get("preset"))
        for projection in given:
            made = results(model, projection)
            made.update(parts(made["analyse"]))
            for entry, res in made.items():
                assert P.record_of(res) == want.record(), f"{entry} with {why}"
        # the functions that return tensors compute with the same options: the same
        # arithmetic (same inputs, shapes and process) gives the same bits on any CPU
        q, k = torch.arange(5, 12), torch.arange(3, 20)
        assert torch.equal(hm.attention_logits(model, 1, 0, q, k, projection=want),
                           hm.attention_logits(model, 1, 0, q, k,
                                               projection=want.options))


def test_salient_paper_keeps_the_reference_layer0_choice(model):
    """The one documented difference: salient operations under ``paper`` (by name, as a
    resolved Projection or as its options) read the first-MLP trick at layer 0 too, as the
    reference code does; the relation scores do not."""
    paper = hm.projection_for(model, "paper")
    assert not paper.options.mlp0_at_layer0 and paper.name == "paper"
    want = paper.for_salient()
    assert want.options.mlp0_at_layer0 and want.name == "paper"
    for given in ("paper", paper, P.PRESETS["paper"]):
        assert P.record_of(hm.salient_operations(model, 1, 0, projection=given)) == \
            want.record()
        assert P.record_of(hm.scan(model, ["copying"], projection=given)) == paper.record()
    rep = hm.analyse(model, relations=["copying"], describe="none", projection="paper")
    assert rep.salient.options["mlp0_at_layer0"] and not rep.scan.options["mlp0_at_layer0"]
    custom = hm.projection_for(model, "paper", fold_norms=True)  # no longer the preset
    assert custom.for_salient() == custom


def test_auto_prefix_is_the_rule_token_everywhere(model):
    token = P.document_prefix(model.tokenizer)[0]
    proj = hm.projection_for(model, "through")
    assert proj.options.prefix == token and proj.name == "through"
    assert P.label(proj.name, proj.options) == f"through (after {token})"
    direct = P.Sources(model, torch.arange(4, 9), P.PRESETS["through"]).at(1)
    explicit = P.Sources(model, torch.arange(4, 9), proj.options).at(1)
    assert torch.equal(direct, explicit)


@pytest.mark.parametrize("stored", [False, True], ids=["no calibration", "stored calibration"])
def test_a_resolved_projection_is_used_as_it_is(model, stored, monkeypatch, tmp_path):
    monkeypatch.setenv("HEADMAPS_CALIBRATIONS", str(tmp_path))
    if stored:
        store_embedding_calibration(model)
    proj = hm.projection_for(model)
    assert proj.calibration["status"] == ("calibrated" if stored else "uncalibrated")
    assert str(proj) == proj.label == proj.record()["label"]
    assert hm.projection_for(model, proj) == proj
    if stored:  # resolved once: the store is not read again
        calibration_path(model).unlink()
        assert P.record_of(hm.scan(model, ["copying"], projection=proj)) == proj.record()
    fast = hm.projection_for(model, proj, stream_dtype="float32")  # how the stream runs
    assert fast.options.stream_dtype == "float32" and fast.record()["preset"] == proj.name
    assert hm.scan(model, ["copying"], projection=fast).options["stream_dtype"] == "float32"


def test_a_result_gives_back_its_projection(model):
    proj = hm.projection_for(model, "norms", fold_norms=False)
    scan = hm.scan(model, ["copying"], projection=proj)
    again = P.Projection.from_record(scan)
    assert again.record() == proj.record() and again == proj
    other, tok = vocab_model(n_layers=2, seed=4)
    bound = hm.projection_for(model, again)  # bound to the first model it meets
    with pytest.raises(hm.HeadmapsError, match="resolved for"):
        hm.projection_for(hm.load(other, tokenizer=tok), bound)
    assert pickle.loads(pickle.dumps(bound)) == bound  # a series sends it to its jobs
    rep = hm.analyse(model, scan=scan, describe="none")
    for part in (rep.salient, rep.attention, rep.types):
        assert P.record_of(part) == proj.record()
    with pytest.raises(hm.HeadmapsError, match="every part of a report uses the scan's"):
        hm.analyse(model, scan=scan, describe="none", projection="through")


def test_a_resolved_projection_refuses_another_model_and_options_beside_it(model):
    proj = hm.projection_for(model, "norms", fold_norms=False)
    assert proj.name == "custom" and not proj.options.fold_norms
    other, tok = vocab_model(n_layers=2, seed=4)
    with pytest.raises(hm.HeadmapsError, match="resolved for") as err:
        hm.scan(hm.load(other, tokenizer=tok), ["copying"], projection=proj)
    assert "\n" not in str(err.value)
    with pytest.raises(hm.HeadmapsError, match="beside a resolved projection"):
        hm.projection_for(model, proj, fold_norms=True)
    with pytest.raises(hm.HeadmapsError, match="beside a resolved projection"):
        hm.projection_for(model, proj, calibration=False)
    with pytest.raises(hm.HeadmapsError, match="unknown preset"):
        hm.scan(model, ["copying"], projection="nope")
    with pytest.raises(TypeError):
        hm.scan(model, ["copying"], fold_norms=True)  # options go to projection_for only
