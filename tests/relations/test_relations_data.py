"""The built-in relation data: names, sizes, metadata and mechanically checkable facts."""

from __future__ import annotations

import json

import pytest

import headmaps.relations as R
from headmaps.relations.registry import DATA_DIR

EXPECTED = {
    "algorithmic": ["copying", "name_copying", "word_first_letter", "word_last_letter",
                    "year_to_following",
                    "successor"],
    "knowledge": ["country_to_capital", "country_to_language", "object_to_superclass",
                  "product_to_company",
                  "work_to_location"],
    "linguistic": ["antonym", "adj_to_comparative", "adj_to_superlative", "noun_to_pronoun",
                   "verb_to_past_tense",
                   "word_to_homophone", "word_to_synonym", "word_to_compound"],
    "translation": ["english_to_french", "english_to_spanish"],
}
FLOORS = {"copying": 500, "year_to_following": 500, "word_first_letter": 200,
          "word_last_letter": 200,
          "name_copying": 150}
ALL = [n for group in EXPECTED.values() for n in group]


def test_names_are_the_twenty_one():
    assert R.names() == ALL
    assert len(set(R.names())) == 21
    assert R.categories() == EXPECTED


def test_data_folder_holds_exactly_the_builtins():
    files = {p.stem for p in DATA_DIR.glob("*.json")}
    assert files == set(ALL) | {"templates"}


@pytest.mark.parametrize("name", ALL)
def test_relation_file(name):
    info = R.info(name)
    pairs = R.load(name)
    assert info.name == name
    assert info.category in EXPECTED and name in EXPECTED[info.category]
    assert info.n_pairs == len(pairs)
    assert len(pairs) >= FLOORS.get(name, 100)
    assert info.description and info.source_note
    assert info.prompt_template.count("<X>") == 1
    assert info.default_k == (1 if name in ("copying", "name_copying") else 10)
    # no empty strings, no surrounding spaces, no duplicate pairs, one target per source
    for s, t in pairs:
        assert s and t and s == s.strip() and t == t.strip(), (s, t)
    assert len(set(pairs)) == len(pairs)
    sources = [s for s, _ in pairs]
    assert len(set(sources)) == len(sources), "a source appears twice"


def test_copies_are_identical():
    for name in ("copying", "name_copying"):
        assert all(s == t for s, t in R.load(name))
    assert all(s[0].isupper() for s, _ in R.load("name_copying"))


def test_letters():
    for s, t in R.load("word_first_letter"):
        assert t == s[0] and len(t) == 1 and t.isalpha()
    for s, t in R.load("word_last_letter"):
        assert t == s[-1] and len(t) == 1 and t.isalpha()


def test_years_follow():
    pairs = R.load("year_to_following")
    for s, t in pairs:
        assert s.isdigit() and t.isdigit() and int(t) == int(s) + 1
    assert len({s for s, _ in pairs}) >= 500


def test_linguistic_shapes():
    for s, t in R.load("word_to_compound"):
        assert t.startswith(s) and len(t) > len(s), (s, t)
    for name, ending in (("adj_to_comparative", "er"), ("adj_to_superlative", "est")):
        irregular = {"good", "bad"}
        for s, t in R.load(name):
            assert s != t
            if s not in irregular:
                assert t.endswith(ending), (s, t)
    for _, t in R.load("noun_to_pronoun"):
        assert t in {"he", "she", "it", "they"}
    antonyms = dict(R.load("antonym"))
    assert all(s != t for s, t in antonyms.items())
    homophones = R.load("word_to_homophone")
    assert all(s != t for s, t in homophones)
    for name in ("verb_to_past_tense", "word_to_synonym"):
        assert all(s != t for s, t in R.load(name))


def test_builtin_files_are_plain_json_objects():
    for name in ALL:
        doc = json.loads((DATA_DIR / f"{name}.json").read_text(encoding="utf-8"))
        assert doc["schema_version"] == 1 and doc["name"] == name


def test_templates():
    ts = R.templates()
    assert len(ts) >= 4
    assert all(t.count("<X>") == 1 for t in ts)
    assert "This is a document about <X>" in ts


def test_causal_template_fill():
    assert R.info("country_to_capital").fill("France") == "The capital of France is"
    assert R.info("verb_to_past_tense").fill("walk").endswith("walk->")


@pytest.mark.parametrize("name", ALL)
def test_few_shot_examples_are_not_in_the_data(name):
    """Few-shot sources in a causal template ("a-> b; <X>->") are not the relation's own sources."""
    template = R.info(name).prompt_template
    shots = [part.split("->")[0].strip() for part in template.split(";")
             if "->" in part and "<X>" not in part]
    sources = {s for s, _ in R.load(name)}
    assert not set(shots) & sources
