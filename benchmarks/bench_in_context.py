"""Cost of the in-context score: ``hm.scan`` with and without ``phi_ctx``, same run.

Both scans score every valid built-in relation on every layer with the default
projection (``through``); they share the model, already loaded. Each is run ``--repeats``
times alternately after one warm-up of each; the report gives the median seconds of
each and their ratio (target: at most 1.5), and checks that ``phi`` is the same with and
without the in-context score up to near-ties: the in-context rows go through the kernel
stacked beside ``phi``'s, so the same logits come from products of another shape, which
may round differently on another CPU and flip a decision where a target ties with its
k-th rival; a score may then move by one pair (``1 / n_pairs``), never more. The machine
(CPU, capability flags, threads) is printed.

Usage::

    python benchmarks/bench_in_context.py --model smollm2-135m --out in-context-cost.txt
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from _report import run_with_report


def run(args) -> dict:
    import headmaps as hm
    from headmaps.hardware import machine

    m = hm.load(args.model)
    print(f"machine: {machine()}")
    times: dict[bool, list[float]] = {False: [], True: []}
    results = {}
    for rep in range(args.repeats + 1):
        for ctx in (False, True):
            t0 = time.perf_counter()
            results[ctx] = hm.scan(m, "all", in_context=ctx)
            if rep:  # the first round warms caches and is not counted
                times[ctx].append(time.perf_counter() - t0)
    alone, both = (statistics.median(times[c]) for c in (False, True))
    alone_scores, both_scores = results[False].scores, results[True].scores
    n_pairs = np.array([results[True].n_pairs[r] for r in results[True].relations])
    flips = np.rint(np.abs(alone_scores - both_scores) * n_pairs[:, None, None])
    print(f"model {m.model_id}, {len(results[True].relations)} relations, projection "
          f"{results[True].preset}, {args.repeats} timed runs each")
    print(f"scan without phi_ctx: {alone:.2f} s (median; runs {times[False]})")
    print(f"scan with phi_ctx:    {both:.2f} s (median; runs {times[True]})")
    print(f"ratio: {both / alone:.2f} (target <= 1.5); phi identical: "
          f"{not flips.any()} ({int((flips > 0).sum())} of {flips.size} scores differ)")
    if flips.max(initial=0) > 1:
        raise SystemExit("phi differs with and without the in-context score by more than a "
                         "near-tie (one pair per score)")
    return {"relations": results[True].relations, "repeats": args.repeats}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--repeats", type=int, default=3)
    run_with_report(ap, argv, __file__, run, seeded=False)


if __name__ == "__main__":
    main()
