"""The result classes of description scoring: one head's score, and many heads' scores.

:class:`DescriptionScores` saves and loads itself (a table with the held-out sample of
every head and a JSON header) and shows itself as a frame, Markdown, HTML and a figure;
:func:`auroc` is how well its scores separate real descriptions from shuffled ones.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._html import html_card
from ..errors import HeadmapsError
from ..io import load_table, reads_result, save_table, table_path
from .sampling import DEFAULT_K, DEFAULT_N_RANDOM, DEFAULT_N_SALIENT

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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
    """Scores of the descriptions of many heads (see :mod:`headmaps.describe.scoring`).

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
    calibration: dict[str, Any] = field(default_factory=dict)

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
                "versions": self.versions, "calibration": self.calibration}

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
                   dict(h.get("versions") or {}), dict(h.get("calibration") or {}))

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
