"""`headmaps report` and `headmaps plot`, run in-process with their own parser."""

from __future__ import annotations

import argparse
import json
import re

import pytest

from headmaps.cli import plot as plot_cmd
from headmaps.cli import report as report_cmd
from headmaps.explorer import synthetic_scan


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="headmaps")
    sub = parser.add_subparsers(dest="command", required=True)
    report_cmd.register(sub)
    plot_cmd.register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    scan, extras = synthetic_scan(5, 4, 3, seed=4)
    folder = tmp_path_factory.mktemp("scan")
    scan.save(folder)
    return folder, scan, extras


def test_report_from_saved_scan_without_model(saved, tmp_path, capsys, monkeypatch):
    folder, scan, extras = saved
    import headmaps.models

    monkeypatch.setattr(headmaps.models, "load",
                        lambda *a, **k: pytest.fail("the model must not be loaded"))
    ex = tmp_path / "extras.json"
    ex.write_text(json.dumps({"1.2": extras["1.2"]}))
    out = tmp_path / "r.html"
    assert run(["report", "--scan", str(folder), "--no-salient", "--no-attention", "--no-types",
                "--extras", str(ex), "-o", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    data = json.loads(re.search(r'id="hm-data">(.*?)</script>', page, re.S).group(1))
    lines = re.search(r'id="hm-ex">(.*?)</script>', page, re.S).group(1).split("\n")
    head = json.loads(lines[1 * scan.n_heads + 2])
    assert data["toks"][head["s"][0][0]] == extras["1.2"]["salient"][0]["token"]
    assert sum(bool(x) for x in lines) == 1
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("argv,suffix",
                         [(["--relation", "copying"], ".svg"), (["--kind", "layers"], ".pdf"),
                                          ([], ".png")])
def test_plot(saved, tmp_path, argv, suffix):
    folder, _, _ = saved
    out = tmp_path / f"p{suffix}"
    assert run(["plot", "--scan", str(folder), "-o", str(out), "--dpi", "50", *argv]) == 0
    assert out.stat().st_size > 1000


def test_help_texts():
    for cmd in ("report", "plot"):
        with pytest.raises(SystemExit) as e:
            run([cmd, "--help"])
        assert e.value.code == 0
