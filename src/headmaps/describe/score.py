"""Score descriptions on what the describer did not see: held-out source tokens.

A description of head ``L.H`` was written from its ``n_shown`` most salient source tokens
and their top targets. To score it, headmaps draws **held-out** source tokens that were
not shown: the next ``n_salient`` tokens by saliency (ranks ``n_shown..n_shown+n_salient``)
and ``n_random`` tokens drawn from the rest of the vocabulary with probability
proportional to the head's saliency (seeded). Their real top-``k`` targets come from the
same projection as the salient operations (:func:`headmaps.salient.salient_all` with a
``select`` function). The held-out tokens never include a token shown to the describer
(checked).

Per held-out token the description predicts targets, and a token is a **hit** when one
prediction is among the head's real top-``k`` targets (texts compared stripped and
casefolded). The score is the hit rate.

* ``offline`` (no LLM): a :class:`~headmaps.describe.PatternDescriber` description names
  its rule (:attr:`Description.rule`); the rule itself predicts. Tokens the rule does not
  apply to (a relation's rule on a token outside the relation, a numeric rule on a word)
  are excluded and counted. **Baseline**: the same rule on the held-out tokens of every
  other head of the layers scored, pooled (the shuffled-description baseline), so a rule
  that fits any head scores at its baseline.
* ``simulation`` (an LLM): the scoring LLM gets the description and one held-out token
  and proposes up to ``k`` targets as JSON; **baseline**: the description with another
  head's held-out tokens and targets (a seeded derangement of the scored heads).
  Requests go through :class:`~headmaps.describe.LLMDescriber` (its client settings,
  retries and on-disk cache), several at a time.

Descriptions in free words (the LLM describer's) can only be scored by simulation;
"Unclear" descriptions and input-only descriptions ("Inputs are years; no clear mapping
pattern") name no mapping and are not scored.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .._html import html_card
from ..errors import HeadmapsError
from ..io import load_table, reads_result, save_table, table_path, versions
from ..salient import SalientAll
from ..salient.tokens import visible
from .base import Description
from .library import key
from .llm import AnswerError, LLMDescriber, LLMError, answer_body
from .pattern import PatternDescriber

if TYPE_CHECKING:
    from matplotlib.figure import Figure

METHODS = ("auto", "offline", "simulation")

#: Default held-out sample: next-most-salient tokens, saliency-weighted draws, top-k.
DEFAULT_N_SALIENT = 10
DEFAULT_N_RANDOM = 10
DEFAULT_K = 5

SIM_SYSTEM = "You predict the outputs of a described function and answer in JSON."

SIM_PROMPT = """\
A component of a language model maps an input string to output strings. This is a \
description of what it does:

{description}

Input: "{token}"

