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

    try:
        return hm.load("smollm2-135m")
    except hm.ModelNotFoundError as err:  # the GGUF package is not installed here
        pytest.skip(f"SmolLM2 not available: {err}")
