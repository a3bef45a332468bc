"""Drive a layer-by-layer computation to its end, with a progress bar over layers.

Consumers that can advance one layer at a time (``salient_steps``, ``summary_steps``) are
generators that yield each finished layer and return their result; :func:`headmaps.analyse`
steps several of them together over one stream, and their one-shot functions run them
alone through :func:`run_steps`.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, TypeVar

from tqdm.auto import tqdm

R = TypeVar("R")


def run_steps(steps: Generator[Any, None, R], total: int, desc: str, progress: bool) -> R:
    """Exhaust ``steps`` (one yield per layer) and return its result, showing a bar of ``total``."""
    bar = tqdm(desc=desc, unit="layer", disable=not progress, total=total)
    try:
        while True:
            next(steps)
            bar.update()
    except StopIteration as done:
        return done.value
    finally:
        bar.close()
