"""`headmaps head` and `headmaps describe`, run in-process (parser from their register())."""

from __future__ import annotations

import argparse
import json

import pytest

import headmaps.cli as cli
from headmaps.cli import describe as describe_cmd
from headmaps.cli import head as head_cmd
from headmaps.cli.describe import parse_layers
from headmaps.errors import HeadmapsError
from headmaps.models import parse_head
from headmaps.projection import DEFAULT_PRESET
from tiny_vocab import COUNTRY_CAPITAL


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="headmaps")
    sub = p.add_subparsers(dest="command")
    head_cmd.register(sub)
    describe_cmd.register(sub)
    return p


def run(argv):
    args = parser().parse_args(argv)
    return args.func(args)


def test_parse_head():
    assert parse_head("23.4") == (23, 4)
    assert parse_head(" 0.0 ") == (0, 0)
    for bad in ("23", "23.", "a.b", "1.2.3", "-1.2", "1,2", ""):
        with pytest.raises(HeadmapsError, match="LAYER.HEAD"):
            parse_head(bad)

    class M:
        n_layers, n_heads, model_id = 30, 9, "m"

    with pytest.raises(IndexError,
                       match=r"30\.4 is out of range: m has layers 0..29 and heads 0..8"):
        parse_head("30.4", M())
    with pytest.raises(IndexError, match="heads 0..8"):
        parse_head("3.9", M())


def test_parse_layers():
    assert parse_layers("10-12", 30) == [10, 11, 12]
    assert parse_layers("0,2,5-6", 30) == [0, 2, 5, 6]
    assert parse_layers(None, 3) == [0, 1, 2]
    with pytest.raises(IndexError, match="0..29"):
        parse_layers("10-30", 30)
    for bad in ("a-b", "3-1", "1-2-3"):
        with pytest.raises(HeadmapsError):
            parse_layers(bad, 30)


def test_head_prints_table_and_description(model_dir, capsys):
    # the crafted mapping is exact in the raw OV circuit: the paper preset folds no norm
    assert run(["head", model_dir, "1.0", "--tokens", "6", "--mappings", "3", "--preset",
                "paper", "--no-qk"]) == 0
    out = capsys.readouterr().out
    assert "(projection paper," in out.splitlines()[0]
    assert "saliency" in out and "top 3 mappings" in out
    lines = out.splitlines()
    assert len([line for line in lines if line.strip()[:1].isdigit()]) == 6
    assert any(f"{c}" in out and f"{t} (1.00)" in out for c, t in COUNTRY_CAPITAL)
    assert "description (pattern): Relation country_to_capital" in out


def test_head_json_and_no_description(model_dir, capsys):
    assert run(["head", model_dir, "1.0", "--json", "--describe", "none", "--skip-nonwords",
                "both"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["layer"] == 1 and data["description"] is None and len(data["tokens"]) == 15
    assert data["skip_nonwords"] == "both"
    assert data["preset"] == DEFAULT_PRESET  # the same default as `headmaps scan`


def test_head_names_a_custom_projection(model_dir, capsys):
    assert run(["head", model_dir, "1.0", "--describe", "none", "--preset", "paper",
                "--biases"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "projection custom (source=mlp0" in first and "value_bias=True" in first


def test_head_errors_through_main(model_dir, capsys, monkeypatch):
    assert cli.main(["head", model_dir, "1.7"]) == 2
    err = capsys.readouterr().err
    assert "head 1.7 is out of range" in err and "layers 0..1 and heads 0..1" in err
    assert "Traceback" not in err
    assert cli.main(["head", model_dir, "one.two"]) == 2
    assert "LAYER.HEAD" in capsys.readouterr().err
    assert cli.main(["describe", model_dir, "--layers", "0-5", "--out", "x"]) == 2
    assert "layers 0..1" in capsys.readouterr().err


def test_describe_writes_files(model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(["describe", model_dir, "--layers", "1", "--out", str(out), "--preset",
                "paper"]) == 0
    for name in ("descriptions.jsonl", "coverage.csv", "coverage.png", "salient.parquet",
                 "salient.json"):
        assert (out / name).is_file(), name
    rows = [json.loads(line) for line in (out / "descriptions.jsonl").read_text().splitlines()]
    assert [(r["layer"], r["head"]) for r in rows] == [(1, 0), (1, 1)]
    assert rows[0]["relation"] == "country_to_capital" and not rows[0]["unclear"]
    cov = (out / "coverage.csv").read_text().splitlines()
    assert cov[0] == "layer,n_heads,n_clear,coverage" and len(cov) == 3
    printed = capsys.readouterr().out
    assert "2 heads described (projection paper, describer pattern)" in printed
    assert "wrote" in printed


def test_head_card_shows_what_the_head_attends_to(model_dir, capsys):
    assert run(["head", model_dir, "1.0", "--tokens", "4", "--describe", "none", "--max-distance",
                "12"]) == 0
    out = capsys.readouterr().out
    assert "what it attends to (QK" in out and "key side (any query):" in out
    line = next(x for x in out.splitlines() if x.startswith("position ("))
    assert "Δ=0..12" in line and len(line.split()[-1]) == 13  # one bar per distance
    last = out.strip().splitlines()[-1]
    assert last.startswith("1.0: writes ") and "| attends " in last and "keys favoured:" in last


def test_head_card_json_has_both_halves(model_dir, capsys):
    assert run(["head", model_dir, "1.0", "--json", "--describe", "none", "--max-distance",
                "5"]) == 0
    data = json.loads(capsys.readouterr().out)
    att = data["attention"]
    assert len(att["profile"]["logits"]) == 6 and abs(sum(att["profile"]["weights"]) - 1) < 1e-6
    assert len(att["preferences"]["keys"]) == 8 and att["summary"].startswith("1.0: writes")
    assert run(["head", model_dir, "1.0", "--json", "--describe", "none", "--no-qk"]) == 0
    assert "attention" not in json.loads(capsys.readouterr().out)
