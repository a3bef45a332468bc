"""One tokenisation path for relations and prompts, on a SentencePiece-style tokenizer."""

from __future__ import annotations

import pytest

import headmaps as hm
from headmaps.experiments.dynamic import build_prompt
from headmaps.relations import continuation_ids, word_ids
from tiny_tokenizer import sentencepiece_tokenizer, tiny_tokenizer

WORDS = ["France", "Paris", "Japan", "Tokyo", "The", "capital", "of", "is", "New", "York", "a"]


@pytest.fixture(scope="module")
def sp():
    return sentencepiece_tokenizer(WORDS)


def test_the_dummy_prefix_is_the_leading_space(sp):
    naive = sp.encode(" France", add_special_tokens=False)
    # what a plain " " + word gives
    assert sp.convert_ids_to_tokens(naive) == ["\u2581", "\u2581France"]
    assert sp.convert_ids_to_tokens(word_ids(sp, "France")) == ["\u2581France"]
    assert sp.convert_ids_to_tokens(word_ids(sp, "New York")) == ["\u2581New", "\u2581York"]
    prep = hm.relations.prepare(sp, [("France", "Paris"), ("Japan", "Tokyo"),
                                     ("New York", "Paris")],
                                min_pairs=1)
    assert prep.kept == [("France", "Paris"), ("Japan", "Tokyo")]
    assert prep.source_ids.tolist() == [word_ids(sp, "France")[0], word_ids(sp, "Japan")[0]]


@pytest.mark.parametrize("template", ["The capital of <X> is", "<X> is", "The capital of <X>.",
                                      "<X>"])
def test_prompts_equal_the_whole_text_encoding(sp, template):
    """Assembled token by token, the prompt is what the model sees for the whole text."""
    ids, pos = build_prompt(sp, template, word_ids(sp, "France"))
    whole = sp(template.replace("<X>", "France"), add_special_tokens=True)["input_ids"]
    assert ids == list(whole)
    assert sp.convert_ids_to_tokens([ids[pos]]) == ["\u2581France"]


def test_plain_tokenizers_keep_their_leading_space():
    tok = tiny_tokenizer(WORDS)
    assert word_ids(tok, "France") == tok.encode(" France", add_special_tokens=False)
    assert continuation_ids(tok, " is") == tok.encode(" is", add_special_tokens=False)
