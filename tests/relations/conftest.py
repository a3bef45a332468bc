"""Fixtures for the relation tests: a fake tokenizer (fast) and SmolLM2 (slow)."""

from __future__ import annotations

import pytest
from relations_fakes import FakeTokenizer


@pytest.fixture
def fake_tokenizer() -> FakeTokenizer:
    return FakeTokenizer([" France", " Paris", " Japan", " Tokyo", "Peru", " Lima", " a", "a", " cat"])


@pytest.fixture(scope="session")
def smollm2():
    """SmolLM2-135M through headmaps (converted once into the headmaps cache)."""
    import headmaps as hm

    return hm.load("smollm2-135m")  # installed by `make test`; a missing package must fail
