"""The head card shows the description's offline held-out score and baseline (issue 24)."""

from __future__ import annotations

import json

from test_head import run

from headmaps.describe import Description


def test_card_shows_the_offline_score_beside_the_baseline(model_dir, capsys):
    assert run(["head", model_dir, "1.0", "--tokens", "6", "--preset", "paper", "--no-qk"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("description score"))
    assert line.startswith("description score (offline, held-out): ")
    score, baseline = float(line.split(": ")[1].split()[0]), float(line.split("baseline ")[1]
                                                                  .split()[0])
    assert score >= 0.8 and baseline < score  # the capital rule holds on held-out countries


def test_card_json_score_uses_held_out_tokens_only(model_dir, capsys):
    assert run(["head", model_dir, "1.0", "--tokens", "6", "--preset", "paper", "--no-qk",
                "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    ds = data["description_score"]
    shown = {t["token"] for t in data["tokens"]}
    assert ds["method"] == "offline" and ds["n"] >= 1 and ds["k"] == 5
    assert ds["tokens"] and not shown & set(ds["tokens"])
    assert ds["score"] == sum(h for h in ds["hits"] if h >= 0) / ds["n"]
    assert run(["head", model_dir, "1.0", "--json", "--no-qk", "--no-score"]) == 0
    assert "description_score" not in json.loads(capsys.readouterr().out)


class _Words:
    """A describer that writes free words (no rule), as an LLM does."""

    name = "words"

    def describe(self, ops):
        return Description(ops.layer, ops.head, "maps countries to cities", "llm",
                           confidence=0.9, describer="llm:test")


def test_card_says_a_description_without_rule_is_not_scorable_offline(model_dir, capsys,
                                                                       monkeypatch):
    monkeypatch.setattr("headmaps.describe.get_describer", lambda *args, **kwargs: _Words())
    assert run(["head", model_dir, "1.0", "--preset", "paper", "--no-qk"]) == 0
    out = capsys.readouterr().out
    assert "description score: not scorable offline" in out
    assert run(["head", model_dir, "1.0", "--preset", "paper", "--no-qk", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["description_score"] is None


def test_analyse_and_report_score_descriptions(model_dir, tmp_path, capsys):
    from headmaps.cli import main
    from headmaps.headreport import HeadReport

    out = tmp_path / "hr"
    assert main(["analyse", model_dir, "--relations", "copying", "--preset", "paper",
                 "--no-attention", "--no-types", "--score-descriptions", "--out", str(out)]) == 0
    res = HeadReport.load(out)
    assert res.parts() == ["scan", "salient", "descriptions", "description_scores"]
    capital = res.description_scores[1, 0]
    assert capital.rule == "relation:country_to_capital" and capital.method == "offline"
    res.description_scores.save(tmp_path / "scores")
    page = tmp_path / "r.html"
    assert main(["report", model_dir, "--relations", "copying", "--preset", "paper",
                 "--no-attention", "--no-types", "--description-scores",
                 str(tmp_path / "scores"), "-o", str(page)]) == 0
    assert '"dscored":' in page.read_text(encoding="utf-8")
    assert '"dscored":0' not in page.read_text(encoding="utf-8")
