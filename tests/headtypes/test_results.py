"""`HeadTypes.to_extras`: the labels as report extras, and the report's encoding of them."""

from __future__ import annotations

import numpy as np
import pytest

from headmaps import HeadmapsError, HeadTypes
from headmaps.headtypes import TYPES
from headmaps.report.encode import encode_types
from headmaps.report.schema import normalise_extras


def types_result() -> HeadTypes:
    L, H = 2, 3
    labels = {t: np.zeros((L, H), dtype=bool) for t in TYPES}
    labels["induction"][1, 2] = True
    labels["previous_token"][0, 1] = labels["copying"][0, 1] = True
    scores = {t: np.zeros((L, H), dtype=np.float32) for t in TYPES}
    return HeadTypes("m", L, H, scores, labels, {})


def test_to_extras_lists_labelled_heads_only():
    ex = types_result().to_extras()
    assert {k: v["types"] for k, v in ex.items()} == {"0.1": ["previous_token", "copying"],
                                                       "1.2": ["induction"]}
    why = ex["0.1"]["type_evidence"]
    assert set(why) == {"previous_token", "copying"}
    assert why["copying"].startswith("copying (from parameters): score 0, robust z 0.0")


def test_the_report_carries_each_labels_evidence():
    norm = normalise_extras(types_result().to_extras(), 2, 3)
    enc = encode_types(norm, 3)
    assert enc["why"][0][0].startswith("previous token (from parameters): score 0")
    assert len(enc["why"]) == len(enc["names"]) and [len(w) for w in enc["why"]] == [1, 1, 1]


def test_encoded_per_type_in_type_order():
    norm = normalise_extras(types_result().to_extras(), 2, 3)
    enc = encode_types(norm, 3)
    assert {k: enc[k] for k in ("names", "heads")} == {
        "names": ["previous_token", "induction", "copying"], "heads": [[1], [5], [1]]}


def test_bad_types_are_refused():
    with pytest.raises(HeadmapsError, match="list of type names"):
        normalise_extras({"0.1": {"types": "induction"}}, 2, 3)
