"""Static head types against the behavioural detectors: labels judged as labels.

For each type with a behavioural detector (:mod:`headmaps.experiments.behaviour`), over
all heads of the model:

* behavioural **positives** by an absolute criterion fixed in advance
  (:data:`POSITIVE`; docs/head-types.md gives the grounds), not by a quota;
* ``precision``, ``recall`` and ``f1`` of the static *label* against those positives;
* ``auroc``: how well the static *score* separates them (ties count one half), and
  ``spearman``: the rank correlation of static and behavioural score over all heads;
* ``precision_at_10``: the fraction of the 10 best static heads that are positives.

:func:`pooled` adds the label counts of several models and gives one F1 per type (a
model with 72 heads has few positives per type).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata, spearmanr

from ..errors import HeadmapsError
from .results import HeadTypes

#: static type -> (behavioural detector, sign applied to the behaviour).
BEHAVIOUR_OF = {"previous_token": ("previous_token", 1), "induction": ("induction", 1),
                "duplicate_token": ("duplicate_token", 1), "copying": ("copying", 1),
                "copy_suppression": ("copy_suppression", 1), "successor": ("successor", 1)}

#: Behavioural positives: a head is behaviourally of the type when its detector's score is
#: at least this (fixed before measuring; grounds in docs/head-types.md). Attention types:
#: mean attention on the target key (previous token; token after the earlier copy; the
#: earlier copy) >= 0.4, twenty times what a uniform head gives over ~50 keys, as the
#: literature's previous-token and induction criteria. Copying and successor: the dynamic
#: relation score (fraction of prompts with the target in the top-k of the head's output)
#: >= 0.15, MAPS's own threshold. Copy suppression: ``-mean e >= 0.5``
#: (:func:`headmaps.experiments.behaviour.copy_suppression_scores`), e.g. 10 % of the
#: attention on the predicted earlier token with the token 5 standard deviations below
#: the head's mean logit.
POSITIVE = {"previous_token": 0.4, "induction": 0.4, "duplicate_token": 0.4, "copying": 0.15,
            "successor": 0.15, "copy_suppression": 0.5}


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for boolean ``positive`` (Mann-Whitney, ties 1/2)."""
    scores = np.asarray(scores, dtype=float).ravel()
    positive = np.asarray(positive, dtype=bool).ravel()
    n1, n0 = int(positive.sum()), int((~positive).sum())
    if n1 == 0 or n0 == 0:
        return math.nan
    r = rankdata(scores)
    return float((r[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def positives(behaviour: np.ndarray, top_fraction: float = 0.05) -> np.ndarray:
    """The top ``top_fraction`` of heads by behavioural score (at least one), as a bool mask.

    The old quota criterion, kept for comparison; :data:`POSITIVE` is the default.
    """
    b = np.asarray(behaviour, dtype=float).ravel()
    n = max(1, int(round(top_fraction * b.size)))
    mask = np.zeros(b.size, dtype=bool)
    mask[np.argsort(-b, kind="stable")[:n]] = True
    return mask.reshape(np.shape(behaviour))


def f1(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """``(precision, recall, f1)``; NaN where undefined (nothing labelled / no positive)."""
    p = tp / (tp + fp) if tp + fp else math.nan
    r = tp / (tp + fn) if tp + fn else math.nan
    if tp == 0:
        return p, r, (0.0 if tp + fp + fn else math.nan)
    return p, r, 2 * p * r / (p + r)


def compare(types: HeadTypes, behaviour: dict[str, np.ndarray],
            criteria: dict[str, float] | None = None, top_fraction: float | None = None,
            k: int = 10) -> pd.DataFrame:
    """One row per type with a behaviour: positives, labels, precision/recall/F1, AUROC, Spearman.

    Args:
        types: the static result.
        behaviour: detector name -> ``(n_layers, n_heads)`` behavioural scores.
        criteria: type -> absolute behavioural threshold (default :data:`POSITIVE`).
        top_fraction: instead of ``criteria``, the top fraction of heads (old quota rule).
        k: cut-off for precision@k.
    """
    crit = dict(POSITIVE if criteria is None else criteria)
    rows = []
    for t, (name, sign) in BEHAVIOUR_OF.items():
        if name not in behaviour or t not in types.scores:
            continue
        s = types.scores[t].ravel().astype(float)
        b = sign * np.asarray(behaviour[name], dtype=float).ravel()
        if b.size != s.size:
            raise HeadmapsError(f"behaviour {name!r} has {b.size} heads, the static result "
                                f"{s.size}: not the same model")
        lab = types.labels[t].ravel().astype(bool)
        ok = np.isfinite(s) & np.isfinite(b)
        if top_fraction is not None:
            pos = np.zeros(b.size, dtype=bool)
            pos[ok] = positives(b[ok], top_fraction)
            rule = f"top {top_fraction:.0%}"
        else:
            pos = ok & (np.nan_to_num(b, nan=-np.inf) >= crit[t])
            rule = f">= {crit[t]:g}"
        tp, fp, fn = int((lab & pos).sum()), int((lab & ~pos).sum()), int((~lab & pos).sum())
        p, r, f = f1(tp, fp, fn)
        many = ok.sum() >= 3
        top = np.argsort(-np.where(ok, s, -np.inf), kind="stable")[:k]
        rows.append({"type": t, "behaviour": name + (" (reversed)" if sign < 0 else ""),
                     "positive_if": rule, "positives": int(pos.sum()),
                     "labelled": int(lab.sum()), "tp": tp, "precision": p, "recall": r, "f1": f,
                     "auroc": auroc(s[ok], pos[ok]) if many else math.nan,
                     "spearman": float(spearmanr(s[ok], b[ok]).statistic) if many else math.nan,
                     f"precision_at_{k}": float(pos[top].mean()) if many else math.nan})
    return pd.DataFrame(rows)


def pooled(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Label precision/recall/F1 per type over several models' :func:`compare` tables."""
    if not tables:
        raise HeadmapsError("pooled() needs at least one compare() table")
    both = pd.concat(list(tables), ignore_index=True)
    rows = []
    for t, g in both.groupby("type", sort=False):
        tp = int(g["tp"].sum())
        fp = int((g["labelled"] - g["tp"]).sum())
        fn = int((g["positives"] - g["tp"]).sum())
        p, r, f = f1(tp, fp, fn)
        rows.append({"type": t, "models": len(g), "positives": int(g["positives"].sum()),
                     "labelled": int(g["labelled"].sum()), "tp": tp, "precision": p,
                     "recall": r, "f1": f})
    return pd.DataFrame(rows)
