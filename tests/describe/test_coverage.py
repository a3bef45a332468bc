"""Coverage per layer, the PNG plot, descriptions.jsonl, describe_all."""

from __future__ import annotations

import pytest

import headmaps as hm
from headmaps.describe import (
    Description,
    PatternDescriber,
    coverage,
    describe_all,
    load_descriptions,
    plot_coverage,
    save_descriptions,
)
from headmaps.salient import salient_all
from tiny import tiny_model


def descs():
    out = []
    for layer, clear in [(0, [False, False]), (1, [True, False]), (2, [True, True])]:
        for h, c in enumerate(clear):
            out.append(Description(layer, h, "x" if c else "Unclear", "copying" if c else "unclear",
                                   unclear=not c, confidence=0.5 if c else 0.0))
    return out


def test_coverage_table():
    cov = coverage(descs())
    assert list(cov.columns) == ["layer", "n_heads", "n_clear", "coverage"]
    assert cov["coverage"].tolist() == [0.0, 0.5, 1.0, 0.5]
    assert cov["layer"].tolist() == [0, 1, 2, "all"]
    assert cov["n_heads"].tolist() == [2, 2, 2, 6]
    assert coverage([]).empty


def test_plot_and_jsonl(tmp_path, pdf_backend):
    import matplotlib

    cov = coverage(descs())
    png = plot_coverage(cov, tmp_path / "sub" / "coverage.png", title="t")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.get_backend() == pdf_backend  # a notebook's backend is left alone
    path = save_descriptions(descs(), tmp_path / "d.jsonl")
    back = load_descriptions(path)
    assert back == descs()
    assert len(path.read_text().splitlines()) == 6


def test_describe_all_on_random_model():
    m = hm.load(tiny_model("llama"))
    res = salient_all(m, layers=[1, 2])
    out = describe_all(res, PatternDescriber({}))
    assert [(d.layer, d.head) for d in out] == res.heads
    assert all(isinstance(d, Description) for d in out)
    assert all(d.unclear for d in out)  # "<17>"-style tokens of a random model show no pattern
    cov = coverage(out)
    assert cov["coverage"].tolist() == pytest.approx([0.0, 0.0, 0.0])
