"""Shared fixtures: tiny models built once per session, an isolated cache folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny import tiny_model  # noqa: E402


@pytest.fixture(autouse=True)
def _calibration_store(tmp_path_factory, monkeypatch):
    """Every test gets an empty calibration store, so a user's stored calibrations never
    change the default projection a test sees (see headmaps.projection.calibration)."""
    monkeypatch.setenv("HEADMAPS_CALIBRATIONS", str(tmp_path_factory.mktemp("calibrations")))


#: CPU capabilities of a machine without native bfloat16 (an AVX2 CPU).
NO_BF16_CPU = {"avx2": True, "avx512_f": False, "avx512_bf16": False, "amx_bf16": False}


@pytest.fixture(autouse=True, scope="session")
def _float32_stream():
    """Every test sees a CPU without native bfloat16, whatever CPU runs it: the automatic
    stream precision is then float32 on every machine, and tests of the math compare with
    float32/float64 references (tests/test_screen.py and tests/test_precision.py patch in
    a bfloat16 CPU where they test the screen). Session-wide, so that module fixtures
    computed before a test's own fixtures see it too."""
    from headmaps import hardware

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(hardware, "cpu_capabilities", lambda: dict(NO_BF16_CPU))
        yield


@pytest.fixture
def cpu(monkeypatch):
    """``cpu(flags)``: make the precision rule see a CPU with these capability flags, and
    no oneDNN cap (which a run as an older CPU sets: ``make test-avx2``)."""
    from headmaps import hardware

    def set_flags(flags):
        monkeypatch.setattr(hardware, "cpu_capabilities", lambda: dict(flags))
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
        monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    return set_flags


@pytest.fixture(scope="session")
def tiny_llama():
    """A tiny Llama with grouped-query attention (8 heads, 2 KV heads), float64."""
    return tiny_model("llama")


@pytest.fixture(scope="session")
def smollm2():
    """SmolLM2-135M, loaded once for every slow test (converted once into the headmaps cache).

    Tests must not change it. The package is installed by `make test`; a missing one fails.
    """
    import headmaps as hm

    return hm.load("smollm2-135m")


@pytest.fixture(scope="session")
def tiny_llama_hm(tiny_llama):
    """The tiny Llama as a HeadModel (no tokenizer)."""
    import headmaps as hm

    return hm.load(tiny_llama)


@pytest.fixture
def pdf_backend():
    """pyplot on the ``pdf`` backend for the test, restored after: a plot that calls
    ``matplotlib.use`` (and so would break a notebook's inline backend) switches it away."""
    import matplotlib

    before = matplotlib.get_backend()
    matplotlib.use("pdf")
    yield "pdf"
    matplotlib.use(before)
