"""The one table of head-type label rules, and the evidence behind every label.

A head is labelled with a type when its static score is an **outlier at the top of its
own model's distribution**: its robust z-score

    ``z = (score - median) / (1.4826 * MAD)``

(median and median absolute deviation over every head of the model; ``1.4826 * MAD``
estimates the standard deviation of a normal distribution) is at least :data:`Z0` = 3.5,
the outlier bound of Iglewicz & Hoaglin's modified z-score (1993). The bound is a
statistical convention fixed before any head-type measurement, not tuned on a model. It
carries over between models because each model is measured against itself: scores whose
scale differs between architectures (sandwich norms, vocabulary size) still single out the
heads that stand apart. Where half the heads or more share one value (a relation score that
is zero for most heads) the MAD is zero; the scale is then ``1.2533 * mean |score - median|``,
Iglewicz & Hoaglin's fallback. Types with an extra condition from how the circuit works
(:data:`RULES`, ``gate``) must pass it too.

Every label comes with evidence: the score, its robust z, its percentile among the
model's heads (of the quantity the rule reads: the score, or the relation score it is built
on), the rule (with its threshold on this model) and a confidence
``1 / (1 + exp(-(x - threshold) / scale))``: the margin over the threshold in robust standard
deviations (0.5 at the threshold, 0.88 two above). A type
with no head above the bound says so, with its best candidates, instead of an empty list.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ..errors import HeadmapsError
from ..scoring.results import DEFAULT_TAU

#: Robust-z bound of every label (Iglewicz & Hoaglin's outlier rule, fixed in advance).
Z0 = 3.5
#: An outlier label also needs at least this fraction of the type's top score in the model.
REL = 0.5


@dataclass(frozen=True)
class Rule:
    """How one type is labelled.

    Attributes:
        type: the head type.
        score: what the static score is, in words.
        absolute: for a score that *estimates the behavioural quantity itself* (an
            attention probability, a MAPS relation score), the quantity's own threshold;
            None: the model-relative outlier rule.
        on: the component the absolute threshold (or the outlier rule) reads, when not
            the type's score itself ("" = the score).
        gate: an extra condition in words ("" for none); :func:`gate_mask` evaluates it.
        floor: outlier rule: the score's own meaningful minimum.
        fallback: the score's description without the relation ingredients; the rule is
            then the outlier rule on the type's score.
    """

    type: str
    score: str
    absolute: float | None = None
    on: str = ""
    gate: str = ""
    floor: float = -math.inf
    fallback: str = ""
    fallback_floor: float = -math.inf

    def floor_of(self, fallback: bool) -> float:
        """The outlier rule's floor (the fallback score has its own)."""
        return self.fallback_floor if fallback and self.fallback else self.floor

    def text(self, z0: float = Z0, fallback: bool = False) -> str:
        """The rule in words (``fallback``: without the relation ingredients)."""
        g = f" and {self.gate}" if self.gate else ""
        what = self.on.replace("_", " ") if self.on and not fallback else self.score
        if fallback and self.fallback:
            what = self.fallback
        if self.absolute is not None and not fallback:
            return f"{what} >= {self.absolute:g}{g}"
        floor = self.floor_of(fallback)
        fl = f" and >= {floor:g}" if math.isfinite(floor) else ""
        return (f"robust z of the {what} >= {z0:g} in this model and at least {REL:g} x the "
                f"model's top{fl}{g}")


#: The label rules, one per type, in display order (grounds: docs/head-types.md).
RULES: dict[str, Rule] = {r.type: r for r in (
    Rule("previous_token", "expected attention on the previous token", absolute=0.4),
    Rule("induction", "induction score (previous-token mass x induction QK match)", floor=1.0),
    Rule("duplicate_token", "duplicate-token score (self-preference x attention beyond the "
                            "recent window)", floor=1.0),
    Rule("copying", "copying score (copying relation and eigen copying)", absolute=DEFAULT_TAU,
         on="copying_relation", gate="OV copying (eigen copying > 0)",
         fallback="eigen copying score", fallback_floor=0.5),
    Rule("copy_suppression", "copy-suppression score (copying suppression and negative "
                             "eigen copying)", on="copying_suppression",
         gate="OV suppressing (eigen copying < 0)", fallback="negative eigen copying score",
         fallback_floor=0.5),
    Rule("successor", "successor relation score", absolute=DEFAULT_TAU),
)}


def robust_z(scores: np.ndarray) -> tuple[np.ndarray, float, float]:
    """``(z, median, scale)`` of ``scores`` over their finite entries (NaN stays NaN).

    ``scale = 1.4826 * MAD``, or ``1.2533 * mean |x - median|`` when the MAD is zero;
    when that is zero too (every finite score equal) ``z`` is 0 everywhere finite.
    """
    x = np.asarray(scores, dtype=np.float64)
    ok = np.isfinite(x)
    if not ok.any():
        return np.full(x.shape, np.nan), math.nan, math.nan
    med = float(np.median(x[ok]))
    dev = np.abs(x[ok] - med)
    scale = 1.4826 * float(np.median(dev))
    if scale <= 1e-12:
        scale = 1.2533 * float(dev.mean())
    z = np.full(x.shape, np.nan)
    z[ok] = (x[ok] - med) / scale if scale > 1e-12 else 0.0
    return z, med, scale


def percentile(scores: np.ndarray) -> np.ndarray:
    """Percentile of each score among the finite scores (100 = the top head; ties share)."""
    x = np.asarray(scores, dtype=np.float64)
    ok = np.isfinite(x)
    out = np.full(x.shape, np.nan)
    if ok.any():
        v = x[ok]
        below = np.searchsorted(np.sort(v), v, side="right")
        out[ok] = 100.0 * below / v.size
    return out


