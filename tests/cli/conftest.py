"""Shared fixture of the CLI tests: a saved tiny model with a known relation head."""

from __future__ import annotations

import pytest

from tiny_vocab import COUNTRY_CAPITAL, mapping_matrix, set_mapping, vocab_model

#: The head whose OV circuit maps each country to its capital, exactly.
RELATION_HEAD = (1, 0)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A saved tiny model (with tokenizer) whose head 1.0 maps countries to capitals."""
    model, tok = vocab_model(n_layers=2)
    set_mapping(model, *RELATION_HEAD, mapping_matrix(tok, COUNTRY_CAPITAL))
    d = tmp_path_factory.mktemp("vocab_model")
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return str(d)
