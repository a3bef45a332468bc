"""How the tie rule changes the documented scores: ties-lose (the rule) against ties-win.

Scans every valid built-in relation of a model twice in one process, once with the
kernel's rule (a hit iff fewer than ``k`` other entries are >= the target's logit) and once
with the earlier rule (fewer than ``k`` are strictly >), and prints how many (relation,
head) cells of the scores and suppression differ and by how much. For ordinary float heads
the two should agree; they differ only where exact ties occur (dead or degenerate heads).

Usage::

    python benchmarks/tie_rule_check.py --model smollm2-135m [--preset norms]
    python benchmarks/tie_rule_check.py --model gemma3-270m --out tie-rule.txt
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _report import run_with_report

import headmaps as hm
from headmaps.scoring import kernel


def _ties_win(vals, idx, targets, tgt, largest):
    beyond = vals > tgt.unsqueeze(2) if largest else vals < tgt.unsqueeze(2)
    return (beyond & (idx != targets.view(1, -1, 1))).sum(2)


def run(args) -> dict:
    model = hm.load(args.model)
    kw = {"preset": args.preset} if args.preset else {}
    t0 = time.perf_counter()
    rule = hm.scan(model, "all", **kw)
    t1 = time.perf_counter()
    original = kernel._count_beyond
    kernel._count_beyond = _ties_win
    try:
        old = hm.scan(model, "all", **kw)
    finally:
        kernel._count_beyond = original
    print(f"model {args.model}, projection {rule.preset}, {len(rule.relations)} relations x "
          f"{model.n_layers * model.n_heads} heads (scan {t1 - t0:.1f} s)")
    total = changed = 0
    worst = 0.0
    for name in rule.relations:
        for part in ("scores", "suppression"):
            a, b = getattr(rule[name], part), getattr(old[name], part)
            total += a.size
            changed += int((a != b).sum())
            worst = max(worst, float(np.abs(a - b).max()))
    print(f"cells that differ: {changed} of {total}; largest change {worst:.4f}")
    return {"relations": list(rule.relations), "preset": rule.preset}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--preset", default=None)
    run_with_report(ap, argv, __file__, run, seeded=False)


if __name__ == "__main__":
    main()
