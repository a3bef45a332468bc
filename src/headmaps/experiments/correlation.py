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
from ..projection.calibration import resolve as resolve_projection
from ..scoring import ScanResult, scan
from .dynamic import DynamicScores, dynamic_scores
from .options import RunOptions
from .results import CORRELATION_COLUMNS, CorrelationResult

logger = logging.getLogger(__name__)


def pearson(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Pearson's r and its two-sided p-value (t-test with ``n - 2`` degrees of freedom).

    Args:
        x: a 1-d array.
        y: a 1-d array of the same length.

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


def static_for(model: HeadModel, dyn: DynamicScores, opts: P.ProjectionOptions) -> ScanResult:
    """Static scores of ``dyn``'s relations, with the same k.

    On the pairs the dynamic scores used (single-token runs) or on the single-token pairs
    (multi-token runs).
    """
    sets = {name: dyn.static_pairs[name] for name in dyn.relations}
    return scan(model, sets, k=dict(dyn.k), preset=opts, min_pairs=1)


def run_dynamic(model: HeadModel, relations: Any, templates: Sequence[str] | None, run: RunOptions,
                fold_norms: bool, **extra: Any) -> DynamicScores:
    """:func:`~headmaps.experiments.dynamic.dynamic_scores` with the run's options."""
    return dynamic_scores(model, relations, templates, run.k, max_pairs=run.max_pairs,
                          min_pairs=run.min_pairs, fold_norms=fold_norms, batch_size=run.batch_size,
                          seed=run.seed, progress=run.progress, **extra)


def correlation(
    model: HeadModel,
    relations: Any = "all",
    templates: Sequence[str] | None = None,
    *,
    run: RunOptions | None = None,
    fold_norms_dynamic: bool = True,
    dynamic: DynamicScores | None = None,
    **kwargs: Any,
) -> CorrelationResult:
    """Correlate static relation scores with dynamic scores, per relation.

    Args:
        model: a HeadModel with its transformers model (``hm.load``).
        relations: ``"all"``, names, paths or pair lists (as for :func:`headmaps.scan`).
        templates: templates with one ``<X>`` (default: the library's neutral ones).
        run: k, preset, max_pairs (the static score uses the same pairs), min_pairs,
            batch_size, seed, progress (:class:`RunOptions`).
        fold_norms_dynamic: read head outputs through the model's norm gains (see
            :mod:`headmaps.experiments.dynamic`).
        dynamic: reuse dynamic scores computed before (they do not depend on the
            preset); ``relations``/``templates``/``k``/``max_pairs`` are then ignored.
        **kwargs: fields of :class:`RunOptions` (``k=5``), else projection option
            overrides for the static scores.

    Returns:
        :class:`CorrelationResult`: ``table`` (one row per relation) plus the static
        and per-head dynamic scores.
    """
    run = RunOptions.from_kwargs(run, kwargs)
    if dynamic is None:
        dynamic = run_dynamic(model, relations, templates, run, fold_norms_dynamic)
    return correlation_result(model, dynamic, run, "correlation")


def correlation_result(model: HeadModel, dyn: DynamicScores, run: RunOptions,
                       kind: str) -> CorrelationResult:
    """Static scores for ``dyn`` (with the run's projection) and their correlation table.

    With no preset or projection option in ``run``, the model's stored calibration (if
    any) gives the projection, as for :func:`headmaps.scan`; ``static.calibration`` says.
    """
    opts, preset, cal_info = resolve_projection(model, run.preset, run.projection,
                                                 run.calibration)
    static = static_for(model, dyn, opts)
    static.calibration = cal_info
    table = correlation_table(static, dyn)
    for name, why in dyn.skipped.items():
        logger.info("%s: %s skipped: %s", kind, name, why)
    return CorrelationResult(per_relation=table, static=static, dynamic=dyn,
                             model_id=model.model_id, seed=run.seed,
                             preset=preset, options=opts.to_dict(), kind=kind)
