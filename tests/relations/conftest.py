"""Fixtures for the relation tests: a fake tokenizer (SmolLM2 is in tests/conftest.py)."""

from __future__ import annotations

import pytest
from relations_fakes import FakeTokenizer


@pytest.fixture
def fake_tokenizer() -> FakeTokenizer:
    return FakeTokenizer([" France", " Paris", " Japan", " Tokyo", "Peru", " Lima", " a", "a",
                          " cat"])

