"""Head-type labels judged as labels: precision, recall, F1, AUROC, Spearman per type and model.

    PYTHONPATH=src python benchmarks/bench_head_types.py --model smollm2-135m \
        --model gemma3-270m [--preset through] [--out FILE.md]

With ``--out`` the printed report is also written to ``FILE.md``, with a JSON run header
beside it (``FILE.json``: command, models, seed, sample, versions, date).

Per model and type: behavioural positives by the absolute criteria of
:data:`headmaps.headtypes.validate.POSITIVE` (fixed before measuring), the static labels
(the rules of :mod:`headmaps.headtypes.rules`), their precision, recall and F1, the AUROC
of the static score for the positives and the Spearman correlation of static and
behavioural scores over all heads. With several models, the label counts are pooled into
one F1 per type. Times of the static pass (with and without the relation scores) and of
the behavioural detectors are measured in the same run.
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
from headmaps.headtypes.validate import POSITIVE, compare, pooled
from headmaps.io import command_line, run_header

COLUMNS = ["type", "positives", "labelled", "tp", "precision", "recall", "f1", "auroc",
           "spearman", "precision_at_10"]


def markdown(frame) -> str:
    """A DataFrame as a markdown table (floats to 3 decimals)."""
    def cell(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)
    rows = ["| " + " | ".join(frame.columns) + " |", "|" + " --- |" * len(frame.columns)]
    rows += ["| " + " | ".join(cell(v) for v in r) + " |" for r in frame.itertuples(index=False)]
    return "\n".join(rows)


def top5(beh: dict[str, np.ndarray]) -> str:
    """The five heads with the highest behavioural score per detector."""
    out = {k: [f"{a}.{b} ({v[a, b]:.2f})" for a, b in
               zip(*np.unravel_index(np.argsort(-v, axis=None)[:5], v.shape))]
           for k, v in beh.items()}
    return "\n".join(f"- {k}: {', '.join(v)}" for k, v in out.items())


def run_model(name: str, args: argparse.Namespace, lines: list[str]):
    """Measure one model; append its report to ``lines``; return its compare() table."""
    m = hm.load(name)
    _ = m.hf_model  # load the transformers model outside the timings
    t = time.perf_counter()
    proj = hm.projection_for(m, args.preset, calibration=False)
    fast = hm.head_types(m, projection=proj, relations=False, max_distance=args.max_distance)
    t_fast = time.perf_counter() - t
    t = time.perf_counter()
    full = fast if args.attention_only else hm.head_types(
        m, projection=proj, max_distance=args.max_distance)
    t_full = t_fast if args.attention_only else time.perf_counter() - t

    t = time.perf_counter()
    induction, duplicate = B.repeat_scores(m)
    beh = {"previous_token": B.previous_token_scores(m), "induction": induction,
           "duplicate_token": duplicate}
    t_attn = time.perf_counter() - t
    t = time.perf_counter()
    beh["copy_suppression"] = B.copy_suppression_scores(m)
    t_cs = time.perf_counter() - t
    t = time.perf_counter()
    with_ctx = {}
    for rel in () if args.attention_only else ("copying", "successor"):
        beh[rel], with_ctx[rel] = B.relation_behaviour(m, rel, both=True)
    t_rel = time.perf_counter() - t
    t_beh = t_attn + t_cs + t_rel

    table = compare(full, beh)
    others = []
    for preset in args.compare_presets:
        other = hm.head_types(m, projection=hm.projection_for(m, preset, calibration=False),
                              relations=not args.attention_only, max_distance=args.max_distance)
        others += [f"the same behaviour against the static pass with preset {preset}:", "",
                   markdown(compare(other, beh)[COLUMNS]), ""]
    lines += [f"## {m.model_id}: {m.n_layers} layers x {m.n_heads} heads, preset "
              f"{full.preset}", "",
              "static pass " + ("without" if args.attention_only else "with")
              + " relation scores; labels against behaviour:", "",
              markdown(table[COLUMNS]), ""]
    if not args.attention_only:
        lines += ["static pass without relation scores (copying from eigenvalues alone):", "",
                  markdown(compare(fast, beh)[COLUMNS]), ""]
        ctx = compare(full, {**beh, **with_ctx})
        ctx = ctx[ctx["type"].isin(with_ctx)]
        lines += ["copying and successor against the dynamic scores *with* context (the "
                  "head's actual output in the templates):", "", markdown(ctx[COLUMNS]), ""]
    lines += others
    lines += ["| pass | seconds | behavioural / static |", "| --- | ---: | ---: |",
              f"| static, with relation scores | {t_full:.1f} | {t_beh / t_full:.1f}x |",
              f"| static, without relation scores | {t_fast:.1f} | {t_beh / t_fast:.1f}x |",
              f"| behavioural, all detectors | {t_beh:.1f} | 1 |",
              f"| behavioural: attention detectors {t_attn:.1f}, copy suppression {t_cs:.1f}, "
              f"relations {t_rel:.1f} | | |", "",
              "labels with their evidence (static, with relation scores):", "", "```",
              full.text(), "```", "", "behavioural top-5 heads:", "", top5(beh), ""]
    return table


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=None,
                    help="a model (repeat for several; default smollm2-135m)")
    ap.add_argument("--preset", default="through", help="projection preset (default through)")
    ap.add_argument("--compare-presets", default="",
                    help="comma-separated presets whose static pass is also judged against the "
                         "same behaviour (e.g. norms)")
    ap.add_argument("--out", default=None, help="also write the report as markdown here")
    ap.add_argument("--max-distance", type=int, default=64,
                    help="distances of the sampled profile (default 64)")
    ap.add_argument("--attention-only", action="store_true",
                    help="skip the relation scores and the dynamic relation detectors")
    args = ap.parse_args(argv)
    args.compare_presets = [p for p in args.compare_presets.split(",") if p]
    models = args.model or ["smollm2-135m"]

    lines = [f"preset {args.preset} (no stored calibration); behavioural positives: "
             + ", ".join(f"{k} >= {v:g}" for k, v in POSITIVE.items())
             + f"; machine {platform.machine()} CPU, shared with other jobs", ""]
    tables = [run_model(name, args, lines) for name in models]
    if len(tables) > 1:
        lines += ["## pooled over the models (label counts added)", "",
                  markdown(pooled(tables)), ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        sample = {"models": models, "preset": args.preset, "positives": POSITIVE,
                  "compare_presets": args.compare_presets,
                  "max_distance": args.max_distance, "attention_only": args.attention_only,
                  "static": {"n_tokens": DEFAULT_N_TOKENS, "n_samples": 256, "n_partners": 16},
                  "behaviour": {"text": "headmaps.experiments.behaviour.TEXT",
                                "repeated_random": "8 x 50 tokens repeated once",
                                "copy_suppression": "repeated random + TEXT, model's argmax",
                                "relations": [] if args.attention_only
                                else ["copying", "successor"], "max_pairs": 200}}
        header = run_header(command_line(__file__, argv), ",".join(models), 0, sample)
        print(f"wrote {args.out} and {save_report(args.out, text + chr(10), header)}")


if __name__ == "__main__":
    main()
