"""`benchmarks/reproduce.py --quick`: the documented SmolLM2-135M numbers still hold."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "reproduce.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("headmaps_reproduce", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_quick_checks_hold_on_smollm2(smollm2):
    rep = _load_script()
    rows = rep.run_checks(smollm2, rep.QUICK)
    assert len(rows) == len(rep.QUICK) >= 27
    failed = [r for r in rows if not r["ok"]]
    assert not failed, failed


def test_a_check_fails_when_the_value_moves():
    rep = _load_script()
    checks = [rep.Check("number", "here", 0.5, 0.01, lambda m: 0.52),
              rep.Check("label", "here", "a", 0, lambda m: "b"),
              rep.Check("close", "here", 0.5, 0.01, lambda m: 0.505)]
    assert [r["ok"] for r in rep.run_checks(None, checks)] == [False, False, True]


def test_every_check_names_an_existing_document_and_a_tolerance():
    rep = _load_script()
    root = SCRIPT.parents[1]
    assert set(rep.CHECKS) == {"smollm2-135m", "gemma3-270m"}
    for model, checks in rep.CHECKS.items():
        assert checks, model
        for c in checks:
            path = c.source.split(",")[0].split(" section")[0]
            assert (root / path).is_file(), (model, c.name, path)
            assert c.tolerance >= 0 and (c.tolerance == 0 or not isinstance(c.expected, str))


def test_the_command_line_refuses_a_model_without_checks(capsys):
    rep = _load_script()
    with pytest.raises(SystemExit):
        rep.main(["--quick", "--model", "gpt2"])
    assert "invalid choice" in capsys.readouterr().err


def test_out_writes_the_table_and_a_run_header(tmp_path, monkeypatch, capsys):
    import json
    from types import SimpleNamespace

    from headmaps.io import RUN_HEADER_KEYS

    rep = _load_script()
    monkeypatch.setitem(rep.CHECKS, "smollm2-135m",
                        [rep.Check("holds", "here", 1.0, 0.1, lambda m: 1.05),
                         rep.Check("fails", "here", "a", 0, lambda m: "b")])
    monkeypatch.setattr(rep.hm, "load", lambda name: SimpleNamespace(model_id=name))
    assert rep.main(["--quick", "--out", str(tmp_path / "r.txt")]) == 1
    text = (tmp_path / "r.txt").read_text()
    assert "ok  holds" in text and "FAIL fails" in text and "1 of 2 checks hold" in text
    header = json.loads((tmp_path / "r.json").read_text())
    assert set(RUN_HEADER_KEYS) <= set(header) and header["failed"] == ["fails"]
    assert header["command"].endswith(f"--quick --out {tmp_path / 'r.txt'}")
