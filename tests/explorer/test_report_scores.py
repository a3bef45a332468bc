"""Description scores in hm.analyse's HeadReport and in the explorer's data (issue 24)."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import pytest
import torch

import headmaps as hm
from headmaps.cli import main
from headmaps.explorer import normalise_extras, synthetic_scan, write_report
from headmaps.explorer.encode import encode
from headmaps.headreport import HeadReport
from tiny_vocab import set_mapping, vocab_model

COPY = (0, 1)


@pytest.fixture(scope="module")
def model():
    m, tok = vocab_model(n_layers=2)
    set_mapping(m, *COPY, torch.eye(len(tok), dtype=torch.float64), preset="paper")
    return hm.load(m, tokenizer=tok)


@pytest.fixture(scope="module")
def result(model):
    return hm.analyse(model, relations=["copying"], projection="paper", attention=False,
                      head_types=False, score_descriptions=True)


def heads_of(page: str) -> tuple[dict, list]:
    data = json.loads(re.search(r'id="hm-data">(.*?)</script>', page, re.S).group(1))
    lines = re.search(r'id="hm-ex">(.*?)</script>', page, re.S).group(1).split("\n")
    return data, [json.loads(x) if x else None for x in lines]


def test_analyse_scores_the_descriptions_offline(result):
    s = result.description_scores
    assert result.parts() == ["scan", "salient", "descriptions", "description_scores"]
    assert "description_scores" in result.seconds
    copy = s[COPY]
    assert copy.rule == "rule:copy" and copy.method == "offline"
    assert copy.score >= 0.8 and copy.baseline < copy.score
    assert len(s) == len(result.descriptions)  # one per head, scored or with its reason


def test_saved_and_loaded_with_the_report(result, tmp_path):
    back = HeadReport.load(result.save(tmp_path / "hr"))
    assert back.description_scores[COPY].score == result.description_scores[COPY].score
    assert (tmp_path / "hr" / "description_scores.parquet").is_file()


def test_encoding_carries_score_and_baseline(result):
    """The typed part is encoded in the one step: each head's ``ds`` entry."""
    data, heads = encode(result, "t")
    ds = heads[COPY[0] * 2 + COPY[1]]["ds"]
    assert ds["m"] == "offline" and ds["s"] >= 0.8 and ds["n"] > 0 and ds["k"] == 5
    assert ds["b"] == pytest.approx(result.description_scores[COPY].baseline, rel=1e-2)
    unscored = [h["ds"] for h in heads if h and h.get("ds", {}).get("m") == "none"]
    assert all(u["s"] is None and u["r"] for u in unscored)
    assert data["dscored"] == len(result.description_scores.scored)


def test_head_report_frame_and_summary_carry_the_scores(result):
    frame = result.to_frame().set_index(["layer", "head"])
    assert frame.loc[COPY, "description_score"] == pytest.approx(
        result.description_scores[COPY].score)
    assert frame.loc[COPY, "description_baseline"] < frame.loc[COPY, "description_score"]
    assert "# Description scores of" in result.summary_markdown()


def test_report_page_has_scores_and_their_count(result, tmp_path):
    path = hm.report(result, tmp_path / "r.html")
    data, heads = heads_of(path.read_text(encoding="utf-8"))
    n_scored = sum(1 for s in result.description_scores if s.scored)
    assert data["dscored"] == n_scored >= 1
    ds = heads[COPY[0] * 2 + COPY[1]]["ds"]
    assert ds["m"] == "offline" and ds["s"] >= 0.8 and ds["b"] < ds["s"]


def test_hm_report_scores_when_asked(model, tmp_path):
    path = hm.report(model, tmp_path / "s.html", relations=["copying"], attention=False,
                     head_types=False, score_descriptions=True, projection="paper")
    data, heads = heads_of(path.read_text(encoding="utf-8"))
    assert data["dscored"] >= 1 and heads[COPY[0] * 2 + COPY[1]]["ds"]["s"] >= 0.8


def test_report_without_scores_has_no_score_data(model, tmp_path):
    res = hm.analyse(model, relations=["copying"], projection="paper", attention=False,
                     head_types=False)
    assert res.description_scores is None
    data, heads = heads_of(hm.report(res, tmp_path / "plain.html").read_text(encoding="utf-8"))
    assert data["dscored"] == 0 and not any(h and "ds" in h for h in heads)


def test_bad_inputs(model, tmp_path):
    with pytest.raises(hm.HeadmapsError, match="description scores need descriptions"):
        hm.analyse(model, relations=["copying"], describe="none", score_descriptions=True)
    with pytest.raises(hm.HeadmapsError, match="description_score of head 0.1 must be a dict"):
        normalise_extras({"0.1": {"description_score": 0.5}}, 2, 2)
    with pytest.raises(hm.HeadmapsError, match="description score of head 0.1 is not a number"):
        normalise_extras({"0.1": {"description_score": {"score": "high"}}}, 2, 2)
    nan = normalise_extras({"0.1": {"description_score": {"score": math.nan}}}, 2, 2)
    assert nan[COPY]["description_score"]["score"] is None  # NaN: not measured


def test_encoding_keeps_the_first_score_of_a_head(result):
    scores = result.description_scores
    copy = scores[COPY]
    other = dataclasses.replace(copy, score=0.0, baseline=0.0)
    twice = dataclasses.replace(scores, scores=[*scores, other])
    _, heads = encode(dataclasses.replace(result, description_scores=twice), "t")
    assert heads[COPY[0] * 2 + COPY[1]]["ds"]["s"] == pytest.approx(copy.score, rel=1e-2)
    assert sum(1 for h in heads if h and "ds" in h) == len(
        {(s.layer, s.head) for s in scores if s.reason != "unclear"})


def test_cli_report_and_analyse_score_descriptions(result, tmp_path, capsys):
    saved = tmp_path / "scores"
    result.description_scores.save(saved)
    hr = tmp_path / "hr"
    HeadReport(result.scan, result.salient, result.descriptions).save(hr)
    out = tmp_path / "r.html"
    assert main(["report", "--from", str(hr), "-o", str(out)]) == 0
    data, _ = heads_of(out.read_text(encoding="utf-8"))
    assert data["dscored"] == 0  # --from renders what was saved
    assert main(["report", "--description-scores", str(tmp_path / "missing"), "-o",
                 str(out)]) == 2
    assert "--description-scores" in capsys.readouterr().err


def test_write_report_schema_extras_by_hand(tmp_path):
    scan, _ = synthetic_scan(2, 3, 2, seed=0)
    extras = {"1.2": {"description": "copies", "description_score": {
        "score": 0.9, "baseline": 0.1, "method": "offline", "n": 12, "k": 5}}}
    data, heads = heads_of(write_report(tmp_path / "x.html", scan, extras)
                           .read_text(encoding="utf-8"))
    assert data["dscored"] == 1 and heads[1 * 3 + 2]["ds"] == {
        "s": 0.9, "b": 0.1, "m": "offline", "n": 12, "k": 5, "r": ""}
