"""Static head types against the behavioural detectors: rank correlation, AUROC, precision@10.

For each type with a behavioural detector (:mod:`headmaps.experiments.behaviour`), over
all heads of the model:

* ``spearman``: rank correlation between the static score and the behavioural score;
* ``auroc``: how well the static score separates the heads that are *behaviourally* of
  the type from the others, the behavioural positives fixed in advance as the top
  ``top_fraction`` (default 5 %) of heads by behavioural score (ties count one half);
* ``precision_at_10``: the fraction of the 10 best static heads among those positives.

Copy suppression has no behavioural detector here (its literature detector needs
ablations); it is compared with the copying behaviour reversed.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import rankdata, spearmanr

from .results import HeadTypes

#: static type -> (behavioural detector, sign applied to the behaviour).
BEHAVIOUR_OF = {"previous_token": ("previous_token", 1), "induction": ("induction", 1),
                "duplicate_token": ("duplicate_token", 1), "copying": ("copying", 1),
                "copy_suppression": ("copying", -1), "successor": ("successor", 1)}


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
    """The top ``top_fraction`` of heads by behavioural score (at least one), as a bool mask."""
    b = np.asarray(behaviour, dtype=float).ravel()
    n = max(1, int(round(top_fraction * b.size)))
    mask = np.zeros(b.size, dtype=bool)
    mask[np.argsort(-b, kind="stable")[:n]] = True
    return mask.reshape(np.shape(behaviour))


def compare(types: HeadTypes, behaviour: dict[str, np.ndarray], top_fraction: float = 0.05,
            k: int = 10) -> pd.DataFrame:
    """One row per type with a behaviour: spearman, auroc, precision@k, positives.

    Args:
        types: the static result.
        behaviour: detector name -> ``(n_layers, n_heads)`` behavioural scores.
        top_fraction: behavioural positives (fixed in advance).
        k: cut-off for precision.
    """
    rows = []
    for t, (name, sign) in BEHAVIOUR_OF.items():
        if name not in behaviour or t not in types.scores:
            continue
        s = types.scores[t].ravel().astype(float)
        b = sign * np.asarray(behaviour[name], dtype=float).ravel()
        ok = np.isfinite(s) & np.isfinite(b)
        if ok.sum() < 3:
            rows.append({"type": t, "behaviour": name, "spearman": math.nan, "auroc": math.nan,
                         f"precision_at_{k}": math.nan, "positives": 0,
                         "labelled": int(types.labels[t].sum())})
            continue
        pos = positives(b[ok], top_fraction)
        top = np.argsort(-s[ok], kind="stable")[:k]
        rows.append({"type": t, "behaviour": name + (" (reversed)" if sign < 0 else ""),
                     "spearman": float(spearmanr(s[ok], b[ok]).statistic),
                     "auroc": auroc(s[ok], pos),
                     f"precision_at_{k}": float(pos[top].mean()), "positives": int(pos.sum()),
                     "labelled": int(types.labels[t].sum())})
    return pd.DataFrame(rows)
