"""The screened whole-vocabulary stream against the float32 stream: time and answers kept.

    PYTHONPATH=src python benchmarks/bench_screen.py --model smollm2-135m [--out FILE.md]

With the default projection (``through``), in one process (stream cache off, model loaded
outside the timings): the salient operations and the QK half of every head, as
``hm.analyse`` computes them (one pass over the vocabulary for both), once with a
float32 stream (``stream_dtype="float32"``: every row exact) and once screened
(``stream_dtype="bfloat16"``: the vocabulary ranked on a bfloat16 stream, candidates
decided on float32 rows; the default where bfloat16 is native, see
:mod:`headmaps.projection.precision`). On a CPU without native bfloat16 the screened
run is emulated and slow. Printed: both times and their ratio, and what the screen
changes: salient tokens, their targets and saliency; preferred keys, selective queries
and query-key pairs of the QK half; its positional profiles (from vocabulary means).
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

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
    from headmaps.attention.compute import summary_steps
    from headmaps.projection import vocabulary_sources
    from headmaps.salient.compute import salient_steps
    from headmaps.steps import run_steps

    m = hm.load(args.model)
    opts = hm.projection_for(m, calibration=False).options
    out, secs = {}, {}
    for name, dtype in (("float32", "float32"), ("screened", "bfloat16")):
        t = time.perf_counter()
        run_opts = P.concrete(m, replace(opts, stream_dtype=dtype, stream_reason=""))
        shared = vocabulary_sources(m, run_opts)
        steps = {"salient": salient_steps(m, sources=shared, projection=run_opts),
                 "attention": summary_steps(m, sources=shared, projection=run_opts)}
        out[name] = run_steps(steps, m.n_layers, False)
        secs[name] = time.perf_counter() - t
    a, b = out["float32"], out["screened"]
    sa, sb = a["salient"], b["salient"]
    qa, qb = a["attention"], b["attention"]
    print(f"model {m.model_id}: {m.n_layers} x {m.n_heads} heads, vocabulary {m.vocab_size}; "
          f"projection {P.label('through', opts)}; salient operations (15 tokens x 5 "
          "targets) and the QK half of every head, one pass")
    print()
    print("| stream | seconds | x float32 |")
    print("| --- | ---: | ---: |")
    print(f"| float32 | {secs['float32']:.1f} | 1.00 |")
    print(f"| screened (bfloat16 + float32 candidates) | {secs['screened']:.1f} | "
          f"{secs['screened'] / secs['float32']:.2f} |")
    print()
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
    return {"projection": P.label("through", opts), "n_tokens": 15, "n_mappings": 5,
            "qk": "attention_summary defaults"}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    run_with_report(ap, argv, __file__, run, seeded=False)


if __name__ == "__main__":
    main()
