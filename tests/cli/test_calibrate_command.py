"""`headmaps calibrate`, then `scan` and `head` using (or ignoring) what it stored."""

from __future__ import annotations

import json

import headmaps.cli as cli
from headmaps import Calibration
from tiny_vocab import COUNTRY_CAPITAL


def test_calibrate_then_scan_and_head_use_it(model_dir, tmp_path, capsys):
    rel = tmp_path / "capitals.json"
    rel.write_text(json.dumps([list(p) for p in COUNTRY_CAPITAL]))
    tpl = tmp_path / "templates.txt"
    tpl.write_text("apple <X>\nriver house <X>\n")
    scan = ["scan", model_dir, "--relations", str(rel), "--k", "1", "--min-pairs", "10",
            "--no-plots"]
    assert cli.main(scan) == 0
    assert "(projection norms (uncalibrated), tau" in capsys.readouterr().out

    out = tmp_path / "cal.json"
    argv = ["calibrate", model_dir, "--relations", str(rel), "--template-file", str(tpl),
            "--k", "1", "--min-pairs", "10", "--out", str(out)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    cal = Calibration.load(out)
    assert f"projection: {cal.label()}" in printed and "stored in" in printed
    assert cal.sample["relations"] == {"capitals": 8} and cal.n_pairs == 8
    assert {c["name"] for c in cal.candidates} >= {"paper", "norms", "embedding"}

    assert cli.main(scan) == 0
    assert f"(projection {cal.label()}, tau" in capsys.readouterr().out
    assert cli.main(scan + ["--preset", "paper"]) == 0
    assert "(projection paper, tau" in capsys.readouterr().out
    assert cli.main(scan + ["--no-calibration"]) == 0
    assert "(projection norms (uncalibrated), tau" in capsys.readouterr().out
    assert cli.main(["head", model_dir, "1.0", "--describe", "none", "--no-qk"]) == 0
    assert f"(projection {cal.label()}" in capsys.readouterr().out
