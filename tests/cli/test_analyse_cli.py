"""`headmaps analyse MODEL --out DIR` and `headmaps report --from DIR` (no model loaded)."""

from __future__ import annotations

import json
import re

import pytest

import headmaps.cli as cli
import headmaps.models
from headmaps.headreport import HeadReport


@pytest.fixture(scope="module")
def saved(model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("analysed") / "hr"
    assert cli.main(["analyse", model_dir, "--relations", "copying,successor", "--out",
                     str(out)]) == 0
    return out


def test_analyse_writes_every_part(saved, capsys):
    res = HeadReport.load(saved)
    assert res.parts() == ["scan", "salient", "descriptions", "attention", "types"]
    assert res.scan.relations == ["copying", "successor"]
    assert set(res.seconds) == {"scan", "salient", "descriptions", "attention", "types"}


def test_report_from_saved_loads_no_model(saved, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(headmaps.models, "load",
                        lambda *a, **k: pytest.fail("the model must not be loaded"))
    out = tmp_path / "r.html"
    assert cli.main(["report", "--from", str(saved), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "parts: scan, salient, descriptions, attention, types" in printed
    page = out.read_text(encoding="utf-8")
    data = json.loads(re.search(r'id="hm-data">(.*?)</script>', page, re.S).group(1))
    res = HeadReport.load(saved)
    labelled = {f"{la}.{h}" for t in res.types.labels
                for la, h in res.types.heads_of(t)}
    shown = {f"{i // data['nH']}.{i % data['nH']}" for hs in data["types"]["heads"] for i in hs}
    assert shown == labelled
    lines = re.search(r'id="hm-ex">(.*?)</script>', page, re.S).group(1).split("\n")
    assert all('"a":' in line for line in lines)  # the QK half of every head


def test_parts_can_be_skipped(model_dir, saved, tmp_path, capsys):
    out = tmp_path / "hr"
    assert cli.main(["analyse", model_dir, "--scan", str(saved / "scores.parquet"),
                     "--no-attention", "--no-types", "--describe", "none", "--out", str(out)]) == 0
    assert HeadReport.load(out).parts() == ["scan", "salient"]
    assert "wrote" in capsys.readouterr().out


def test_missing_head_report_is_one_line(tmp_path, capsys):
    assert cli.main(["report", "--from", str(tmp_path), "-o", str(tmp_path / "r.html")]) == 2
    assert "headmaps analyse" in capsys.readouterr().err


def test_analyse_uses_a_stored_calibration_unless_told_not_to(model_dir, tmp_path, capsys):
    import headmaps as hm
    from headmaps.projection import ProjectionOptions
    from headmaps.projection.calibration import Calibration, fingerprint, store

    m = hm.load(model_dir)
    chosen = ProjectionOptions(source="mlp0_residual", fold_norms=True)
    store(Calibration(model_id=m.model_id, fingerprint=fingerprint(m), choice="mlp0_residual+fold",
                      options=chosen.to_dict(), median_r=0.5, n_pairs=8), m)
    base = ["analyse", model_dir, "--relations", "copying", "--no-salient", "--no-attention",
            "--no-types"]
    assert cli.main(base + ["--out", str(tmp_path / "cal")]) == 0
    assert "calibrated mlp0_residual+fold" in capsys.readouterr().out
    assert ProjectionOptions(**HeadReport.load(tmp_path / "cal").scan.options) == chosen
    assert cli.main(base + ["--no-calibration", "--out", str(tmp_path / "plain")]) == 0
    assert "(uncalibrated)" in capsys.readouterr().out
    assert HeadReport.load(tmp_path / "plain").scan.calibration["status"] == "uncalibrated"


def test_report_takes_the_projection_options_as_scan_does(model_dir, tmp_path, capsys):
    out = tmp_path / "r.html"
    base = ["report", model_dir, "--relations", "copying", "--no-salient", "--no-types",
            "-o", str(out)]
    assert cli.main(base + ["--preset", "through"]) == 0
    printed = capsys.readouterr().out
    assert "projection through (after [UNK])" in printed
    assert cli.main(base + ["--source", "token_alone", "--prefix", "[PAD]", "--fold-norms"]) == 0
    printed = capsys.readouterr().out
    assert "prefix=[PAD]" in printed and "source=token_alone" in printed


def test_stream_dtype_is_chosen_recorded_and_shown(model_dir, tmp_path, capsys):
    out = tmp_path / "hr"
    assert cli.main(["analyse", model_dir, "--relations", "copying", "--no-types",
                     "--stream-dtype", "bfloat16", "--out", str(out)]) == 0
    res = HeadReport.load(out)
    for part in (res.salient, res.attention):
        assert part.options["stream_dtype"] == "bfloat16"
        assert part.options["stream_reason"].startswith("asked")
    assert res.scan.preset == "through"  # how the stream runs does not make it custom
    page = tmp_path / "r.html"
    assert cli.main(["report", "--from", str(out), "-o", str(page)]) == 0
    assert "Vocabulary stream" in page.read_text(encoding="utf-8")
    assert "bfloat16 screen, float32 decisions (asked" in page.read_text(encoding="utf-8")
    # the default: auto, decided for this CPU (the test session sees no native bfloat16)
    assert cli.main(["analyse", model_dir, "--relations", "copying", "--no-types",
                     "--no-salient", "--out", str(tmp_path / "auto")]) == 0
    auto = HeadReport.load(tmp_path / "auto").attention.options
    assert auto["stream_dtype"] == "float32" and auto["stream_reason"].startswith("auto: no")
    assert cli.main(["scan", model_dir, "--stream-dtype", "half"]) == 2
    assert "invalid choice: 'half'" in capsys.readouterr().err
