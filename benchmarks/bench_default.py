"""The default projection against ``norms``: what a user pays for the right default.

    PYTHONPATH=src python benchmarks/bench_default.py --model smollm2-135m [--out FILE.md]

In one process, with an empty calibration store and an empty stream cache (as on a fresh
clone; both are temporary folders removed at the end), the model loaded once outside the
timings, and the rounds interleaved so that a change of machine load hits both sides:

* ``scan``: :func:`headmaps.scan` of every built-in relation, ``projection="norms"`` against
  the default (no preset: :data:`headmaps.projection.DEFAULT_PRESET`);
* ``report``: :func:`headmaps.analyse` of the scan (salient operations of every head,
  offline descriptions, the QK half, head types), which is what ``headmaps report``
  computes before writing the HTML, each with its own scan's projection;
* ``report again``: the default's report once more in the same process with the stream
  cache the first one filled (a second report, head card or QK summary of the model).

The ratios default / ``norms`` are the numbers to read (the issue's targets: scan
<= 1.2x, report <= 2x on SmolLM2-135M and <= 3x on Gemma 3 270M); the absolute seconds
depend on the machine and its load. ``--check-exact`` also compares the early exit's
hit/miss decisions with the dense path's for the default projection on every layer.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from _report import run_with_report


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def run(args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="headmaps-bench-default-"))
    os.environ["HEADMAPS_CALIBRATIONS"] = str(tmp / "calibrations")
    os.environ["HEADMAPS_CACHE"] = str(tmp / "cache")
    try:
        import headmaps as hm
        from headmaps import projection as P

        m = hm.load(args.model)
        _ = m.tokenizer
        rows = []
        scans: dict[str, object] = {}
        for name, preset in (("norms", "norms"), ("default", None)):
            scans[name], sec = timed(hm.scan, m, projection=preset)
            rows.append(("scan", name, sec))
        reports = {}
        for name in ("norms", "default"):
            reports[name], sec = timed(hm.analyse, m, scan=scans[name], describe="pattern")
            rows.append(("report", name, sec))
        if not args.no_again:
            _, sec = timed(hm.analyse, m, scan=scans["default"], describe="pattern")
            rows.append(("report again (stream cache filled)", "default", sec))
        label = P.label(scans["default"].preset, scans["default"].options,
                        scans["default"].calibration)
        t = {(a, b): s for a, b, s in rows}
        print(f"model {m.model_id}: {m.n_layers} layers x {m.n_heads} heads, vocabulary "
              f"{m.vocab_size}; default projection: {label}; machine {platform.machine()}, "
              f"{os.cpu_count()} CPUs, torch threads {__import__('torch').get_num_threads()}")
        print()
        print("| step | norms (s) | default (s) | default / norms |")
        print("| --- | ---: | ---: | ---: |")
        for step in ("scan", "report"):
            a, b = t[(step, "norms")], t[(step, "default")]
            print(f"| {step} | {a:.1f} | {b:.1f} | {b / a:.2f}x |")
        a = t[("scan", "norms")] + t[("report", "norms")]
        b = t[("scan", "default")] + t[("report", "default")]
        print(f"| scan + report | {a:.1f} | {b:.1f} | {b / a:.2f}x |")
        if not args.no_again:
            again = t[("report again (stream cache filled)", "default")]
            print(f"| report again, stream cache filled | | {again:.1f} | "
                  f"{again / t[('report', 'norms')]:.2f}x |")
        print()
        parts = reports["default"].seconds
        print("report parts, default (s): " + ", ".join(f"{k} {v:.1f}" for k, v in parts.items()))
        parts = reports["norms"].seconds
        print("report parts, norms (s): " + ", ".join(f"{k} {v:.1f}" for k, v in parts.items()))
        found = {n: int((s.scores >= s.tau).any(axis=(1, 2)).sum()) for n, s in scans.items()}
        print(f"relations with a head at tau: norms {found['norms']}, default {found['default']} "
              f"of {len(scans['default'].relations)}")
        if args.check_exact:
            stats_d: dict = {}
            early = hm.scan(m, stats=stats_d)
            dense = hm.scan(m, exact_dense=True)
            same = bool(np.array_equal(early.scores, dense.scores)
                        and np.array_equal(early.suppression, dense.suppression))
            print(f"early exit vs dense, default projection: identical scores and suppression "
                  f"on every head and relation: {same}")
        return {"projection": label, "relations": "all built-in",
                "describe": "pattern", "cache": "empty at start"}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--no-again", action="store_true",
                    help="skip the second default report (with the stream cache filled)")
    ap.add_argument("--check-exact", action="store_true",
                    help="also compare early exit and dense hit/miss for the default")
    run_with_report(ap, argv, __file__, run, seeded=False)


if __name__ == "__main__":
    main()
