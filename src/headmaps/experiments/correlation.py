"""Correlation of static relation scores with dynamic (inference-time) scores.

For each relation, ``x`` is the static score ``phi_R`` of every head, repeated once per
template, and ``y`` the head's dynamic score on that template; Pearson's r over all
heads and templates, without and with context, and the same for suppression.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .. import projection as P
from ..models import HeadModel
from ..relations import MIN_PAIRS
from ..scoring import ScanResult, scan
from .dynamic import DynamicScores, dynamic_scores
from .results import CORRELATION_COLUMNS, CorrelationResult

logger = logging.getLogger(__name__)


def pearson(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Pearson's r and its two-sided p-value (t-test with ``n - 2`` degrees of freedom).

    Args:
        x, y: 1-d arrays of equal length.

    Returns:
        ``(r, p)``; both NaN when either input is constant or there are fewer than 3 points.
    """
    from scipy.special import betainc

    x = np.asarray(x, np.float64).ravel()
    y = np.asarray(y, np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in length: {x.shape} vs {y.shape}")
    n = len(x)
    dx, dy = x - x.mean(), y - y.mean()
    sxx, syy = float(dx @ dx), float(dy @ dy)
    if n < 3 or sxx == 0 or syy == 0:
        return float("nan"), float("nan")
    r = float(np.clip((dx @ dy) / np.sqrt(sxx * syy), -1.0, 1.0))
    # r is Beta(n/2 - 1, n/2 - 1) on [-1, 1] under the null; by symmetry
    # P(|R| >= |r|) = 2 * I_{(1 - |r|)/2}(a, a).
    a = n / 2 - 1
    p = float(min(1.0, 2 * betainc(a, a, (1 - abs(r)) / 2)))
    return r, p


def correlation_table(static: ScanResult, dyn: DynamicScores) -> pd.DataFrame:
    """One row per relation: the columns of :data:`CORRELATION_COLUMNS`.

    Args:
        static: static scores with (at least) the relations of ``dyn``.
        dyn: dynamic scores.
    """
    rows = []
    for r, name in enumerate(dyn.relations):
        if name not in static.relations:
            continue
        i = static.relations.index(name)
        T = len(dyn.templates)
        x = np.tile(static.scores[i].ravel(), T)
        xs = np.tile(static.suppression[i].ravel(), T)
        c_wo, p_wo = pearson(x, dyn.without_context[r].ravel())
        c_w, p_w = pearson(x, dyn.with_context[r].ravel())
        s_wo, _ = pearson(xs, dyn.supp_without_context[r].ravel())
        s_w, _ = pearson(xs, dyn.supp_with_context[r].ravel())
        rows.append([name, dyn.n_pairs[name], c_wo, c_w, s_wo, s_w, p_wo, p_w])
    return pd.DataFrame(rows, columns=CORRELATION_COLUMNS)


def static_for(model: HeadModel, dyn: DynamicScores, preset: str | P.ProjectionOptions | None,
               **options: Any) -> ScanResult:
    """Static scores of ``dyn``'s relations on the pairs the dynamic scores used
    (single-token runs) or on the single-token pairs (multi-token runs), with the same k."""
    sets = {name: dyn.static_pairs[name] for name in dyn.relations}
    return scan(model, sets, k=dict(dyn.k), preset=preset, min_pairs=1, **options)


def correlation(
    model: HeadModel,
    relations: Any = "all",
    templates: Sequence[str] | None = None,
    k: int | dict[str, int] | None = None,
    preset: str | P.ProjectionOptions | None = None,
    *,
    max_pairs: int | None = None,
    min_pairs: int = MIN_PAIRS,
    fold_norms_dynamic: bool = True,
    dynamic: DynamicScores | None = None,
    batch_size: int = 32,
    seed: int = 0,
    progress: bool = False,
    **options: Any,
) -> CorrelationResult:
    """Correlate static relation scores with dynamic scores, per relation.

    Args:
        model: a HeadModel with its transformers model (``hm.load``).
        relations: ``"all"``, names, paths or pair lists (as for :func:`headmaps.scan`).
        templates: templates with one ``<X>`` (default: the library's neutral ones).
        k: top-k (default per relation, see :func:`headmaps.scoring.default_k`).
        preset: projection preset of the static scores.
        max_pairs: at most this many pairs per relation (a seeded subset; the static
            score uses the same pairs).
        min_pairs: a relation needs this many single-token pairs.
        fold_norms_dynamic: read head outputs through the model's norm gains (see
            :mod:`headmaps.experiments.dynamic`).
        dynamic: reuse dynamic scores computed before (they do not depend on the
            preset); ``relations``/``templates``/``k``/``max_pairs`` are then ignored.
        batch_size: prompts per forward pass.
        seed: seed of the pair subset.
        progress: show progress bars.
        **options: projection option overrides for the static scores.

    Returns:
        :class:`CorrelationResult`: ``table`` (one row per relation) plus the static
        and per-head dynamic scores.
    """
    if dynamic is None:
        dynamic = dynamic_scores(model, relations, templates, k, max_pairs=max_pairs,
                                 min_pairs=min_pairs, fold_norms=fold_norms_dynamic,
                                 batch_size=batch_size, seed=seed, progress=progress)
    return _result(model, dynamic, preset, "correlation", options)


def _result(model: HeadModel, dyn: DynamicScores, preset: Any, kind: str,
            options: dict[str, Any]) -> CorrelationResult:
    opts = P.resolve_options(preset, **options)
    static = static_for(model, dyn, opts)
    table = correlation_table(static, dyn)
    for name, why in dyn.skipped.items():
        logger.info("%s: %s skipped: %s", kind, name, why)
    return CorrelationResult(table=table, static=static, dynamic=dyn, model_id=model.model_id,
                             preset=P.preset_name(preset, opts), options=opts.to_dict(), kind=kind)
