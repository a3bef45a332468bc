"""Benchmark of approach A: the early-exit engine, the dense engine and the reference order.

In one process and on the same data (all valid built-in relations of the model):

(a) ``hm.scan`` over all layers with the exact early exit (the default, timed), and the
    fraction of (head, source) rows that reached each stage of its cascade;
(b) ``hm.scan(..., exact_dense=True)`` over all layers (every logit computed, timed);
(c) the reference order (form ``W_VO`` (d x d) per head, push each relation's sources
    through it and then through ``U``, ``topk`` per row), head by head, relation by
    relation, on the comparison layers only (the full run takes tens of minutes on 2
    cores), against (a) on the same layers.

Checks that (a) and (b) give identical scores and suppression on every layer, and (a) and
(c) identical scores on the comparison layers; prints the times, the ratios, the minimal
FLOP count of the dense engine, this machine's matmul FLOP/s measured in the
same run, and the peak memory of an early-exit scan (RSS before and at its high-water mark,
measured in a child process).

Usage::

    python benchmarks/bench_scan.py [--model smollm2-135m] [--ref-layers 0,15,29]
    python benchmarks/bench_scan.py --model gemma3-270m --ref-layers 0,17 --preset norms
    python benchmarks/bench_scan.py --model gemma3-270m --memory-only
    python benchmarks/bench_scan.py --ref-layers 0,29 --out scan.txt   # + scan.json header
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import torch
from _report import run_with_report


def matmul_flops(seconds: float = 3.0) -> float:
    """FLOP/s of a large float32 square matmul on this machine (best of repeated runs)."""
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t0))
    return best


def minimal_flops(m, n_sources: int, n_layers: int) -> float:
    """The dense floor: 2 * layers * heads * d_head * |V| * (d_model + n_sources)."""
    return 2.0 * n_layers * m.n_heads * m.d_head * m.vocab_size * (m.d_model + n_sources)


def reference_layers(m, scan_res, layers, opts) -> tuple[np.ndarray, float]:
    """Reference-order scores (R, len(layers), H) and seconds (``scoring/reference.py``)."""
    import headmaps as hm
    from headmaps.scoring import reference_scores

    out = np.zeros((len(scan_res.relations), len(layers), m.n_heads), np.float32)
    t0 = time.perf_counter()
    for ri, rel in enumerate(scan_res.relations):
        prep = hm.relations.prepare(m, rel)
        scores, _ = reference_scores(m, prep.source_ids, prep.target_ids, scan_res.k[rel], opts,
                                     layers)
        out[ri] = scores[layers]
    return out, time.perf_counter() - t0


def peak_memory_child(model: str, preset: str) -> dict:
    """Run a scan in a child process; return its RSS before and at peak (bytes)."""
    code = f"""
import json, resource, time, headmaps as hm
m = hm.load({model!r}); m.E; m.U
def rss():
    with open('/proc/self/status') as f:
        return {{l.split(':')[0]: int(l.split()[1]) * 1024 for l in f if l.startswith(('VmRSS',
        'VmHWM'))}}
