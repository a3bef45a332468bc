"""Every result follows one protocol: save/load, to_frame, _repr_html_, figure, summary_markdown.

One small instance of each result class (from a tiny model with a copying head, or built
from arrays) is walked through every method; the retired names warn and still work.
"""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

import headmaps as hm
from headmaps._protocol import Result
from headmaps.experiments import CausalResult, CorrelationResult, DynamicScores
from headmaps.experiments.correlation import correlation_table
from headmaps.experiments.results import CAUSAL_COLUMNS, CURVE_COLUMNS
from headmaps.headreport import PARTS
from headmaps.io import write_figure
from tiny_vocab import set_mapping, vocab_model


@pytest.fixture(scope="module")
def model():
    m, tok = vocab_model(n_layers=2)
    set_mapping(m, 0, 1, torch.eye(len(tok), dtype=torch.float64), preset=hm.DEFAULT_PRESET)
    return hm.load(m, tokenizer=tok)


@pytest.fixture(scope="module")
def report(model):
    """A head report with every part, the description scores included."""
    return hm.analyse(model, relations=["copying", "country_to_capital"], score_descriptions=True)


def _experiments() -> tuple[CorrelationResult, CausalResult]:
    rng = np.random.default_rng(0)
    names, (R, T, L, H) = ["rel0", "rel1"], (2, 2, 2, 3)
    static = hm.ScanResult("tiny", {}, names, rng.random((R, L, H)).astype(np.float32),
                           rng.random((R, L, H)).astype(np.float32), dict.fromkeys(names, 30),
                           dict.fromkeys(names, 10), preset="paper")
    arr = lambda: rng.random((R, T, L, H)).astype(np.float32)  # noqa: E731
    dyn = DynamicScores(names, ["a <X>", "b <X>"], arr(), arr(), arr(), arr(),
                        dict.fromkeys(names, 30), dict.fromkeys(names, 10))
    corr = CorrelationResult(correlation_table(static, dyn), static, dyn, "tiny", "paper", seed=3)
    table = pd.DataFrame([["rel0", 1, 0.9, 0.1, 0.85, 0.05, 1, 0.8, 0.75]], columns=CAUSAL_COLUMNS)
    curves = pd.DataFrame([["rel0", 0, 0.9, np.nan, np.nan], ["rel0", 1, 0.1, 0.8, 0.05]],
                          columns=CURVE_COLUMNS)
    causal = CausalResult(table, curves, {"rel0": ["1.2"]}, {"rel0": []}, "tiny", "paper",
                          meta={"m": 1, "n_random": 2, "seed": 0, "n_prompts": {"rel0": 12}})
    return corr, causal


def _track() -> hm.TrackResult:
    rng = np.random.default_rng(2)
    C, R, T, L, H = 3, 1, 2, 2, 3
    scores = rng.random((C, R, L, H)).astype(np.float32)
    return hm.TrackResult(["a/step-0", "a/step-10", "a/step-20"], np.array([0, 10, 20]), L, H,
                          ["copying"], ["previous_token", "induction"], scores, scores * 0.5,
                          rng.random((C, T, L, H)).astype(np.float32),
                          rng.random((C, T, L, H)) > 0.5, preset="paper",
                          options={"source": "mlp0"}, calibration={})


def _calibration() -> hm.Calibration:
    cands = [{"name": "paper", "options": {}, "median_r": 0.4, "median_r_with_context": 0.3,
              "n_relations": 2, "complexity": 0},
             {"name": "norms", "options": {}, "median_r": 0.7, "median_r_with_context": 0.5,
              "n_relations": 2, "complexity": 1}]
    return hm.Calibration("tiny", "abcd", "norms", {}, 0.7, 40, cands, {"seed": 0},
                          "highest median r")


@pytest.fixture(scope="module")
def results(model, report):
    """Result class name -> ``(instance, where it saves)``: every result of the package."""
    corr, causal = _experiments()
    b = hm.load(vocab_model(n_layers=2, seed=1)[0], tokenizer=model.tokenizer)
    return {
        "ScanResult": (report.scan, "scan"),
        "SalientOperations": (report.salient[0, 1], "ops.csv"),
        "SalientAll": (report.salient, "salient"),
        "AttentionPreferences": (report.attention.preferences(0, 1), "prefs.csv"),
        "AttentionSummary": (report.attention, "attention"),
        "HeadTypes": (report.types, "types"),
        "CorrelationResult": (corr, "correlation"),
        "CausalResult": (causal, "causal"),
        "Calibration": (_calibration(), "calibration.json"),
        "HeadReport": (report, "head_report"),
        "DescriptionScores": (report.description_scores, "description_scores"),
        "HeadDiff": (hm.diff(model, b, ["copying"], salient=False, qk=False), "diff"),
        "CompositionResult": (hm.composition(model, n_tokens=64), "composition"),
        "TrackResult": (_track(), "track"),
    }


