"""The GPU path, end to end, against the CPU float32 run: answers within tolerance, timings.

    PYTHONPATH=src python benchmarks/gpu_check.py [--models smollm2-135m gemma3-270m] \
        [--device cuda] [--out FILE.md]

For each model, in one process: :func:`headmaps.analyse` (the relation scan, salient
operations of every head, the QK half, head types) and the correlation experiment
(:func:`headmaps.experiments.correlation`, which runs the model on prompts; at most
:data:`MAX_PAIRS` pairs per relation) once on the
CPU with a float32 stream and once on ``--device`` with the stream precision the rule
picks there (:mod:`headmaps.projection.precision`: bfloat16 from sm_80 on). Printed:
the machine (CPU, its flags, the GPU card), each part's seconds on both devices, and
how far the answers are apart, judged by tolerances that hold on any card:

* relation scores are fractions of a relation's pairs whose target is in a head's
  top-k; a float32 logit computed by other kernels moves by ~1e-6 of its scale, which
  flips a pair only at a near-tie: at most 1 % of the (relation, head) scores may
  differ, and none by more than 0.05;
* salient tokens and their targets are decided on float32 rows on both devices: the
  same sets for at least 95 % of heads (a near-tie at the cut-off may swap one token);
* the QK half reads a screen's rows and the queries and keys of its bfloat16 products:
  its preferred keys and selective queries share at least 90 %, its query-key pairs at
  least 80 % (a bfloat16 screen's measured agreement, benchmarks/bench_screen.py:
  SmolLM2 keys 0.956, queries 0.960, pairs 0.847; a float32 GPU stream agrees more);
* head-type labels: at least 98 % of heads labelled alike;
* correlation: the median Pearson r of the two runs within 0.02.

Exit status 1 when a tolerance is broken. Runs in a few minutes on an H100.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from _report import run_with_report

#: Pairs per relation of the correlation experiment (a seeded subset: minutes, not hours).
MAX_PAIRS = 32


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean shared fraction of the ranked lists on the last axis."""
    a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    return float(np.mean([len(set(x) & set(y)) / max(len(x), 1) for x, y in zip(a, b)]))


def one(model_name: str, device: str, stream_dtype: str, relations) -> tuple[dict, dict]:
    """Every part on one device: the results and their seconds."""
    import headmaps as hm
    from headmaps.experiments.correlation import correlation

    t = time.perf_counter()
    m = hm.load(model_name, device=device)
    secs = {"load": time.perf_counter() - t}
    t = time.perf_counter()
    proj = hm.projection_for(m, calibration=False, stream_dtype=stream_dtype)
    rep = hm.analyse(m, relations=relations, projection=proj, describe="none")
    secs["report"] = time.perf_counter() - t
    secs.update({f"  {k}": v for k, v in rep.seconds.items()})
    t = time.perf_counter()
    corr = correlation(m, relations, max_pairs=MAX_PAIRS, projection=proj)
    secs["correlation"] = time.perf_counter() - t
    return {"report": rep, "correlation": corr}, secs


def compare(cpu: dict, gpu: dict) -> list[tuple[str, float, str, bool]]:
    """``(what, value, tolerance, within)`` rows."""
    a, b = cpu["report"], gpu["report"]
    rows = []
    d = np.abs(a.scan.scores - b.scan.scores)
    rows.append(("relation scores differing (share)", float((d > 0).mean()), "<= 0.01",
                 float((d > 0).mean()) <= 0.01))
    rows.append(("relation scores, largest change", float(d.max()), "<= 0.05",
                 float(d.max()) <= 0.05))
    same = float(np.mean([set(x) == set(y) for x, y in
                          zip(a.salient.token_ids.reshape(-1, a.salient.token_ids.shape[-1]),
                              b.salient.token_ids.reshape(-1, b.salient.token_ids.shape[-1]))]))
    rows.append(("salient token sets identical (share of heads)", same, ">= 0.95", same >= 0.95))
    tgt = overlap(a.salient.target_ids, b.salient.target_ids)
    rows.append(("salient targets shared", tgt, ">= 0.95", tgt >= 0.95))
    for key, low in (("key_ids", 0.90), ("query_ids", 0.90), ("pair_ids", 0.80)):
        o = overlap(getattr(a.attention, key), getattr(b.attention, key))
        rows.append((f"QK {key} shared", o, f">= {low:.2f}", o >= low))
    kinds = sorted(set(a.types.labels) & set(b.types.labels))
    alike = float(np.mean(np.all([a.types.labels[k] == b.types.labels[k] for k in kinds], 0)))
    rows.append(("head-type labels alike (share of heads)", alike, ">= 0.98", alike >= 0.98))
    ra, rb = cpu["correlation"], gpu["correlation"]
    ma, mb = float(ra.median()), float(rb.median())
    rows.append(("correlation median r, |cpu - gpu|", abs(ma - mb), "<= 0.02",
                 abs(ma - mb) <= 0.02))
    return rows


def run(args) -> dict:
    import torch

    from headmaps.hardware import machine
    from headmaps.projection.precision import choose

    mach = machine()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here: nothing to check")
        sys.exit(2)
    print(f"machine: {mach['cpu']}, flags {mach['cpu_flags']}, GPU {mach['gpu'] or 'none'}")
    print(f"{args.device} stream: {' - '.join(choose('auto', args.device))}\n")
    failed, sample = [], {"models": args.models, "device": args.device, "machine": mach}
    for name in args.models:
        relations = "all" if args.relations == "all" else args.relations.split(",")
        cpu, t_cpu = one(name, "cpu", "float32", relations)
        gpu, t_gpu = one(name, args.device, "auto", relations)
        print(f"## {name}\n\n| part | cpu float32 (s) | {args.device} (s) | speed-up |")
        print("| --- | ---: | ---: | ---: |")
        for k in t_cpu:
            print(f"| {k} | {t_cpu[k]:.1f} | {t_gpu.get(k, float('nan')):.1f} | "
                  f"{t_cpu[k] / max(t_gpu.get(k, float('nan')), 1e-9):.1f}x |")
        print("\n| answer | value | tolerance | within |\n| --- | ---: | --- | --- |")
        for what, value, tol, ok in compare(cpu, gpu):
            print(f"| {what} | {value:.4f} | {tol} | {'yes' if ok else 'NO'} |")
            if not ok:
                failed.append(f"{name}: {what}")
        print()
    print("all answers within tolerance" if not failed else f"outside tolerance: {failed}")
    sample["failed"] = failed
    if failed:
        sys.exit(1)
    return sample


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["smollm2-135m", "gemma3-270m"])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--relations", default="all",
                    help="'all', or comma-separated relations (a quicker smoke run)")
    ap.add_argument("--model", default="smollm2-135m,gemma3-270m", help=argparse.SUPPRESS)
    run_with_report(ap, argv, __file__, run, seeded=False)


if __name__ == "__main__":
    main()
