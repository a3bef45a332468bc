"""Rerun small versions of the documented results and check they still hold.

Each check recomputes one number that README.md or docs/results/ reports, with the same
code path, options and seeds, and compares it with the documented value within a stated
tolerance. A quick check reruns a *smaller sample of the table* (one or two of its
relations, or a few layers), but each number it checks is computed on that relation's
full documented sample (its pairs, templates, prompts, seeds), so it must come out as
documented. Tolerances: the page's rounding plus float noise, i.e. 0.005 for the README's
two-decimal scores (deterministic static scores), 0.01 for two-decimal numbers from forward
passes, 0.002 for three-decimal AUROCs; 0.03 for the calibration's median r (as first
set); counts, labels and equality checks exactly.

Usage::

    python benchmarks/reproduce.py --quick                       # SmolLM2-135M, 27 checks
    python benchmarks/reproduce.py --quick --model gemma3-270m   # Gemma 3 270M, 23 checks
    python benchmarks/reproduce.py --quick --out repro.txt        # + repro.json run header

Measured with ``OMP_NUM_THREADS=1`` on the shared 2-core machine: SmolLM2 2 min 31 s wall
(148 s CPU, peak RSS 1.8 GB); Gemma 11 min 19 s wall at 60% of a core (408 s CPU, of which
the calibration is about 405 s wall; peak RSS 3.6 GB). Both were measured before the
calibration gained its ``token_alone`` candidates (SmolLM2 10 candidates instead of 7,
Gemma 17 instead of 12), which adds about a third to the calibration's time.

SmolLM2-135M checks, by table (docs/results/smollm2-135m.md unless said):

* scan (README): the top head of ``country_to_capital`` and its score with ``norms`` and
  ``paper``, ``name_copying``'s best score, the number of valid relations;
* correlation (section 1): r without / with context of ``name_copying`` and
  ``country_to_capital`` (20 pairs x 6 templates, ``paper``);
* presets (sections 1-2): the same two relations with ``mlp0`` + folded norms;
* causal (section 3): ``country_to_capital``'s heads removed, base accuracy and accuracy
  with its relation heads removed (the random-heads and control columns are not
  checked: one random draw and no controls keep it quick);
* multi-token (section 4): ``noun_to_pronoun`` r without / with context;
* calibration (section 6): the choice and three candidates' median r;
* QK side (docs/results/attention.md): previous-token AUROC of the static mean-vector
  profile against attention on the project's text, and the top-10 overlap;
* head types (docs/results/head-types.md, run 2): AUROC of previous-token, induction and
  duplicate-token;
* scan speed (docs/results/scan-speed.md): early-exit scores and suppression identical to
  the dense engine on layers 0 and 29 (an equality check; no timing).

Gemma 3 270M checks (docs/results/gemma3-270m.md and the Gemma sections of the two pages
above): preset comparison (section 1, ``noun_to_pronoun``), causal with ``norms``
(section 2, ``noun_to_pronoun``), calibration (section 3), correlation at 20 pairs
(section 4), multi-token (section 5), causal with the calibrated projection (section 6,
``name_copying``), head types (attention types), early exit identical to dense on layer 17.

Exit status 0 when every check holds, 1 otherwise (the table says which failed).
Not covered: timings and memory (machine-dependent: the benchmark scripts print ratios
measured in one run), the random-heads and control columns of the causal tables, the
content and profile-shape rows of the QK benchmark, the relation types (copying,
successor) of the head-types table, and Gemma's QK table (its static summary alone takes
about 5 min on one core).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark scripts

import headmaps as hm  # noqa: E402
from headmaps.projection import ProjectionOptions  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


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


_MEMO: dict[tuple[int, str], Any] = {}  # one run per (model object, key), shared by checks


def _memo(m: Any, key: str, fn: Callable[[], Any]) -> Any:
    """``fn()`` once per model and key (several checks read one run)."""
    if (id(m), key) not in _MEMO:
        _MEMO[id(m), key] = fn()
    return _MEMO[id(m), key]


# ---- scan (README) ----------------------------------------------------------------------

def _top_head(relation: str, k: int) -> Callable[[Any], str]:
    def run(m: Any) -> str:
        layer, head, _ = hm.relation_scores(m, relation, k=k,
                                            projection="norms").top_heads(1)[0]
        return f"{layer}.{head}"
    return run


def _top_score(relation: str, k: int, preset: str) -> Callable[[Any], float]:
    def run(m: Any) -> float:
        return hm.relation_scores(m, relation, k=k,
                                  projection=preset).top_heads(1)[0][2]
    return run


def _valid_relations(m: Any) -> float:
    return float(len(hm.scan(m, "all", projection="norms").relations))


# ---- calibration -------------------------------------------------------------------------

def _calibration(field: str) -> Callable[[Any], float | str]:
    def run(m: Any) -> float | str:
        cal = _memo(m, "calibration", lambda: hm.calibrate(m, save=False))
        if field == "choice":
            return cal.choice
        by_name = {c["name"]: c["median_r"] for c in cal.candidates}
        return float(by_name[field])
    return run


# ---- correlation, presets, multi-token ---------------------------------------------------

def _options(label: str) -> str | ProjectionOptions:
    """A preset name, or ``source+fold+scale`` as in ``compare_presets.py``."""
    if "+" not in label:
        return label
    source, *flags = label.split("+")
    return ProjectionOptions(source=source, fold_norms="fold" in flags,
                             scale_embeddings="scale" in flags)


def _corr(kind: str, relations: tuple[str, ...], preset: str, max_pairs: int,
          relation: str, column: str, n_templates: int | None = None,
          static_preset: str | None = None) -> Callable[[Any], float]:
    """One cell of a correlation / multi-token table, rerun on ``relations`` only.

    The dynamic scores of ``relations`` are computed once per (kind, relations, pairs,
    templates); ``static_preset`` rescores them with another projection (the preset
    comparison). Pair subsets are seeded per relation, so a relation's cell does not
    depend on which other relations run with it.
    """
    from headmaps.experiments import correlation, multitoken
    from headmaps.relations import templates

    def run(m: Any) -> float:
        tpl = templates()[:n_templates] if n_templates else None
        key = f"{kind}:{','.join(relations)}:{max_pairs}:{n_templates}"
        fn = multitoken if kind == "multitoken" else correlation
        base = _memo(m, key, lambda: fn(m, list(relations), tpl, projection=_options(preset),
                                        max_pairs=max_pairs))
        res = base
        if static_preset is not None:
            res = _memo(m, f"{key}:{static_preset}",
                        lambda: correlation(m, dynamic=base.dynamic,
                                            projection=_options(static_preset)))
        table = res.per_relation.set_index("relation")
        return float(table.loc[relation, column])
    return run


# ---- causal ------------------------------------------------------------------------------

def _causal(relation: str, column: str, preset: str | ProjectionOptions) -> Callable[[Any], float]:
    """One cell of the causal table for ``relation`` alone (40 prompts, m from the model).

    Base accuracy and accuracy with the relation heads removed depend only on the
    relation's seeded prompts and its static scores; one random draw and no controls
    keep the run short (those columns are not checked).
    """
    from headmaps.experiments import causal

    def run(m: Any) -> float:
        res = _memo(m, f"causal:{relation}:{preset}",
                    lambda: causal(m, [relation], projection=preset,
                                   max_pairs=40, n_random=1, random_points=1, max_controls=0))
        return float(res.per_relation.set_index("relation").loc[relation, column])
    return run


def _calibration_checks(page: str, choice: tuple[str, str, float],
                        others: list[tuple[str, str, float]]) -> list[Check]:
    """The calibration's choice and the median r of it and of ``others``.

    Each of ``choice`` and ``others`` is ``(section of page, candidate name, median r)``.
    """
    section, name, _ = choice
    return [Check("calibration choice", f"{page} {section}", name, 0, _calibration("choice")),
            *[Check(f"calibration: median r of {n}", f"{page} {sec}", r, 0.03, _calibration(n))
              for sec, n, r in (choice, *others)]]


def _causal_checks(source: str, label: str, relation: str, preset: Any,
                   values: tuple[float, float, float]) -> list[Check]:
    """Heads removed (exact), base accuracy and accuracy without them (0.01) of one relation."""
    fields = (("n_heads_removed", f"{relation} heads removed", 0),
              ("base_acc", f"{relation} base accuracy", 0.01),
              ("acc_relation_heads_removed", "... with its relation heads removed", 0.01))
    return [Check(f"{label}: {what}", source, float(v), tol, _causal(relation, field, preset))
            for (field, what, tol), v in zip(fields, values)]


def _calibrated_options(model_dir: str,
                        name: str = "calibration-before-token-alone.json") -> ProjectionOptions:
    """The projection chosen by a documented calibration (its stored JSON).

    The default is the calibration the runs before the ``token_alone`` source used.
    """
    doc = json.loads((RESULTS / model_dir / name).read_text(encoding="utf-8"))
    return ProjectionOptions(**doc["options"])


# ---- QK side -----------------------------------------------------------------------------

def _attention(field: str) -> Callable[[Any], float]:
    """Previous-token AUROC / top-10 overlap of the static mean-vector profile on the text.

    As ``bench_attention.py`` (default preset ``norms``, distances 0..64, the project's
    text in windows of 144 tokens), without the key ranking over the whole vocabulary and
    the sampled profile, which these numbers do not read.
    """
    def run(m: Any) -> float:
        import bench_attention as BA

        def compute() -> dict[str, float]:
            from headmaps.experiments.hooks import hf_model_of

            res = hm.attention_summary(m, max_distance=BA.MAX_D, n_samples=1, projection="norms")
            static_w = np.stack([[res.profile_at(layer, h).weights for h in range(res.n_heads)]
                                 for layer in res.layers])
            text = BA.project_text(m.require_tokenizer(), 144)
            measured = BA.by_distance(BA.attentions(hf_model_of(m), text))
            prev_meas = measured[:, :, 1].ravel()
            prev_static = static_w[:, :, 1].ravel()
            top_meas = np.argsort(-prev_meas)[:10]
            positive = np.zeros(len(prev_meas), bool)
            positive[top_meas] = True
            overlap = len(set(top_meas) & set(np.argsort(-prev_static)[:10]))
            return {"auroc": BA.auroc(prev_static, positive), "overlap": float(overlap)}
        return _memo(m, "attention", compute)[field]
    return run


# ---- head types --------------------------------------------------------------------------

def _head_type_auroc(kind: str) -> Callable[[Any], float]:
    """AUROC of one attention type, as ``bench_head_types.py`` (preset through, absolute
    behavioural positives)."""
    def run(m: Any) -> float:
        def compute() -> Any:
            from headmaps.experiments import behaviour as B
            from headmaps.headtypes.validate import compare

            types = hm.head_types(m, relations=False, projection="through")
            induction, duplicate = B.repeat_scores(m)
            beh = {"previous_token": B.previous_token_scores(m), "induction": induction,
                   "duplicate_token": duplicate}
            return compare(types, beh).set_index("type")
        return float(_memo(m, "head_types", compute).loc[kind, "auroc"])
    return run


# ---- scan speed --------------------------------------------------------------------------

def _early_exit_equals_dense(layers: list[int], preset: str,
                             relations: str | list[str] = "all") -> Callable[[Any], str]:
    """``"identical"`` when early exit and dense give the same scores and suppression."""
    def run(m: Any) -> str:
        kw = dict(projection=preset, layers=layers)
        a = hm.scan(m, relations, **kw)
        b = hm.scan(m, relations, exact_dense=True, **kw)
        n = int((a.scores[:, layers] != b.scores[:, layers]).sum()
                + (a.suppression[:, layers] != b.suppression[:, layers]).sum())
        return "identical" if n == 0 else f"{n} values differ"
    return run


SMOL = "docs/results/smollm2-135m.md"
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
    *_calibration_checks(SMOL, ("section 7", "through", 0.855),
                         [("section 6", "mlp0+fold", 0.761), ("section 6", "norms", 0.765),
                          ("section 6", "embedding", 0.177)]),
    *[Check(f"correlation: {rel} r {ctx} context (paper, 20 pairs)", f"{SMOL} section 1",
            value, 0.01, _corr("correlation", ("name_copying", "country_to_capital"), "paper",
                               20, rel, f"corr_{ctx}_context"))
      for rel, ctx, value in (("name_copying", "without", 0.95), ("name_copying", "with", 0.43),
                              ("country_to_capital", "without", 0.86),
                              ("country_to_capital", "with", 0.60))],
    *[Check(f"presets: {rel} r without context with mlp0+fold", f"{SMOL} sections 1-2", value,
            0.01, _corr("correlation", ("name_copying", "country_to_capital"), "paper", 20, rel,
                        "corr_without_context", static_preset="mlp0+fold"))
      for rel, value in (("name_copying", 0.97), ("country_to_capital", 0.88))],
    *_causal_checks(f"{SMOL} section 3", "causal", "country_to_capital", "paper", (7, 0.28, 0.00)),
    *[Check(f"multi-token: noun_to_pronoun r {ctx} context", f"{SMOL} section 4", value, 0.01,
            _corr("multitoken", ("noun_to_pronoun",), "paper", 16, "noun_to_pronoun",
                  f"corr_{ctx}_context"))
      for ctx, value in (("without", 0.80), ("with", 0.77))],
    Check("QK: previous-token AUROC, mean-vector profile, text", "docs/results/attention.md",
          0.881, 0.002, _attention("auroc")),
    Check("QK: overlap of the top-10 previous-token heads", "docs/results/attention.md", 3.0, 0,
          _attention("overlap")),
    *[Check(f"head types: {kind} AUROC (through)", "docs/results/head-types.md, issue 23",
            value, 0.002, _head_type_auroc(kind))
      for kind, value in (("previous_token", 0.998), ("induction", 0.998),
                          ("duplicate_token", 0.995))],
    Check("scan speed: early exit = dense on layers 0 and 29 (paper)",
          "docs/results/scan-speed.md", "identical", 0,
          _early_exit_equals_dense([0, 29], "paper")),
]

GEMMA = "docs/results/gemma3-270m.md"
GEMMA_QUICK: list[Check] = [
    *[Check(f"presets: noun_to_pronoun r without context, {label} (8 pairs x 4 templates)",
            f"{GEMMA} section 1", value, 0.01,
            _corr("correlation", ("noun_to_pronoun",), "norms", 8, "noun_to_pronoun",
                  "corr_without_context", n_templates=4, static_preset=label))
      for label, value in (("paper", 0.86), ("norms", 0.94), ("embedding+fold+scale", 0.93))],
    *_causal_checks(f"{GEMMA} section 2", "causal (norms)", "noun_to_pronoun", "norms",
                    (5, 0.77, 0.35)),
    *_calibration_checks(GEMMA, ("section 7", "token_alone+fold+scale+after <bos>", 0.942),
                         [("section 3", "mlp0_residual+scale", 0.288),
                          ("section 3", "norms", 0.275)]),
    *[Check(f"correlation: {rel} r {ctx} context (norms, 20 pairs)", f"{GEMMA} section 4",
            value, 0.01, _corr("correlation", ("noun_to_pronoun", "country_to_capital"), "norms",
                               20, rel, f"corr_{ctx}_context"))
      for rel, ctx, value in (("noun_to_pronoun", "without", 0.97),
                              ("noun_to_pronoun", "with", 0.43),
                              ("country_to_capital", "without", 0.48),
                              ("country_to_capital", "with", 0.54))],
    *[Check(f"multi-token: noun_to_pronoun r {ctx} context", f"{GEMMA} section 5", value, 0.01,
            _corr("multitoken", ("noun_to_pronoun",), "norms", 20, "noun_to_pronoun",
                  f"corr_{ctx}_context"))
      for ctx, value in (("without", 0.75), ("with", 0.56))],
    *_causal_checks(f"{GEMMA} section 6", "causal (calibrated)", "name_copying",
                    _calibrated_options("gemma3-270m"), (4, 1.00, 0.22)),
    *[Check(f"head types: {kind} AUROC (through)", "docs/results/head-types.md, issue 23",
            value, 0.002, _head_type_auroc(kind))
      for kind, value in (("previous_token", 0.941), ("induction", 0.949),
                          ("duplicate_token", 1.000))],
    Check("scan speed: early exit = dense on layer 17 (norms; copying, country_to_capital)",
          "docs/results/scan-speed.md", "identical", 0,
          _early_exit_equals_dense([17], "norms", ["copying", "country_to_capital"])),
]

#: The quick checks of each built-in model.
CHECKS: dict[str, list[Check]] = {"smollm2-135m": QUICK, "gemma3-270m": GEMMA_QUICK}


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
                    help="the small checks (the only mode so far)")
    ap.add_argument("--model", default="smollm2-135m", choices=sorted(CHECKS),
                    help="the model whose documented numbers are checked")
    ap.add_argument("--out", default=None,
                    help="also write the table here, with a JSON run header beside it")
    args = ap.parse_args(argv)
    if not args.quick:
        ap.error("only --quick exists so far")
    t0 = time.perf_counter()
    model = hm.load(args.model)
    rows = run_checks(model, CHECKS[args.model])
    lines = []
    for r in rows:
        got = f"{r['got']:.3f}" if isinstance(r["got"], float) else r["got"]
        lines.append(f"{'ok ' if r['ok'] else 'FAIL'} {r['check']}: expected {r['expected']} "
                     f"(± {r['tolerance']}), got {got}  [{r['source']}; {r['seconds']} s]")
    failed = [r for r in rows if not r["ok"]]
    seconds = time.perf_counter() - t0
    lines.append(f"{len(rows) - len(failed)} of {len(rows)} checks hold on {args.model} "
                 f"({seconds:.0f} s with loading)")
    print("\n".join(lines))
    if args.out:
        from _report import save_report

        from headmaps.io import command_line, run_header

        header = run_header(command_line(__file__, argv), model.model_id, 0,
                            {"checks": [r["check"] for r in rows]},
                            failed=[r["check"] for r in failed], seconds=round(seconds, 1))
        written = save_report(args.out, "\n".join(lines) + "\n", header)
        print(f"wrote {args.out} and {written}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
