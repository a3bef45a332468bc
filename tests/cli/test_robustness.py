"""Every command against bad input and faults: one line on stderr, non-zero exit, nothing left.

The matrix: unwritable outputs, missing inputs, malformed input files, out-of-range
options, and runs interrupted while writing. Each case runs ``headmaps`` in-process
(``cli.main``); output paths and option ranges must fail before any model is loaded, so
those cases replace the model loader with one that fails the test if called.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import headmaps.cli as cli
from headmaps.cli import common
from tiny_vocab import COUNTRY_CAPITAL

UNWRITABLE = "/proc/headmaps-forbidden"


def _one_line_failure(capsys, argv, code=2) -> str:
    """Run ``argv``; the exit code is ``code`` and stderr one line (besides progress bars)."""
    assert cli.main(argv) == code, argv
    err = capsys.readouterr().err
    lines = [line for line in re.split(r"[\r\n]", err)
             if line.strip() and not re.search(r"\d+%\|", line)]
    assert len(lines) == 1, err
    assert lines[0].startswith("headmaps") and "Traceback" not in err
    return lines[0]


@pytest.fixture
def no_model_load(monkeypatch):
    """Loading a model (or analysing, which loads one) fails the test: checks come first."""
    def refuse(*_a, **_k):
        pytest.fail("a model was loaded before the arguments were checked")

    monkeypatch.setattr(common, "load_model", refuse)
    monkeypatch.setattr(common, "analyse_model", refuse)
    import headmaps.models.loader as loader

    monkeypatch.setattr(loader, "load", refuse)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    (d / "capitals.json").write_text(json.dumps([list(p) for p in COUNTRY_CAPITAL]))
    (d / "broken.json").write_text('[["France", "Paris"], ["Spain"')
    (d / "broken.csv").write_text("source,target\nFrance\n\x00\x01,,,\n")
    (d / "not_pairs.json").write_text('{"a": 1}')
    (d / "scores.parquet").write_bytes(b"PAR1 not really parquet")
    (d / "scores.json").write_text('{"kind": "headmaps.ScanResult"}')
    (d / "report_dir").mkdir()
    (d / "report_dir" / "head_report.json").write_text("{ nope")
    (d / "templates.json").write_text('["no placeholder here"]')
    (d / "extras.json").write_text("[1, 2")
    (d / "a_file").write_text("x")
    return d


# ---- outputs that cannot be written: refused before any work -----------------------------

def _outputs(model_dir):
    return [
        ["scan", model_dir, "--out", UNWRITABLE],
        ["analyse", model_dir, "--out", UNWRITABLE],
        ["describe", model_dir, "--out", UNWRITABLE],
        ["validate", model_dir, "--experiment", "correlation", "--out", UNWRITABLE],
        ["calibrate", model_dir, "--out", f"{UNWRITABLE}/cal.json"],
        ["types", model_dir, "--out", f"{UNWRITABLE}/types.parquet"],
        ["report", model_dir, "-o", f"{UNWRITABLE}/report.html"],
        ["plot", "--scan", model_dir, "-o", f"{UNWRITABLE}/plot.png"],
        ["relations", "coverage", model_dir, "-o", f"{UNWRITABLE}/coverage.md"],
        ["validate", model_dir, "--experiment", "causal", "--offload-folder", UNWRITABLE],
        ["diff", model_dir, model_dir, "--out", UNWRITABLE],
    ]


@pytest.mark.parametrize("case", range(11))
def test_unwritable_output_fails_before_any_work(case, model_dir, capsys, no_model_load):
    argv = _outputs(model_dir)[case]
    err = _one_line_failure(capsys, argv)
    assert "cannot write" in err and "headmaps-forbidden" in err


def test_output_below_a_file_is_refused(model_dir, files, capsys, no_model_load):
    err = _one_line_failure(capsys, ["scan", model_dir, "--out", str(files / "a_file" / "out")])
    assert "is a file, not a folder" in err


def test_unwritable_cache_and_calibration_store(model_dir, monkeypatch, capsys):
    monkeypatch.setenv("HEADMAPS_CALIBRATIONS", f"{UNWRITABLE}/cal")
    err = _one_line_failure(capsys, ["calibrate", model_dir])
    assert "calibration store" in err and "--no-store" in err


# ---- out-of-range and malformed options: refused at parse time ----------------------------

@pytest.mark.parametrize("argv, says", [
    (["scan", "--tau", "2"], "must be in [0, 1]"),
    (["scan", "--tau", "-0.1"], "must be in [0, 1]"),
    (["scan", "--tau", "nan"], "finite"),
    (["scan", "--k", "0"], ">= 1"),
    (["scan", "--min-pairs", "0"], ">= 1"),
    (["scan", "--top", "-3"], ">= 1"),
    (["head", "23.4", "--tokens", "0"], ">= 1"),
    (["head", "23.4", "--mappings", "x"], "an integer"),
    (["head", "23.4", "--max-distance", "0"], ">= 1"),
    (["head", "23.4", "--llm-timeout", "0"], "> 0"),
    (["validate", "--experiment", "causal", "--batch-size", "0"], ">= 1"),
    (["validate", "--experiment", "causal", "--max-pairs", "-1"], ">= 0"),
    (["validate", "--experiment", "causal", "--seed", "-1"], ">= 0"),
    (["calibrate", "--templates", "0"], ">= 1"),
    (["types", "--tokens", "0"], ">= 1"),
    (["plot", "--scan", ".", "-o", "x.png", "--dpi", "0"], ">= 1"),
    (["relations", "show", "copying", "--limit", "-1"], ">= 0"),
    (["describe", "--out", "x", "--tokens", "-1"], ">= 1"),
    (["scan", "--preset", "nonsense"], "invalid choice"),
    (["nonsense"], "invalid choice"),
    (["diff", "a", "b", "--alpha", "1"], "(0, 1)"),
    (["diff", "a", "b", "--n-boot", "0"], ">= 1"),
])
def test_out_of_range_options_are_one_line(argv, says, capsys, no_model_load):
    err = _one_line_failure(capsys, argv)
    assert says in err and "-h" in err


def test_head_spec_and_layers_are_checked_before_the_work(model_dir, capsys):
    err = _one_line_failure(capsys, ["head", model_dir, "1-0"])
    assert "LAYER.HEAD" in err
    err = _one_line_failure(capsys, ["head", model_dir, "99.0", "--no-qk"])
    assert "out of range" in err
    err = _one_line_failure(capsys, ["describe", model_dir, "--out", "unused", "--layers", "7-9"])
    assert "layer" in err.lower()


def test_bad_memory_size_is_one_line(model_dir, capsys, no_model_load):
    for spec in ("cpu=lots", "cpu", "cpu=1GiB,cpu=2GiB"):
        err = _one_line_failure(capsys, ["validate", model_dir, "--experiment", "causal",
                                         "--max-memory", spec])
        assert "argument --max-memory" in err and ("cannot read" in err or "twice" in err)


# ---- missing and malformed inputs ----------------------------------------------------------

def test_missing_inputs(model_dir, files, capsys, no_model_load):
    missing = str(files / "nope")
    for argv in (["report", "--from", missing, "-o", "r.html"],
                 ["report", model_dir, "--scan", missing, "-o", "r.html"],
                 ["plot", "--scan", missing, "-o", "p.png"],
                 ["validate", model_dir, "--experiment", "correlation", "--templates", missing],
                 ["analyse", model_dir, "--out", "o", "--salient", missing],
                 ["analyse", model_dir, "--out", "o", "--descriptions", missing],
                 ["report", model_dir, "--extras", missing]):
        err = _one_line_failure(capsys, argv)
        assert "nope" in err and "no such file" in err


def test_missing_model_is_one_line(tmp_path, capsys):
    err = _one_line_failure(capsys, ["info", str(tmp_path / "no-model-here")])
    assert "no-model-here" in err


@pytest.mark.parametrize("name", ["broken.json", "broken.csv", "not_pairs.json", "nope.json"])
def test_malformed_or_missing_relation_files(name, model_dir, files, tmp_path, capsys):
    out = tmp_path / "out"
    err = _one_line_failure(capsys, ["scan", model_dir, "--relations", str(files / name),
                                     "--out", str(out)])
    assert name in err
    assert not out.exists()


def test_malformed_result_files(model_dir, files, tmp_path, capsys):
    err = _one_line_failure(capsys, ["plot", "--scan", str(files / "scores.parquet"),
                                     "-o", str(tmp_path / "p.png")])
    assert "scores.parquet" in err
    err = _one_line_failure(capsys, ["report", "--from", str(files / "report_dir"),
                                     "-o", str(tmp_path / "r.html")])
    assert "head_report.json" in err
    err = _one_line_failure(capsys, ["validate", model_dir, "--experiment", "correlation",
                                     "--templates", str(files / "templates.json"),
                                     "--out", str(tmp_path / "v")])
    assert "<X>" in err
    assert not any(tmp_path.iterdir())


def test_malformed_extras_file(model_dir, files, tmp_path, capsys):
    from headmaps.headreport import analyse

    folder = tmp_path / "hr"
    analyse(model_dir, relations={"capitals": list(COUNTRY_CAPITAL)}, salient=False,
            describe="none", attention=False, head_types=False).save(folder)
    err = _one_line_failure(capsys, ["report", "--from", str(folder), "--extras",
                                     str(files / "extras.json"), "-o", str(tmp_path / "r.html")])
    assert "extras.json" in err
    assert not (tmp_path / "r.html").exists()


def test_a_damaged_stored_calibration_is_never_used(model_dir, files, tmp_path, monkeypatch,
                                                     capsys, caplog):
    import headmaps as hm
    from headmaps.models import cache
    from headmaps.projection.calibration import calibration_path

    monkeypatch.setenv("HEADMAPS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HEADMAPS_CALIBRATIONS", raising=False)  # the store inside the cache
    path = calibration_path(hm.load(model_dir))
    path.parent.mkdir(parents=True)
    path.write_text("{ not json")
    out = tmp_path / "o"
    assert cli.main(["scan", model_dir, "--relations", str(files / "capitals.json"),
                     "--min-pairs", "10", "--out", str(out), "--no-plots"]) == 0
    assert "unreadable" in json.loads((out / "scores.json").read_text())["calibration"]["reason"]
    assert "using the default projection" in caplog.text
    assert [i.status for i in cache.list_cache() if i.kind == "calibration"] == ["incomplete"]
    assert cli.main(["cache", "clean"]) == 0 and not path.exists()


# ---- interrupted runs leave nothing half-written -------------------------------------------

@pytest.mark.parametrize("where", ["heatmaps", "summary"])
def test_interrupted_scan_writes_nothing(where, model_dir, files, tmp_path, monkeypatch, capsys):
    import importlib

    from headmaps.scoring import results

    plots = importlib.import_module("headmaps.explorer.plots")

    def interrupt(*_a, **_k):
        raise KeyboardInterrupt

    if where == "heatmaps":
        monkeypatch.setattr(plots, "relation_heatmaps", interrupt)
    else:
        monkeypatch.setattr(results.ScanResult, "summary_markdown", interrupt)
    out = tmp_path / "out"
    err = _one_line_failure(capsys, ["scan", model_dir, "--relations",
                                     str(files / "capitals.json"), "--min-pairs", "10",
                                     "--out", str(out)], code=130)
    assert "interrupted" in err
    assert list(tmp_path.iterdir()) == []  # no output folder, no staging folder


def test_interrupted_rerun_keeps_the_earlier_files(model_dir, files, tmp_path, monkeypatch,
                                                   capsys):
    import importlib

    plots = importlib.import_module("headmaps.explorer.plots")
    out = tmp_path / "out"
    argv = ["scan", model_dir, "--relations", str(files / "capitals.json"), "--min-pairs", "10",
            "--out", str(out)]
    assert cli.main(argv) == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def interrupt(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(plots, "relation_heatmaps", interrupt)
    capsys.readouterr()
    _one_line_failure(capsys, argv + ["--k", "3"], code=130)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_fresh_results_headers_hold_no_local_paths(model_dir, files, tmp_path, capsys,
                                                   monkeypatch):
    monkeypatch.setenv("HEADMAPS_SHOW_PATHS", "1")  # retired: only the flag keeps paths
    out = tmp_path / "out"
    assert cli.main(["scan", model_dir, "--relations", str(files / "capitals.json"),
                     "--min-pairs", "10", "--out", str(out), "--no-plots"]) == 0
    header = (out / "scores.json").read_text()
    assert str(Path(model_dir)) not in header and str(tmp_path) not in header
    assert Path(model_dir).name in header
    out2 = tmp_path / "out2"
    assert cli.main(["--show-paths", "scan", model_dir, "--relations",
                     str(files / "capitals.json"), "--min-pairs", "10", "--out", str(out2),
                     "--no-plots"]) == 0
    assert str(Path(model_dir)) in (out2 / "scores.json").read_text()


def test_zero_ov_heads_are_named_by_info_and_scan(tmp_path, capsys):
    import torch

    from tiny_vocab import vocab_model

    model, tok = vocab_model(n_layers=2)
    attn = model.model.layers[1].self_attn
    with torch.no_grad():
        attn.o_proj.weight[:, attn.head_dim:] = 0  # head 1 of layer 1
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    assert cli.main(["info", str(tmp_path / "m")]) == 0
    err = capsys.readouterr().err
    assert "1 heads have a zero OV product" in err and "1.1" in err
