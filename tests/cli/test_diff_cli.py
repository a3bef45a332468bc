"""`headmaps diff A B`: the relation head a checkpoint gained, files written, bad shapes."""

from __future__ import annotations

import json

import pytest

from headmaps.cli import main
from headmaps.diff import HeadDiff
from tiny_vocab import COUNTRY_CAPITAL, vocab_model


def _save(tmp_path_factory, name: str, n_layers: int) -> str:
    model, tok = vocab_model(n_layers=n_layers)
    d = tmp_path_factory.mktemp(name)
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return str(d)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    """The same tiny model as ``model_dir`` before head 1.0 was given its relation."""
    return _save(tmp_path_factory, "base", 2)


def test_diff_names_the_head_that_gained_the_relation(base_dir, model_dir, tmp_path, capsys):
    pairs = tmp_path / "capitals.json"
    pairs.write_text(json.dumps([list(p) for p in COUNTRY_CAPITAL]))
    out = tmp_path / "out"
    rc = main(["diff", base_dir, model_dir, "--relations", str(pairs), "--min-pairs", "10",
               "--preset", "paper", "--no-qk", "--n-boot", "300", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    row = next(line for line in printed.splitlines() if line.startswith("| capitals"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4].startswith("1.0 (+") and cells[5] == "1.0" and cells[6] == "-"
    for name in ("diff.parquet", "diff.json", "heads.parquet", "heads.json", "summary.md",
                 "diff.png"):
        assert (out / name).is_file(), name
    d = HeadDiff.load(out)
    assert d.gained_lost("capitals") == {"gained": ["1.0"], "lost": []}
    assert d.n_pairs == {"capitals": len(COUNTRY_CAPITAL)}


def test_mismatched_shapes_exit_2_with_one_line(base_dir, tmp_path_factory, capsys):
    deeper = _save(tmp_path_factory, "deeper", 3)
    assert main(["diff", base_dir, deeper, "--relations", "none"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("headmaps: error: cannot diff")
    assert "n_layers 2 vs 3" in err


def test_diff_html_writes_the_diff_view(base_dir, model_dir, tmp_path, capsys):
    import re

    pairs = tmp_path / "capitals.json"
    pairs.write_text(json.dumps([list(p) for p in COUNTRY_CAPITAL]))
    page = tmp_path / "view" / "diff.html"
    rc = main(["diff", base_dir, model_dir, "--relations", str(pairs), "--min-pairs", "10",
               "--preset", "paper", "--n-boot", "200", "--html", str(page)])
    assert rc == 0 and "wrote the diff view" in capsys.readouterr().out
    text = page.read_text(encoding="utf-8")
    data = json.loads(re.search(r'id="dv-data">(.*?)</script>', text, re.S).group(1))
    assert data["summary"]["gained"] == [["1.0"]] and data["hasSalient"] and data["hasProfiles"]
    assert base_dir not in text and model_dir not in text  # file names only
    assert [p.name for p in page.parent.iterdir()] == ["diff.html"]  # atomic: no temp file
