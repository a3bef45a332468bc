"""Static head types vs behavioural detectors, and static vs behavioural time (issue 13).

    PYTHONPATH=src python benchmarks/bench_head_types.py --model smollm2-135m [--out FILE.md]

With ``--out`` the tables are also written to ``FILE.md``, with a JSON run header beside it
(``FILE.json``: command, model, seed, sample, versions, date).

For every type: Spearman correlation static vs behavioural over all heads, AUROC of the
static score for "behaviourally a type" (top 5 % of heads by the behavioural score, fixed
before looking), precision@10. Times of both passes are measured in the same run: the
full static pass (with the copying/successor relation scores of approach A), the static
pass without them, and the behavioural pass (forward passes; with and without the
dynamic relation detectors).
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
from _report import save_report

import headmaps as hm
from headmaps.experiments import behaviour as B
from headmaps.headtypes.static import DEFAULT_N_TOKENS
from headmaps.headtypes.validate import compare
from headmaps.io import command_line, run_header


def markdown(frame) -> str:
    """A DataFrame as a markdown table (floats to 3 decimals)."""
    def cell(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)
    rows = ["| " + " | ".join(frame.columns) + " |", "|" + " --- |" * len(frame.columns)]
    rows += ["| " + " | ".join(cell(v) for v in r) + " |" for r in frame.itertuples(index=False)]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--top-fraction", type=float, default=0.05)
    ap.add_argument("--out", default=None, help="also write the tables as markdown here")
    ap.add_argument("--max-distance", type=int, default=64,
                    help="distances of the sampled profile (default 64)")
    ap.add_argument("--attention-only", action="store_true",
                    help="skip the relation scores and the dynamic relation detectors")
    args = ap.parse_args(argv)

    m = hm.load(args.model)
    _ = m.hf_model  # load the transformers model outside the timings
    t = time.perf_counter()
    # the default preset, never a stored calibration, so the run is the documented one
    fast = hm.head_types(m, relations=False, max_distance=args.max_distance, calibration=False)
    t_fast = time.perf_counter() - t
    t = time.perf_counter()
    full = fast if args.attention_only else hm.head_types(m, max_distance=args.max_distance,
                                                         calibration=False)
    t_full = t_fast if args.attention_only else time.perf_counter() - t

    t = time.perf_counter()
    induction, duplicate = B.repeat_scores(m)
    beh = {"previous_token": B.previous_token_scores(m), "induction": induction,
           "duplicate_token": duplicate}
    t_attn = time.perf_counter() - t
    t = time.perf_counter()
    for name in () if args.attention_only else ("copying", "successor"):
        beh[name] = B.relation_behaviour(m, name)
    t_rel = time.perf_counter() - t
    t_beh = t_attn + t_rel

    table = compare(full, beh, args.top_fraction)
    table_fast = compare(fast, beh, args.top_fraction)
    lines = [f"model {m.model_id}: {m.n_layers} layers x {m.n_heads} heads; max_distance "
             f"{args.max_distance}; "
             f"behavioural positives = top "
             f"{args.top_fraction:.0%} of heads; machine {platform.machine()} CPU, shared with "
             "other jobs",
             "", "static pass with relation scores:", markdown(table), "",
             "static pass without relation scores (copying from eigenvalues alone):",
             markdown(table_fast), "",
             "| pass | seconds | behavioural / static |", "| --- | ---: | ---: |",
             f"| static, with relation scores | {t_full:.1f} | {t_beh / t_full:.1f}x |",
             f"| static, without relation scores | {t_fast:.1f} | {t_beh / t_fast:.1f}x |",
             f"| behavioural, all detectors | {t_beh:.1f} | 1 |",
             f"| behavioural, attention detectors only (prev, induction, duplicate) | {t_attn:.1f} "
             "| "
             f"(vs static w/o relations: {t_attn / t_fast:.1f}x) |",
             "", "labelled heads (static, with relation scores):", "```", full.text(), "```"]
    top = {k: [f"{a}.{b}" for a, b in zip(*np.unravel_index(np.argsort(-v, axis=None)[:5],
                                                            v.shape))]
           for k, v in beh.items()}
    lines += ["", "behavioural top-5 heads: "
              + "; ".join(f"{k}: {', '.join(v)}" for k, v in top.items())]
    text = "\n".join(lines)
    print(text)
    if args.out:
        sample = {"heads": m.n_layers * m.n_heads, "top_fraction": args.top_fraction,
                  "max_distance": args.max_distance, "attention_only": args.attention_only,
                  "static": {"preset": full.preset, "n_tokens": DEFAULT_N_TOKENS,
                             "n_samples": 256, "n_sources": 16},
                  "behaviour": {"text": "headmaps.experiments.behaviour.TEXT",
                                "repeated_random": "8 x 50 tokens repeated once",
                                "relations": [] if args.attention_only
                                else ["copying", "successor"], "max_pairs": 200}}
        header = run_header(command_line(__file__, argv), m.model_id, 0, sample)
        print(f"wrote {args.out} and {save_report(args.out, text + chr(10), header)}")


if __name__ == "__main__":
    main()
