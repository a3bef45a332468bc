"""The experiments on SmolLM2-135M: short runs (one relation, few pairs)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from headmaps import experiments as ex
from headmaps.experiments.dynamic import build_prompt, word_ids
from headmaps.experiments.results import CAUSAL_COLUMNS, CORRELATION_COLUMNS

pytestmark = pytest.mark.slow
TEMPLATES = ["This is a document about <X>", "No <X> means no"]


def test_build_prompt_places_the_source_token(smollm2):
    tok = smollm2.tokenizer
    src = word_ids(tok, "France")
    for template in TEMPLATES + ["<X> is"]:
        ids, pos = build_prompt(tok, template, src)
        assert ids[pos] == src[-1]
        assert tok.decode(ids).strip().replace("  ", " ") == template.replace("<X>", "France")


def test_correlation_cli(smollm2, tmp_path, monkeypatch, capsys):
    from headmaps import cli
    from headmaps.cli import common

    monkeypatch.setattr(common, "load_model", lambda args: smollm2)  # the session's model

    (tmp_path / "t.json").write_text(json.dumps(TEMPLATES))
    assert cli.main(["validate", "smollm2-135m", "--experiment", "correlation",
                     "--relations", "name_copying", "--max-pairs", "12", "--templates",
                     str(tmp_path / "t.json"), "--out", str(tmp_path / "out")]) == 0
    assert "correlation (static scores: projection through (after <|endoftext|>) (uncalibrated))" \
        in capsys.readouterr().out
    table = pd.read_csv(tmp_path / "out" / "correlation.csv")
    assert list(table.columns) == CORRELATION_COLUMNS
    assert table.loc[0, "n_pairs"] == 12
    assert table.loc[0, "corr_without_context"] > 0.5  # name copying heads are clear-cut
    assert (tmp_path / "out" / "summary.md").is_file()
    assert (tmp_path / "out" / "correlation.png").is_file()
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["command"].startswith("headmaps validate smollm2-135m --experiment correlation")
    assert run["seed"] == 0 and run["model_id"] == smollm2.model_id
    assert run["sample"]["pairs_per_relation"] == {"name_copying": 12}
    assert run["sample"]["templates"] == TEMPLATES and run["versions"]["headmaps"]


def test_causal_short(smollm2):
    res = ex.causal(smollm2, ["name_copying"], m=3, n_random=2, random_points=1, max_pairs=12)
    row = res.per_relation.iloc[0]
    assert list(res.per_relation.columns) == CAUSAL_COLUMNS
    assert row.base_acc > 0.8  # the few-shot copying template is easy
    assert row.n_heads_removed == 3 and len(res.heads["name_copying"]) == 3
    curve = res.curves[res.curves.relation == "name_copying"]
    assert list(curve.n_heads_removed) == [0, 1, 2, 3]
    assert curve.acc_relation.iloc[0] == row.base_acc


def test_multitoken_short(smollm2):
    res = ex.multitoken(smollm2, ["country_to_language"], TEMPLATES, max_pairs=10, min_pairs=5)
    assert res.kind == "multitoken" and len(res.per_relation) == 1
    assert res.per_relation.loc[0, "n_pairs"] == 10
    assert np.isfinite(res.per_relation.loc[0, "corr_without_context"])
