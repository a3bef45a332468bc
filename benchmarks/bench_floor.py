"""The report against its floor: the whole-vocabulary stream's FLOPs at the best GEMM rate.

    PYTHONPATH=src python benchmarks/bench_floor.py --model smollm2-135m [--device cpu] \
        [--stream-dtype auto] [--out FILE.md]

Measured in one run, on the machine it runs on (its CPU, the capability flags the
precision rule reads and the GPU are printed first):

1. the GEMM rate of each dtype (float32, bfloat16, float16; int8 for comparison) on each
   of the stream's own products (:data:`CHUNK` rows and the stream's own chunk, the
   best of both, times the fused query/key/value weights, the output weights, the
   MLP's up (and gate) weights and its down weights;
   best of :data:`GEMM_REPEATS`), measured before the stream and again after it (the
   best of both runs counts: a shared host's speed moves between them), so a dtype that
   the machine emulates shows as such;
2. the stream's FLOP count: per token and block, those four products, times the
   vocabulary and the blocks a whole-vocabulary pass goes through (``n_layers - 1``);
3. the stream alone (every layer's rows of the whole vocabulary, at the precision the
   rule picks or ``--stream-dtype`` asks), and its ratio to its floor: the sum over the
   four products of their FLOPs over the rate of their own shape (at the chosen dtype,
   and at each product's best dtype);
4. the default report (:func:`headmaps.analyse`: scan, salient operations, offline
   descriptions, the QK half, head types) and the ``norms`` report, each from an empty
   stream cache and calibration store: their times, per part, the ratio default /
   ``norms``, and the share of the default report that is not the stream.

The issue's targets: the stream within 1.2x of its floor; everything but the stream at
most 25 % of the default report; the default report at most 1.5x the ``norms`` one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
from _report import run_with_report

#: Rows per product: the stream's most (``headmaps.projection.STREAM_CHUNK_ROWS``); its
#: own chunk on this CPU is measured too (:func:`chunk_rows`).
CHUNK = 4096
GEMM_REPEATS = 5
#: Seconds of one probe after which it stops repeating (bfloat16 on an AVX2 CPU).
GEMM_SECONDS = 2.0
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def gemm_rate(m: int, k: int, n: int, dtype: torch.dtype, device: str) -> float:
    """Best FLOP/s of an ``(m, k) @ (k, n)`` product in ``dtype`` over a few runs.

    ``torch.int8`` times ``torch._int_mm`` (int8 operands, int32 sums), the cheapest
    product an int8 screen could use, without the quantisation of its operands.
    """
    if dtype == torch.int8:
        a = torch.randint(-127, 128, (m, k), device=device, dtype=dtype)
        b = torch.randint(-127, 128, (k, n), device=device, dtype=dtype)
        product = torch._int_mm
    else:
        a = torch.randn(m, k, device=device).to(dtype)
        b = torch.randn(k, n, device=device).to(dtype)
        product = torch.matmul
    best, spent = float("inf"), 0.0
    for _ in range(GEMM_REPEATS + 1):  # the first run warms the kernels up
        if spent > GEMM_SECONDS:  # an emulated dtype: a few of its slow runs say enough
            break
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        product(a, b)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        took = time.perf_counter() - t
        best, spent = min(best, took), spent + took
    return 2.0 * m * k * n / best


def stream_products(model) -> dict[str, tuple[int, int]]:
    """The stream's products per block, ``name -> (k, n)``: a chunk ``(CHUNK, k) @ (k, n)``."""
    s = model.spec
    d, dh, H, kv = model.d_model, s.d_head, s.n_heads, s.n_kv_heads
    mlp = model.mlp(0).mlp
    d_mlp = mlp.W_in.shape[1]
    up = d_mlp * (2 if mlp.W_gate is not None else 1)
    return {"query/key/value": (d, (H + 2 * kv) * dh), "output": (H * dh, d),
            "MLP up": (d, up), "MLP down": (d_mlp, d)}


def stream_flops(model) -> tuple[float, float]:
    """FLOPs of one token through one block of the stream, and of the whole-vocabulary pass."""
    per = sum(2.0 * k * n for k, n in stream_products(model).values())
    return per, per * model.vocab_size * (model.n_layers - 1)


def chunk_rows(model, device: str) -> dict[str, list[int]]:
    """Rows per product measured, per dtype name: :data:`CHUNK` and the stream's own chunk
    in that dtype (:func:`headmaps.projection.chunking.stream_chunk_rows`, from the CPU's
    cache)."""
    from headmaps.projection.chunking import mlp_shape, stream_chunk_rows

    shape = mlp_shape(model)
    return {dn: sorted({CHUNK, stream_chunk_rows(*shape, dt, device)})
            for dn, dt in DTYPES.items()}


def measure_rates(rows: dict[str, list[int]], products: dict[str, tuple[int, int]],
                  device: str) -> dict[str, dict[str, float]]:
    """FLOP/s per product and dtype, ``{product: {dtype: rate}}``: the best over the
    dtype's ``rows`` (:func:`chunk_rows`; the floor takes the best rate the machine shows)."""
    return {name: {dn: max(gemm_rate(r, k, n, dt, device) for r in rows[dn])
                   for dn, dt in DTYPES.items()}
            for name, (k, n) in products.items()}


