"""`headmaps calibrate`, then `scan` and `head` using (or ignoring) what it stored."""

from __future__ import annotations

import json

import headmaps as hm
import headmaps.cli as cli
from headmaps import Calibration
from headmaps.projection import projection_for
from tiny_vocab import COUNTRY_CAPITAL


def default_label(model_dir) -> str:
    """How the uncalibrated default projection of the model is printed.

    Read from the library, not written out: the default preset and the model's
    document-start token (the tiny vocabulary's ``[UNK]``) both come from its rules.
    """
    return projection_for(hm.load(model_dir), calibration=False).label


def test_calibrate_then_scan_and_head_use_it(model_dir, tmp_path, capsys):
    rel = tmp_path / "capitals.json"
    rel.write_text(json.dumps([list(p) for p in COUNTRY_CAPITAL]))
    tpl = tmp_path / "templates.txt"
    tpl.write_text("apple <X>\nriver house <X>\n")
    scan = ["scan", model_dir, "--relations", str(rel), "--k", "1", "--min-pairs", "10",
            "--no-plots"]
    assert cli.main(scan) == 0
    default = f"(projection {default_label(model_dir)}, tau"
    assert "(uncalibrated)" in default
    assert default in capsys.readouterr().out

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
    assert default in capsys.readouterr().out
    assert cli.main(["head", model_dir, "1.0", "--describe", "none", "--no-qk"]) == 0
    assert f"(projection {cal.label()}" in capsys.readouterr().out


def test_two_processes_calibrating_at_once_leave_one_complete_file(model_dir, tmp_path):
    """Two real `headmaps calibrate` runs of one model into one store: both succeed."""
    import os
    import subprocess
    import sys

    rel = tmp_path / "capitals.json"
    rel.write_text(json.dumps([list(p) for p in COUNTRY_CAPITAL]))
    tpl = tmp_path / "templates.txt"
    tpl.write_text("apple <X>\nriver house <X>\n")
    store = tmp_path / "store"
    env = {**os.environ, "HEADMAPS_CALIBRATIONS": str(store), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "headmaps.cli", "calibrate", model_dir, "--relations", str(rel),
           "--template-file", str(tpl), "--k", "1", "--min-pairs", "10"]
    runs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    outs = [r.communicate(timeout=600) for r in runs]
    assert [r.returncode for r in runs] == [0, 0], [o[1][-400:] for o in outs]
    files = sorted(p.name for p in store.iterdir())
    assert len(files) == 1 and files[0].endswith(".json")  # no temporary file left
    assert Calibration.load(store / files[0]).n_pairs == 8
