"""`headmaps relations list|show|coverage`."""

from __future__ import annotations

import argparse
import csv
import json

import pytest
from relations_fakes import FakeModel, FakeTokenizer

import headmaps.relations as R
from headmaps import cli
from headmaps.cli import relations as rel_cli


@pytest.fixture
def main(monkeypatch):
    """cli.main with the relations subcommand registered (until the lead adds it to COMMANDS)."""
    if rel_cli not in cli.COMMANDS:
        monkeypatch.setattr(cli, "COMMANDS", [*cli.COMMANDS, rel_cli])
    return cli.main


@pytest.fixture
def fake_model(monkeypatch):
    tok = FakeTokenizer([" " + w for w in ("France", "Paris", "Japan", "Tokyo", "hot", "cold",
                                           "cat")])
    model = FakeModel(tok, vocab_size=10_000, model_id="fake-model")
    monkeypatch.setattr(rel_cli, "load_model", lambda args: model)
    return model


def test_register_standalone():
    parser = argparse.ArgumentParser(prog="headmaps")
    rel_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["relations", "show", "antonym", "--limit", "3"])
    assert args.func is rel_cli.run_show and args.limit == 3


def test_help(main, capsys):
    for argv in (["relations", "--help"], ["relations", "coverage", "--help"]):
        assert main(argv) == 0
    assert "--min-pairs" in capsys.readouterr().out


def test_list(main, capsys):
    assert main(["relations", "list"]) == 0
    out = capsys.readouterr().out
    for name in R.names():
        assert name in out
    assert "country_to_capital    knowledge" in out and str(R.info("copying").n_pairs) in out


def test_list_markdown_and_json(main, capsys):
    assert main(["relations", "list", "--format", "markdown"]) == 0
    assert capsys.readouterr().out.startswith("| relation ")
    assert main(["relations", "list", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["relation"] for r in rows] == R.names()


def test_show(main, capsys):
    assert main(["relations", "show", "country_to_capital", "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert "'The capital of <X> is'" in out and "Afghanistan  ->  Kabul" in out
    assert "more (--limit 0 shows all)" in out and "excluded" in out


def test_show_user_file(main, capsys, tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("source,target\nFrance,Paris\n")
    assert main(["relations", "show", str(path), "--limit", "0"]) == 0
    out = capsys.readouterr().out
    assert "mine" in out and "France  ->  Paris" in out and "more" not in out


def test_show_with_model(main, capsys, fake_model):
    assert main(["relations", "show", "country_to_capital", "--model", "x", "--limit", "0"]) == 0
    out = capsys.readouterr().out
    assert "single-token     2 of" in out and "NOT valid" in out
    assert "France" in out and "[kept]" in out and "[source multi-token]" in out
    assert any(line.split()[:4] == ["France", "->", "Paris", "[kept]"] for line in out.splitlines())


def test_unknown_relation_is_a_clean_error(main, capsys):
    assert main(["relations", "show", "capitals"]) == 2
    err = capsys.readouterr().err
    assert "headmaps: error:" in err and "country_to_capital" in err


def test_malformed_file_is_a_clean_error(main, capsys, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b,c\n")
    assert main(["relations", "show", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "line 1" in err


def test_coverage_fake_model(main, capsys, tmp_path, fake_model):
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps([["hot", "cold"], ["cat", "cat"]]))
    out_file = tmp_path / "cov" / "coverage.csv"
    assert main(["relations", "coverage", "x", "--min-pairs", "2", "--extra", str(extra), "-o",
                 str(out_file)]) == 0
    out = capsys.readouterr().out
    assert "relations valid on fake-model" in out and "extra" in out
    rows = list(csv.DictReader(out_file.open()))
    assert [r["relation"] for r in rows] == [*R.names(), "extra"]
    by = {r["relation"]: r for r in rows}
    assert by["country_to_capital"]["kept"] == "2" and by["country_to_capital"]["valid"] == "True"
    assert by["extra"]["kept"] == "2" and by["extra"]["identical"] == "1"


def test_format_table():
    rows = [{"relation": "a", "kept": 3, "valid": True},
            {"relation": "bb", "kept": 10, "valid": False}]
    text = rel_cli.format_table(rows)
    assert text.splitlines()[2] == "a" + " " * 12 + "3  yes"
    md = rel_cli.format_table(rows, "markdown")
    assert md.splitlines()[1] == "| -------- | ---: | ----- |"
    assert rel_cli.format_table([], "text") == ""


@pytest.mark.slow
def test_coverage_smollm2(main, capsys, smollm2, monkeypatch):
    monkeypatch.setattr(rel_cli, "load_model", lambda args: smollm2)
    assert main(["relations", "coverage", "smollm2-135m"]) == 0
    out = capsys.readouterr().out
    assert "country_to_capital" in out and "relations valid on" in out
    n_valid = int(out.strip().splitlines()[-1].split()[0])
    assert n_valid >= 15