def floor_seconds(products: dict[str, tuple[int, int]], rates: dict[str, dict[str, float]],
                  tokens: float, dtype: str | None) -> float:
    """Seconds of ``tokens`` token-blocks at ``dtype``'s rate per product (None: each best)."""
    return sum(2.0 * k * n * tokens / (rates[name][dtype] if dtype else max(rates[name].values()))
               for name, (k, n) in products.items())


def gflops(rates: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """``rates`` (FLOP/s per product and dtype) in GFLOP/s, rounded for the run header."""
    return {p: {dn: round(v / 1e9, 2) for dn, v in r.items()} for p, r in rates.items()}


def run(args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="headmaps-bench-floor-"))
    os.environ["HEADMAPS_CALIBRATIONS"] = str(tmp / "calibrations")
    os.environ["HEADMAPS_STREAM_CACHE"] = "0"
    try:
        import headmaps as hm
        from headmaps import projection as P
        from headmaps.hardware import machine
        from headmaps.projection import vocabulary_sources

        mach = machine()
        print(f"machine: {mach['cpu']}, flags {mach['cpu_flags']}, kernels {mach['kernels']}, "
              f"{mach['threads']} torch "
              f"threads, GPU {mach['gpu'] or 'none'}; device {args.device}")
        m = hm.load(args.model, device=args.device)
        opts = hm.projection_for(m, calibration=False, stream_dtype=args.stream_dtype).options
        print(f"model {m.model_id}: {m.n_layers} layers, vocabulary {m.vocab_size}; stream "
              f"{P.precision.describe(opts.stream_dtype, opts.stream_reason)}\n")

        products = stream_products(m)
        rows = chunk_rows(m, args.device)
        before = measure_rates(rows, products, args.device)
        k0, n0 = products["query/key/value"]
        int8 = gemm_rate(CHUNK, k0, n0, torch.int8, args.device)
        per, total = stream_flops(m)
        tokens = total / per
        t = time.perf_counter()
        src = vocabulary_sources(m, opts)
        for layer in range(m.n_layers):
            src.at(layer)
        t_stream = time.perf_counter() - t
        del src
        after = measure_rates(rows, products, args.device)
        rates = {p: {dn: max(before[p][dn], after[p][dn]) for dn in DTYPES} for p in products}
        every = sorted({r for rs in rows.values() for r in rs})
        print("| product (k x n, best of rows " + ", ".join(map(str, every)) + ") | " + " | ".join(
            f"{dn} GFLOP/s (before / after the stream)" for dn in DTYPES) + " |")
        print("| --- |" + " ---: |" * len(DTYPES))
        for p, (k, n) in products.items():
            print(f"| {p} ({k} x {n}) | " + " | ".join(
                f"{before[p][dn] / 1e9:.1f} / {after[p][dn] / 1e9:.1f}" for dn in DTYPES) + " |")
        print(f"| int8 on the query/key/value shape (torch._int_mm; no stream runs in it) | "
              f"{int8 / 1e9:.1f} | | |")
        floor_chosen = floor_seconds(products, rates, tokens, opts.stream_dtype)
        floor_best = floor_seconds(products, rates, tokens, None)
        print(f"\nstream FLOPs: {per / 1e6:.2f} MFLOP per token and block, "
              f"{total / 1e12:.2f} TFLOP for the whole vocabulary; floor (each product at "
              f"the best rate of its shape, before or after) at the chosen dtype "
              f"{floor_chosen:.1f} s, at each product's best dtype {floor_best:.1f} s\n")

        secs, parts = {}, {}
        for name, preset in (("default", None), ("norms", "norms")):
            t = time.perf_counter()
            proj = hm.projection_for(m, preset, calibration=False, stream_dtype=args.stream_dtype)
            rep = hm.analyse(m, relations="all", projection=proj)
            secs[name] = time.perf_counter() - t
            parts[name] = dict(rep.seconds)
        print("| measured | seconds | ratio |")
        print("| --- | ---: | ---: |")
        print(f"| stream alone ({opts.stream_dtype}) | {t_stream:.1f} | "
              f"{t_stream / floor_chosen:.2f} x its dtype's floor, "
              f"{t_stream / floor_best:.2f} x the best dtypes' |")
        print(f"| default report | {secs['default']:.1f} | "
              f"{secs['default'] / floor_best:.2f} x the best dtypes' floor |")
        print(f"| norms report | {secs['norms']:.1f} | default / norms "
              f"{secs['default'] / secs['norms']:.2f} |")
        print(f"| default report, not the stream | {secs['default'] - t_stream:.1f} | "
              f"{(secs['default'] - t_stream) / secs['default']:.0%} of the report |")
        for name, p in parts.items():
            print(f"\n{name} report parts (s): " + ", ".join(f"{k} {v:.1f}" for k, v in p.items()))
        return {"device": args.device, "stream": opts.to_dict(),
                "gemm_gflops": gflops(rates), "gemm_gflops_before": gflops(before),
                "int8_gflops": round(int8 / 1e9, 2),
                "stream_tflop": round(total / 1e12, 3),
                "floor_seconds": {"chosen": round(floor_chosen, 2), "best": round(floor_best, 2)},
                "seconds": {"stream": round(t_stream, 2), **{k: round(v, 2)
                                                              for k, v in secs.items()}},
                "parts": parts, "machine": mach}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--stream-dtype", default="auto", choices=("auto", "float32", "bfloat16"))
    run_with_report(ap, argv, __file__, run, seeded=False)


if __name__ == "__main__":
    main()
