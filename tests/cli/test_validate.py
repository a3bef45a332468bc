"""`headmaps validate`: one API call; its run folder (summary.md, run.json) is the result's."""

from __future__ import annotations

import json

import pandas as pd
from test_calibrate_command import default_label

from headmaps import cli
from headmaps.experiments.results import CORRELATION_COLUMNS


def test_validate_writes_the_run_folder_of_the_result(model_dir, tmp_path, capsys):
    out = tmp_path / "v"
    argv = ["validate", model_dir, "--experiment", "correlation", "--relations",
            "country_to_capital", "--max-pairs", "0", "--out", str(out)]
    assert cli.main(argv) == 0
    assert f"projection {default_label(model_dir)}" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {
        "correlation.csv", "correlation.json", "correlation_heads.csv", "correlation_heads.json",
        "correlation.png", "summary.md", "run.json", "correlation_sets.csv",
        "correlation_sets.json", "correlation_templates.csv", "correlation_templates.json"}
    sets = pd.read_csv(out / "correlation_sets.csv")
    # the default set, and its templates that end with the source / have a later query
    assert list(sets["templates"]) == ["headmaps", "source_last", "source_inside"]
    per_template = pd.read_csv(out / "correlation_templates.csv")
    assert len(per_template) == 6 and per_template["ends_with_source"].sum() == 4
    table = pd.read_csv(out / "correlation.csv")
    assert list(table.columns) == CORRELATION_COLUMNS
    assert table.loc[0, "corr_without_context"] > 0.5  # head 1.0 maps countries to capitals
    run = json.loads((out / "run.json").read_text())
    assert run["command"].startswith("headmaps validate ")  # as typed (local paths cut to names)
    assert run["command"].endswith("--relations country_to_capital --max-pairs 0 --out v")
    assert run["seed"] == 0 and run["sample"]["relations"] == ["country_to_capital"]
    summary = (out / "summary.md").read_text()
    assert summary.startswith("# Correlation with inference:")
    assert "in-context score `phi_ctx`" in summary and "## By template set" in summary
    assert "--max-pairs 0" in summary and "![scatter](correlation.png)" in summary
