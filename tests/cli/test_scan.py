"""`headmaps scan`: the files it writes and its refusal when no relation can be scored."""

from __future__ import annotations

import json

import pytest

import headmaps as hm
import headmaps.cli as cli
from headmaps import ScanResult
from near_ties import assert_scores_up_to_ties, options_of, unsure_for_relations
from tiny_vocab import COUNTRY_CAPITAL

RELATION_HEAD = (1, 0)  # the country -> capital head of the `model_dir` fixture (conftest.py)



@pytest.fixture(scope="module")
def capitals_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("rel") / "capitals.json"
    path.write_text(json.dumps([list(p) for p in COUNTRY_CAPITAL]))
    return str(path)


def test_scan_writes_scores_summary_and_heatmaps(model_dir, capitals_file, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["scan", model_dir, "--relations", capitals_file, "--k", "1", "--min-pairs", "10",
            "--preset", "paper", "--out", str(out)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "1 relations scored" in printed and "1.0 (1.00)" in printed
    assert "(projection paper, tau 0.15)" in printed
    res = ScanResult.load(out / "scores.parquet")
    assert res.relations == ["capitals"]
    scores = res["capitals"].scores
    assert scores[RELATION_HEAD] == 1.0
    assert scores.sum() == 1.0  # no other head maps a country to its capital at k = 1
    assert "capitals" in (out / "summary.md").read_text()
    assert [p.name for p in (out / "heatmaps").glob("*.png")] == ["capitals.png"]


def test_scan_csv_format(model_dir, capitals_file, tmp_path):
    argv = ["scan", model_dir, "--relations", capitals_file, "--k", "1", "--min-pairs", "10",
            "--preset", "paper", "--format", "csv", "--no-plots", "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    assert ScanResult.load(tmp_path / "scores.csv")["capitals"].scores[RELATION_HEAD] == 1.0
    assert not (tmp_path / "heatmaps").exists()


def test_scan_exact_dense_flag_gives_the_same_scores(model_dir, capitals_file, tmp_path):
    common = ["scan", model_dir, "--relations", capitals_file, "--k", "1", "--min-pairs", "10",
              "--format", "csv", "--no-plots"]
    assert cli.main(common + ["--out", str(tmp_path / "early")]) == 0
    assert cli.main(common + ["--exact-dense", "--out", str(tmp_path / "dense")]) == 0
    early = ScanResult.load(tmp_path / "early" / "scores.csv")
    dense = ScanResult.load(tmp_path / "dense" / "scores.csv")
    # the two paths round their float32 logits differently: equal up to near-ties
    unsure = unsure_for_relations(hm.load(model_dir), capitals_file, options_of(early), k=1,
                                  min_pairs=10)["capitals"]
    assert_scores_up_to_ties(early.scores[0], dense.scores[0], unsure[0], "scores")
    assert_scores_up_to_ties(early.suppression[0], dense.suppression[0], unsure[1], "suppression")
    assert early.scores.max() > 0


def test_scan_token_alone_source_with_prefix(model_dir, capitals_file, tmp_path, capsys):
    common = ["scan", model_dir, "--relations", capitals_file, "--k", "1", "--min-pairs", "10",
              "--format", "csv", "--no-plots", "--source", "token_alone", "--fold-norms"]
    assert cli.main(common + ["--prefix", "[PAD]", "--out", str(tmp_path)]) == 0
    res = ScanResult.load(tmp_path / "scores.csv")
    assert res.options["source"] == "token_alone" and res.options["prefix"] == "[PAD]"
    m = hm.load(model_dir)
    lib = hm.scan(m, capitals_file, k=1, min_pairs=10, projection=hm.projection_for(
        m, source="token_alone", fold_norms=True, prefix="[PAD]"))
    assert (res.scores == lib.scores).all() and res.scores.shape == (1, 2, lib.scores.shape[2])
    capsys.readouterr()
    assert cli.main(common + ["--prefix", "<nope>", "--out", str(tmp_path / "bad")]) != 0
    err = capsys.readouterr().err
    assert "not a token of this tokenizer" in err and "Traceback" not in err


def test_scan_with_no_valid_relation_fails_and_writes_nothing(model_dir, capitals_file, tmp_path,
                                                              capsys):
    out = tmp_path / "out"
    argv = ["scan", model_dir, "--relations", capitals_file, "--min-pairs", "100", "--out",
            str(out)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "no relation could be scored" in err and "capitals:" in err and "16 of 16" in err
    assert not out.exists()
