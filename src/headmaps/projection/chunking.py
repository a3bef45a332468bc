"""How many rows the whole-vocabulary stream advances at a time, from the machine's cache.

Each chunk of rows goes through a block as a few matrix products (see
:class:`headmaps.projection.stream._Block`). The biggest thing a chunk writes and reads back
is the MLP's hidden layer: the up product's ``(rows, d_mlp)`` output (``(rows, 2 d_mlp)``
for a gated MLP, whose activation adds a third ``(rows, d_mlp)`` tensor), which an
elementwise pass and then the down product read again. Where those tensors fit in the
CPU's last-level cache, both read them from the cache; where they do not, the pass runs at
the speed of main memory. Rows below a few hundred cost the other way: each chunk reads
the block's weights again for few rows, and the products get narrow.

So the rule, on a CPU: the largest power of two of rows whose hidden layer fits in the
last-level cache one core reaches (:func:`headmaps.hardware.last_level_cache`), between
:data:`MIN_STREAM_CHUNK_ROWS` and :data:`STREAM_CHUNK_ROWS`; where the cache size is
unknown, or on a GPU (whose products want many rows and whose memory holds them), the
largest. The chunk only decides which rows go through a product together; each row is the
same computation, but products of different shapes may take different kernels and
summation orders, so rows of two chunk sizes agree to float32 rounding, not bitwise.
Reading one core's cache is conservative where a process's threads span several caches
(several AMD CCDs): the chunk is then smaller than it could be, which costs little (half
the rule's chunk measured at most 14 % slower than it on both built-in models).

Measured in ``benchmarks/bench_chunk.py`` (docs/results/report-floor.md, "Seventh round").
"""

from __future__ import annotations

import torch

from ..hardware import last_level_cache
from ..models import HeadModel

#: The most rows the stream advances at a time: its chunk on a GPU or where the CPU's cache
#: size is unknown (the memory of a chunk's hidden layer grows with it).
STREAM_CHUNK_ROWS = 4096
#: The fewest rows a CPU chunk takes, whatever its cache: below a few hundred rows each
#: chunk rereads the block's weights (megabytes) for little work.
MIN_STREAM_CHUNK_ROWS = 512


def hidden_bytes_per_row(d_mlp: int, gated: bool, dtype: torch.dtype) -> int:
    """Bytes of a chunk's MLP hidden layer per row: the tensors alive at once, each ``d_mlp`` wide.

    A gated MLP holds its up product (``2 d_mlp``: up and gate side by side) and the
    activation of the gate (``d_mlp``, multiplied into in place); a plain one its up
    product and the activation's output. They are in the stream's dtype.
    """
    live = 3 if gated else 2
    return live * d_mlp * dtype.itemsize


def mlp_shape(model: HeadModel) -> tuple[int, bool]:
    """``(d_mlp, gated)`` of the model's first MLP, for :func:`stream_chunk_rows`.

    For a caller that reports the chunk (``headmaps info``, the benchmarks); the stream
    itself reads each block's own.
    """
    mlp = model.mlp(0).mlp
    return mlp.W_in.shape[1], mlp.W_gate is not None


def chunk_rows_for(row_bytes: int, cache_bytes: int | None) -> int:
    """The largest power of two of rows whose ``row_bytes`` each fit in ``cache_bytes``.

    Clamped to ``[MIN_STREAM_CHUNK_ROWS, STREAM_CHUNK_ROWS]``; :data:`STREAM_CHUNK_ROWS`
    where the cache is unknown (None).
    """
    if cache_bytes is None:
        return STREAM_CHUNK_ROWS
    fit = max(1, cache_bytes // max(1, row_bytes))
    rows = 1 << (fit.bit_length() - 1)
    return max(MIN_STREAM_CHUNK_ROWS, min(STREAM_CHUNK_ROWS, rows))


def stream_chunk_rows(d_mlp: int, gated: bool, dtype: torch.dtype,
                      device: torch.device | str = "cpu") -> int:
    """Rows a block of the stream advances at a time on ``device`` (see the module docstring).

    Args:
        d_mlp: the block's MLP width.
        gated: whether its MLP is gated (``act(x W_gate) * (x W_in)``).
        dtype: the stream's compute dtype (its hidden layer's).
        device: where the stream runs.

    Returns:
        A power of two in ``[MIN_STREAM_CHUNK_ROWS, STREAM_CHUNK_ROWS]`` on a CPU;
        :data:`STREAM_CHUNK_ROWS` elsewhere.
    """
    if torch.device(device).type != "cpu":
        return STREAM_CHUNK_ROWS
    return chunk_rows_for(hidden_bytes_per_row(d_mlp, gated, dtype), last_level_cache()[0])


def pass_rows(row_bytes: int, most: int, device: torch.device | str = "cpu") -> int:
    """Rows of a chunked product whose output an elementwise pass then reads with its input.

    The output and the rows it was made from (``row_bytes`` per row together) stay in the
    cache for the pass when they fit in half the last-level cache, the other half left to
    what streams past them (the next rows read from memory, the other cores' data): the
    largest power of two that fits, between :data:`MIN_STREAM_CHUNK_ROWS` and ``most``.
    Filling the whole cache thrashes it: the QK half's selectivity pass on Gemma 3 270M's
    ``(4, rows, 256)`` chunks took 1.2-1.6 s per layer at 4,096 rows (the whole 32 MiB L3),
    1.1-1.5 s at 2,048 and 1.8-2.1 s at 8,192 (docs/results/report-floor.md, tenth round).
    ``most`` on a GPU or where the cache size is unknown.
    """
    cache = last_level_cache()[0]
    if torch.device(device).type != "cpu" or cache is None:
        return most
    return min(most, chunk_rows_for(row_bytes, cache // 2))


def describe(d_mlp: int, gated: bool, dtype: torch.dtype,
             device: torch.device | str = "cpu") -> str:
    """The stream's chunk on ``device`` and why, in words: ``"1024 rows (L3 32 MiB)"``."""
    rows = stream_chunk_rows(d_mlp, gated, dtype, device)
    if torch.device(device).type != "cpu":
        return f"{rows} rows ({torch.device(device).type})"
    return f"{rows} rows ({last_level_cache()[1]})"
