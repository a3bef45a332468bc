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


def test_a_screened_stream_is_kept_at_its_own_precision(tiny_llama_hm, cache):
    m, opts = tiny_llama_hm, P.PRESETS["alone"]
    ids = torch.arange(2, 60)
    screened = P.Sources(m, ids, opts, cache=True, dtype="bfloat16")
    rows = [screened.at(layer).clone() for layer in range(m.n_layers)]
    exact = P.Sources(m, ids, opts, cache=True, dtype="float32")
    for layer in range(m.n_layers):
        exact.at(layer)
    sizes = {e.key: e.bytes for e in SC.entries()}
    assert len(sizes) == 2 and max(sizes.values()) > 1.5 * min(sizes.values())  # half the rows
    again = P.Sources(m, ids, opts, cache=True, dtype="bfloat16")
    got = again.at(2)
    assert got.dtype == torch.float32 and again.blocks_advanced == 0
    # what was kept is the screening rows rounded to bfloat16 (a conversion: exact)
    assert torch.equal(got, rows[2].to(torch.bfloat16).float())


def test_the_default_bound_is_a_share_of_the_usable_disk(cache, monkeypatch):
    monkeypatch.setattr(SC, "_free_bytes", lambda folder: 4000)
    assert SC.budget(held=0) == int(SC.DISK_SHARE * 4000)
    # what the cache already holds counts as usable: writing does not shrink its own bound
    assert SC.budget(held=400) == int(SC.DISK_SHARE * 4400)
    monkeypatch.setenv(SC.BUDGET_ENV, "123")
    assert SC.budget(held=400) == 123


def test_cache_list_shows_the_streams_and_the_bound(tiny_llama_hm, cache, monkeypatch, capsys):
    import headmaps.cli as cli

    P.Sources(tiny_llama_hm, torch.arange(2, 60), P.PRESETS["alone"], cache=True).at(2)
    monkeypatch.setattr(SC, "_free_bytes", lambda folder: 40 << 30)
    assert cli.main(["cache", "list"]) == 0
    out = capsys.readouterr().out
    assert "stream" in out and "2 layers" in out
    assert "bound (default: 25% of the free disk plus what it holds)" in out