def confidence(z: np.ndarray, z0: float = Z0) -> np.ndarray:
    """``1 / (1 + exp(-(z - z0)))``: 0.5 at the bound; NaN stays NaN.

    :func:`apply` uses the general form ``1 / (1 + exp(-(x - cut) / scale))``: the margin
    over the rule's threshold on this model in robust standard deviations (equal to this
    when the threshold is the z bound).
    """
    z = np.asarray(z, dtype=np.float64)
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-(z - z0)))


def gate_mask(kind: str, components: dict[str, np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """The extra condition of ``kind``'s rule over every head (all True when it has none)."""
    eig = components.get("eigen_copying")
    if kind == "copying" and eig is not None:
        return np.asarray(eig) > 0
    if kind == "copy_suppression" and eig is not None:
        return np.asarray(eig) < 0
    if kind == "successor" and "successor_relation" in components:
        return np.asarray(components["successor_relation"]) > 0
    return np.ones(shape, dtype=bool)


@dataclass
class Evidence:
    """Per type: the robust z, percentile and confidence of every head, and the rule used."""

    z: dict[str, np.ndarray]
    percentile: dict[str, np.ndarray]
    confidence: dict[str, np.ndarray]
    rules: dict[str, str]
    notes: dict[str, str]


def _candidates(kind: str, scores: np.ndarray, z: np.ndarray, n: int = 3) -> str:
    s = np.nan_to_num(scores, nan=-np.inf)
    flat = np.argsort(-s, axis=None, kind="stable")[:n]
    parts = []
    for a, b in zip(*np.unravel_index(flat, s.shape)):
        if np.isfinite(s[a, b]):
            parts.append(f"{a}.{b} (score {s[a, b]:.3g}, z {z[a, b]:.1f})")
    return ", ".join(parts)


def apply(scores: dict[str, np.ndarray], components: dict[str, np.ndarray],
          z0: float = Z0, rel: float = REL,
          tau: float | None = None) -> tuple[dict[str, np.ndarray], Evidence]:
    """Labels and evidence for every type from its scores (the rules of :data:`RULES`).

    Args:
        scores: type -> ``(L, H)`` static score (NaN where missing).
        components: the ingredients (``eigen_copying``, ``successor_relation``... for the gates).
        z0: the robust-z bound (default :data:`Z0`; other values are for study only).
        rel: the fraction of the type's top score an outlier label needs (default :data:`REL`).
        tau: the relation threshold of the relation-score rules (copying, successor); None:
            :data:`~headmaps.scoring.DEFAULT_TAU` (``head_types`` passes the τ of a reused scan).

    Returns:
        ``(labels, evidence)``.
    """
    if not (isinstance(z0, (int, float)) and math.isfinite(z0)):
        raise HeadmapsError(f"z0 must be a finite number, got {z0!r}")
    if tau is not None and not (isinstance(tau, (int, float)) and 0 < tau <= 1):
        raise HeadmapsError(f"tau must be in (0, 1], got {tau!r}")
    labels: dict[str, np.ndarray] = {}
    zs, pcts, confs, rules, notes = {}, {}, {}, {}, {}
    for kind, s in scores.items():
        rule = RULES.get(kind)
        if rule is None:
            raise HeadmapsError(f"no label rule for head type {kind!r}; types: {', '.join(RULES)}")
        s = np.asarray(s, dtype=np.float64)
        fallback = bool(rule.on) and rule.on not in components
        x = s if fallback or not rule.on else np.asarray(components[rule.on], dtype=np.float64)
        z, med, scale = robust_z(s)
        zx, medx, scalex = (z, med, scale) if x is s else robust_z(x)
        gate = gate_mask(kind, components, s.shape)
        xf = np.nan_to_num(x, nan=-np.inf)
        top = float(np.nanmax(x)) if np.isfinite(x).any() else math.nan
        absolute = rule.absolute
        if absolute == DEFAULT_TAU and tau is not None:
            absolute = tau
            rule = replace(rule, absolute=tau)
        if absolute is not None and not fallback:
            lab = xf >= absolute - 1e-6  # a relation score is a ratio of counts
            cut = absolute
        else:
            lab = np.nan_to_num(zx, nan=-np.inf) >= z0
            cut = medx + z0 * scalex
            if rel > 0 and math.isfinite(top) and top > 0:
                lab &= xf >= rel * top
                cut = max(cut, rel * top)
            lab &= xf >= rule.floor_of(fallback)
            cut = max(cut, rule.floor_of(fallback))
        lab &= gate
        labels[kind] = lab
        # the evidence is about the quantity the rule reads (the score or its component)
        zs[kind], pcts[kind] = zx.astype(np.float32), percentile(x).astype(np.float32)
        with np.errstate(over="ignore", invalid="ignore"):
            margin = (x - cut) / scalex if scalex > 1e-12 else np.where(x >= cut, np.inf, -np.inf)
            confs[kind] = (1.0 / (1.0 + np.exp(-margin))).astype(np.float32)
        text = rule.text(z0, fallback=fallback)
        if not np.isfinite(medx):
            rules[kind] = text + " (no score on this model)"
            notes[kind] = f"no {kind.replace('_', '-')} score on this model"
            continue
        what = rule.on.replace("_", " ") if rule.on and not fallback else "score"
        rules[kind] = (text + f"; here: {what} >= {cut:.4g} (median {medx:.4g}, "
                       f"scale {scalex:.3g}, top {top:.4g})")
        if not lab.any():
            notes[kind] = (f"no clear {kind.replace('_', '-')} head; top candidates "
                           + _candidates(kind, s, z))
    return labels, Evidence(zs, pcts, confs, rules, notes)
