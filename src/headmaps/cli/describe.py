"""`headmaps describe MODEL --out DIR`: describe every head; coverage table and plot.

With ``--score`` every description is also scored on held-out source tokens
(:func:`headmaps.describe.score_descriptions`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..describe.sampling import DEFAULT_N_RANDOM, DEFAULT_N_SALIENT
from ..errors import HeadmapsError, OutOfRangeError
from . import checks, common


def parse_layers(text: str | None, n_layers: int) -> list[int]:
    """``"10-29"``, ``"3"``, ``"0,2,5-7"`` or None (all) -> sorted layers, checked.

    Raises:
        HeadmapsError: bad syntax; OutOfRangeError: a layer out of ``0..n_layers-1``.
    """
    if text is None or text.strip() in ("", "all"):
        return list(range(n_layers))
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                a, b = (int(x) for x in part.split("-", 1))
            else:
                a = b = int(part)
        except ValueError:
            raise HeadmapsError(f"layers are written like 10-29 or 0,2,5-7; got {text!r}") from None
        if a > b:
            raise HeadmapsError(f"empty layer range {part!r}")
        for x in (a, b):
            if not 0 <= x < n_layers:
                raise OutOfRangeError(f"layer {x} is out of range: this model has layers "
                                      f"0..{n_layers - 1}")
        out.update(range(a, b + 1))
    return sorted(out)


def register(sub) -> None:
    """Add the ``describe`` subcommand."""
    p = sub.add_parser("describe", help="describe every head; coverage per layer",
                       description="Compute the salient operations of every head of the chosen "
                                   "layers, describe each, and write descriptions.jsonl, "
                                   "salient.parquet, coverage.csv and coverage.png to --out.")
    common.add_model_args(p)
    p.add_argument("--layers", default=None, help="layers, e.g. 10-29 or 0,2,5-7 (default all)")
    p.add_argument("--out", required=True, help="output folder")
    common.add_salient_args(p)
    common.add_describer_args(p, allow_none=False)
    g = p.add_argument_group("scoring the descriptions (--score)")
    g.add_argument("--score", action="store_true",
                   help="score every description on held-out source tokens (offline for "
                        "pattern descriptions, by simulation with an LLM for --describe llm); "
                        "writes description_scores.parquet and accuracy.png")
    g.add_argument("--held-out-salient", type=checks.nonnegative_int,
                   default=DEFAULT_N_SALIENT, metavar="N",
                   help="held-out tokens taken next in saliency order after the --tokens shown "
                        f"(default {DEFAULT_N_SALIENT})")
    g.add_argument("--held-out-random", type=checks.nonnegative_int,
                   default=DEFAULT_N_RANDOM, metavar="N",
                   help="held-out tokens drawn from the vocabulary, weighted by saliency "
                        f"(default {DEFAULT_N_RANDOM})")
    g.add_argument("--score-k", type=checks.positive_int, default=None, metavar="K",
                   help="a prediction hits when it is among the head's top K targets "
                        "(default: --mappings)")
    g.add_argument("--score-seed", type=checks.nonnegative_int, default=0, metavar="SEED",
                   help="seed of the held-out draws and the shuffled baseline (default 0)")
    g.add_argument("--scorer-url", default=None,
                   help="OpenAI-compatible endpoint of the scoring LLM (default: --base-url)")
    g.add_argument("--scorer-model", default=None,
                   help="chat model of the scoring LLM (default: --llm-model)")
    g.add_argument("--refine", type=checks.positive_int, default=None, metavar="N",
                   help="explain, score, keep: describe each head N ways (the pattern "
                        "describer's next patterns, or sampled LLM answers), keep the one "
                        "with the best held-out score and re-measure it on a fresh sample "
                        "(implies --score)")
    g.add_argument("--score-workers", type=checks.positive_int, default=4, metavar="N",
                   help="concurrent requests to the scoring LLM (default 4)")
    p.set_defaults(func=run)


def make_scorer(args: argparse.Namespace):
    """The scoring LLM (an LLMDescriber), or None when the descriptions are scored offline."""
    from ..describe import LLMDescriber

    if args.describe != "llm" and args.scorer_url is None and args.scorer_model is None:
        return None
    opts = common.llm_options(args)
    opts["base_url"] = args.scorer_url or opts["base_url"]
    opts["model"] = args.scorer_model or opts["model"]
    return LLMDescriber(**opts, max_tokens=96)


def run(args: argparse.Namespace) -> int:
    """Describe heads and write the files."""
    from ..describe import (
        coverage,
        describe_all,
        get_describer,
        plot_coverage,
        save_descriptions,
    )
    from ..io import atomic_path, staged_folder, write_figure
    from ..salient import salient_all

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise HeadmapsError(f"--out {out} exists and is not a folder")
    if (args.score or args.refine) and args.held_out_salient + args.held_out_random < 1:
        raise HeadmapsError("the held-out sample is empty: give --held-out-salient or "
                            "--held-out-random a count >= 1")
    describer = get_describer(args.describe, common.llm_options(args))
    model = common.load_model(args)
    layers = parse_layers(args.layers, model.n_layers)
    skip = False if args.skip_nonwords == "none" else args.skip_nonwords
    res = salient_all(model, layers, n_tokens=args.tokens, n_mappings=args.mappings,
                      skip_nonwords=skip, progress=True,
                      projection=common.projection(args, model))
    scores = None
    score_opts = {"scorer": make_scorer(args), "n_salient": args.held_out_salient,
                  "n_random": args.held_out_random, "k": args.score_k,
                  "workers": args.score_workers}
    if args.refine:
        from ..describe import refine_descriptions

        descs, scores = refine_descriptions(model, res, describer, args.refine,
                                            seed=args.score_seed, progress=True, **score_opts)
    else:
        descs = describe_all(res, describer, progress=True)
    if args.score and scores is None:
        from ..describe import score_descriptions

        scores = score_descriptions(
            model, descs, res, seed=args.score_seed, progress=True,
            describer=describer if hasattr(describer, "rule_hit") else None, **score_opts)
    cov = coverage(descs)
    with staged_folder(out) as tmp:  # every file or none
        res.save(tmp / "salient.parquet", **common.save_kwargs(args))
        save_descriptions(descs, tmp / "descriptions.jsonl")
        with atomic_path(tmp / "coverage.csv") as part:
            cov.to_csv(part, index=False)
        plot_coverage(cov, tmp / "coverage.png",
                      title=f"{model.model_id}: heads with a clear description ({describer.name})")
        if scores is not None:
            scores.save(tmp / "description_scores.parquet", **common.save_kwargs(args))
            write_figure(scores.figure(), tmp / "accuracy.png", dpi=120)
    print(f"{model.model_id}: {len(res)} heads described (projection "
          f"{common.projection_label(res)}, describer {describer.name})")
    print(cov.to_string(index=False))
    if scores is not None:
        print_scores(scores)
    extra = ", description_scores.parquet, accuracy.png" if scores is not None else ""
    print(f"wrote {out}/descriptions.jsonl, coverage.csv, coverage.png, salient.parquet{extra}")
    return 0


def print_scores(scores) -> None:
    """Score vs baseline per scored head, then the totals."""
    sc = scores.scored
    print(f"\ndescription scores on held-out tokens ({scores.n_salient} next-most-salient + "
          f"{scores.n_random} drawn by saliency, hit = in the top {scores.k}):")
    for s in sc:
        chosen = (f"  (best of {s.candidates}: {s.selection_score:.2f} when chosen)"
                  if s.candidates > 1 else "")
        print(f"  {s.name:>6}  {s.method:<10}  score {s.score:.2f}  baseline {s.baseline:.2f}  "
              f"n={s.n:<3}  {s.text[:70]}{chosen}")
    others = len(scores) - len(sc)
    if sc:
        import numpy as np

        base = [s.baseline for s in sc if s.baseline == s.baseline]
        print(f"  {len(sc)} scored: mean score {np.mean([s.score for s in sc]):.3f}, mean "
              f"baseline {np.mean(base) if base else float('nan'):.3f}, AUROC "
              f"{scores.auroc():.3f}" + (f"; {others} not scored" if others else ""))
    else:
        print(f"  none scored ({others} heads: unclear or without a rule)")
    if scores.scorer:
        print(f"  scorer {scores.scorer}: {scores.llm_calls} requests, {scores.cache_hits} "
              f"from the cache, {scores.seconds:.1f} s")
