"""The scan's early-exit cascade: its blocks against a cascade of another growth, same run.

``hm.scan(m, "all")`` with the default blocks (:func:`headmaps.scoring.kernel.stage_bounds`,
each boundary twice the one before) and with blocks that grow ``--against`` times (the
rule before 2026-12-08: 8 times, a block reaching past half of the vocabulary replaced by
the rest of it), alternately in one process after one warm-up scan, ``--repeats`` timed
rounds (which variant goes first alternates). Prints the machine; per variant the share
of (head, row) rows each block reads and the (head, row, column) logits all blocks form
(the work the cascade sets, free of timing noise), the median seconds and their ratio;
and how many scores differ: both cascades take the same decisions except on near-ties
(their continuing rows' products have other shapes), so a score may move by one pair
and no more.

Usage::

    python benchmarks/bench_cascade.py --model gemma3-270m --repeats 2 --out cascade.txt
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from _report import run_with_report


def former_bounds(vocab_size: int, first: int, growth: int) -> list[int]:
    """Boundaries growing ``growth`` times from ``first``, the last block the rest of the
    vocabulary once the next one would reach past its half (the rule before 2026-12-08)."""
    bounds, b = [], first
    while b <= vocab_size // 2:
        bounds.append(b)
        b *= growth
    return bounds


def run(args) -> dict:
    os.environ["HEADMAPS_STREAM_CACHE"] = "0"  # every scan streams its own sources
    import headmaps as hm
    from headmaps.hardware import machine
    from headmaps.scoring.kernel import stage_bounds

    m = hm.load(args.model)
    print(f"machine: {machine()}")
    warm = hm.scan(m, "all")  # warms caches; its k values set the first block
    first = stage_bounds(m.vocab_size, max(warm.k.values()) + 1)[0]
    variants = {"doubling": None,
                f"growth {args.against}": former_bounds(m.vocab_size, first, args.against)}
    names = list(variants)
    times: dict[str, list[float]] = {v: [] for v in variants}
    entries: dict[str, tuple[float, list]] = {}
    results = {}
    for rnd in range(args.repeats):
        for name in (names if rnd % 2 == 0 else names[::-1]):
            stats: dict = {}
            t0 = time.perf_counter()
            results[name] = hm.scan(m, "all", blocks=variants[name], stats=stats)
            times[name].append(time.perf_counter() - t0)
            entries[name] = (sum((b - a) * n for a, b, n in stats["stages"]),
                             [[a, b, round(n / stats["rows"], 3)] for a, b, n in stats["stages"]])
    res = results[names[0]]
    print(f"model {m.model_id}: vocabulary {m.vocab_size}, {len(res.relations)} relations, "
          f"k up to {max(res.k.values())}, projection {res.preset}, {args.repeats} timed runs")
    for name in names:
        total, stages = entries[name]
        print(f"{name}: blocks {[s[1] for s in stages]}; share of rows per block "
              f"{[s[2] for s in stages]}; entries read {total / 1e9:.3f} G; "
              f"{statistics.median(times[name]):.1f} s (median; runs "
              f"{[round(t, 1) for t in times[name]]})")
    (a, ta), (b, tb) = ((entries[n][0], statistics.median(times[n])) for n in names)
    print(f"doubling / growth {args.against}: entries {a / b:.3f}, time {ta / tb:.3f}")
    n_pairs = np.array([res.n_pairs[r] for r in res.relations])[:, None, None]
    other = results[names[1]]
    flips = max(float(np.rint(np.abs(getattr(res, f) - getattr(other, f)) * n_pairs).max())
                for f in ("scores", "suppression", "phi_ctx", "supp_ctx")
                if getattr(res, f) is not None)
    print(f"largest score difference: {int(flips)} pair(s) of a relation")
    if flips > 1:
        raise SystemExit("the two cascades differ by more than a near-tie (one pair per score)")
    return {"relations": res.relations, "repeats": args.repeats, "against": args.against}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--against", type=int, default=8, help="growth of the other cascade")
    run_with_report(ap, argv, __file__, run, seeded=False)


if __name__ == "__main__":
    main()
