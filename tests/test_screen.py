"""A screened whole-vocabulary stream: ranked on bfloat16 rows, decided on float32 rows.

Salient operations of the through-the-model projection must give the float32 stream's
answers (the same tokens, targets and values) while their whole-vocabulary pass runs in
bfloat16; the QK half and the head types read the screened rows and stay close to the
float32 answers.

"The same" is up to float32 rounding, never bitwise: the exact rows of a few candidates
and the rows of a whole-vocabulary pass come from matrix products of different shapes,
which take different kernels and summation orders on different CPUs. The tolerance
:data:`ROW_RTOL` is derived below; answers are compared as values within it, and token
ids wherever the values they were ranked by are further apart than it (a near-tie may
order either way).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

import headmaps as hm
from headmaps import projection as P
from headmaps.projection import vocabulary as S
from near_ties import assert_ranking_up_to_ties
from tiny import prefixed_tiny, tiny_model

#: Float32 rows of one token computed by products of different shapes. A product of depth
#: k accumulates at most k * 2^-24 relative rounding (k <= 128 in the tiny models: 8e-6),
#: each of the 3 blocks adds its own, and the norms rescale it: 1e-4 of the layer's
#: largest entry bounds it with room, and stays 40x below bfloat16's 2^-9 relative
#: rounding (4e-3), so a screened row still fails it (checked below).
ROW_RTOL = 1e-4


@pytest.fixture(params=["llama", "gpt2", "gemma3_text"])
def arch_model(request):
    return hm.load(tiny_model(request.param))


def _opts(model, dtype: str) -> P.ProjectionOptions:
    return P.concrete(model, replace(P.PRESETS["alone"], stream_dtype=dtype))


def _close_rows(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool((a - b).abs().max() <= ROW_RTOL * b.abs().max())


def assert_same_ranking(ids_a, vals_a, ids_b, vals_b) -> None:
    """Two top-k answers ``(..., k)`` agree within :data:`ROW_RTOL` of the largest value,
    ids up to near-ties (:func:`near_ties.assert_ranking_up_to_ties`)."""
    atol = ROW_RTOL * float(np.abs(np.asarray(vals_a, dtype=np.float64)).max())
    assert_ranking_up_to_ties(ids_a, vals_a, ids_b, vals_b, atol)


def test_screening_rows_differ_but_exact_rows_are_the_float32_stream(arch_model):
    m = arch_model
    src = S.vocabulary_sources(m, _opts(m, "bfloat16"))
    assert src.screened
    ref = P.Sources(m, torch.arange(m.vocab_size), _opts(m, "float32"), dtype="float32")
    ids = torch.tensor([5, 3, 40, 5])
    for layer in range(m.n_layers):
        screen_rows, want = src.at(layer), ref.at(layer)
        if layer:  # the tolerance tells a bfloat16 row from a float32 one
            assert not _close_rows(screen_rows, want)
        assert _close_rows(src.exact(layer, ids), want[ids])


def test_salient_and_qk_answers_equal_the_float32_stream(arch_model, monkeypatch):
    # few candidates, so the screen decides most of the vocabulary
    monkeypatch.setattr(S, "SCREEN_FACTOR", 2)
    monkeypatch.setattr(S, "SCREEN_MIN", 4)
    m = arch_model
    a, b = (hm.salient_all(m, projection=hm.projection_for(m, "alone", stream_dtype=d))
            for d in ("float32", "bfloat16"))
    assert (a.options["stream_dtype"], b.options["stream_dtype"]) == ("float32", "bfloat16")
    assert_same_ranking(a.token_ids, a.saliency, b.token_ids, b.saliency)
    same_src = a.token_ids == b.token_ids  # targets compared where the source is the same
    assert same_src.mean() > 0.9
    assert_same_ranking(a.target_ids[same_src], a.scores[same_src],
                        b.target_ids[same_src], b.scores[same_src])
    assert_qk_close(m, P.PRESETS["alone"])


def test_qk_half_reads_the_screens_own_queries_and_stays_close(monkeypatch):
    """After a prefix the QK half takes each layer's queries and keys from the stream's
    pass, a screen's included (its bfloat16 products): answers close to float32's."""

    m, opts = prefixed_tiny("llama")
    handed = set()
    real = P.Sources.queries_keys

    def spy(self, layer):
        out = real(self, layer)
        if out is not None:
            handed.add(self.screened)
        return out

    monkeypatch.setattr(P.Sources, "queries_keys", spy)
    assert_qk_close(m, opts)
    assert handed == {True, False}  # both streams handed out their queries


def assert_qk_close(m, opts: P.ProjectionOptions) -> None:
    """The QK half on a float32 stream and on a screen: the same lists up to near-ties."""
    qa, qb = (hm.attention_summary(m, projection=replace(opts, stream_dtype=d), max_distance=8)
              for d in ("float32", "bfloat16"))
    # the QK half ranks and averages the screening rows: the same tokens up to near-ties
    for key in ("key_ids", "query_ids", "pair_ids"):
        x, y = getattr(qa, key), getattr(qb, key)
        same = np.mean([len(set(r) & set(s)) / len(r) for r, s in
                        zip(x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1]))])
        assert same >= 0.9, (key, same)
    fin = np.isfinite(qa.profile)  # distances outside a sliding window are -inf in both
    assert np.array_equal(fin, np.isfinite(qb.profile))
    assert np.abs(qa.profile[fin] - qb.profile[fin]).max() <= 0.02 * np.abs(qa.profile[fin]).max()


def test_a_subset_view_of_a_screened_stream_reads_the_screens_rows(tiny_llama_hm):
    m = tiny_llama_hm
    src = S.vocabulary_sources(m, _opts(m, "bfloat16"))
    ids = torch.tensor([7, 2, 30])
    view = src.subset(ids)
    ref = P.Sources(m, ids, _opts(m, "float32"), dtype="float32")
    for layer in range(m.n_layers):
        src.at(layer)
    for layer in range(m.n_layers):
        assert torch.equal(view.at(layer), src.at(layer)[ids])  # copies of the same rows
        if layer:
            assert not _close_rows(view.at(layer), ref.at(layer))
    assert src._exact is None  # no float32 stream of the sample was started


#: Head types average over their sample's rows (eigenvalues of a Gram matrix, z-scores,
#: softmax masses) and rank none of them, so a screen moves them by about as much as it
#: moves the rows: at most 2e-2 relative on the tiny models' 3 blocks
#: (tests/test_projection.py::test_sources_stream_dtype), measured 1e-6 to 7.5e-3.
TYPES_SCREEN_RTOL = 2e-2


def test_head_types_read_the_screens_sample_and_stay_close(arch_model):
    from headmaps.headtypes.static import token_subset

    m = arch_model
    types, exact = {}, {}
    for d in ("float32", "bfloat16"):
        proj = hm.projection_for(m, "alone", stream_dtype=d)
        src = proj.vocabulary(m)
        types[d] = hm.head_types(m, projection=proj, sources=src.subset(token_subset(m)),
                                 relations=False, max_distance=8)
        exact[d] = src._exact is not None
    assert exact == {"float32": False, "bfloat16": False}
    a, b = types["float32"], types["bfloat16"]
    moved = 0.0
    for name, want in a.components.items():
        got, scale = b.components[name], np.nanmax(np.abs(want))
        err = np.nanmax(np.abs(got - want)) / scale if scale > 0 else 0.0
        assert err <= TYPES_SCREEN_RTOL, (name, err)
        moved = max(moved, err)
    assert moved > ROW_RTOL  # the screen's rows were read, not float32 ones


def test_float32_stream_is_not_screened(tiny_llama_hm):
    src = S.vocabulary_sources(tiny_llama_hm, _opts(tiny_llama_hm, "float32"))
    assert not src.screened
    # the same rows, indexed: identical by construction
    assert torch.equal(src.exact(2, torch.tensor([3, 1])), src.at(2)[[3, 1]])
    norms = S.vocabulary_sources(tiny_llama_hm, P.PRESETS["norms"])
    assert not norms.screened
