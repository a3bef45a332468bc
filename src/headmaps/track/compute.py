"""`hm.track([ckpt_0, ..., ckpt_n])`: every head's scores over a series of checkpoints.

What is decided once for the whole series, from the first checkpoint (:func:`plan_series`):
the projection (:func:`headmaps.projection_for` on it: the ``through`` prefix token
resolved from its tokenizer, its stored calibration), the relations and their
single-token pairs, and each relation's ``k``. Every
checkpoint is then scored in its own job (:mod:`.workers`) with exactly those choices, so
two checkpoints' scores differ only because their weights do. A job loads its checkpoint
itself (lazily where :func:`headmaps.load` can), so a series never holds more than one
checkpoint per worker. A checkpoint of another architecture or tokenizer stops the series
with a one-line :class:`SeriesMismatchError`.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import projection as P
from .. import relations as rel_lib
from ..errors import HeadmapsError
from ..io import shareable, versions
from ..models import HeadModel
from ..scoring.results import DEFAULT_TAU
from .plan import SeriesPlan, fingerprint, label_of
from .results import TrackResult

logger = logging.getLogger(__name__)


def plan_series(first: HeadModel, relations: Any = "all", *, k: Any = None,
                projection: P.ProjectionLike = None, tau: float = DEFAULT_TAU,
                min_pairs: int = rel_lib.MIN_PAIRS, types: bool = True,
                composition: bool = False, seed: int = 0,
                load: dict[str, Any] | None = None) -> SeriesPlan:
    """Decide the projection, relations, pairs and k once, from the series' first checkpoint.

    Args:
        first: the first checkpoint (its tokenizer decides the pairs and the prefix).
        relations: as :func:`headmaps.scan`; None for none.
        k: top-k (as :func:`headmaps.scan`).
        projection: as :func:`track`'s.
        tau: the relation threshold.
        min_pairs: single-token pairs a relation needs.
        types: each job computes the head types.
        composition: each job calls :func:`headmaps.composition`.
        seed: seed of the head types' token sample.
        load: keyword arguments of :func:`headmaps.load` for every checkpoint.

    Returns:
        :class:`SeriesPlan`.

    Raises:
        HeadmapsError: relations were asked for and none can be scored.
    """
    if relations is None and not types and not composition:
        raise HeadmapsError("nothing to track: give relations, types=True or composition=True")
    proj = P.projection_for(first, projection)
    specs: dict[str, list] = {}
    ks: dict[str, int] = {}
    skipped: dict[str, str] = {}
    if relations is not None:
        first.require_tokenizer()
        chosen, skipped = rel_lib.select(first, relations, k, min_pairs)
        if not chosen:
            why = "; ".join(f"{r}: {w}" for r, w in skipped.items()) or "no relations given"
            raise HeadmapsError(f"no relation can be scored on {first.model_id} ({why})")
        specs = {c.name: [tuple(p) for p in c.prepared.kept] for c in chosen}
        ks = {c.name: int(c.k) for c in chosen}
    return SeriesPlan(relations=specs, k=ks, skipped=skipped, projection=proj,
                      fingerprint=fingerprint(first), tau=tau, types=types,
                      composition=composition, seed=seed, load=dict(load or {}))


def checkpoint_steps(sources: Sequence[Any], steps: Sequence[int] | None) -> np.ndarray:
    """The training step of each checkpoint: ``steps``, else the number ending each name.

    Names such as ``checkpoint-1200`` or ``step1200`` give 1200; when any name has no such
    number (or two share one) the steps are the positions ``0, 1, ...``.

    Raises:
        HeadmapsError: ``steps`` has the wrong length or is not strictly increasing.
    """
    n = len(sources)
    if steps is None:
        found = [re.search(r"(\d+)$", Path(s).name) if isinstance(s, (str, os.PathLike))
                 else None for s in sources]
        vals = [int(m.group(1)) for m in found if m]
        ok = len(vals) == n and len(set(vals)) == n and vals == sorted(vals)
        return np.asarray(vals if ok else range(n), dtype=np.int64)
    out = np.asarray(list(steps), dtype=np.int64)
    if out.shape != (n,):
        raise HeadmapsError(f"steps has {out.size} values for {n} checkpoints")
    if n > 1 and not (np.diff(out) > 0).all():
        raise HeadmapsError(f"steps must be strictly increasing, got {out.tolist()}")
    return out


def track(
    checkpoints: Sequence[Any],
    *,
    steps: Sequence[int] | None = None,
    relations: Any = "all",
    types: bool = True,
    composition: bool = False,
    client: Any = None,
    workers: int | None = None,
    retries: int = 1,
    progress: bool = False,
    k: int | dict[str, int] | None = None,
    projection: P.ProjectionLike = None,
    tau: float = DEFAULT_TAU,
    min_pairs: int = rel_lib.MIN_PAIRS,
    seed: int = 0,
    device: str | None = None,
    dtype: str | None = None,
    lazy: bool | None = None,
    allow_pickle: bool = False,
) -> TrackResult:
    """Score every checkpoint of a series and gather every head's trajectory.

    Args:
        checkpoints: the series, first to last: folders, hub ids, aliases (anything
            :func:`headmaps.load` reads, loaded by each job) or in-memory models (scored in
            this process, one after the other).
        steps: the training step of each checkpoint (strictly increasing); default the
            number ending each name (``checkpoint-1200``), else ``0, 1, ...``.
        relations: relations to track (as :func:`headmaps.scan`); None for none.
        types: also track the head types (:func:`headmaps.head_types`: previous-token,
            induction, ... scores and labels).
        composition: also call :func:`headmaps.composition` on each checkpoint (its
            ``to_frame()`` is kept, see :attr:`TrackResult.composition`).
        client: a ``dask.distributed.Client``: each checkpoint is a Dask task.
        workers: without a client, local worker processes (spawned); 1 scores in this
            process; default ``min(len(checkpoints), cpu count, 4)``.
        retries: a failed checkpoint (an exception, a killed worker) is rerun this many
            times; then it is recorded in :attr:`TrackResult.failed` with NaN scores.
        progress: show a progress bar over checkpoints.
        k: top-k for all relations, a dict per relation, or None for the defaults (chosen
            on the first checkpoint).
        projection: the series' projection, resolved on the first checkpoint (prefix
            token and stored calibration included) by
            :func:`~headmaps.projection.projection_for`: a preset name, options, None, a
            :class:`~headmaps.projection.Projection` made for the first checkpoint, or a
            function of the first checkpoint that returns one
            (``lambda m: hm.projection_for(m, calibration=False)``).
        tau: the relation threshold of :meth:`TrackResult.first_crossing`.
        min_pairs: single-token pairs a relation needs (on the first checkpoint).
        seed: seed of the head types' token sample.
        device: where each job puts its checkpoint (as :func:`headmaps.load`).
        dtype: dtype of each checkpoint's tensors (as :func:`headmaps.load`).
        lazy: read safetensors checkpoints tensor by tensor (as :func:`headmaps.load`).
        allow_pickle: let the lazy loader read ``.bin`` checkpoints.

    Returns:
        :class:`TrackResult`: arrays ``(n_checkpoints, n_relations, n_layers, n_heads)``.

    Raises:
        SeriesMismatchError: a checkpoint's architecture or tokenizer differs from the first.
        HeadmapsError: bad arguments, or no relation can be scored.
    """
    from ..models import load
    from .workers import run_series

    if len(checkpoints) == 0:
        raise HeadmapsError("track needs at least one checkpoint")
    if retries < 0:
        raise HeadmapsError(f"retries must be >= 0, got {retries}")
    if workers is not None and workers < 1:
        raise HeadmapsError(f"workers must be >= 1, got {workers}")
    t0 = time.perf_counter()
    step_arr = checkpoint_steps(checkpoints, steps)
    load_kw = {"device": device, "dtype": dtype, "lazy": lazy, "allow_pickle": allow_pickle}
    first = load(checkpoints[0], **load_kw)
    plan = plan_series(first, relations, k=k, projection=projection, tau=tau,
                       min_pairs=min_pairs, types=types, composition=composition, seed=seed,
                       load=load_kw)
    info = first.info()
    del first
    run = run_series(list(checkpoints), plan, workers=workers, client=client, retries=retries,
                     progress=progress)
    return assemble(checkpoints, step_arr, plan, run, info, time.perf_counter() - t0)


def assemble(checkpoints: Sequence[Any], steps: np.ndarray, plan: SeriesPlan, run: Any,
             model_info: dict[str, Any], seconds: float) -> TrackResult:
    """Stack the jobs' outputs into a :class:`TrackResult` (NaN for failed checkpoints)."""
    import pandas as pd

    C = len(checkpoints)
    L, H = int(plan.fingerprint["n_layers"]), int(plan.fingerprint["n_heads"])
    names = list(plan.relations)
    kinds = next((list(o["types"]) for o in run.outputs.values() if o.get("types")), [])
    if plan.types and not kinds:
        from ..headtypes import TYPES

        kinds = list(TYPES)
    arr = {"scores": np.full((C, len(names), L, H), np.nan, np.float32),
           "suppression": np.full((C, len(names), L, H), np.nan, np.float32),
           "type_scores": np.full((C, len(kinds), L, H), np.nan, np.float32),
           "type_labels": np.zeros((C, len(kinds), L, H), bool)}
    frames = []
    for i, out in run.outputs.items():
        for key in arr:
            if key in out:
                arr[key][i] = out[key]
        if out.get("composition") is not None:
            frames.append(out["composition"].assign(checkpoint=i, step=int(steps[i])))
    comp = pd.concat(frames, ignore_index=True) if frames else None
    return TrackResult(
        checkpoints=[label_of(c) for c in checkpoints], steps=steps, n_layers=L, n_heads=H,
        relations=names, types=kinds, **arr, failed=dict(run.failed),
        attempts={i: list(v) for i, v in run.attempts.items() if v}, tau=plan.tau,
        n_pairs={r: len(p) for r, p in plan.relations.items()}, k=dict(plan.k),
        skipped=dict(plan.skipped), **plan.projection.header(), fingerprint=dict(plan.fingerprint),
        seed=plan.seed, execution=dict(run.execution),
        seconds={"total": seconds, **{f"checkpoint_{i}": float(o.get("seconds", 0.0))
                                      for i, o in sorted(run.outputs.items())}},
        model_info=shareable(model_info), versions=versions(), composition=comp)