open('/proc/self/clear_refs', 'w').write('5')  # reset the high-water mark left by loading
before = rss()['VmRSS']
t0 = time.perf_counter(); r = hm.scan(m, projection={preset!r}); dt = time.perf_counter() - t0
print(json.dumps({{'rss_before': before, 'peak': rss()['VmHWM'], 'seconds': dt, 'relations':
len(r.relations)}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--ref-layers", default="0,15,29",
                    help="layers on which the reference order runs")
    ap.add_argument("--memory-only", action="store_true", help="only the peak-memory measurement")
    run_with_report(ap, argv, __file__, run, seeded=False)
    return 0


def run(args: argparse.Namespace) -> dict:
    """Run the benchmark (prints its report); return the sample it ran over."""
    import headmaps as hm
    from headmaps import projection as P

    sample: dict = {"preset": args.preset, "memory_only": args.memory_only}
    if not args.memory_only:
        m = hm.load(args.model)
        m.E, m.U  # noqa: B018 - materialise outside the timings
        opts = P.PRESETS[args.preset or P.DEFAULT_PRESET]
        layers = [int(x) for x in args.ref_layers.split(",") if x.strip() != ""]
        flops_machine = matmul_flops()

        stats: dict = {}
        t0 = time.perf_counter()
        early = hm.scan(m, projection=args.preset, stats=stats)
        t_early = time.perf_counter() - t0
        t0 = time.perf_counter()
        dense = hm.scan(m, projection=args.preset, exact_dense=True)
        t_dense = time.perf_counter() - t0
        n_pairs = sum(early.n_pairs.values())
        prepared = [hm.relations.prepare(m, r) for r in early.relations]
        n_sources = len(torch.unique(torch.cat([p.source_ids for p in prepared])))
        same_dense = (np.array_equal(early.scores, dense.scores)
                      and np.array_equal(early.suppression, dense.suppression))
        n_diff = int((early.scores != dense.scores).sum()
                     + (early.suppression != dense.suppression).sum())

        t0 = time.perf_counter()
        sub = hm.scan(m, projection=args.preset, layers=layers)
        t_sub = time.perf_counter() - t0
        ref, t_ref = reference_layers(m, early, layers, opts)
        same_ref = np.array_equal(sub.scores[:, layers, :], ref)
        max_diff = float(np.abs(sub.scores[:, layers, :] - ref).max())
        assert np.array_equal(early.scores[:, layers, :], sub.scores[:, layers, :])

        floor = minimal_flops(m, n_sources, m.n_layers)
        print(f"model {m.model_id}: {m.n_layers} layers x {m.n_heads} heads, vocab {m.vocab_size}, "
              f"{len(early.relations)} relations, {n_pairs} pairs, {n_sources} unique sources, "
              f"k {sorted(set(early.k.values()))}, preset {args.preset}, torch threads "
              f"{torch.get_num_threads()}")
        print(f"(a) early exit, all {m.n_layers} layers:   {t_early:8.2f} s")
        print(f"(b) dense engine, all {m.n_layers} layers: {t_dense:8.2f} s")
        print(f"speed-up (b)/(a): {t_dense / t_early:.1f}x")
        print("(head, source) rows reaching each stage of the cascade (all layers): " + ", ".join(
            f"columns {c0}-{c1}: {n / stats['rows']:.1%}" for c0, c1, n in stats["stages"]))
        print(f"identical scores and suppression, early exit vs dense, all layers: {same_dense} "
              f"({n_diff} of {early.scores.size * 2} (relation, layer, head) values differ)")
        print(f"(a) early exit, layers {layers}:  {t_sub:8.2f} s  ({t_sub / len(layers):.3f} "
              "s/layer)")
        print(f"(c) reference order, layers {layers}: {t_ref:8.2f} s  ({t_ref / len(layers):.3f} "
              "s/layer)")
        print(f"speed-up (c)/(a) on those layers: {t_ref / t_sub:.1f}x")
        print(f"identical scores, early exit vs reference, layers {layers}: {same_ref} "
              f"(max abs difference {max_diff:.2e})")
        print(f"dense engine: minimal FLOPs {floor:.3e}; machine matmul "
              f"{flops_machine / 1e9:.1f} GFLOP/s; dense achieved {floor / t_dense / 1e9:.1f} "
              "GFLOP/s "
              f"= {100 * floor / t_dense / flops_machine:.0f}% of it")
        sample.update(relations=list(early.relations), pairs=n_pairs, unique_sources=n_sources,
                      k=early.k, heads=m.n_layers * m.n_heads, reference_layers=layers)

    mem = peak_memory_child(args.model, args.preset)
    extra = (mem["peak"] - mem["rss_before"]) / 2**30
    print(f"peak RSS of an early-exit hm.scan on {args.model}: {mem['peak'] / 2**30:.2f} GiB in "
          "all, "
          f"{extra:.2f} GiB above the loaded model (RSS before {mem['rss_before'] / 2**30:.2f} "
          "GiB; "
          f"scan {mem['seconds']:.1f} s, {mem['relations']} relations)")
    return sample


if __name__ == "__main__":
    sys.exit(main())
