"""The on-disk cache of token_alone streams: computed once, read back, bounded, atomic."""

from __future__ import annotations

import pytest
import torch

import headmaps as hm
from headmaps import projection as P
from headmaps.projection import streamcache as SC


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADMAPS_CACHE", str(tmp_path))
    monkeypatch.delenv(SC.BUDGET_ENV, raising=False)
    return tmp_path


def test_a_stream_is_computed_once_and_read_back(tiny_llama_hm, cache):
    m, opts = tiny_llama_hm, P.PRESETS["alone"]
    ids = torch.arange(2, 60)
    first = P.Sources(m, ids, opts, cache=True)
    rows = [first.at(layer).clone() for layer in range(m.n_layers)]
    assert first.blocks_advanced == m.n_layers - 1
    [entry] = SC.entries()
    assert entry.layers == list(range(1, m.n_layers)) and entry.bytes > 0
    again = P.Sources(m, ids, opts, cache=True)  # another process: reads, advances nothing
    for layer in (2, 1, 0):
        assert torch.equal(again.at(layer), rows[layer])
    assert again.blocks_advanced == 0
    # other options, dtype or tokens are other entries
    P.Sources(m, ids[:10], opts, cache=True).at(1)
    P.Sources(m, ids, opts, cache=True, dtype="bfloat16").at(1)
    assert len(SC.entries()) == 3
    assert SC.clear() > 0 and SC.entries() == []


def test_the_cache_is_bounded_and_survives_broken_files(tiny_llama_hm, cache, monkeypatch):
    m, opts = tiny_llama_hm, P.PRESETS["alone"]
    ids = torch.arange(2, 60)
    row_bytes = len(ids) * m.d_model * 4
    monkeypatch.setenv(SC.BUDGET_ENV, str(row_bytes + 8192))  # one layer fits, not two
    P.Sources(m, ids, opts, cache=True).at(m.n_layers - 1)
    assert [e.layers for e in SC.entries()] == [[1]]
    P.Sources(m, ids[:20], opts, cache=True).at(1)  # evicts the older entry to fit
    assert len(SC.entries()) == 1 and SC.entries()[0].bytes <= row_bytes + 8192
    monkeypatch.setenv(SC.BUDGET_ENV, "0")
    assert P.Sources(m, ids, opts, cache=True)._cache_key is None  # off
    monkeypatch.delenv(SC.BUDGET_ENV)
    SC.clear()
    src = P.Sources(m, ids, opts, cache=True)
    want = src.at(1).clone()
    path = next((cache / "streams").rglob("layer-001.pt"))
    path.write_bytes(b"not a tensor file")
    again = P.Sources(m, ids, opts, cache=True)
    assert torch.equal(again.at(1), want) and again.blocks_advanced == 1
    monkeypatch.setenv(SC.BUDGET_ENV, "lots")
    with pytest.raises(hm.HeadmapsError, match=SC.BUDGET_ENV):
        P.Sources(m, ids, opts, cache=True)


def test_cache_is_on_by_default_for_a_whole_vocabulary_only(tiny_llama_hm, cache, monkeypatch):
    m, opts = tiny_llama_hm, P.PRESETS["alone"]
    assert P.Sources(m, torch.arange(2, 60), opts)._cache_key is None
    monkeypatch.setattr(P.sources, "CACHE_MIN_ROWS", 50)
    assert P.Sources(m, torch.arange(2, 60), opts)._cache_key is not None
    assert P.Sources(m, torch.arange(2, 60), P.PRESETS["norms"])._cache_key is None
