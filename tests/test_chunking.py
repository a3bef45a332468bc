"""The stream's chunk rule, every branch forced by patching the cache size it reads.

The rule must hold on any machine, so no test depends on the cache of the CPU running it:
each patches :func:`headmaps.projection.chunking.last_level_cache`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import headmaps as hm
from headmaps import projection as P
from headmaps.projection import chunking
from headmaps.projection import stream as St
from near_ties import assert_ranking_up_to_ties
from tiny import tiny_model

MiB = 1 << 20
#: Rows of one token from products of different shapes agree to float32 rounding: a
#: product of depth k (<= 128 here) accumulates at most k * 2^-24 relative error per block
#: (8e-6), 3 blocks and their norms add and rescale it; 1e-4 of the largest entry bounds it
#: with room (the same bound as tests/test_screen.py).
ROW_RTOL = 1e-4


@pytest.mark.parametrize("d_mlp, gated, dtype, want", [
    (1536, True, torch.float32, 3 * 1536 * 4),
    (1536, True, torch.bfloat16, 3 * 1536 * 2),
    (3072, False, torch.float32, 2 * 3072 * 4),
])
def test_hidden_bytes_count_the_tensors_alive_at_once(d_mlp, gated, dtype, want):
    assert chunking.hidden_bytes_per_row(d_mlp, gated, dtype) == want


@pytest.mark.parametrize("cache, want", [
    (32 * MiB, 1024),  # SmolLM2's float32 hidden layer (18 KiB per row) in a 32 MiB L3
    (64 * MiB, 2048),
    (1024 * MiB, chunking.STREAM_CHUNK_ROWS),  # never past the most
    (1 * MiB, chunking.MIN_STREAM_CHUNK_ROWS),  # never under the fewest
    (None, chunking.STREAM_CHUNK_ROWS),  # unknown cache: the fixed chunk
])
def test_rows_are_the_largest_power_of_two_that_fits(cache, want):
    got = chunking.chunk_rows_for(3 * 1536 * 4, cache)
    assert got == want
    assert got & (got - 1) == 0
    if cache is not None and chunking.MIN_STREAM_CHUNK_ROWS < got < chunking.STREAM_CHUNK_ROWS:
        assert got * 3 * 1536 * 4 <= cache < 2 * got * 3 * 1536 * 4


def test_a_narrower_dtype_takes_twice_the_rows(monkeypatch):
    monkeypatch.setattr(chunking, "last_level_cache", lambda: (32 * MiB, "L3 32 MiB"))
    f32 = chunking.stream_chunk_rows(1536, True, torch.float32)
    assert chunking.stream_chunk_rows(1536, True, torch.bfloat16) == 2 * f32


def test_a_gpu_takes_the_fixed_chunk_whatever_the_cpu_cache(monkeypatch):
    monkeypatch.setattr(chunking, "last_level_cache", lambda: (1 * MiB, "L3 1 MiB"))
    assert chunking.stream_chunk_rows(1536, True, torch.float32, "cpu") == \
        chunking.MIN_STREAM_CHUNK_ROWS
    assert chunking.stream_chunk_rows(1536, True, torch.float32, torch.device("cuda")) == \
        chunking.STREAM_CHUNK_ROWS


def test_the_chunk_is_said_with_what_decided_it(monkeypatch):
    monkeypatch.setattr(chunking, "last_level_cache", lambda: (32 * MiB, "L3 32 MiB"))
    assert chunking.describe(1536, True, torch.float32) == "1024 rows (L3 32 MiB)"
    assert chunking.describe(1536, True, torch.float32, "cuda") == "4096 rows (cuda)"


@pytest.fixture(params=["alone", "after a prefix"])
def through_rows(request):
    """A tiny Llama and 1,300 stream rows (its vocabulary six times over), as lone tokens or
    after a prefix (any residual row serves as the prefix's)."""
    m = hm.load(tiny_model("llama"))
    opts = P.concrete(m, hm.projection_for(m, calibration=False, stream_dtype="float32").options)
    ids = torch.arange(m.vocab_size).repeat(7)[:1300]
    first, x = St._alone_start(m, ids, opts)
    if request.param == "after a prefix":
        first = x[7].clone()
    return m, first, x


def _chunks_seen(monkeypatch, m, first, x, cache, most=P.STREAM_CHUNK_ROWS):
    """The stream's rows after two blocks, and the rows of each chunk the blocks were given."""
    monkeypatch.setattr(chunking, "last_level_cache", lambda: (cache, "patched"))
    seen: list[int] = []
    name = "alone" if first is None else "after"
    step = getattr(St._Block, name)

    def spy(self, rows, *args):
        seen.append(rows.shape[0])
        return step(self, rows, *args)

    monkeypatch.setattr(St._Block, name, spy)
    out = St._advance(m, x, range(0, 2), most, first, torch.float32)[1]
    return out, seen


def test_the_stream_advances_in_the_rules_chunks(monkeypatch, through_rows):
    m, first, x = through_rows
    small, seen = _chunks_seen(monkeypatch, m, first, x, cache=1024)
    assert seen == [512, 512, 276] * 2  # the fewest rows: a 1 KiB cache fits none
    whole, seen = _chunks_seen(monkeypatch, m, first, x, cache=None)
    assert seen == [1300] * 2  # unknown cache: up to 4,096 rows, here all of them
    capped, seen = _chunks_seen(monkeypatch, m, first, x, cache=None, most=300)
    assert seen == ([300] * 4 + [100]) * 2  # a caller's bound still holds
    scale = whole.abs().max()
    assert (small - whole).abs().max() <= ROW_RTOL * scale
    assert (capped - whole).abs().max() <= ROW_RTOL * scale


def test_a_vocabulary_stream_uses_the_rule(monkeypatch):
    m = hm.load(tiny_model("llama"))
    asked: list[tuple] = []
    rule = chunking.stream_chunk_rows

    def spy(*args):
        asked.append(args)
        return rule(*args)

    monkeypatch.setattr(St, "stream_chunk_rows", spy)
    opts = hm.projection_for(m, calibration=False, stream_dtype="float32").options
    P.vocabulary_sources(m, opts).at(2)
    mlp = m.mlp(0).mlp
    assert asked and asked[0][:3] == (mlp.W_in.shape[1], mlp.W_gate is not None, torch.float32)


@pytest.mark.parametrize("arch, gated", [("llama", True), ("gpt2", False)])
def test_the_mlp_shape_is_the_first_blocks(arch, gated):
    m = hm.load(tiny_model(arch))
    d_mlp, got = chunking.mlp_shape(m)
    assert got is gated
    assert d_mlp == St._Block(m, 0, torch.float32, False).d_mlp


def test_a_product_read_back_by_a_pass_takes_half_the_cache(monkeypatch):
    """Gemma 3 270M's selectivity pass: (4 heads x 256) floats of output and input a row."""
    row = 2 * 4 * 256 * 4
    monkeypatch.setattr(chunking, "last_level_cache", lambda: (32 * MiB, "L3 32 MiB"))
    assert chunking.pass_rows(row, 8192) == 2048  # 16 MiB / 8 KiB; the whole L3 would be 4096
    assert chunking.pass_rows(row, 1000) == 1000  # never more than the caller's chunk
    assert chunking.pass_rows(row, 8192, "cuda") == 8192
    monkeypatch.setattr(chunking, "last_level_cache", lambda: (1 * MiB, "L3 1 MiB"))
    assert chunking.pass_rows(row, 8192) == chunking.MIN_STREAM_CHUNK_ROWS
    monkeypatch.setattr(chunking, "last_level_cache", lambda: (None, "cache size unknown"))
    assert chunking.pass_rows(row, 8192) == 8192


def test_the_qk_half_reads_its_selectivity_in_cache_sized_chunks(monkeypatch, tiny_llama_hm):
    from headmaps.attention import compute as AC

    asked = []

    def spy(row_bytes, most, device="cpu"):
        asked.append((row_bytes, most))
        return 7  # an odd chunk: the last one is short

    m = tiny_llama_hm
    want = hm.attention_summary(m, layers=[1], projection="norms", max_distance=8)
    monkeypatch.setattr(AC, "pass_rows", spy)
    got = hm.attention_summary(m, layers=[1], projection="norms", max_distance=8)
    assert asked == [(2 * m.n_heads * m.d_head * 4, P.DEFAULT_CHUNK_ROWS)]
    # each row's products have the same depth (d_head <= 64 here) in either chunking:
    # float32 rounding of at most 64 * 2^-24 = 4e-6 relative, 1e-5 with room
    atol = 1e-5 * float(np.abs(want.selectivity).max())
    assert np.abs(got.selectivity - want.selectivity).max() <= atol
    assert_ranking_up_to_ties(got.query_ids, got.selectivity, want.query_ids,
                              want.selectivity, atol)
