"""Which projection preset agrees best with inference? (issue 6, §6)

Dynamic scores do not depend on the projection options, so they are computed once
(or read from a saved correlation run with ``--from``) and the static scores are
recomputed for every candidate projection that ``headmaps calibrate`` tries on the model
(:func:`headmaps.experiments.calibrate.candidates`: the presets, then every combination
of source representation, norm folding, biases and embedding scaling that can matter
for the model).

    HEADMAPS_CACHE=hmcache python benchmarks/compare_presets.py smollm2-135m \\
        --from out/smollm2-135m-correlation

Prints one row per combination: median and mean correlation (without / with context)
over the relations (a relation where no head gets a non-zero static score has no
defined correlation and counts as 0), and the per-relation correlations without context.
With ``--out FILE.csv`` the table is written there (atomically) with a JSON run header
beside it (``FILE.json``: command, model, seed, sample, versions, date).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

import headmaps as hm
from headmaps.experiments import CorrelationResult, correlation
from headmaps.experiments.calibrate import candidate_name, candidates
from headmaps.experiments.dynamic import dynamic_scores, single_token_pairs
from headmaps.io import command_line, run_header, save_table, write_figure
from headmaps.projection import PRESETS, ProjectionOptions


def _med(values: pd.Series) -> float:
    """Median with undefined correlations counted as 0."""
    return float(np.median(values.fillna(0))) if len(values) else float("nan")


def parse_combo(text: str) -> tuple[str, ProjectionOptions]:
    """``"paper"`` (a preset) or ``"mlp0_residual+fold+scale+bias"`` (source and flags).

    ``after=TOKEN`` as a flag sets the ``token_alone`` prefix, e.g.
    ``"token_alone+fold+after=<|endoftext|>"``.
    """
    if text in PRESETS:
        return text, PRESETS[text]
    source, *flags = text.split("+")
    prefix = next((f.split("=", 1)[1] for f in flags if f.startswith("after=")), "")
    flags = [f for f in flags if not f.startswith("after=")]
    unknown = set(flags) - {"fold", "scale", "bias"}
    if unknown:
        raise SystemExit(f"unknown flag(s) {unknown} in {text!r}; use fold, scale, bias, after=")
    opts = ProjectionOptions(source=source, fold_norms="fold" in flags,
                             scale_embeddings="scale" in flags,
                             value_bias="bias" in flags, output_bias="bias" in flags,
                             prefix=prefix)
    return next((n for n, p in PRESETS.items() if p == opts), ""), opts


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", nargs="?", default="smollm2-135m")
    p.add_argument("--from", dest="src", default=None,
                   help="folder of a saved correlation run (validate --experiment correlation)")
    p.add_argument("--relations", default="all")
    p.add_argument("--max-pairs", type=int, default=16)
    p.add_argument("--out", default=None, help="write the table as CSV here")
    p.add_argument("--combos", default=None,
                   help="comma-separated subset, e.g. 'paper,norms,mlp0+fold+scale' (default: all)")
    p.add_argument("--save", default=None, help="save every combination's result under this folder")
    p.add_argument("--templates", type=int, default=None, help="use the first N library templates")
    args = p.parse_args(argv)
    model = hm.load(args.model)
    t0 = time.perf_counter()
    if args.src:
        dyn = CorrelationResult.load(args.src).dynamic
        if not dyn.static_pairs:  # older runs: rebuild the same seeded subsets
            rels, _ = single_token_pairs(model, dyn.relations, dyn.k, None, 1, 0)
            from headmaps.experiments.dynamic import subsample
            dyn.static_pairs = {r.name: subsample(r.pairs, dyn.n_pairs[r.name], 0) for r in rels}
    else:
        rels = "all" if args.relations == "all" else args.relations.split(",")
        from headmaps.relations import templates
        tpl = templates()[: args.templates] if args.templates else None
        dyn = dynamic_scores(model, rels, tpl, max_pairs=args.max_pairs, progress=True)
    print(f"dynamic scores: {len(dyn.relations)} relations x {len(dyn.templates)} templates "
          f"({time.perf_counter() - t0:.0f} s)")
    rows = []
    combos = ([parse_combo(c) for c in args.combos.split(",")] if args.combos
              else candidates(model))
    for name, opts in combos:
        t = time.perf_counter()
        res = correlation(model, dynamic=dyn, projection=opts)
        tab = res.per_relation.set_index("relation")
        label = name or candidate_name(opts)
        if args.save:
            res.save(f"{args.save}/{label}")
            write_figure(res.figure(), f"{args.save}/{label}/correlation.png")
        rows.append({
            "preset": name if name in PRESETS else "-", "label": label, "source": opts.source,
            "fold_norms": opts.fold_norms,
            "biases": opts.value_bias, "scale_emb": opts.scale_embeddings,
            # a relation whose static scores are all equal (no head scores) has no defined
            # correlation: it counts as 0, not as missing, so presets that find nothing lose
            "median_wo": _med(tab.corr_without_context), "median_w": _med(tab.corr_with_context),
            "mean_wo": float(tab.corr_without_context.fillna(0).mean()),
            "mean_w": float(tab.corr_with_context.fillna(0).mean()),
            "median_supp_wo": _med(tab.supp_corr_without_context),
            "n_undefined": int(tab.corr_without_context.isna().sum()),
            **{f"wo:{r}": tab.corr_without_context[r] for r in tab.index},
        })
        print(f"  {name or '-':9s} {opts.source:13s} fold={opts.fold_norms!s:5s} "
              f"bias={opts.value_bias!s:5s} scale={opts.scale_embeddings!s:5s} median r "
              f"without/with = {rows[-1]['median_wo']:.3f} / {rows[-1]['median_w']:.3f}  "
              f"({time.perf_counter() - t:.0f} s)", flush=True)
    frame = pd.DataFrame(rows)
    pd.set_option("display.width", 250)
    print(frame.iloc[:, :12].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    best = frame.sort_values("median_wo", ascending=False).iloc[0]
    print(f"best (median r without context): preset={best.preset} source={best.source} "
          f"fold_norms={best.fold_norms} biases={best.biases} scale={best.scale_emb}")
    if args.out:
        sample = {"relations": list(dyn.relations), "pairs_per_relation": dyn.n_pairs,
                  "templates": list(dyn.templates), "k": dyn.k,
                  "dynamic_from": args.src, "combinations": list(frame["label"])}
        # the pair subsets are seeded with 0 (dynamic_scores' and subsample's default)
        save_table(frame, run_header(command_line(__file__, argv), model.model_id, 0, sample),
                   args.out)


if __name__ == "__main__":
    main()
