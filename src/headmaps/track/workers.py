"""Where the checkpoints of a series are scored: this process, local processes, or Dask.

One job = one checkpoint (:func:`score_checkpoint`): load it, check that it belongs to the
series, score it with the series' plan, return plain arrays. Three ways to run the jobs
(:func:`run_series`):

* ``workers=1`` (or in-memory models): one after the other in this process;
* local processes: a ``ProcessPoolExecutor`` with the ``spawn`` context, ``workers`` of them,
  each with ``cpu_count // workers`` torch threads;
* a Dask ``client``: each checkpoint is a Dask task (``client.submit``), on whatever
  cluster the client talks to (a ``LocalCluster``, SLURM through dask-jobqueue, ...).

A failed job is never dropped silently. Its reason is logged and recorded, and it is rerun
up to ``retries`` times. A worker process that dies (killed, out of memory) breaks the
whole local pool; every checkpoint in flight then reruns *alone*, in its own fresh process,
so the one that kills its worker is the one that is blamed (such a shared-pool loss does
not count against the checkpoint's retries). Dask reschedules a task whose worker died by
itself (``distributed.scheduler.allowed-failures``) before reporting ``KilledWorker``.
After the retries a checkpoint is *failed*: NaN scores and its reason in
``TrackResult.failed``.

Test hook: a checkpoint folder holding the file :data:`CRASH_ONCE_FILE` makes the worker
process scoring it delete the file and exit at once (``os._exit(1)``), as a killed worker
would; it acts only in worker processes, never in the caller's.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import secrets
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import HeadmapsError
from .plan import SeriesMismatchError, SeriesPlan, check_fingerprint, fingerprint, label_of

logger = logging.getLogger(__name__)

#: Test hook: a file of this name in a checkpoint folder kills the worker scoring it, once.
CRASH_ONCE_FILE = ".headmaps-track-crash-once"
#: The reason recorded when a local worker process died with the checkpoint in flight.
DIED = "the worker process died while this checkpoint was in flight (killed, or out of memory)"


@dataclass
class SeriesRun:
    """What running the jobs gave.

    Attributes:
        outputs: checkpoint index -> :func:`score_checkpoint`'s dict, for those that succeeded.
        failed: checkpoint index -> the reason of its last failed attempt (no output).
        attempts: checkpoint index -> the reasons of every failed attempt (retried or not).
        execution: how the jobs ran (``mode``, ``workers``, ``scheduler``).
    """

    outputs: dict[int, dict[str, Any]] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    attempts: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))
    execution: dict[str, Any] = field(default_factory=dict)


def score_checkpoint(checkpoint: Any, plan: SeriesPlan, index: int, *, in_worker: bool = False,
                     threads: int | None = None) -> dict[str, Any]:
    """One job: load checkpoint ``index`` and score it as ``plan`` says.

    Args:
        checkpoint: what :func:`headmaps.load` reads (or a loaded model).
        plan: the series' choices (:func:`~headmaps.track.compute.plan_series`).
        index: the checkpoint's position (for messages).
        in_worker: running in a worker process (enables the :data:`CRASH_ONCE_FILE` hook).
        threads: torch threads to use (None: leave as is).

    Returns:
        ``{"index", "seconds", "scores", "suppression"`` ``(n_relations, n_layers,
        n_heads)``, ``"types"`` (names), ``"type_scores"``, ``"type_labels"``
        ``(n_types, n_layers, n_heads)``, ``"composition"`` (a frame or None)``}``.

    Raises:
        SeriesMismatchError: the checkpoint does not match the plan's fingerprint.
    """
    import torch

    from ..models import load

    if in_worker and isinstance(checkpoint, (str, os.PathLike)):
        marker = Path(checkpoint) / CRASH_ONCE_FILE
        if marker.is_file():
            marker.unlink()
            os._exit(1)
    if threads is not None:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    model = load(checkpoint, **plan.load)
    check_fingerprint(plan.fingerprint, fingerprint(model), f"{index} ({label_of(checkpoint)})")
    out: dict[str, Any] = {"index": index}
    scan_result = None
    if plan.relations:
        from ..scoring.engine import scan

        scan_result = scan(model, plan.relations, k=plan.k, projection=plan.projection.options,
                           tau=plan.tau,
                           min_pairs=1, in_context=False)
        if scan_result.relations != list(plan.relations):
            lost = sorted(set(plan.relations) - set(scan_result.relations))
            raise HeadmapsError(f"checkpoint {index} could not score {', '.join(lost)}")
        out["scores"], out["suppression"] = scan_result.scores, scan_result.suppression
    if plan.types:
        from ..headtypes import head_types, reusable_scan

        ht = head_types(model, projection=plan.projection.options,
                        scan=reusable_scan(scan_result), seed=plan.seed)
        out["types"] = list(ht.scores)
        out["type_scores"] = np.stack([ht.scores[t] for t in out["types"]]).astype(np.float32)
        out["type_labels"] = np.stack([ht.labels[t] for t in out["types"]]).astype(bool)
    if plan.composition:
        from ..composition import composition

        out["composition"] = composition(model, projection=plan.projection.options,
                                         seed=plan.seed).to_frame()
    del model, scan_result
    gc.collect()
    out["seconds"] = time.perf_counter() - t0
    return out


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def default_workers(n: int) -> int:
    """Local worker processes when none are given: ``min(n, cpu count, 4)``."""
    return max(1, min(n, os.cpu_count() or 1, 4))


def run_series(checkpoints: Sequence[Any], plan: SeriesPlan, *, workers: int | None = None,
               client: Any = None, retries: int = 1, progress: bool = False) -> SeriesRun:
    """Score every checkpoint (see the module docstring for the three ways).

    Args:
        checkpoints: what :func:`headmaps.load` reads, one per checkpoint (or loaded models).
        plan: the series' choices.
        workers: local worker processes (1: this process); ignored with ``client``.
        client: a ``dask.distributed.Client``.
        retries: reruns of a failed checkpoint.
        progress: a progress bar over checkpoints.

    Returns:
        :class:`SeriesRun`.

    Raises:
        SeriesMismatchError: a checkpoint does not belong to the series (not retried).
    """
    from tqdm.auto import tqdm

    n = len(checkpoints)
    bar = tqdm(total=n, desc="track", unit="checkpoint", disable=not progress)
    try:
        if client is not None:
            return _run_dask(checkpoints, plan, client, retries, bar)
        paths = all(isinstance(s, (str, os.PathLike)) for s in checkpoints)
        w = default_workers(n) if workers is None else workers
        if w == 1 or not paths:
            if w > 1:
                logger.info("in-memory models are scored in this process, one after the other")
            return _run_inline(checkpoints, plan, retries, bar)
        return _run_processes(checkpoints, plan, w, retries, bar)
    finally:
        bar.close()


def _failed_attempt(run: SeriesRun, i: int, checkpoint: Any, reason: str, retries: int,
                    counted: int) -> bool:
    """Record a failed attempt; True when the checkpoint may run again."""
    run.attempts[i].append(reason)
    again = counted <= retries
    logger.warning("track: checkpoint %d (%s) failed: %s; %s", i, label_of(checkpoint), reason,
                   "retrying" if again else "giving up")
    if not again:
        run.failed[i] = reason
    return again


def _run_inline(checkpoints: Sequence[Any], plan: SeriesPlan, retries: int, bar: Any) -> SeriesRun:
    run = SeriesRun(execution={"mode": "sequential", "workers": 1})
    for i, checkpoint in enumerate(checkpoints):
        for attempt in range(1, retries + 2):
            try:
                run.outputs[i] = score_checkpoint(checkpoint, plan, i)
                break
            except SeriesMismatchError:
                raise
            except Exception as err:  # noqa: BLE001 - recorded, retried, reported
                if not _failed_attempt(run, i, checkpoint, _reason(err), retries, attempt):
                    break
        bar.update(1)
    return run


def _pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def _run_processes(checkpoints: Sequence[Any], plan: SeriesPlan, workers: int, retries: int,
                   bar: Any) -> SeriesRun:
    """Rounds of pools: shared ones, then alone for a checkpoint lost twice to a broken pool."""
    run = SeriesRun(execution={"mode": "processes", "workers": workers})
    threads = max(1, (os.cpu_count() or 1) // workers)
    counted: dict[int, int] = defaultdict(int)  # attempts that count against the retries
    lost: dict[int, int] = defaultdict(int)  # shared pools that broke with it in flight
    pending = list(range(len(checkpoints)))
    while pending:
        shared = [i for i in pending if lost[i] < 2]
        rounds = [(shared, workers)] if shared else []
        rounds += [([i], 1) for i in pending if lost[i] >= 2]
        pending = []
        for batch, w in rounds:
            pending += _round(checkpoints, plan, batch, w, threads, run, counted, lost, retries,
                              bar)
    return run


def _round(checkpoints: Sequence[Any], plan: SeriesPlan, batch: list[int], workers: int,
           threads: int, run: SeriesRun, counted: dict[int, int], lost: dict[int, int],
           retries: int, bar: Any) -> list[int]:
    """Score ``batch`` in one fresh pool; returns the checkpoints to run again."""
    again: list[int] = []
    alone = workers == 1 and len(batch) == 1
    with _pool(min(workers, len(batch))) as pool:
        futs: dict[Future, int] = {pool.submit(score_checkpoint, checkpoints[i], plan, i,
                                               in_worker=True, threads=threads): i
                                   for i in batch}
        for fut in as_completed(futs):
            i = futs[fut]
            try:
                run.outputs[i] = fut.result()
                bar.update(1)
                continue
            except SeriesMismatchError:
                raise
            except BrokenProcessPool:
                if not alone:  # any job in flight may have broken it: not counted
                    lost[i] += 1
                    run.attempts[i].append(DIED + " (shared pool; run again)")
                    logger.warning("track: checkpoint %d (%s): %s; running it again%s", i,
                                   label_of(checkpoints[i]), DIED,
                                   " alone" if lost[i] >= 2 else "")
                    again.append(i)
                    continue
                reason = DIED
            except Exception as err:  # noqa: BLE001 - recorded, retried, reported
                reason = _reason(err)
            counted[i] += 1
            if _failed_attempt(run, i, checkpoints[i], reason, retries, counted[i]):
                again.append(i)
            else:
                bar.update(1)
    return again


def _run_dask(checkpoints: Sequence[Any], plan: SeriesPlan, client: Any, retries: int,
              bar: Any) -> SeriesRun:
    try:
        from distributed import as_completed as dask_completed
    except ImportError:  # pragma: no cover - the client came from distributed
        raise HeadmapsError("a Dask client needs distributed: pip install "
                            "'headmaps[dask]'") from None
    token = secrets.token_hex(4)
    run = SeriesRun(execution={"mode": "dask", "scheduler": str(client.scheduler.address),
                               "workers": len(client.scheduler_info().get("workers", {}))})
    counted: dict[int, int] = defaultdict(int)

    def submit(i: int) -> Any:
        counted[i] += 1
        return client.submit(score_checkpoint, checkpoints[i], plan, i, in_worker=True,
                             key=f"headmaps-track-{token}-{i}-{counted[i]}", pure=False)

    futs = {submit(i): i for i in range(len(checkpoints))}
    done = dask_completed(list(futs))
    for fut in done:
        i = futs.pop(fut)
        if fut.status == "finished":
            run.outputs[i] = fut.result()
            bar.update(1)
        else:
            err = fut.exception()
            if isinstance(err, SeriesMismatchError):
                raise err
            reason = _reason(err) if err is not None else f"task {fut.status}"
            if type(err).__name__ == "KilledWorker":
                reason = f"the Dask worker died running it ({reason})"
            if _failed_attempt(run, i, checkpoints[i], reason, retries, counted[i]):
                new = submit(i)
                futs[new] = i
                done.add(new)
            else:
                bar.update(1)
        fut.release()
    return run
