"""Calibration on a tiny model where one projection is exact by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import headmaps as hm
from headmaps import experiments as ex
from headmaps.experiments.calibrate import candidates, choose, prefixes
from headmaps.projection import calibration as C
from tiny_vocab import COUNTRY_CAPITAL, VERB_PAST, mapping_matrix, set_mapping, vocab_model

TEMPLATES = ["apple <X>", "river house <X>"]
EXACT = hm.ProjectionOptions(source="mlp0_residual", fold_norms=True)
SETS = {"capitals": COUNTRY_CAPITAL, "past": VERB_PAST}
K = 12  # random heads then hit some targets, so projections differ in r


@pytest.fixture(scope="module")
def exact_model():
    """Two layers; layer 0's attention writes nothing, so the residual a layer-1 head reads
    at the source is ``e + MLP_0(LN(e))``: the ``mlp0_residual`` source, through the
    layer's input norm (``fold_norms``), is then exactly what inference computes. Random
    norm gains make folding matter; head 1.0 maps countries to capitals."""
    model, tok = vocab_model(n_layers=2, seed=0)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model.model.layers[0].self_attn.o_proj.weight.mul_(1e-6)
        model.model.layers[0].mlp.down_proj.weight.mul_(2.5)  # |MLP_0(LN(e))| ~ |e|
        for norm in (model.model.layers[1].input_layernorm, model.model.norm):
            norm.weight.copy_(0.2 + 3 * torch.rand(norm.weight.shape, generator=g,
                                                   dtype=torch.float64))
    set_mapping(model, 1, 0, mapping_matrix(tok, COUNTRY_CAPITAL), preset=EXACT)
    return hm.load(model, tokenizer=tok)


def test_candidates_drop_switches_the_architecture_ignores(exact_model):
    names = [n for n, _ in candidates(exact_model)]
    opts = [o for _, o in candidates(exact_model)]
    assert len(set(opts)) == len(opts)  # no two candidates score the same way
    assert names[:3] == ["paper", "norms", "embedding"]
    # a Llama without biases and with scale 1: 3 sources x fold, the presets among them,
    # and token_alone with folded norms (the `alone` preset, once its switches are dropped)
    # alone and after each special token of the tokenizer ([UNK], [PAD])
    assert prefixes(exact_model) == ["", "[UNK]", "[PAD]"]
    assert len(opts) == 9 and not any(o.scale_embeddings or o.value_bias for o in opts)
    alone = [o for o in opts if o.source == "token_alone"]
    assert [o.prefix for o in alone] == ["", "[UNK]", "[PAD]"] and all(o.fold_norms for o in alone)
    assert "token_alone+fold+after [PAD]" in names


def test_choose_breaks_ties_towards_the_simpler():
    rows = [{"median_r": 0.80, "complexity": 3}, {"median_r": 0.802, "complexity": 1},
            {"median_r": 0.81, "complexity": 2}, {"median_r": None, "complexity": 0}]
    assert choose(rows) == 1  # within 0.01 of 0.81, fewest switches
    assert choose(rows, tie=0.0) == 2
    with pytest.raises(hm.HeadmapsError, match="no candidate"):
        choose([{"median_r": None, "complexity": 0}])


def test_calibrate_chooses_by_the_rule_and_stores_it(exact_model):
    cal = hm.calibrate(exact_model, SETS, TEMPLATES, k=K, min_pairs=10, max_pairs=None)
    assert cal.n_pairs == 32 and cal.sample["templates"] == TEMPLATES
    assert cal.sample["relations"] == {"capitals": 16, "past": 16}
    # every candidate's median r is the correlation experiment's on one set of dynamic scores
    dyn = ex.dynamic_scores(exact_model, SETS, TEMPLATES, K, min_pairs=10)
    medians = {name: ex.correlation(exact_model, dynamic=dyn, projection=opts).median()
               for name, opts in candidates(exact_model)}
    by_name = {c["name"]: c for c in cal.candidates}
    for name, med in medians.items():
        got = by_name[name]["median_r"]
        assert (got is None and math.isnan(med)) or got == pytest.approx(med, abs=1e-4)
    # the winner is the best; token_alone ties with it here (layer 0's attention writes
    # nothing, so a lone token's residual is the one the prompt carries), and the tie rule
    # takes the simpler; every other candidate is clearly behind
    top = max(medians.values())
    best = sorted(n for n in medians if medians[n] >= top - 1e-6)
    assert {"alone", "mlp0+fold"} <= set(best)
    assert all(n == "mlp0+fold" or dict(candidates(exact_model))[n].source == "token_alone"
               for n in best)
    assert cal.choice == "mlp0+fold" and cal.median_r == pytest.approx(top, abs=1e-4)
    assert all(medians[n] < cal.median_r - 0.01 for n in medians if n not in best)
    assert cal.median_r > 0.99  # the folded projections read what inference computes
    # stored under the model's id + fingerprint, and read back the same
    assert C.calibration_path(exact_model).is_file()
    back = hm.load_calibration(exact_model)
    assert back is not None and back.choice == cal.choice and back.sample == cal.sample
    assert back.median_r == pytest.approx(cal.median_r) and back.projection() == cal.projection()


def test_save_load_and_fingerprint_guard(exact_model, tiny_llama_hm, tmp_path):
    cal = hm.calibrate(exact_model, SETS, TEMPLATES, k=K, min_pairs=10, save=False,
                       candidates_=[("exact", EXACT)])
    assert hm.load_calibration(exact_model) is None  # save=False stores nothing
    path = cal.save(tmp_path / "cal.json")
    assert hm.load_calibration(exact_model, path).label() == cal.label()
    with pytest.raises(hm.HeadmapsError, match="other weights"):
        hm.load_calibration(tiny_llama_hm, path)
    with pytest.raises(hm.HeadmapsError, match=".json"):
        cal.save(tmp_path / "cal.txt")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(hm.CorruptFileError):
        C.Calibration.load(tmp_path / "bad.json")
    assert C.fingerprint(exact_model) != C.fingerprint(tiny_llama_hm)


def test_scan_uses_the_calibration_and_says_so(exact_model, tmp_path):
    before = hm.scan(exact_model, {"capitals": COUNTRY_CAPITAL}, k=1, min_pairs=10)
    assert before.calibration == {"status": "uncalibrated"} and before.preset == hm.DEFAULT_PRESET
    default = C.label(hm.DEFAULT_PRESET, before.options)
    assert C.label(before.preset, before.options, before.calibration) == \
        f"{default} (uncalibrated)"
    cal = hm.calibrate(exact_model, SETS, TEMPLATES, k=K, min_pairs=10,
                       candidates_=[("embedding", hm.PRESETS["embedding"]), ("exact", EXACT)])
    res = hm.scan(exact_model, {"capitals": COUNTRY_CAPITAL}, k=1, min_pairs=10)
    assert res.calibration["status"] == "calibrated" and res.calibration["choice"] == "exact"
    assert hm.ProjectionOptions(**res.options) == EXACT
    assert C.label(res.preset, res.options, res.calibration) == cal.label()
    # 8 pairs (the default max_pairs) x 2 relations
    assert cal.label() == f"calibrated exact (median r {cal.median_r:.2f} on 16 pairs)"
    res.save(tmp_path / "s.parquet")
    # the saved header keeps file names, not local paths (headmaps.io.header_for_file)
    from headmaps.io import shareable

    assert hm.ScanResult.load(tmp_path / "s.parquet").calibration == shareable(res.calibration)
    assert shareable(res.calibration) != res.calibration  # it names the file in the store
    res.save(tmp_path / "p.parquet", show_paths=True)  # headmaps --show-paths
    assert hm.ScanResult.load(tmp_path / "p.parquet").calibration == res.calibration
    # an explicit preset or option wins; calibration=False ignores it
    explicit = hm.scan(exact_model, {"capitals": COUNTRY_CAPITAL}, k=1, min_pairs=10,
                       projection="paper")
    assert explicit.calibration == {} and explicit.preset == "paper"
    assert hm.scan(exact_model, {"capitals": COUNTRY_CAPITAL}, k=1, min_pairs=10,
                   projection=hm.projection_for(exact_model, fold_norms=False)
                   ).calibration == {}
    off = hm.scan(exact_model, {"capitals": COUNTRY_CAPITAL}, k=1, min_pairs=10,
                  projection=hm.projection_for(exact_model, calibration=False))
    assert off.calibration["status"] == "uncalibrated" and off.options == before.options
    np.testing.assert_array_equal(off.scores, before.scores)
    # the salient operations and the correlation experiment follow the same rule
    ops = hm.salient_operations(exact_model, 1, 0, n_tokens=3)
    assert ops.calibration["choice"] == "exact" and hm.ProjectionOptions(**ops.options) == EXACT
    corr = ex.correlation(exact_model, SETS, TEMPLATES, k=K, min_pairs=10, max_pairs=8)
    assert corr.calibration["choice"] == "exact" and hm.ProjectionOptions(**corr.options) == EXACT
    assert corr.median() == pytest.approx(cal.median_r, abs=1e-4)


def test_only_the_argument_turns_the_calibration_off(exact_model, monkeypatch):
    hm.calibrate(exact_model, SETS, TEMPLATES, k=K, min_pairs=10, candidates_=[("exact", EXACT)])
    monkeypatch.setenv("HEADMAPS_NO_CALIBRATION", "1")  # retired: no environment variable
    res = hm.scan(exact_model, {"capitals": COUNTRY_CAPITAL}, k=1, min_pairs=10)
    assert res.calibration["status"] == "calibrated"
    res = hm.scan(exact_model, {"capitals": COUNTRY_CAPITAL}, k=1, min_pairs=10,
                  projection=hm.projection_for(exact_model, calibration=False))
    assert res.calibration == {"status": "uncalibrated", "reason": "calibration disabled"}
