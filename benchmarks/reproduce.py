"""Rerun small versions of the documented SmolLM2-135M results and check they still hold.

Each check recomputes one number that README.md or docs/results/ reports, with the same
code path and seeds, and compares it with the documented value within a stated
tolerance. Static scores are deterministic (exact up to float summation order), so their
tolerance is tight; the calibration's correlations come from forward passes and get a
looser one.

Usage::

    python benchmarks/reproduce.py --quick     # SmolLM2-135M, about 1 min on 2 CPU cores

Exit status 0 when every check holds, 1 otherwise (the table says which failed).
Not covered yet: the tables of the Gemma 3 270M page, the speed and memory benchmarks
(machine-dependent, see their own scripts), the causal and head-type tables.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import headmaps as hm


@dataclass(frozen=True)
class Check:
    """One documented number: where it is written, how to recompute it, how close it must be.

    Attributes:
        name: what is checked.
        source: the document that reports it.
        expected: the documented value (a number, or a string compared exactly).
        tolerance: allowed absolute difference for numbers.
        compute: recomputes the value from the loaded model.
    """

    name: str
    source: str
    expected: float | str
    tolerance: float
    compute: Callable[[Any], float | str]


def _top_head(relation: str, k: int) -> Callable[[Any], str]:
    def run(m: Any) -> str:
        layer, head, _ = hm.relation_scores(m, relation, k=k, preset="norms",
                                            calibration=False).top_heads(1)[0]
        return f"{layer}.{head}"
    return run


def _top_score(relation: str, k: int, preset: str) -> Callable[[Any], float]:
    def run(m: Any) -> float:
        return hm.relation_scores(m, relation, k=k, preset=preset,
                                  calibration=False).top_heads(1)[0][2]
    return run


_CALIBRATIONS: dict[int, Any] = {}  # one calibration run per model object, shared by checks


def _calibration(field: str) -> Callable[[Any], float | str]:
    def run(m: Any) -> float | str:
        if id(m) not in _CALIBRATIONS:
            _CALIBRATIONS[id(m)] = hm.calibrate(m, save=False)
        cal = _CALIBRATIONS[id(m)]
        if field == "choice":
            return cal.choice
        by_name = {c["name"]: c["median_r"] for c in cal.candidates}
        return float(by_name[field])
    return run


def _valid_relations(m: Any) -> float:
    return float(len(hm.scan(m, "all", preset="norms", calibration=False).relations))


QUICK: list[Check] = [
    Check("top head of country_to_capital (k=10, norms)", "README.md, Results", "23.4", 0,
          _top_head("country_to_capital", 10)),
    Check("its score with norms", "README.md, Results", 0.81, 0.005,
          _top_score("country_to_capital", 10, "norms")),
    Check("its score with paper", "README.md, Results", 0.65, 0.005,
          _top_score("country_to_capital", 10, "paper")),
    Check("best name_copying score (k=1, norms)", "README.md, make demo table", 0.89, 0.005,
          _top_score("name_copying", 1, "norms")),
    Check("valid relations scored", "README.md, Relations valid per model", 19.0, 0,
          _valid_relations),
    Check("calibration choice", "docs/results/smollm2-135m.md section 6", "mlp0+fold", 0,
          _calibration("choice")),
    Check("calibration: median r of mlp0+fold", "docs/results/smollm2-135m.md section 6",
          0.761, 0.03, _calibration("mlp0+fold")),
    Check("calibration: median r of norms", "docs/results/smollm2-135m.md section 6", 0.765,
          0.03, _calibration("norms")),
    Check("calibration: median r of embedding", "docs/results/smollm2-135m.md section 6",
          0.177, 0.03, _calibration("embedding")),
]


def run_checks(model: Any, checks: list[Check]) -> list[dict[str, Any]]:
    """Recompute every check on ``model``; one row per check with ``ok``."""
    rows = []
    for c in checks:
        t0 = time.perf_counter()
        got = c.compute(model)
        if isinstance(c.expected, str):
            ok = got == c.expected
        else:
            ok = abs(float(got) - c.expected) <= c.tolerance
        rows.append({"check": c.name, "expected": c.expected, "got": got,
                     "tolerance": c.tolerance, "ok": ok, "source": c.source,
                     "seconds": round(time.perf_counter() - t0, 1)})
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the checks and print a table; 0 when all hold."""
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="the small SmolLM2-135M checks (the only mode so far)")
    args = ap.parse_args(argv)
    if not args.quick:
        ap.error("only --quick exists so far")
    model = hm.load("smollm2-135m")
    rows = run_checks(model, QUICK)
    for r in rows:
        got = f"{r['got']:.3f}" if isinstance(r["got"], float) else r["got"]
        print(f"{'ok ' if r['ok'] else 'FAIL'} {r['check']}: expected {r['expected']} "
              f"(± {r['tolerance']}), got {got}  [{r['source']}; {r['seconds']} s]")
    failed = [r for r in rows if not r["ok"]]
    print(f"{len(rows) - len(failed)} of {len(rows)} checks hold")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
