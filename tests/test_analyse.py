"""`hm.analyse` -> HeadReport: every part, save/load round trip, report from it."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

import headmaps as hm
from headmaps.headreport import MANIFEST, PARTS, HeadReport
from tiny_vocab import set_mapping, vocab_model


@pytest.fixture(scope="module")
def model():
    m, tok = vocab_model(n_layers=2)
    eye = torch.eye(len(tok), dtype=torch.float64)
    set_mapping(m, 0, 1, eye, preset=hm.DEFAULT_PRESET)  # a copying head
    return hm.load(m, tokenizer=tok)


@pytest.fixture(scope="module")
def result(model):
    return hm.analyse(model, relations=["country_to_capital", "copying", "successor"])


def payload(path):
    page = path.read_text(encoding="utf-8")
    data = json.loads(re.search(r'id="hm-data">(.*?)</script>', page, re.S).group(1))
    data.pop("generated")
    return data, re.search(r'id="hm-ex">(.*?)</script>', page, re.S).group(1)


def test_analyse_has_every_part(result, model):
    assert result.parts() == [p for p in PARTS if p != "description_scores"]  # opt-in
    assert result.scan.scores.shape[1:] == (model.n_layers, model.n_heads)
    assert len(result.salient) == len(result.descriptions) == model.n_layers * model.n_heads
    assert result.attention.layers == list(range(model.n_layers))
    assert result.types.scores["copying"].shape == (model.n_layers, model.n_heads)
    assert "copying" in result.types.types_of(0, 1)
    # the head built to copy is found by the scan part
    r = result.scan["copying"].scores
    assert r[0, 1] == pytest.approx(1.0) and r.sum() < 2
    assert set(result.seconds) == {"scan", "salient", "descriptions", "attention", "types"}
    # the head types reuse the scan's copying scores instead of scoring again
    np.testing.assert_allclose(result.types.components["copying_relation"],
                               result.scan["copying"].scores)
    # one previous-token number: the types' score is the QK summary's (sampled) mass
    for layer, head in [(0, 0), (1, 1)]:
        prof = result.attention.profile_at(layer, head)
        assert result.types.scores["previous_token"][layer, head] == pytest.approx(
            prof.prev_mass, abs=1e-6)
        assert prof.prev_mass == pytest.approx(prof.sampled_prev_mass)


def test_save_load_round_trip(result, tmp_path):
    folder = result.save(tmp_path / "hr")
    assert (folder / MANIFEST).is_file()
    back = HeadReport.load(folder)
    assert back.parts() == result.parts()
    np.testing.assert_array_equal(back.scan.scores, result.scan.scores)
    np.testing.assert_array_equal(back.salient.target_ids, result.salient.target_ids)
    assert [d.text for d in back.descriptions] == [d.text for d in result.descriptions]
    np.testing.assert_array_equal(back.attention.key_ids, result.attention.key_ids)
    for t in result.types.labels:
        np.testing.assert_array_equal(back.types.labels[t], result.types.labels[t])
    assert back.seconds == result.seconds
    assert HeadReport.load(folder / MANIFEST).parts() == result.parts()


def test_parts_off_and_stale_parts_ignored(model, result, tmp_path):
    small = hm.analyse(model, scan=result.scan, salient=False, describe="none", attention=False,
                       head_types=False)
    assert small.parts() == ["scan"] and small.seconds == {}
    folder = tmp_path / "hr"
    result.save(folder)
    small.save(folder)  # the earlier parts stay on disk but the manifest no longer names them
    assert HeadReport.load(folder).parts() == ["scan"]


def test_report_from_saved_equals_report_from_model(model, result, tmp_path):
    from_model = hm.report(model, tmp_path / "a.html", scan=result.scan)
    result.save(tmp_path / "hr")
    from_saved = hm.report(HeadReport.load(tmp_path / "hr"), tmp_path / "b.html")
    (da, ea), (db, eb) = payload(from_model), payload(from_saved)
    assert da == db and ea == eb
    assert 1 in da["types"]["heads"][da["types"]["names"].index("copying")]  # head 0.1
    assert '"a":' in ea  # and the QK half


def test_bad_input(model, result, tmp_path):
    with pytest.raises(hm.HeadmapsError, match="salient"):
        hm.analyse(model, scan=result.scan, salient=False, describe="pattern")
    with pytest.raises(hm.HeadmapsError, match="unknown describer"):
        hm.analyse(model, scan=result.scan, describe="oracle")
    with pytest.raises(hm.HeadmapsError, match="need the model"):
        hm.analyse(None, scan=result.scan, describe="none", salient=False)
    with pytest.raises(hm.HeadmapsError, match="head_report.json"):
        HeadReport.load(tmp_path)
    with pytest.raises(hm.HeadmapsError, match="folder"):
        result.save(tmp_path / "x.parquet")


def test_every_part_projects_as_the_calibrated_scan(model):
    from headmaps.projection import ProjectionOptions
    from headmaps.projection.calibration import Calibration, fingerprint, store

    chosen = ProjectionOptions(source="mlp0_residual", fold_norms=True)
    cal = Calibration(model_id=model.model_id, fingerprint=fingerprint(model),
                      choice="mlp0_residual+fold", options=chosen.to_dict(), median_r=0.5,
                      n_pairs=8)
    store(cal, model)
    res = hm.analyse(model, relations=["copying", "successor"], describe="none")
    assert res.scan.calibration["status"] == "calibrated"
    assert ProjectionOptions(**res.scan.options) == chosen
    assert ProjectionOptions(**res.salient.options) == chosen
    assert ProjectionOptions(**res.attention.options) == chosen
    assert ProjectionOptions(**res.types.options) == chosen


def test_parts_share_one_pass_of_the_stream(model, monkeypatch):
    """With the through-the-model source, salient operations, the QK half and the head
    types read one stream over the vocabulary, advanced once, and give what each part
    computes on its own."""
    from headmaps import projection as P
    from headmaps.projection import sources as S

    V, calls = model.vocab_size, []
    real = S._advance

    def counting(m, x, blocks, *args, **kwargs):
        calls.append((x.shape[0], len(blocks)))
        return real(m, x, blocks, *args, **kwargs)

    monkeypatch.setattr(S, "_advance", counting)
    res = hm.analyse(model, relations=["copying", "successor"], describe="none",
                     projection="through")
    whole = sum(n for rows, n in calls if rows == V)
    assert whole == model.n_layers - 1  # one pass over the vocabulary, all parts together
    assert res.salient.options["prefix"] == P.document_prefix(model.tokenizer)[0] != "auto"
    calls.clear()
    alone = hm.salient_all(model, projection="through")
    qk = hm.attention_summary(model, projection="through")
    assert sum(n for rows, n in calls if rows == V) == 2 * (model.n_layers - 1)
    assert np.array_equal(alone.token_ids, res.salient.token_ids)
    assert np.allclose(alone.saliency, res.salient.saliency)
    assert np.array_equal(qk.key_ids, res.attention.key_ids)
    types = hm.head_types(model, projection="through", scan=res.scan)
    assert np.allclose(types.components["eigen_copying"], res.types.components["eigen_copying"],
                       equal_nan=True)