PROTOCOL_CLASSES = ["ScanResult", "SalientOperations", "SalientAll", "AttentionPreferences",
                    "AttentionSummary", "HeadTypes", "CorrelationResult", "CausalResult",
                    "Calibration", "HeadReport", "DescriptionScores", "HeadDiff",
                    "CompositionResult", "TrackResult"]


def test_every_result_is_walked(results):
    assert sorted(results) == sorted(PROTOCOL_CLASSES)
    assert all(type(res).__name__ == name for name, (res, _) in results.items())
    report, _ = results["HeadReport"]
    assert report.parts() == list(PARTS)  # the head report walked holds every part
    walked = {id(res) for res, _ in results.values()}
    assert all(id(getattr(report, p)) in walked for p in PARTS if p != "descriptions")


@pytest.mark.parametrize("name", PROTOCOL_CLASSES)
def test_protocol(results, name, tmp_path, pdf_backend):
    import matplotlib.pyplot as plt

    res, where = results[name]
    assert isinstance(res, Result)
    frame = res.to_frame()
    assert isinstance(frame, pd.DataFrame) and len(frame) > 0
    page = res._repr_html_()
    assert page.startswith("<div>") and page.endswith("</div>") and "<table" in page
    md = res.summary_markdown()
    assert md.startswith("# ")
    assert "|---" in md  # every summary holds a table
    fig = res.figure()
    assert isinstance(fig, Figure) and fig.axes
    assert plt.get_fignums() == [] and matplotlib.get_backend() == pdf_backend  # no window
    assert not list(tmp_path.iterdir())  # figure() writes nothing
    png = write_figure(fig, tmp_path / "fig.png", dpi=40)
    assert png.read_bytes()[:4] == b"\x89PNG"
    saved = res.save(tmp_path / where)
    assert saved.exists()
    back = type(res).load(tmp_path / where)
    assert type(back) is type(res)
    pd.testing.assert_frame_equal(back.to_frame(), frame, check_dtype=False)
    assert back.summary_markdown() == md


@pytest.mark.parametrize("name", PROTOCOL_CLASSES)
def test_every_result_records_its_projection(results, name, tmp_path):
    """``projection.record_of``: preset, options, calibration and the printed label, kept
    by save/load. A model's results made without an explicit projection say how it was
    chosen (the default, uncalibrated, in these tests)."""
    from headmaps.projection import RECORD_KEYS, record_of

    res, where = results[name]
    rec = record_of(res)
    assert tuple(rec) == RECORD_KEYS and rec["preset"] and rec["label"]
    if name in ("ScanResult", "SalientAll", "AttentionSummary", "HeadTypes",
                "DescriptionScores", "HeadReport", "CompositionResult"):
        assert rec["calibration"].get("status") == "uncalibrated", rec
        assert rec["label"].endswith("(uncalibrated)")
    res.save(tmp_path / where)
    assert record_of(type(res).load(tmp_path / where)) == rec


def test_round_trips_keep_the_arrays(results, tmp_path):
    ops, _ = results["SalientOperations"]
    ops.save(tmp_path / "ops.csv")
    back = type(ops).load(tmp_path / "ops.csv")
    assert back.tokens == ops.tokens and back.targets == ops.targets
    np.testing.assert_array_equal(back.target_ids, ops.target_ids)
    np.testing.assert_allclose(back.scores, ops.scores, rtol=1e-6)
    prefs, _ = results["AttentionPreferences"]
    prefs.save(tmp_path / "p.parquet")
    back = type(prefs).load(tmp_path / "p.parquet")
    assert back.pair_tokens == prefs.pair_tokens and back.key_tokens == prefs.key_tokens
    np.testing.assert_array_equal(back.pair_ids, prefs.pair_ids)
    np.testing.assert_allclose(back.selectivity, prefs.selectivity, rtol=1e-6)


def test_experiment_run_folder(results, tmp_path):
    """Saved with its command, an experiment is a documented run folder."""
    corr, _ = results["CorrelationResult"]
    corr.save(tmp_path, command="headmaps validate tiny --experiment correlation")
    assert {p.name for p in tmp_path.iterdir()} >= {"correlation.csv", "correlation_heads.csv",
                                                   "correlation.png", "summary.md", "run.json"}
    md = (tmp_path / "summary.md").read_text()
    assert md.startswith("# Correlation with inference: tiny")
    assert "`headmaps validate tiny --experiment correlation`" in md
    assert "![scatter](correlation.png)" in md
    run = corr.run_header("x")
    assert run["seed"] == 3 and run["sample"]["pairs_per_relation"] == {"rel0": 30, "rel1": 30}


def test_pipeline_functions_are_not_shadowed_by_their_modules():
    """hm.analyse and hm.report stay functions whatever submodule is imported."""
    import importlib

    for name in ("headmaps.explorer.plots", "headmaps.explorer.encode", "headmaps.headreport"):
        importlib.import_module(name)
    assert callable(hm.report) and hm.report.__module__ == "headmaps.explorer.api"
    assert callable(hm.analyse) and hm.analyse.__module__ == "headmaps.headreport"
    assert hm.__all__[:4] == ["load", "scan", "analyse", "report"]
