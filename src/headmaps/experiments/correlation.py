"""Correlation of static relation scores with dynamic (inference-time) scores.

For each relation, ``x`` is the static score ``phi_R`` of every head, repeated once per
template, and ``y`` the head's dynamic score on that template; Pearson's r over all
heads and templates, without and with context, and the same for suppression.

Beside them, for the with-context scores (:data:`CONTEXT_COLUMNS`):

* ``corr_ctx_static``: the in-context score ``phi_ctx`` (:mod:`headmaps.scoring.context`)
  against the with-context dynamic score;
* ``corr_ctx_shuffled``: a control, ``phi_ctx`` with every head's attention weights taken
  from another head (``scan(context_shuffle=seed)``): what the values alone explain;
* ``corr_oracle``: not static: ``phi`` times the head's measured attention from the last
  position to the source, per template (what a perfect static model of attention to the
  source would reach with an OV-only ``phi``);
* ``ceiling_ctx``: r between the without- and the with-context dynamic scores, the ceiling
  of any estimate that reads only what a head writes from the source (OV);
* ``split_half_ctx``: the with-context scores of the even pairs against the odd pairs,
  Spearman-Brown corrected to the full set: the noise ceiling of the measurement itself;
* ``ceiling_per_head``: r between the with-context scores and each head's mean of them
  over the templates: the most any score with one number per head (``phi``, ``phi_ctx``)
  can reach, since the mean is the best such predictor; what it leaves is how a head's
  behaviour changes from one template to the next.

:func:`set_tables` gives the same columns per named template set in the run (headmaps'
own set and the paper's four), :func:`template_table` per template.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .. import projection as P
from .. import relations as rel_lib
from ..models import HeadModel
from ..scoring import ScanResult, scan
from .dynamic import DynamicScores, dynamic_scores, split_template
from .options import RunOptions
from .results import CORRELATION_COLUMNS, TEMPLATE_COLUMNS, CorrelationResult

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


def _spearman_brown(r: float) -> float:
    """Reliability of the full set from the correlation ``r`` of its two halves."""
    return 2 * r / (1 + r) if np.isfinite(r) and r > -1 else float("nan")


def correlation_table(static: ScanResult, dyn: DynamicScores,
                      templates: Sequence[int] | None = None,
                      shuffled: ScanResult | None = None) -> pd.DataFrame:
    """One row per relation: the columns of :data:`CORRELATION_COLUMNS`.

    Args:
        static: static scores with (at least) the relations of ``dyn``; ``phi_ctx`` gives
            ``corr_ctx_static`` (NaN without it).
        dyn: dynamic scores (``to_source`` and ``with_context_halves`` give the oracle and
            the split-half columns; NaN without them).
        templates: indices of the templates to correlate over (default all).
        shuffled: the control scan (``scan(context_shuffle=seed)``) for ``corr_ctx_shuffled``.
    """
    T = list(range(len(dyn.templates))) if templates is None else list(templates)
    nan = float("nan")
    rows = []
    for r, name in enumerate(dyn.relations):
        if name not in static.relations:
            continue
        i = static.relations.index(name)
        tile = lambda a: np.tile(a.ravel(), len(T))  # noqa: E731
        x, xs = tile(static.scores[i]), tile(static.suppression[i])
        w, wo = dyn.with_context[r][T].ravel(), dyn.without_context[r][T].ravel()
        c_wo, p_wo = pearson(x, wo)
        c_w, p_w = pearson(x, w)
        s_wo, _ = pearson(xs, dyn.supp_without_context[r][T].ravel())
        s_w, _ = pearson(xs, dyn.supp_with_context[r][T].ravel())
        ctx = pearson(tile(static.phi_ctx[i]), w)[0] if static.phi_ctx is not None else nan
        shuf = nan
        if shuffled is not None and shuffled.phi_ctx is not None:
            shuf = pearson(tile(shuffled.phi_ctx[shuffled.relations.index(name)]), w)[0]
        oracle = nan
        if dyn.to_source is not None:
            oracle = pearson((static.scores[i][None] * dyn.to_source[r][T]).ravel(), w)[0]
        split = nan
        if dyn.with_context_halves is not None:
            h = dyn.with_context_halves[:, r][:, T]
            split = _spearman_brown(pearson(h[0].ravel(), h[1].ravel())[0])
        per_head = np.tile(dyn.with_context[r][T].reshape(len(T), -1).mean(0), len(T))
        rows.append([name, dyn.n_pairs[name], c_wo, c_w, s_wo, s_w, p_wo, p_w, ctx, shuf,
                     oracle, pearson(wo, w)[0], split, pearson(per_head, w)[0]])
    return pd.DataFrame(rows, columns=CORRELATION_COLUMNS)


def template_sets(templates: Sequence[str]) -> dict[str, list[int]]:
    """The named template sets of a run: indices into ``templates``.

    ``headmaps`` and ``paper`` (:func:`headmaps.relations.templates`) when the run holds
    the whole set; ``source_last`` (templates with nothing after ``<X>``: the prompt ends
    with the source, which is the head's query there, as ``phi_ctx`` models it) and
    ``source_inside`` (a later token is the query) when the run has both kinds.
    """
    out = {}
    for which in ("headmaps", "paper"):
        own = rel_lib.templates(which)
        if all(t in templates for t in own):
            out[which] = [list(templates).index(t) for t in own]
    last = [i for i, t in enumerate(templates) if not split_template(t)[1].strip()]
    inside = [i for i in range(len(templates)) if i not in last]
    if last and inside:
        out["source_last"], out["source_inside"] = last, inside
    return out


def set_tables(static: ScanResult, dyn: DynamicScores,
               shuffled: ScanResult | None = None) -> pd.DataFrame:
    """:func:`correlation_table` per named template set of the run, long format.

    Columns: ``templates`` (the set's name), then :data:`CORRELATION_COLUMNS`; empty when
    the run holds no named set whole.
    """
    frames = [correlation_table(static, dyn, idx, shuffled).assign(templates=which)
              for which, idx in template_sets(dyn.templates).items()]
    if not frames:
        return pd.DataFrame(columns=["templates", *CORRELATION_COLUMNS])
    df = pd.concat(frames, ignore_index=True)
    return df[["templates", *CORRELATION_COLUMNS]]


def template_table(static: ScanResult, dyn: DynamicScores) -> pd.DataFrame:
    """One row per (relation, template): :data:`TEMPLATE_COLUMNS`.

    ``sets`` names the template sets holding the template; ``ends_with_source`` says
    whether the prompt's last token is the source (the template has nothing after
    ``<X>``), where the head's query is the source itself.
    """
    sets = template_sets(dyn.templates)
    rows = []
    for t, template in enumerate(dyn.templates):
        in_sets = "+".join(k for k, idx in sets.items()
                           if t in idx and k in rel_lib.TEMPLATE_SETS)
        ends = not split_template(template)[1].strip()
        table = correlation_table(static, dyn, [t])
        for row in table.itertuples(index=False):
            rows.append([row.relation, t, template, in_sets, ends, row.corr_without_context,
                         row.corr_with_context, row.corr_ctx_static, row.corr_oracle,
                         row.ceiling_ctx])
    return pd.DataFrame(rows, columns=TEMPLATE_COLUMNS)


def static_for(model: HeadModel, dyn: DynamicScores, projection: P.Projection,
               context_shuffle: int | None = None) -> ScanResult:
    """Static scores of ``dyn``'s relations, with the same k.

    On the pairs the dynamic scores used (single-token runs) or on the single-token pairs
    (multi-token runs). ``context_shuffle``: the control of ``phi_ctx`` (see :func:`scan`).
    """
    sets = {name: dyn.static_pairs[name] for name in dyn.relations}
    return scan(model, sets, k=dict(dyn.k), projection=projection, min_pairs=1,
                context_shuffle=context_shuffle)


def run_dynamic(model: HeadModel, relations: Any, templates: Sequence[str] | None, run: RunOptions,
                fold_norms: bool, **extra: Any) -> DynamicScores:
    """:func:`~headmaps.experiments.dynamic.dynamic_scores` with the run's options."""
    if isinstance(templates, str):
        templates = rel_lib.templates(templates)
    return dynamic_scores(model, relations, templates, run.k, max_pairs=run.max_pairs,
                          min_pairs=run.min_pairs, fold_norms=fold_norms, batch_size=run.batch_size,
                          seed=run.seed, progress=run.progress, **extra)


def correlation(
    model: HeadModel,
    relations: Any = "all",
    templates: str | Sequence[str] | None = None,
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
        templates: templates with one ``<X>``, or a named set: ``"headmaps"`` (the
            library's own, the default), ``"paper"`` (the paper's four, as published) or
            ``"both"`` (:func:`headmaps.relations.templates`).
        run: k, projection, max_pairs (the static score uses the same pairs), min_pairs,
            batch_size, seed, progress (:class:`RunOptions`).
        fold_norms_dynamic: read head outputs through the model's norm gains (see
            :mod:`headmaps.experiments.dynamic`).
        dynamic: reuse dynamic scores computed before (they do not depend on the
            projection); ``relations``/``templates``/``k``/``max_pairs`` are then ignored.
        **kwargs: fields of :class:`RunOptions` (``k=5``, ``projection="norms"``).

    Returns:
        :class:`CorrelationResult`: ``table`` (one row per relation) plus the static
        and per-head dynamic scores.
    """
    run = RunOptions.from_kwargs(run, kwargs)
    if dynamic is None:
        dynamic = run_dynamic(model, relations, templates, run, fold_norms_dynamic, controls=True)
    return correlation_result(model, dynamic, run, "correlation")


def correlation_result(model: HeadModel, dyn: DynamicScores, run: RunOptions,
                       kind: str) -> CorrelationResult:
    """Static scores for ``dyn`` (with the run's projection) and their correlation table.

    The projection is resolved as for :func:`headmaps.scan` (with none given, the model's
    stored calibration, if any); ``static.calibration`` says how it was chosen.
    """
    proj = P.projection_for(model, run.projection)
    static = static_for(model, dyn, proj)
    shuffled = static_for(model, dyn, proj, context_shuffle=run.seed) \
        if static.phi_ctx is not None else None
    table = correlation_table(static, dyn, shuffled=shuffled)
    for name, why in dyn.skipped.items():
        logger.info("%s: %s skipped: %s", kind, name, why)
    return CorrelationResult(per_relation=table, static=static, dynamic=dyn,
                             model_id=model.model_id, seed=run.seed,
                             preset=proj.name, options=proj.options.to_dict(), kind=kind,
                             per_set=set_tables(static, dyn, shuffled),
                             per_template=template_table(static, dyn))
