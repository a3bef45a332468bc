"""A screened whole-vocabulary stream: ranked on bfloat16 rows, decided on float32 rows.

Salient operations of the through-the-model projection must give the float32 stream's
answers (the same tokens, targets and values) while their whole-vocabulary pass runs in
bfloat16; the QK half reads the screened rows and stays close to the float32 answers.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import headmaps as hm
from headmaps import projection as P
from headmaps.salient import compute as S
from tiny import tiny_model


@pytest.fixture(params=["llama", "gpt2", "gemma3_text"])
def arch_model(request):
    return hm.load(tiny_model(request.param))


def _both(monkeypatch, fn):
    monkeypatch.setenv(P.STREAM_DTYPE_ENV, "float32")
    exact = fn()
    monkeypatch.setenv(P.STREAM_DTYPE_ENV, "bfloat16")
    screened = fn()
    return exact, screened


def test_screening_rows_differ_but_exact_rows_are_the_float32_stream(arch_model, monkeypatch):
    m = arch_model
    opts = P.concrete(m, P.PRESETS["alone"])
    monkeypatch.setenv(P.STREAM_DTYPE_ENV, "bfloat16")
    src = S.vocabulary_sources(m, opts)
    assert src.screened
    ref = P.Sources(m, torch.arange(m.vocab_size), opts, dtype="float32")
    ids = torch.tensor([5, 3, 40, 5])
    for layer in range(m.n_layers):
        screen_rows, want = src.at(layer), ref.at(layer)
        assert not torch.equal(screen_rows, want) or layer == 0
        assert torch.equal(src.exact(layer, ids), want[ids])


def test_salient_and_qk_answers_equal_the_float32_stream(arch_model, monkeypatch):
    # few candidates, so the screen decides most of the vocabulary
    monkeypatch.setattr(S, "SCREEN_FACTOR", 2)
    monkeypatch.setattr(S, "SCREEN_MIN", 4)
    m = arch_model
    a, b = _both(monkeypatch, lambda: hm.salient_all(m, preset="alone"))
    assert np.array_equal(a.token_ids, b.token_ids)
    assert np.array_equal(a.target_ids, b.target_ids)
    np.testing.assert_allclose(a.saliency, b.saliency, rtol=1e-6)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6, atol=1e-6)
    qa, qb = _both(monkeypatch, lambda: hm.attention_summary(m, preset="alone", max_distance=8))
    # the QK half ranks and averages the screening rows: the same tokens up to near-ties
    for key in ("key_ids", "query_ids", "pair_ids"):
        x, y = getattr(qa, key), getattr(qb, key)
        same = np.mean([len(set(r) & set(s)) / len(r) for r, s in
                        zip(x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1]))])
        assert same >= 0.9, (key, same)
    fin = np.isfinite(qa.profile)  # distances outside a sliding window are -inf in both
    assert np.array_equal(fin, np.isfinite(qb.profile))
    assert np.abs(qa.profile - qb.profile)[fin].max() <= 0.02 * np.abs(qa.profile[fin]).max()


def test_a_subset_view_of_a_screened_stream_reads_float32_rows(tiny_llama_hm, monkeypatch):
    m = tiny_llama_hm
    opts = P.concrete(m, P.PRESETS["alone"])
    monkeypatch.setenv(P.STREAM_DTYPE_ENV, "bfloat16")
    src = S.vocabulary_sources(m, opts)
    view = src.subset(torch.tensor([7, 2, 30]))
    ref = P.Sources(m, torch.tensor([7, 2, 30]), opts, dtype="float32")
    for layer in range(m.n_layers):
        src.at(layer)
    for layer in range(m.n_layers):
        assert torch.equal(view.at(layer), ref.at(layer))


def test_float32_stream_is_not_screened(tiny_llama_hm, monkeypatch):
    monkeypatch.setenv(P.STREAM_DTYPE_ENV, "float32")
    src = S.vocabulary_sources(tiny_llama_hm, P.PRESETS["alone"])
    assert not src.screened
    assert torch.equal(src.exact(2, torch.tensor([3, 1])), src.at(2)[[3, 1]])
    norms = S.vocabulary_sources(tiny_llama_hm, P.PRESETS["norms"])
    assert not norms.screened