Which strings does it map this input to? Answer with one JSON object and nothing else: \
{{"targets": [up to {k} short strings, most likely first]}}."""

SIM_REPAIR = """\
Your answer could not be used: {error}. Reply again with only one JSON object \
{{"targets": [strings]}} and nothing else."""


# ---- the held-out sample -----------------------------------------------------------
def held_out_ids(saliency: np.ndarray, shown: Iterable[int], n_shown: int, n_salient: int,
                 n_random: int, rng: np.random.Generator) -> np.ndarray:
    """Held-out source tokens of one head: never one of ``shown``.

    Args:
        saliency: ``(V,)`` the head's saliency over the vocabulary (``-inf`` or NaN where
            a token may not be a source).
        shown: token ids the describer saw.
        n_shown: how many tokens the describer was shown (the top ``n_shown`` by saliency
            are excluded too, whatever ``shown`` holds).
        n_salient: tokens taken in saliency order after rank ``n_shown``.
        n_random: tokens drawn from the rest without replacement, with probability
            proportional to saliency (uniform among zero-saliency ones when too few are
            positive).
        rng: the random generator.

    Returns:
        ``(n,)`` int64 ids: the salient ones first, then the drawn ones;
        ``n = min(n_salient + n_random, eligible tokens)``.
    """
    sal = np.asarray(saliency, dtype=np.float64)
    valid = np.isfinite(sal)
    order = np.argsort(-np.where(valid, sal, -np.inf), kind="stable")
    order = order[valid[order]]
    banned = set(int(i) for i in shown) | set(int(i) for i in order[:n_shown])
    rest = [int(i) for i in order[n_shown:] if int(i) not in banned]
    salient = rest[:n_salient]
    pool = np.array(rest[n_salient:], dtype=np.int64)
    drawn: list[int] = []
    if n_random > 0 and len(pool):
        w = np.clip(sal[pool], 0.0, None)
        pos = pool[w > 0]
        m = min(n_random, len(pos))
        if m:
            p = w[w > 0] / w[w > 0].sum()
            drawn = [int(i) for i in rng.choice(pos, size=m, replace=False, p=p)]
        if len(drawn) < n_random:
            zero = pool[w <= 0]
            m = min(n_random - len(drawn), len(zero))
            drawn += [int(i) for i in rng.choice(zero, size=m, replace=False)] if m else []
    out = np.array(salient + drawn, dtype=np.int64)
    assert not banned.intersection(out.tolist()), "held-out tokens overlap the shown ones"
    assert len(set(out.tolist())) == len(out), "held-out tokens repeat"
    return out


def _head_seed(seed: int, layer: int, head: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(layer), int(head)])


# ---- results -----------------------------------------------------------------------
@dataclass
class DescriptionScore:
    """The measured score of one head's description.

    Attributes:
        layer, head: the head.
        text: the description scored; rule: its :attr:`Description.rule`.
        method: ``offline``, ``simulation`` or ``none`` (not scored; see ``reason``).
        score: hit rate on the held-out tokens the description applies to (NaN if none).
        baseline: the same description scored on other heads' held-out tokens (NaN if
            there is no other head).
        n: held-out tokens scored; n_excluded: held-out tokens left out (the rule does not
            apply, or the LLM's answer was invalid); k: targets per token.
        baseline_n: tokens the baseline was measured on.
        token_ids, tokens: the held-out sample (salient ones first).
        hits: per held-out token 1 (hit), 0 (miss) or -1 (excluded).
        predictions: per held-out token what the description predicted (simulation:
            the LLM's proposals; offline: empty, the rule itself predicts).
        targets: per held-out token the head's real top-``k`` targets.
        llm_calls: answers asked of the scoring LLM for this head, its baseline included
            (repair requests included; answers from the cache count too).
        reason: why the head was not scored, or ``""``.
        candidates: candidate descriptions this one was chosen from (``--refine``), 1 if
            none; selection_score: its score on the sample it was chosen on (the
            ``score`` is then re-measured on a fresh sample), NaN if not chosen.
    """

    layer: int
    head: int
    text: str
    rule: str | None
    method: str
    score: float = math.nan
    baseline: float = math.nan
    n: int = 0
    n_excluded: int = 0
    k: int = 0
    baseline_n: int = 0
    token_ids: list[int] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    hits: list[int] = field(default_factory=list)
    predictions: list[list[str]] = field(default_factory=list)
    targets: list[list[str]] = field(default_factory=list)
    llm_calls: int = 0
    reason: str = ""
    candidates: int = 1
    selection_score: float = math.nan

    @property
    def name(self) -> str:
        """``"L.H"``."""
        return f"{self.layer}.{self.head}"

    @property
    def scored(self) -> bool:
        """Whether a score was measured."""
        return self.method != "none" and not math.isnan(self.score)

    def __str__(self) -> str:
        if not self.scored:
            return f"{self.name}: not scored ({self.reason})"
        return (f"{self.name}: score {self.score:.2f} vs baseline {self.baseline:.2f} "
                f"({self.method}, n={self.n}, k={self.k}) — {self.text}")


_SAMPLE_FIELDS = ("token_ids", "tokens", "hits", "predictions", "targets")


@dataclass
class DescriptionScores:
    """Scores of the descriptions of many heads (see the module docstring).

    Attributes:
        scores: one :class:`DescriptionScore` per description passed, in order.
        model_id: the model; method: the method asked for (``auto``...).
        n_shown, n_salient, n_random, k, seed: the held-out sample.
        scorer: the scoring LLM (``llm:<model>``) or ``""``.
        preset, options, skip_nonwords: the projection of the targets.
        llm_calls, cache_hits: LLM requests made and answers read from the cache.
        seconds: wall time of the scoring; versions: library versions.
    """

    scores: list[DescriptionScore]
    model_id: str = ""
    method: str = "auto"
    n_shown: int = 0
    n_salient: int = DEFAULT_N_SALIENT
    n_random: int = DEFAULT_N_RANDOM
    k: int = DEFAULT_K
    seed: int = 0
    scorer: str = ""
    preset: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    skip_nonwords: str = "none"
    llm_calls: int = 0
    cache_hits: int = 0
    seconds: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.scores)

    def __iter__(self):
        return iter(self.scores)

    def __getitem__(self, key: tuple[int, int]) -> DescriptionScore:
        """``scores[layer, head]``."""
        for s in self.scores:
            if (s.layer, s.head) == tuple(key):
                return s
        raise HeadmapsError(f"no score for head {key[0]}.{key[1]}")

    @property
    def scored(self) -> list[DescriptionScore]:
        """The heads with a measured score."""
        return [s for s in self.scores if s.scored]

    def auroc(self) -> float:
        """How well scores separate real descriptions from shuffled ones.

        The probability that a scored head's score beats a baseline score (ties count
        half), over the heads with both; NaN with none.
        """
        pairs = [(s.score, s.baseline) for s in self.scored if not math.isnan(s.baseline)]
        return auroc([a for a, _ in pairs], [b for _, b in pairs])

    def to_frame(self) -> pd.DataFrame:
        """One row per head: the description, method, score, baseline and sample size."""
        rows = [{"layer": s.layer, "head": s.head, "description": s.text, "rule": s.rule,
                 "method": s.method, "score": s.score, "baseline": s.baseline, "n": s.n,
                 "n_excluded": s.n_excluded, "k": s.k, "baseline_n": s.baseline_n,
                 "llm_calls": s.llm_calls, "reason": s.reason, "candidates": s.candidates,
                 "selection_score": s.selection_score} for s in self.scores]
        cols = ["layer", "head", "description", "rule", "method", "score", "baseline", "n",
                "n_excluded", "k", "baseline_n", "llm_calls", "reason", "candidates",
                "selection_score"]
        return pd.DataFrame(rows, columns=cols)

    def per_layer(self) -> pd.DataFrame:
        """Per layer: heads, described heads (coverage), scored heads, mean score/baseline.

        ``accurate`` is coverage times the mean measured score: the fraction of the
        layer's heads with a description that holds on held-out tokens (the paper's
        coverage figure with a measured accuracy instead of a human one).
        """
        f = self.to_frame()
        if f.empty:
            return pd.DataFrame(columns=["layer", "n_heads", "n_described", "n_scored",
                                         "coverage", "mean_score", "mean_baseline", "accurate"])
        f["described"] = f["reason"] != "unclear"
        f["is_scored"] = f["method"] != "none"
        g = f.groupby("layer").agg(n_heads=("head", "size"), n_described=("described", "sum"),
                                   n_scored=("is_scored", "sum"))
        sc = f[f["is_scored"]].groupby("layer").agg(mean_score=("score", "mean"),
                                                    mean_baseline=("baseline", "mean"))
        g = g.join(sc).reset_index()
        g["coverage"] = g["n_described"] / g["n_heads"]
        g["accurate"] = g["coverage"] * g["mean_score"].fillna(0.0)
        return g[["layer", "n_heads", "n_described", "n_scored", "coverage", "mean_score",
                  "mean_baseline", "accurate"]]

    def header(self) -> dict[str, Any]:
        """Provenance and the sample settings, JSON-able."""
        return {"kind": "headmaps.DescriptionScores", "model_id": self.model_id,
                "method": self.method, "n_shown": self.n_shown, "n_salient": self.n_salient,
                "n_random": self.n_random, "k": self.k, "seed": self.seed,
                "scorer": self.scorer, "preset": self.preset, "options": self.options,
                "skip_nonwords": self.skip_nonwords, "llm_calls": self.llm_calls,
                "cache_hits": self.cache_hits, "seconds": round(self.seconds, 3),
                "auroc": None if math.isnan(self.auroc()) else round(self.auroc(), 4),
                "versions": self.versions}

    def save(self, path: str | os.PathLike, *, show_paths: bool = False) -> Path:
        """Write ``description_scores.parquet`` (or a .parquet/.csv file) and its JSON header.

        The held-out sample of every head is kept (a JSON column ``sample``).

        Args:
            path: a folder (the file goes in it as ``description_scores.parquet``) or a
                .parquet/.csv file.
            show_paths: keep absolute local paths in the header (by default file names only).
        """
        path = table_path(path, "description_scores.parquet")
        frame = self.to_frame()
        frame["sample"] = [json.dumps({k: getattr(s, k) for k in _SAMPLE_FIELDS},
                                      ensure_ascii=False) for s in self.scores]
        frame["rule"] = frame["rule"].fillna("")
        return save_table(frame, self.header(), path, show_paths=show_paths)

    @classmethod
    @reads_result("description-scores result")
    def load(cls, path: str | os.PathLike) -> DescriptionScores:
        """Read what :meth:`save` wrote (a file, or a folder holding description_scores.parquet)."""
        frame, h = load_table(path, "description_scores.parquet", "headmaps.DescriptionScores",
                              "description-scores result")
        scores = []
        for r in frame.to_dict("records"):
            sample = json.loads(r["sample"])
            rule = r["rule"] if isinstance(r["rule"], str) and r["rule"] else None
            reason = r["reason"] if isinstance(r["reason"], str) else ""
            scores.append(DescriptionScore(
                int(r["layer"]), int(r["head"]), str(r["description"]), rule, str(r["method"]),
                float(r["score"]), float(r["baseline"]), int(r["n"]), int(r["n_excluded"]),
                int(r["k"]), int(r["baseline_n"]), [int(x) for x in sample["token_ids"]],
                [str(x) for x in sample["tokens"]], [int(x) for x in sample["hits"]],
                [list(map(str, x)) for x in sample["predictions"]],
                [list(map(str, x)) for x in sample["targets"]], int(r["llm_calls"]), reason,
                int(r["candidates"]), float(r["selection_score"])))
        return cls(scores, h.get("model_id", ""), h.get("method", "auto"), int(h["n_shown"]),
                   int(h["n_salient"]), int(h["n_random"]), int(h["k"]), int(h["seed"]),
                   h.get("scorer", ""), h.get("preset", ""), dict(h.get("options") or {}),
                   h.get("skip_nonwords", "none"), int(h.get("llm_calls", 0)),
                   int(h.get("cache_hits", 0)), float(h.get("seconds", 0.0)),
                   dict(h.get("versions") or {}))

    def summary_markdown(self, max_rows: int | None = None) -> str:
        """Markdown: the sample, mean score vs baseline, AUROC, and a table of scored heads."""
        sc = self.scored
        lines = [f"# Description scores of {self.model_id or 'model'}", "",
                 f"Method {self.method}"
                 + (f", scorer {self.scorer}" if self.scorer else "") + ": "
                 f"{len(sc)} of {len(self.scores)} heads scored on held-out tokens "
                 f"({self.n_salient} next-most-salient + {self.n_random} saliency-weighted "
                 f"draws, none of the {self.n_shown} shown; hit = a prediction in the top "
                 f"{self.k}).", ""]
        if sc:
            base = [s.baseline for s in sc if not math.isnan(s.baseline)]
            lines += [f"- mean score {np.mean([s.score for s in sc]):.3f}, mean shuffled "
                      f"baseline {np.mean(base) if base else math.nan:.3f}, AUROC "
                      f"{self.auroc():.3f}", ""]
            rows = sorted(sc, key=lambda s: (s.layer, s.head))[:max_rows]
            lines += ["| head | method | score | baseline | n | description |",
                      "|---|---|---:|---:|---:|---|"]
            lines += [f"| {s.name} | {s.method} | {s.score:.2f} | {s.baseline:.2f} | {s.n} | "
                      f"{s.text.replace('|', '/')[:90]} |" for s in rows]
        return "\n".join(lines)

    def _repr_html_(self, max_rows: int = 30) -> str:
        """Jupyter: the scored heads (score, baseline, sample size, description)."""
        f = self.to_frame()
        f = f[f["method"] != "none"][["layer", "head", "method", "score", "baseline", "n",
                                      "description"]]
        notes = [f"AUROC (score vs shuffled baseline) {self.auroc():.3f}; "
                 f"{len(f)} of {len(self.scores)} heads scored"]
        if len(f) > max_rows:
            notes.append(f"{len(f) - max_rows} more rows; to_frame() has them all")
        return html_card(f"description scores of {self.model_id or 'model'} "
                         f"({self.method}, k={self.k})", f.head(max_rows), notes)

    def figure(self, title: str | None = None) -> Figure:
        """Per layer: coverage (heads described) and measured accuracy, a matplotlib Figure.

        Bars: the fraction of heads with a description; inside each, the part that holds
        on held-out tokens (coverage x mean score); a line: coverage x mean baseline.
        """
        from .. import figures

        g = self.per_layer()
        return figures.coverage_figure(
            g["layer"].astype(int).to_numpy(), g["coverage"].to_numpy(np.float64),
            g["accurate"].to_numpy(np.float64),
            (g["coverage"] * g["mean_baseline"].astype(np.float64).fillna(0.0)).to_numpy(),
            title=title or f"{self.model_id}: coverage x measured accuracy")


def auroc(pos: Sequence[float], neg: Sequence[float]) -> float:
    """P(a positive beats a negative), ties half (Mann-Whitney U / (n_pos n_neg)); NaN if empty."""
    a = np.asarray([x for x in pos if not math.isnan(x)], dtype=float)
    b = np.asarray([x for x in neg if not math.isnan(x)], dtype=float)
    if not len(a) or not len(b):
        return math.nan
    gt = (a[:, None] > b[None, :]).sum()
    eq = (a[:, None] == b[None, :]).sum()
    return float((gt + 0.5 * eq) / (len(a) * len(b)))


# ---- simulation: prompts and parsing ------------------------------------------------
def description_prompt(d: Description) -> str:
    """The words of a description the scoring LLM sees (text, and what inputs share)."""
    text = d.text
    if d.input_strings and d.input_strings not in text:
        text += f" (inputs: {d.input_strings})"
    return text


def simulation_messages(description: str, token: str, k: int) -> list[dict[str, str]]:
    """Chat messages asking which targets a head with ``description`` gives ``token``."""
    shown = token.strip() or visible(token)
    return [{"role": "system", "content": SIM_SYSTEM},
            {"role": "user", "content": SIM_PROMPT.format(description=description, token=shown,
                                                          k=k)}]


def parse_targets(text: str | None) -> list[str]:
    """Targets from an answer: ``{"targets": [...]}`` or a bare JSON list of strings.

    Accepts a Markdown code fence or prose around the JSON, any key holding a list,
    and numbers (written as strings).

    Raises:
        AnswerError: no JSON list or object with a list of strings.
    """
    s = answer_body(text)
    value: Any = None
    for open_, close in (("{", "}"), ("[", "]")):
        a, b = s.find(open_), s.rfind(close)
        if a >= 0 and b > a:
            try:
                value = json.loads(s[a:b + 1])
                break
            except json.JSONDecodeError:
                continue
    if value is None:
        raise AnswerError("the answer holds no JSON list or object")
    if isinstance(value, dict):
        lists = [v for k, v in value.items() if isinstance(v, list)]
        if "targets" in value and isinstance(value["targets"], list):
            lists = [value["targets"]]
        if not lists:
            raise AnswerError("the JSON object holds no list of targets")
        value = lists[0]
    if not isinstance(value, list):
        raise AnswerError("the JSON value is not a list")
    out = []
    for x in value:
        if isinstance(x, bool) or not isinstance(x, (str, int, float)):
            raise AnswerError("a target is not a string")
        out.append(str(x).strip())
    return [x for x in out if x]


def hit(predicted: Iterable[str], targets: Iterable[str]) -> bool:
    """Whether one predicted string is one of ``targets`` (stripped, casefolded)."""
    keys = {key(t) for t in targets if key(t)}
    return any(key(p) in keys for p in predicted)


def simulate(scorer: LLMDescriber, description: str, token: str,
             k: int) -> tuple[list[str] | None, int]:
    """The scorer's proposed targets for ``token`` (None if invalid after one repair request).

    Returns:
        ``(targets or None, answers asked for)``: 1, or 2 with the repair (cache hits
        included).
    """
    messages = simulation_messages(description, token, k)
    answer = scorer.complete(messages)
    try:
        return parse_targets(answer)[:k], 1
    except AnswerError as err:
        repair = [*messages, {"role": "assistant", "content": answer},
                  {"role": "user", "content": SIM_REPAIR.format(error=err)}]
        try:
            return parse_targets(scorer.complete(repair))[:k], 2
        except AnswerError:
            return None, 2


# ---- scoring -----------------------------------------------------------------------
def _method_for(d: Description, method: str, scorer: LLMDescriber | None) -> tuple[str, str]:
    """(method, reason not scored) for one description."""
    if d.unclear:
        return "none", "error" if d.error else "unclear"
    if d.category == "input_category":
        return "none", "names no mapping (what the inputs share only)"
    if method in ("auto", "offline") and d.rule:
        return "offline", ""
    if method == "offline":
        return "none", "no rule: needs an LLM scorer (method='simulation')"
    if scorer is None:
        return "none", "no rule and no scorer: pass scorer= (an LLMDescriber) to simulate"
    return "simulation", ""


def score_descriptions(
    model: Any,
    descriptions: Iterable[Description],
    salient: SalientAll | None = None,
    *,
    method: str = "auto",
    scorer: LLMDescriber | None = None,
    describer: PatternDescriber | None = None,
    n_shown: int | None = None,
    n_salient: int = DEFAULT_N_SALIENT,
    n_random: int = DEFAULT_N_RANDOM,
    k: int | None = None,
    seed: int = 0,
    preset: Any = None,
    skip_nonwords: bool | str | None = None,
    calibration: bool | None = None,
    workers: int = 4,
    progress: bool = False,
    exclude: Mapping[tuple[int, int], Iterable[int]] | None = None,
) -> DescriptionScores:
    """Score each description on held-out source tokens of its head (module docstring).

    Args:
        model: the model the descriptions are of.
        descriptions: the descriptions (e.g. from :func:`~headmaps.describe.describe_all`);
            all heads passed take part in the baselines.
        salient: the salient operations the descriptions were written from: their tokens
            are the shown ones, and their projection, filter and ``n_tokens`` are reused.
            Without it, the shown tokens are the top ``n_shown`` by saliency under
            ``preset``/``skip_nonwords``/``calibration`` (as :func:`~headmaps.salient_all`).
        method: ``auto`` (offline for descriptions with a rule, simulation for the rest
            when a ``scorer`` is given), ``offline`` or ``simulation`` (every clear
            description through the scorer).
        scorer: the scoring LLM (an :class:`LLMDescriber`: endpoint, retries, cache).
        describer: the pattern describer whose rules are checked offline (default: one
            with the built-in relation library; pass the one that wrote the descriptions
            when it had other relations).
        n_shown: tokens shown to the describer (default ``salient``'s ``n_tokens``, or 15).
        n_salient: held-out tokens taken next in saliency order.
        n_random: held-out tokens drawn from the vocabulary, weighted by saliency.
        k: the head's real targets per held-out token (default ``salient``'s
            ``n_mappings``, or 5).
        seed: seed of the draws and of the derangement for the simulation baseline.
        preset: the projection preset without ``salient``.
        skip_nonwords: the non-word filter without ``salient``.
        calibration: use the model's stored calibration without ``salient`` and preset.
        workers: concurrent LLM requests.
        progress: show progress bars.
        exclude: ``(layer, head) -> token ids`` never to hold out either (a sample
            already used, for a fresh one).

    Returns:
        :class:`DescriptionScores`, one entry per description in order (several
        descriptions of one head are scored on the same sample).

    Raises:
        HeadmapsError: an unknown method, bad sample sizes, or ``method="simulation"``
            without a scorer; LLMError: the scorer's endpoint fails after its retries.
    """
    import time

    from ..salient import salient_all
    from ..salient.tokens import skip_label

    t0 = time.perf_counter()
    if method not in METHODS:
        raise HeadmapsError(f"unknown scoring method {method!r}; use one of {', '.join(METHODS)}")
    if method == "simulation" and scorer is None:
        raise HeadmapsError("method='simulation' needs a scorer (an LLMDescriber)")
    if n_salient < 0 or n_random < 0 or n_salient + n_random < 1:
        raise HeadmapsError(f"the held-out sample is empty: n_salient={n_salient}, "
                            f"n_random={n_random}")
    if k is not None and k < 1 or workers < 1:
        raise HeadmapsError(f"k and workers must be at least 1, got {k} and {workers}")
    descs = list(descriptions)
    if not descs:
        raise HeadmapsError("no descriptions to score")
    layers = sorted({d.layer for d in descs})
    if salient is not None:
        missing = [d.name for d in descs if d.layer not in salient.layers
                   or not 0 <= d.head < salient.n_heads]
        if missing:
            raise HeadmapsError(f"the salient operations do not cover head(s) "
                                f"{', '.join(missing[:5])}")
        from .. import projection as P

        n_shown = salient.token_ids.shape[2] if n_shown is None else n_shown
        k = salient.target_ids.shape[3] if k is None else k
        proj: dict[str, Any] = {"preset": P.ProjectionOptions(**salient.options),
                                "skip_nonwords": salient.skip_nonwords}
        shown = {(layer, h): set(salient.token_ids[i, h].tolist())
                 for i, layer in enumerate(salient.layers) for h in range(salient.n_heads)}
    else:
        n_shown = 15 if n_shown is None else n_shown
        k = DEFAULT_K if k is None else k
        proj = {"preset": preset, "skip_nonwords": skip_nonwords or False,
                "calibration": calibration}
        shown = {}
    pattern = describer or PatternDescriber()
    banned = {key_: set(ids) for key_, ids in shown.items()}
    for key_, ids in (exclude or {}).items():
        banned.setdefault(tuple(key_), set()).update(int(i) for i in ids)

    def select(layer: int, sal: np.ndarray) -> np.ndarray:
        rows = [held_out_ids(sal[h], banned.get((layer, h), ()), n_shown, n_salient, n_random,
                             _head_seed(seed, layer, h)) for h in range(sal.shape[0])]
        n = min(len(r) for r in rows)
        return np.stack([r[:n] for r in rows])

    held = salient_all(model, layers, n_mappings=k, select=select, progress=progress, **proj)
    sample = {(o.layer, o.head): o for o in held}
    for (layer, h), ops in sample.items():  # the promise of the module, checked
        assert not banned.get((layer, h), set()) & set(ops.token_ids.tolist())

    results: list[DescriptionScore] = []
    for d in descs:
        m, reason = _method_for(d, method, scorer)
        ops = sample[d.layer, d.head]
        results.append(DescriptionScore(
            d.layer, d.head, d.text, d.rule, m, k=k, reason=reason,
            token_ids=[int(i) for i in ops.token_ids], tokens=list(ops.tokens),
            targets=[list(t) for t in ops.targets]))
    heads = sorted(sample)
    _score_offline(results, sample, heads, pattern, progress)
    calls0 = scorer.requests if scorer is not None else 0
    hits0 = scorer.cache_hits if scorer is not None else 0
    if scorer is not None:
        by_head = {(d.layer, d.head): d for d in descs}
        _score_simulation(results, by_head, sample, scorer, k, seed, workers, progress)
    return DescriptionScores(
        results, getattr(model, "model_id", ""), method, int(n_shown), n_salient, n_random,
        int(k), seed, scorer.name if scorer is not None else "", held.preset, dict(held.options),
        skip_label(proj.get("skip_nonwords")),
        (scorer.requests - calls0) if scorer is not None else 0,
        (scorer.cache_hits - hits0) if scorer is not None else 0,
        time.perf_counter() - t0, versions())


def _rule_hits(pattern: PatternDescriber, rule: str, tokens: Sequence[str],
               targets: Sequence[Sequence[str]]) -> list[int]:
    """1/0 per token, -1 where the rule does not apply."""
    out = []
    for s, ts in zip(tokens, targets):
        if not pattern.rule_applies(rule, s):
            out.append(-1)
        else:
            out.append(int(any(pattern.rule_hit(rule, s, t) for t in ts)))
    return out


def _rate(hits: Sequence[int]) -> tuple[float, int, int]:
    """(hit rate over applicable tokens or NaN, applicable, excluded)."""
    used = [h for h in hits if h >= 0]
    return (float(np.mean(used)) if used else math.nan), len(used), len(hits) - len(used)


def _score_offline(results: list[DescriptionScore], sample: dict, heads: list[tuple[int, int]],
                   pattern: PatternDescriber, progress: bool) -> None:
    todo = [r for r in results if r.method == "offline"]
    for r in tqdm(todo, desc="score (offline)", unit="head", disable=not progress):
        try:
            r.hits = _rule_hits(pattern, r.rule or "", r.tokens, r.targets)
        except KeyError as err:
            r.method, r.reason = "none", f"rule {err.args[0]!r} unknown to the describer"
            continue
        r.score, r.n, r.n_excluded = _rate(r.hits)
        r.predictions = [[] for _ in r.tokens]
        pooled: list[int] = []
        for other in heads:
            if other == (r.layer, r.head):
                continue
            o = sample[other]
            pooled += _rule_hits(pattern, r.rule or "", o.tokens, o.targets)
        r.baseline, r.baseline_n, _ = _rate(pooled)
        if r.n == 0:
            r.reason = "the rule applies to none of the held-out tokens"


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation of ``range(n)`` without fixed points (identity for n < 2)."""
    if n < 2:
        return np.arange(n)
    while True:
        p = rng.permutation(n)
        if not np.any(p == np.arange(n)):
            return p


