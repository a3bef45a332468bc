"""A head zeroed in a real model: its relation scores under the tie rule and the earlier one.

Loads the model, zeroes the ``o_proj`` columns of one head in its transformers model (an
ablated head, as a pruning or ablation study leaves it), loads that in-memory model, and
scans one relation twice: with the kernel's rule (ties count against the target) and with
the earlier ties-win rule. Prints the zeroed head's score and suppression under both, the
largest score of every other head under both (unchanged), and what ``zero_ov_heads`` names.

Usage::

    python benchmarks/dead_head_check.py --model smollm2-135m --head 23.4 \\
        --relation country_to_capital
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _report import run_with_report
from tie_rule_check import _ties_win

import headmaps as hm
from headmaps.models.headmodel import parse_head
from headmaps.scoring import kernel


def run(args) -> dict:
    base = hm.load(args.model)
    layer, head = parse_head(args.head, base)
    hf = base.hf_model
    attn = hf.model.layers[layer].self_attn
    d_head = attn.head_dim
    kw = {"preset": args.preset} if args.preset else {}
    before = hm.scan(base, [args.relation], **kw)[args.relation]
    with torch.no_grad():
        attn.o_proj.weight[:, head * d_head:(head + 1) * d_head] = 0
    zeroed = hm.load(hf, tokenizer=base.tokenizer)
    rule = hm.scan(zeroed, [args.relation], **kw)[args.relation]
    original = kernel._count_beyond
    kernel._count_beyond = _ties_win
    try:
        old = hm.scan(zeroed, [args.relation], **kw)[args.relation]
    finally:
        kernel._count_beyond = original
    others = np.ones_like(rule.scores, dtype=bool)
    others[layer, head] = False
    print(f"model {args.model}, relation {args.relation} ({rule.n_pairs} pairs, k {rule.k}), "
          f"projection {rule.preset}; head {layer}.{head} zeroed (o_proj columns = 0)")
    print(f"head {layer}.{head} before zeroing:           score {before.scores[layer, head]:.2f}")
    print(f"zeroed, ties count against the target: score {rule.scores[layer, head]:.2f}, "
          f"suppression {rule.suppression[layer, head]:.2f}")
    print(f"zeroed, ties count for the target:     score {old.scores[layer, head]:.2f}, "
          f"suppression {old.suppression[layer, head]:.2f}")
    same = np.array_equal(rule.scores[others], old.scores[others]) and np.array_equal(
        rule.scores[others], before.scores[others])
    print(f"every other head identical under both rules and before zeroing: {same}")
    print(f"zero_ov_heads(): {[f'{a}.{b}' for a, b in zeroed.zero_ov_heads()]}")
    return {"relation": args.relation, "head": args.head, "n_pairs": rule.n_pairs}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--head", default="23.4")
    ap.add_argument("--relation", default="country_to_capital")
    ap.add_argument("--preset", default=None)
    run_with_report(ap, argv, __file__, run, seeded=False)


if __name__ == "__main__":
    main()
