"""The one step driver: layer-by-layer computations run alone or several in lockstep.

Consumers that can advance one layer at a time (``salient_steps``, ``summary_steps``) are
generators that yield each finished layer and return their result. :func:`run_steps`
drives them: a one-shot function (``hm.salient_all``) runs its own generator alone, and
:func:`headmaps.analyse` and :func:`headmaps.diff` run several in turn, one layer of each at
a time, so that all of them read one shared vocabulary stream
(:meth:`headmaps.projection.Projection.vocabulary`) as it advances, block by block, once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator
from typing import Any

from tqdm.auto import tqdm

logger = logging.getLogger(__name__)


def run_steps(steps: dict[str, Generator[Any, None, Any]], total: int, progress: bool,
              seconds: dict[str, float] | None = None) -> dict[str, Any]:
    """Exhaust every generator of ``steps``, one yield (layer) of each in turn.

    Args:
        steps: part name -> its generator (one yield per layer, returns its result).
        total: layers of the longest part (the progress bar's length).
        progress: show a progress bar over layers, named after the parts.
        seconds: if given, each part's wall time (its own steps) is added under its name.

    Returns:
        Part name -> the result its generator returned.
    """
    seconds = {} if seconds is None else seconds
    out: dict[str, Any] = {}
    active = dict(steps)
    bar = tqdm(desc=" + ".join(steps) or "parts", unit="layer", total=total,
               disable=not progress or not steps)
    try:
        while active:
            stepped = False
            for name, gen in list(active.items()):
                t0 = time.perf_counter()
                try:
                    next(gen)
                    stepped = True
                except StopIteration as stop:
                    out[name] = stop.value
                    del active[name]
                seconds[name] = round(seconds.get(name, 0.0) + time.perf_counter() - t0, 3)
            bar.update(int(stepped))
    finally:
        bar.close()
    for name in out:
        logger.info("%s: %.1f s", name, seconds[name])
    return out
