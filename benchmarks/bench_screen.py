"""The screened whole-vocabulary stream against the float32 stream: the report's time and answers.

    PYTHONPATH=src python benchmarks/bench_screen.py --model smollm2-135m [--repeats 2] \
        [--out FILE.md]

With the default projection (``through``), in one process (stream cache off, model loaded
and relations scanned outside the timings): the rest of the report (:func:`headmaps.analyse`
of the scan: salient operations, offline descriptions, the QK half, head types), once with
a float32 stream (``stream_dtype="float32"``: every row exact) and once screened
(``stream_dtype="bfloat16"``: the vocabulary ranked on a bfloat16 stream, candidates
decided on float32 rows; the default where bfloat16 is native, see
:mod:`headmaps.projection.precision`). ``--repeats`` rounds alternate which goes first, so
a host whose speed drifts favours neither. On a CPU without native bfloat16 the screened
run is emulated and slow. Printed: every run's time, the medians and their ratio, and what
the screen changes: salient tokens, their targets and saliency; preferred keys, selective
queries and query-key pairs of the QK half; its positional profiles (from vocabulary
means); the head-type scores (read from the screen's rows of their sample) and labels.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from _report import run_with_report


def overlap(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean and min over rows (last axis = the ranked list) of the shared fraction."""
    a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    f = np.array([len(set(x) & set(y)) / len(x) for x, y in zip(a, b)])
    return float(f.mean()), float(f.min())


def run(args) -> dict:
    os.environ["HEADMAPS_STREAM_CACHE"] = "0"
    import headmaps as hm
    from headmaps import projection as P
    from headmaps.hardware import native_bfloat16

    m = hm.load(args.model)
    proj = hm.projection_for(m, calibration=False)
    t = time.perf_counter()
    scan = hm.scan(m, "all", projection=proj)
    scan_s = time.perf_counter() - t
    runs: dict[str, list[float]] = {"float32": [], "screened": []}
    out = {}
    order = [("float32", "float32"), ("screened", "bfloat16")][::-1 if args.screened_first else 1]
    label, bfloat16_here = P.label("through", proj.options), native_bfloat16(m.E.device)[1]
    print(f"model {m.model_id}: {m.n_layers} x {m.n_heads} heads, vocabulary {m.vocab_size}; "
          f"projection {label}; scan {scan_s:.1f} s (not timed below); bfloat16 here: "
          f"{bfloat16_here}")
    print()
    print("| round | stream | report without the scan (s) | salient + QK half (s) | "
          "head types (s) |")
    print("| ---: | --- | ---: | ---: | ---: |")
    for r in range(args.repeats):
        for name, dtype in (order if r % 2 == 0 else order[::-1]):
            t = time.perf_counter()
            rep = hm.analyse(m, scan=scan, projection=hm.projection_for(m, proj,
                                                                        stream_dtype=dtype))
            secs = time.perf_counter() - t
            runs[name].append(secs)
            out.setdefault(name, rep)
            part = rep.seconds.get("salient", 0) + rep.seconds.get("attention", 0)
            print(f"| {r + 1} | {name} | {secs:.1f} | {part:.1f} | "
                  f"{rep.seconds.get('types', 0):.1f} |")
    med = {k: statistics.median(v) for k, v in runs.items()}
    print()
    print("| stream | median (s) | x float32 |")
    print("| --- | ---: | ---: |")
    print(f"| float32 | {med['float32']:.1f} | 1.00 |")
    print(f"| screened (bfloat16 + float32 candidates) | {med['screened']:.1f} | "
          f"{med['screened'] / med['float32']:.2f} |")
    print()
    a, b = out["float32"], out["screened"]
    sa, sb = a.salient, b.salient
    qa, qb = a.attention, b.attention
    ta, tb = a.types, b.types
    same_labels = np.mean([np.mean(ta.labels[k] == tb.labels[k]) for k in ta.labels])
    rows = [
        ("salient tokens, same set (mean / min over heads)", *overlap(sa.token_ids, sb.token_ids)),
        ("salient tokens, same order", float(np.mean(np.all(sa.token_ids == sb.token_ids, -1))),
         float(np.all(sa.token_ids == sb.token_ids))),
        ("targets of the salient tokens, identical", float(np.mean(sa.target_ids == sb.target_ids)),
         float(np.all(sa.target_ids == sb.target_ids))),
        ("preferred keys, same set", *overlap(qa.key_ids, qb.key_ids)),
        ("selective queries, same set", *overlap(qa.query_ids, qb.query_ids)),
        ("query-key pairs, same set", *overlap(qa.pair_ids, qb.pair_ids)),
    ]
    print("| answer | mean | min (or all) |")
    print("| --- | ---: | ---: |")
    for name, mean, low in rows:
        print(f"| {name} | {mean:.4f} | {low:.4f} |")
    same_tok = sa.token_ids == sb.token_ids
    rel = np.abs(sa.saliency - sb.saliency)[same_tok] / np.abs(sa.saliency[same_tok])
    fin = np.isfinite(qa.profile) & np.isfinite(qb.profile)
    prof = np.abs(qa.profile - qb.profile)[fin].max() / np.abs(qa.profile[fin]).max()
    print(f"| saliency of the same tokens, largest relative difference | {rel.max():.2e} | |")
    print(f"| positional profiles, largest difference / largest value | {prof:.2e} | |")
    types_moved = max(float(np.nanmax(np.abs(ta.scores[k] - tb.scores[k]))
                            / max(float(np.nanmax(np.abs(ta.scores[k]))), 1e-30))
                      for k in ta.scores if np.isfinite(ta.scores[k]).any())
    print(f"| head-type scores, largest difference / largest value of that type | "
          f"{types_moved:.2e} | |")
    print(f"| head-type labels, identical | {same_labels:.4f} | |")
    return {"projection": label, "repeats": args.repeats,
            "screened_first": args.screened_first,
            "seconds": runs, "median_ratio": round(med["screened"] / med["float32"], 3),
            "scan_seconds": round(scan_s, 1), "bfloat16": bfloat16_here}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--repeats", type=int, default=2,
                    help="rounds of the two runs, each round in the other order (default 2)")
    ap.add_argument("--screened-first", action="store_true",
                    help="start the first round with the screened run (default: float32)")
    run_with_report(ap, argv, __file__, run, seeded=False)


if __name__ == "__main__":
    main()
