"""`HeadTypes` in the report: its labels reach the page per type, read from its frame."""

from __future__ import annotations

import numpy as np
import pytest

from headmaps import HeadmapsError, HeadReport, HeadTypes, ScanResult
from headmaps.explorer.encode import encode
from headmaps.explorer.schema import normalise_extras
from headmaps.headtypes import TYPES


def types_result() -> HeadTypes:
    L, H = 2, 3
    labels = {t: np.zeros((L, H), dtype=bool) for t in TYPES}
    labels["induction"][1, 2] = True
    labels["previous_token"][0, 1] = labels["copying"][0, 1] = True
    scores = {t: np.zeros((L, H), dtype=np.float32) for t in TYPES}
    return HeadTypes("m", L, H, scores, labels, {})


def scan() -> ScanResult:
    z = np.zeros((1, 2, 3), np.float32)
    return ScanResult("m", {}, ["a"], z, z, {"a": 30}, {"a": 10})


def test_frame_lists_labels_of_labelled_heads_only():
    frame = types_result().to_frame().set_index(["layer", "head"])["types"]
    assert frame[(0, 1)] == "previous_token,copying" and frame[(1, 2)] == "induction"
    assert (frame == "").sum() == 4


def test_evidence_text_of_labelled_types():
    why = types_result().evidence_text(0, 1)
    assert set(why) == {"previous_token", "copying"}
    assert why["copying"].startswith("copying (from parameters): score 0, robust z 0.0")


def test_encoded_per_type_in_type_order_with_evidence():
    payload, heads = encode(HeadReport(scan(), types=types_result()), "t")
    assert {k: payload["types"][k] for k in ("names", "heads")} == {
        "names": ["previous_token", "induction", "copying"], "heads": [[1], [5], [1]]}
    why = payload["types"]["why"]
    assert why[0][0].startswith("previous token (from parameters): score 0")
    assert [len(w) for w in why] == [1, 1, 1]
    assert heads == [None] * 6  # types go to the payload, not to the heads


def test_hand_written_types_win_for_their_head():
    extras = normalise_extras({"1.2": {"types": ["successor"]}}, 2, 3)
    payload, _ = encode(HeadReport(scan(), types=types_result()), "t", extras)
    assert payload["types"]["names"] == ["previous_token", "copying", "successor"]
    assert payload["types"]["heads"][-1] == [5]


def test_bad_types_are_refused():
    with pytest.raises(HeadmapsError, match="list of type names"):
        normalise_extras({"0.1": {"types": "induction"}}, 2, 3)