def _score_simulation(results: list[DescriptionScore], by_head: dict, sample: dict,
                      scorer: LLMDescriber, k: int, seed: int, workers: int,
                      progress: bool) -> None:
    todo = [r for r in results if r.method == "simulation"]
    if not todo:
        return
    others = derangement(len(todo), np.random.default_rng([int(seed), 1]))
    jobs: list[tuple[int, str, int, str, list[str]]] = []  # (result idx, which, i, token, tgts)
    texts = {}
    for j, r in enumerate(todo):
        texts[j] = description_prompt(by_head[r.layer, r.head])
        for i, (tok, tgts) in enumerate(zip(r.tokens, r.targets)):
            jobs.append((j, "real", i, tok, tgts))
        if len(todo) > 1:
            o = todo[int(others[j])]
            for i, (tok, tgts) in enumerate(zip(o.tokens, o.targets)):
                jobs.append((j, "base", i, tok, tgts))
    def run(job):
        j, _which, _i, tok, _t = job
        return simulate(scorer, texts[j], tok, k)

    answers: list[tuple[list[str] | None, int]] = [(None, 0)] * len(jobs)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run, job) for job in jobs]
        for n, fut in enumerate(tqdm(futures, desc="score (simulation)", unit="call",
                                     disable=not progress)):
            try:
                answers[n] = fut.result()
            except LLMError:
                for f in futures:
                    f.cancel()
                raise
    real: dict[int, list[tuple[int, list[str] | None, list[str]]]] = {j: [] for j in texts}
    base: dict[int, list[int]] = {j: [] for j in texts}
    calls = dict.fromkeys(texts, 0)
    for (j, which, i, _tok, tgts), (ans, n_calls) in zip(jobs, answers):
        calls[j] += n_calls
        if which == "real":
            real[j].append((i, ans, tgts))
        else:
            base[j].append(-1 if ans is None else int(hit(ans, tgts)))
    for j, r in enumerate(todo):
        got = sorted(real[j], key=lambda x: x[0])
        r.predictions = [list(a) if a is not None else [] for _, a, _ in got]
        r.hits = [-1 if a is None else int(hit(a, t)) for _, a, t in got]
        r.score, r.n, r.n_excluded = _rate(r.hits)
        r.baseline, r.baseline_n, _ = _rate(base[j])
        r.llm_calls = calls[j]
        if r.n == 0:
            r.reason = "no valid answer from the scorer"


