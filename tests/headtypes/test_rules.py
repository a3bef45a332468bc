"""The one rules table: robust z, labels with evidence, and labels judged as labels."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from headmaps import HeadmapsError, HeadTypes
from headmaps.headtypes import TYPES
from headmaps.headtypes import rules as R
from headmaps.headtypes.validate import compare, f1, pooled


def _noise(seed: int = 0, shape=(12, 8), mean: float = 0.3) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, 0.05, shape)


def test_robust_z_is_the_modified_z_score_and_falls_back_when_mad_is_zero():
    x = np.array([1.0, 2.0, 3.0, 4.0, 100.0])
    z, med, scale = R.robust_z(x)
    assert med == 3.0 and scale == pytest.approx(1.4826 * 1.0)
    assert z[-1] == pytest.approx(97 / 1.4826)
    sparse = np.array([0.0] * 8 + [0.5, 0.1])  # MAD 0: mean absolute deviation instead
    z, med, scale = R.robust_z(sparse)
    assert med == 0 and scale == pytest.approx(1.2533 * 0.06)
    assert np.all(R.robust_z(np.ones(5))[0] == 0)
    assert np.isnan(R.robust_z(np.array([np.nan, 1.0]))[0][0])


def test_percentile_and_confidence():
    p = R.percentile(np.array([3.0, 1.0, 2.0, np.nan]))
    assert p[0] == 100 and p[1] == pytest.approx(100 / 3) and np.isnan(p[3])
    c = R.confidence(np.array([R.Z0, R.Z0 + 2, -10]))
    assert c[0] == 0.5 and c[1] == pytest.approx(1 / (1 + math.exp(-2))) and c[2] < 1e-5


def _scores(plant: dict[str, tuple[int, int, float]], seed: int = 0) -> dict[str, np.ndarray]:
    out = {}
    for i, t in enumerate(TYPES):
        s = _noise(seed + i)
        if t == "successor":  # a relation score: most heads near zero
            s = np.abs(s - 0.3) / 5
        if t == "previous_token":  # an attention probability: most heads far below 0.4
            s = s - 0.2
        if t in plant:
            a, b, v = plant[t]
            s[a, b] = v
        out[t] = s
    return out


def test_a_planted_outlier_is_labelled_and_random_heads_are_not():
    eig = np.zeros((12, 8))
    eig[5, 2], eig[9, 1] = 0.9, -0.9
    comp = {"eigen_copying": eig, "successor_relation": np.full((12, 8), 0.2)}
    plant = {"previous_token": (3, 4, 0.9), "induction": (6, 0, 3.0),
             "duplicate_token": (7, 7, 2.5), "copying": (5, 2, 0.95),
             "copy_suppression": (9, 1, 0.95), "successor": (10, 3, 0.9)}
    labels, ev = R.apply(_scores(plant), comp)
    for t, (a, b, _) in plant.items():
        assert np.argwhere(labels[t]).tolist() == [[a, b]], t
        assert ev.z[t][a, b] >= R.Z0 and ev.percentile[t][a, b] == 100
        assert ev.confidence[t][a, b] > 0.99
        assert "here: score >=" in ev.rules[t] and t not in ev.notes


def test_absolute_rules_read_their_component():
    comp = {"eigen_copying": np.full((12, 8), 0.5), "copying_relation": np.zeros((12, 8))}
    comp["copying_relation"][2, 2] = 0.15  # exactly the MAPS threshold (a ratio of counts)
    comp["copying_relation"][4, 4] = 0.149
    labels, ev = R.apply({"copying": _noise(), "previous_token": np.full((12, 8), 0.39)}, comp)
    assert np.argwhere(labels["copying"]).tolist() == [[2, 2]]
    assert ev.rules["copying"].startswith("copying relation >= 0.15 and OV copying")
    assert not labels["previous_token"].any()  # 0.39 < 0.4, the behavioural criterion
    assert "no clear previous-token head" in ev.notes["previous_token"]


def test_the_relation_threshold_follows_tau():
    comp = {"eigen_copying": np.full((12, 8), 0.5), "copying_relation": np.zeros((12, 8))}
    comp["copying_relation"][2, 2] = 0.12
    scores = {"copying": _noise()}
    assert not R.apply(scores, comp)[0]["copying"].any()  # MAPS tau 0.15
    labels, ev = R.apply(scores, comp, tau=0.1)  # a scan run with tau 0.1
    assert np.argwhere(labels["copying"]).tolist() == [[2, 2]]
    assert ev.rules["copying"].startswith("copying relation >= 0.1 and")
    with pytest.raises(HeadmapsError, match="tau"):
        R.apply(scores, comp, tau=0)


def test_gates_and_floors_hold_back_an_outlier():
    eig = np.zeros((12, 8))
    eig[5, 2] = -0.5  # a copying outlier whose OV suppresses: not a copying head
    labels, ev = R.apply(_scores({"copying": (5, 2, 0.95), "induction": (6, 0, 0.9)}),
                         {"eigen_copying": eig})
    assert not labels["copying"].any() and not labels["induction"].any()  # induction floor 1.0
    assert ev.notes["induction"].startswith("no clear induction head; top candidates 6.0")
    assert "6.0 (score 0.9, z" in ev.notes["induction"]


def test_nothing_stands_out_says_so():
    labels, ev = R.apply({"previous_token": _noise(mean=0.1)}, {})
    assert not labels["previous_token"].any()
    assert ev.notes["previous_token"].startswith("no clear previous-token head; top candidates")
    with pytest.raises(HeadmapsError, match="no label rule"):
        R.apply({"bogus": _noise()}, {})
    with pytest.raises(HeadmapsError, match="z0"):
        R.apply({"previous_token": _noise(mean=0.1)}, {}, z0=float("nan"))


def test_headtypes_carries_the_evidence_through_frame_table_and_save(tmp_path):
    comp = {"eigen_copying": np.zeros((12, 8))}
    scores = _scores({"previous_token": (3, 4, 0.9)})
    labels, ev = R.apply(scores, comp)
    res = HeadTypes("m", 12, 8, scores, labels, comp, ev.rules, {}, zscores=ev.z,
                    percentiles=ev.percentile, confidence=ev.confidence, notes=ev.notes)
    frame = res.to_frame().set_index(["layer", "head"])
    assert {"z_previous_token", "pct_previous_token", "conf_previous_token"} <= set(frame.columns)
    assert frame.loc[(3, 4), "pct_previous_token"] == 100
    text = res.text()
    assert "    3.4     score" in text and "percentile 100.0" in text
    assert "no clear induction head" in text
    e = res.evidence(3, 4)
    assert [d["type"] for d in e] == ["previous_token"] and e[0]["z"] >= R.Z0
    back = HeadTypes.load(res.save(tmp_path / "t.parquet"))
    assert np.allclose(back.zscores["previous_token"], res.zscores["previous_token"])
    assert back.notes == res.notes
    with pytest.raises(HeadmapsError, match="outside"):
        res.evidence(12, 0)
    bare = HeadTypes("m", 12, 8, scores, labels, comp)  # evidence filled from the scores
    assert np.allclose(bare.zscores["previous_token"], res.zscores["previous_token"])


def test_labels_judged_as_labels():
    assert f1(3, 1, 1) == (0.75, 0.75, 0.75)
    p, r, f = f1(0, 0, 2)
    assert math.isnan(p) and r == 0 and f == 0
    L, H = 4, 5
    s = np.zeros((L, H))
    s[0, 0], s[1, 1], s[2, 2] = 3, 2, 1
    lab = s >= 2  # two labels
    beh = np.zeros((L, H))
    beh[0, 0], beh[2, 2] = 0.9, 0.5  # two positives (>= 0.4), one labelled
    res = HeadTypes("m", L, H, {"induction": s}, {"induction": lab}, {})
    t = compare(res, {"induction": beh}).set_index("type").loc["induction"]
    assert (t["positives"], t["labelled"], t["tp"]) == (2, 2, 1)
    assert t["precision"] == 0.5 and t["recall"] == 0.5 and t["f1"] == 0.5
    assert t["auroc"] == pytest.approx((18 + 17) / 36)
    both = pooled([pd.DataFrame([t.rename(None)]).assign(type="induction")] * 2)
    row = both.iloc[0]
    assert (row["positives"], row["tp"], row["f1"]) == (4, 2, 0.5)
    with pytest.raises(HeadmapsError, match="not the same model"):
        compare(res, {"induction": np.zeros(3)})
