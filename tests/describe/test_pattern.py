"""PatternDescriber on heads built to do one thing (their OV circuit is written by hand)."""

from __future__ import annotations

import numpy as np
import pytest

import headmaps as hm
from headmaps.describe import Description, PatternDescriber
from headmaps.describe.rules import affix, explain
from headmaps.salient import SalientOperations, salient_operations
from tiny_vocab import (
    COUNTRY_CAPITAL,
    LETTERS,
    OTHER,
    VERB_PAST,
    YEARS,
    mapping_matrix,
    set_mapping,
    vocab_model,
)

COUNTRIES = [c for c, _ in COUNTRY_CAPITAL]
RELATIONS = {
    "country_to_capital": ("knowledge", COUNTRY_CAPITAL),
    "verb_to_past_tense": ("linguistic", VERB_PAST),
    "copying": ("algorithmic", [(w, w) for w in OTHER + COUNTRIES]),
    "year_to_following": ("algorithmic", [(str(y), str(y + 1)) for y in range(1900, 2000)]),
}

#: slot (layer, head) -> the pairs its OV circuit implements
HEADS = {
    "capital": ((0, 0), COUNTRY_CAPITAL),
    "copy": ((0, 1), [(w, w) for w in COUNTRIES + [v for v, _ in VERB_PAST] + OTHER]),
    "past": ((1, 0), VERB_PAST),
    "first_letter": ((1, 1), [(w, w[0].lower()) for w in COUNTRIES + OTHER]),
    "successor": ((2, 0), list(zip(YEARS[:-1], YEARS[1:]))),
    "inverse": ((2, 1), [(t, s) for s, t in COUNTRY_CAPITAL]),
    "to_countries": ((3, 0), [(w, COUNTRIES[i]) for i, w in enumerate(OTHER + LETTERS[:8])]),
    "inputs_only": ((3, 1), [(c, OTHER[i % len(OTHER)]) for i, c in enumerate(COUNTRIES)]),
}


@pytest.fixture(scope="module")
def built():
    model, tok = vocab_model(n_layers=4)
    for (layer, head), pairs in HEADS.values():
        set_mapping(model, layer, head, mapping_matrix(tok, pairs))
    return hm.load(model, tokenizer=tok)


@pytest.fixture(scope="module")
def describer():
    return PatternDescriber(RELATIONS)


def describe(built, describer, name) -> Description:
    (layer, head), _ = HEADS[name]
    ops = salient_operations(built, layer, head, n_tokens=15, n_mappings=5, projection="paper")
    return describer.describe(ops)


def test_relation_head(built, describer):
    d = describe(built, describer, "capital")
    assert not d.unclear and d.category == "relation" and d.relation == "country_to_capital"
    assert d.family == "knowledge"
    assert "country_to_capital" in d.text and "countries" in d.text
    assert d.confidence == pytest.approx(1.0)
    assert {(e["source"], e["target"]) for e in d.evidence} <= set(COUNTRY_CAPITAL)
    assert len(d.evidence) == 15


def test_copying_head(built, describer):
    d = describe(built, describer, "copy")
    assert d.category == "copying" and not d.unclear
    assert d.text.startswith("Copying")
    assert all(e["source"] == e["target"] for e in d.evidence)
    assert len(d.evidence) == 15


def test_past_tense_head_names_library_relation(built, describer):
    d = describe(built, describer, "past")
    assert d.category == "relation" and d.relation == "verb_to_past_tense"
    assert d.family == "linguistic"
    # without the library the suffix rule still explains it
    d2 = PatternDescriber({}).describe(salient_operations(built, 1, 0, projection="paper"))
    assert d2.category == "affix" and d2.relation == "add:-ed" and "past tense" in d2.text


def test_first_letter_and_successor(built, describer):
    d = describe(built, describer, "first_letter")
    assert d.category == "first_letter" and "first letter" in d.text
    d = describe(built, describer, "successor")
    assert d.category == "numeric" and d.relation == "successor"
    assert "years" in d.input_strings


def test_inverse_relation(built, describer):
    d = describe(built, describer, "inverse")
    assert d.category == "inverse_relation" and d.relation == "country_to_capital"
    assert "capital cities → countries" in d.text


def test_target_category(built, describer):
    d = describe(built, describer, "to_countries")
    assert d.category == "target_category" and d.relation == "countries" and d.family == "knowledge"
    assert "country_to_capital" in d.text


def test_shared_inputs_only(built, describer):
    d = describe(built, describer, "inputs_only")
    assert d.category == "input_category" and d.relation == "countries" and not d.unclear
    assert d.confidence <= 0.5 and "countries" in d.text


def ops_of(pairs: list[tuple[str, list[str]]]) -> SalientOperations:
    n, k = len(pairs), len(pairs[0][1])
    return SalientOperations(3, 1, np.arange(n), [" " + s for s, _ in pairs], np.ones(n),
                             np.zeros((n, k), dtype=np.int64),
                             [[" " + t for t in ts] for _, ts in pairs],
                             np.ones((n, k)))


def test_unclear_and_odd_tokens(describer):
    junk = ops_of([("xq", ["zz", "vv"]), ("mop", ["tree", "kk"]), (",", ["", "."]),
                   ("", ["a", "b"])] * 3)
    d = describer.describe(junk)
    assert d.unclear and d.category == "unclear" and d.text == "Unclear"
    empty = ops_of([("", [""])])
    assert describer.describe(empty).unclear


def test_case_and_space_variants_count_as_copying(describer):
    ops = ops_of([("Paris", ["paris", "x"]), ("river", [" River", "y"]), ("music", ["MUSIC", "z"]),
                  ("green", ["green", "q"])])
    d = describer.describe(ops)
    assert d.category == "copying" and len(d.evidence) == 4


def test_rules():
    assert explain("walk", "walked") == "add:-ed"
    assert explain("try", "tried") == "add:-ed"
    assert explain("big", "bigger") == "add:-er"
    assert explain("make", "making") == "add:-ing"
    assert explain("cats", "cat") == "remove:-s"
    assert explain("happy", "unhappy") == "add:un-"
    assert explain("1999", "2000") == "successor"
    assert explain("France", "f") == "first_letter"
    assert explain("France", "e") == "last_letter"
    assert affix("France", "Paris") is None


def test_builtin_library(built):
    d = PatternDescriber().describe(salient_operations(built, 0, 0, projection="paper"))
    assert d.category in ("relation", "target_category") and d.family == "knowledge"
    assert "country_to_capital" in d.text


@pytest.mark.slow
def test_smollm2_head_23_4_maps_to_countries(smollm2):
    ops = salient_operations(smollm2, 23, 4, projection="paper")
    assert " Italian" in ops.tokens and " Italy" in {t for ts in ops.targets for t in ts}
    d = PatternDescriber().describe(ops)
    assert not d.unclear and d.family == "knowledge"
    assert d.category == "target_category" and d.relation == "countries"
    assert "country_to_capital" in d.text
