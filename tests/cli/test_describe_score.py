"""`headmaps describe MODEL --score`: scores written into the --out folder and printed."""

from __future__ import annotations

import math

import headmaps.cli as cli
from headmaps.describe import DescriptionScores


def test_describe_score_writes_and_prints(model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["describe", model_dir, "--layers", "0-1", "--out", str(out), "--preset",
                     "paper", "--tokens", "8", "--score", "--held-out-salient", "6",
                     "--held-out-random", "4"]) == 0
    for name in ("descriptions.jsonl", "description_scores.parquet", "description_scores.json",
                 "accuracy.png", "coverage.csv"):
        assert (out / name).is_file(), name
    scores = DescriptionScores.load(out)
    assert len(scores) == 4 and scores.n_shown == 8 and scores.k == 5
    capital = scores[1, 0]
    assert capital.method == "offline" and capital.rule == "relation:country_to_capital"
    assert capital.score >= 0.8 and capital.baseline < 0.2
    assert len(capital.tokens) == 10
    printed = capsys.readouterr().out
    assert "description scores on held-out tokens (6 next-most-salient + 4 drawn" in printed
    assert f"1.0  offline     score {capital.score:.2f}  baseline {capital.baseline:.2f}" in printed
    assert "description_scores.parquet, accuracy.png" in printed


def test_describe_score_options_checked_at_parse_time(model_dir, tmp_path, capsys):
    for opt, value in (("--score-k", "0"), ("--held-out-random", "-1"),
                       ("--score-workers", "0")):
        assert cli.main(["describe", model_dir, "--out", str(tmp_path / "x"), "--score", opt,
                         value]) == 2
        assert ">=" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert cli.main(["describe", model_dir, "--out", str(tmp_path / "y"), "--score",
                     "--held-out-salient", "0", "--held-out-random", "0"]) == 2
    err = capsys.readouterr().err
    assert "held-out sample is empty" in err and "salient:" not in err  # before any work
    assert not (tmp_path / "y").exists()


def test_describe_refine(model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["describe", model_dir, "--layers", "1", "--out", str(out), "--preset",
                     "paper", "--tokens", "8", "--refine", "3", "--held-out-salient", "3",
                     "--held-out-random", "3"]) == 0
    scores = DescriptionScores.load(out)
    capital = scores[1, 0]
    assert capital.candidates >= 1 and not math.isnan(capital.selection_score)
    assert capital.rule == "relation:country_to_capital" and len(capital.tokens) == 6
    assert "description scores on held-out tokens" in capsys.readouterr().out
