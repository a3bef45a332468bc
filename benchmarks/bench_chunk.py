"""The stream's chunk size: the cache rule against the fixed 4,096 rows, in one process.

    PYTHONPATH=src python benchmarks/bench_chunk.py --model smollm2-135m [--blocks 4] \
        [--dtype auto|float32|bfloat16] [--repeats 3] [--out FILE.md]

The whole vocabulary's ``token_alone`` stream (the default projection's, after its prefix)
advances through the first ``--blocks`` blocks at the chunk sizes the rule of
:mod:`headmaps.projection.chunking` gives for four last-level cache sizes: this machine's,
half and twice it (the rule's neighbours), and unknown (the fixed 4,096 rows the stream
used before the rule; also what a GPU gets). Rounds alternate the order, so a host whose
speed drifts favours none. Printed: every run, the median per chunk size and its ratio to
the fixed 4,096 rows, and the largest difference between the rows of the rule's chunk and
those of 4,096 rows, relative to the rows' largest value (float32 rounding: products of
different shapes may take different kernels). No stream cache is read or written.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from unittest import mock

from _report import run_with_report


def run(args) -> dict:
    os.environ["HEADMAPS_STREAM_CACHE"] = "0"
    import torch

    import headmaps as hm
    from headmaps import projection as P
    from headmaps.hardware import last_level_cache
    from headmaps.projection import chunking
    from headmaps.projection.stream import _advance, _alone_start

    m = hm.load(args.model)
    opts = P.concrete(m, hm.projection_for(m, calibration=False,
                                           stream_dtype=args.dtype).options)
    dtype = P.STREAM_DTYPES[opts.stream_dtype]
    d_mlp, gated = chunking.mlp_shape(m)
    row_bytes = chunking.hidden_bytes_per_row(d_mlp, gated, dtype)
    cache, cache_words = last_level_cache()
    caches = {"this machine's cache": cache}
    if cache is not None:
        caches |= {"half the cache": cache // 2, "twice the cache": cache * 2}
    caches["cache unknown (fixed)"] = None
    rows: dict[str, int] = {}
    for name, c in caches.items():  # a cache size that gives rows already listed is dropped
        n = chunking.chunk_rows_for(row_bytes, c)
        if n not in rows.values() or c is None:
            rows = {k: v for k, v in rows.items() if v != n} | {name: n}
    caches = {name: caches[name] for name in rows}
    blocks = range(0, min(args.blocks, m.n_layers - 1))
    print(f"model {m.model_id}: vocabulary {m.vocab_size}, d_mlp {d_mlp} "
          f"({'gated' if gated else 'plain'}), {len(blocks)} blocks timed; stream "
          f"{P.precision.describe(opts.stream_dtype, opts.stream_reason)}; last-level cache "
          f"{cache_words}; hidden layer {row_bytes} bytes per row")
    print()
    first, x = _alone_start(m, torch.arange(m.vocab_size, device=m.E.device), opts)

    def advance(cache_bytes, n=None):
        with mock.patch.object(chunking, "last_level_cache", lambda: (cache_bytes, "")):
            return _advance(m, x[:n], blocks, P.STREAM_CHUNK_ROWS, first, dtype)[1]

    advance(None, 8192)  # warm: pages the weights in, starts the kernels
    names = list(caches)
    runs: dict[str, list[float]] = {n: [] for n in names}
    print("| round | cache the rule sees | rows per chunk | seconds |")
    print("| ---: | --- | ---: | ---: |")
    for r in range(args.repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            t = time.perf_counter()
            advance(caches[name])
            runs[name].append(time.perf_counter() - t)
            print(f"| {r + 1} | {name} | {rows[name]} | {runs[name][-1]:.2f} |", flush=True)
    med = {n: statistics.median(v) for n, v in runs.items()}
    fixed = med["cache unknown (fixed)"]
    print()
    print("| cache the rule sees | rows per chunk | median (s) | x fixed 4,096 rows |")
    print("| --- | ---: | ---: | ---: |")
    for name in names:
        print(f"| {name} | {rows[name]} | {med[name]:.2f} | {med[name] / fixed:.2f} |")
    ours, old = advance(cache), advance(None)
    diff = float((ours - old).abs().max() / old.abs().max())
    print()
    print(f"rows at {rows[names[0]]} against 4,096 rows per chunk: largest difference / "
          f"largest value {diff:.1e}")
    return {"stream_dtype": opts.stream_dtype, "blocks": len(blocks), "repeats": args.repeats,
            "cache": cache_words, "rows": rows,
            "seconds": {n: [round(s, 3) for s in v] for n, v in runs.items()},
            "ratio_to_fixed": {n: round(med[n] / fixed, 3) for n in names},
            "relative_difference": diff}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--blocks", type=int, default=4, help="blocks of the stream timed")
    ap.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"),
                    help="the stream's precision (auto: the rule of headmaps.projection."
                         "precision)")
    ap.add_argument("--repeats", type=int, default=3, help="rounds, alternating the order")
    run_with_report(ap, argv, __file__, run, seeded=False)


if __name__ == "__main__":
    main()
