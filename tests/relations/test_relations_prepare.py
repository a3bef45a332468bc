"""prepare(): the single-token filter, its report and the space rule."""

from __future__ import annotations

import json

import pytest
import torch
from relations_fakes import FakeModel, FakeTokenizer

import headmaps as hm
import headmaps.relations as R

PAIRS = [("France", "Paris"), ("Japan", "Tokyo"), ("Peru", "Lima"), ("Chad", "N'Djamena"),
         ("cat", "cat")]


def test_kept_and_dropped_with_reasons(fake_tokenizer):
    prep = R.prepare(FakeModel(fake_tokenizer), PAIRS, min_pairs=2)
    assert prep.kept == [("France", "Paris"), ("Japan", "Tokyo"), ("cat", "cat")]
    assert prep.dropped == [("Peru", "Lima", "source multi-token"),
                            ("Chad", "N'Djamena", "source multi-token")]
    v = fake_tokenizer.vocab
    assert prep.source_ids.tolist() == [v[" France"], v[" Japan"], v[" cat"]]
    assert prep.target_ids.tolist() == [v[" Paris"], v[" Tokyo"], v[" cat"]]
    assert prep.source_ids.dtype == torch.long and prep.target_ids.shape == (3,)
    assert prep.source_forms == [" France", " Japan", " cat"] and prep.target_forms[0] == " Paris"
    assert (prep.n_pairs, prep.n_total, prep.valid, prep.n_identical) == (3, 5, True, 1)
    assert prep.name == "custom" and prep.model_id == "fake" and prep.space == "always"


def test_target_multi_token(fake_tokenizer):
    prep = R.prepare(fake_tokenizer, [("France", "Lyon")], min_pairs=1)
    assert prep.dropped == [("France", "Lyon", "target multi-token")]
    assert prep.n_pairs == 0 and not prep.valid
    assert prep.source_ids.shape == (0,) and prep.source_ids.dtype == torch.long


def test_space_rules(fake_tokenizer):
    pairs = [("Peru", "Lima"), ("a", "a")]
    always = R.prepare(fake_tokenizer, pairs, min_pairs=1)
    assert always.kept == [("a", "a")] and always.source_forms == [" a"]
    prefer = R.prepare(fake_tokenizer, pairs, min_pairs=1, space="prefer")
    assert prefer.kept == [("Peru", "Lima"), ("a", "a")]
    assert prefer.source_forms == ["Peru", " a"] and prefer.target_forms == [" Lima", " a"]
    never = R.prepare(fake_tokenizer, pairs, min_pairs=1, space="never")
    assert never.kept == [("a", "a")] and never.source_forms == ["a"]
    assert never.source_ids.tolist() == [fake_tokenizer.vocab["a"]]
    with pytest.raises(ValueError, match="space must be"):
        R.prepare(fake_tokenizer, pairs, space="sometimes")


def test_no_special_tokens_used(fake_tokenizer):
    # FakeTokenizer prepends id 1 (BOS) only when add_special_tokens is true
    prep = R.prepare(fake_tokenizer, [("France", "Paris")], min_pairs=1)
    assert prep.n_pairs == 1 and 1 not in prep.source_ids.tolist()


def test_minimal_tokenizer_without_keyword():
    class Bare:
        def encode(self, text):
            return [len(text)] if text.strip().isalpha() and len(text) < 6 else [0, 0]

    prep = R.prepare(Bare(), [("dog", "cat"), ("elephant", "cat")], min_pairs=1)
    assert prep.kept == [("dog", "cat")]


def test_ids_beyond_embedding_dropped(fake_tokenizer):
    v = fake_tokenizer.vocab
    model = FakeModel(fake_tokenizer,
                      vocab_size=v[" Tokyo"])  # " Tokyo" and later ids are out of range
    prep = R.prepare(model, [("France", "Paris"), ("France", "Tokyo"), ("cat", "cat")], min_pairs=1)
    assert prep.kept == [("France", "Paris")]
    assert [r for *_, r in prep.dropped] == ["target id out of range", "source id out of range"]
    assert prep.summary()["out_of_range"] == 2