def _gain(s: DescriptionScore) -> float:
    """What a candidate is chosen by: score minus baseline (the score alone without one)."""
    if not s.scored:
        return -math.inf
    return s.score - (0.0 if math.isnan(s.baseline) else s.baseline)


def refine_descriptions(
    model: Any,
    salient: SalientAll,
    describer: Any,
    n_cands: int = 3,
    *,
    seed: int = 0,
    progress: bool = False,
    **score_options: Any,
) -> tuple[list[Description], DescriptionScores]:
    """Explain, score, keep: the best of ``n_cands`` candidate descriptions per head.

    Every candidate (``describer.candidates(ops, n_cands)``: the pattern describer's next
    patterns, or an LLM's sampled answers) is scored on one held-out sample; the one with
    the best score above its shuffled baseline is kept (the first on ties or when none is
    scored: a candidate that fits every head gains nothing), and its score is
    then **re-measured on a fresh held-out sample** (none of the tokens shown or used for
    the choice), so that the kept score is not inflated by the choice.

    Args:
        model: the model.
        salient: the salient operations to describe (their tokens are the shown ones).
        describer: a describer with ``candidates(ops, n)`` (:class:`PatternDescriber`,
            :class:`LLMDescriber`).
        n_cands: candidates per head.
        seed: seed of the selection sample (the fresh one uses ``seed + 1``).
        progress: show progress bars.
        **score_options: passed to :func:`score_descriptions` (``scorer``, ``n_salient``...).

    Returns:
        ``(kept descriptions, their scores on the fresh sample)``; each score has
        ``candidates`` and ``selection_score`` set.

    Raises:
        HeadmapsError: ``n_cands < 1`` or a describer without candidates.
    """
    if n_cands < 1:
        raise HeadmapsError(f"n_cands must be at least 1, got {n_cands}")
    if not hasattr(describer, "candidates"):
        raise HeadmapsError(f"describer {getattr(describer, 'name', describer)!r} cannot give "
                            "candidate descriptions")
    if isinstance(describer, PatternDescriber):
        score_options.setdefault("describer", describer)
    per_head = [describer.candidates(ops, n_cands)
                for ops in tqdm(salient, total=len(salient), desc="candidates", unit="head",
                                disable=not progress)]
    flat = [d for ds in per_head for d in ds]
    first = score_descriptions(model, flat, salient, seed=seed, progress=progress,
                               **score_options)
    kept: list[Description] = []
    chosen: list[tuple[int, float]] = []
    i = 0
    for ds in per_head:
        scores = first.scores[i:i + len(ds)]
        i += len(ds)
        best = max(range(len(ds)), key=lambda j: (_gain(scores[j]), -j))
        kept.append(ds[best])
        chosen.append((len(ds), scores[best].score))
    used = {(s.layer, s.head): s.token_ids for s in first.scores}
    final = score_descriptions(model, kept, salient, seed=seed + 1, progress=progress,
                               exclude=used, **score_options)
    for s, (n, sel) in zip(final.scores, chosen):
        s.candidates, s.selection_score = n, sel
    final.llm_calls += first.llm_calls
    final.cache_hits += first.cache_hits
    final.seconds += first.seconds
    return kept, final