def test_validity_and_strict(fake_tokenizer):
    prep = R.prepare(fake_tokenizer, PAIRS, name="caps")  # 3 kept < 30
    assert not prep.valid and prep.min_pairs == 30
    with pytest.raises(R.InvalidRelationError) as exc:
        prep.require_valid()
    msg = str(exc.value)
    assert "'caps'" in msg and "only 3 of 5" in msg and "need 30" in msg
    assert "2 source multi-token" in msg
    with pytest.raises(R.InvalidRelationError):
        R.prepare(fake_tokenizer, PAIRS, strict=True)
    assert R.prepare(fake_tokenizer, PAIRS, min_pairs=3, strict=True).valid
    assert isinstance(exc.value, hm.HeadmapsError)


def test_zero_valid_pairs_error_is_clear():
    tok = FakeTokenizer([])
    with pytest.raises(R.InvalidRelationError,
                       match="only 0 of 600 pairs.*year_to_following|year_to_following.*only 0 of "
                             "600"):
        R.prepare(FakeModel(tok), "year_to_following", strict=True)


def test_by_builtin_name_and_by_file(fake_tokenizer, tmp_path):
    tok = FakeTokenizer([" " + w for w in ("France", "Paris", "Japan", "Tokyo")])
    prep = R.prepare(tok, "country_to_capital", min_pairs=2)
    assert prep.name == "country_to_capital"
    assert prep.kept == [("France", "Paris"), ("Japan", "Tokyo")]
    assert prep.n_total == R.info("country_to_capital").n_pairs
    path = tmp_path / "mine.csv"
    path.write_text("France,Paris\nPeru,Lima\n")
    prep = R.prepare(tok, path, min_pairs=1)
    assert prep.name == "mine" and prep.kept == [("France", "Paris")]
    path = tmp_path / "named.json"
    path.write_text(json.dumps({"name": "named_set", "pairs": [["Japan", "Tokyo"]]}))
    assert R.prepare(tok, path, min_pairs=1).name == "named_set"


def test_bad_pairs_sequence(fake_tokenizer):
    with pytest.raises(R.RelationDataError, match="item 1"):
        R.prepare(fake_tokenizer, [("a", "b"), ("c",)])


def test_model_without_tokenizer(tiny_llama_hm):
    with pytest.raises(R.TokenizerError, match="no tokenizer"):
        R.prepare(tiny_llama_hm, PAIRS)


def test_dummy_prefix_tokenizer():
    tok = FakeTokenizer([" France", " Paris", " a"], dummy_prefix=True)
    prep = R.prepare(tok, [("France", "Paris"), ("a", "a")], min_pairs=1)
    assert prep.kept == [("France", "Paris"), ("a", "a")]
    assert prep.source_forms == [" France", " a"]
    assert prep.source_ids.tolist() == [tok.vocab[" France"], tok.vocab[" a"]]


# ---- the real tokenizer ----------------------------------------------------------------
@pytest.mark.slow
def test_smollm2_country_to_capital(smollm2):
    prep = R.prepare(smollm2, "country_to_capital")
    tok = smollm2.tokenizer
    assert prep.valid and prep.n_pairs >= 30
    i = prep.kept.index(("France", "Paris"))
    assert tok.decode([int(prep.source_ids[i])]) == " France"
    assert tok.decode([int(prep.target_ids[i])]) == " Paris"
    assert int(prep.source_ids.max()) < smollm2.vocab_size
    reasons = {r for *_, r in prep.dropped}
    assert reasons <= {"source multi-token", "target multi-token"}


@pytest.mark.slow
def test_smollm2_letters_and_years(smollm2):
    letters = R.prepare(smollm2, "word_first_letter")
    assert letters.valid
    assert set(letters.target_forms) <= {" " + c for c in "abcdefghijklmnopqrstuvwxyz"}
    years = R.prepare(smollm2, "year_to_following")
    # SmolLM2 splits numbers into single digits: no year is one token, with or without a space
    assert years.n_pairs == 0 and not years.valid
    assert R.prepare(smollm2, "year_to_following", space="prefer").n_pairs == 0


@pytest.mark.slow
def test_smollm2_coverage_at_least_15_of_20(smollm2):
    valid = [name for name in R.names() if R.prepare(smollm2, name).valid]
    assert len(valid) >= 15, valid


@pytest.mark.slow
def test_smollm2_successor_is_valid(smollm2):
    succ = R.prepare(smollm2, "successor")
    assert succ.valid and succ.n_pairs >= 30
