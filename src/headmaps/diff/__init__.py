"""Compare two checkpoints of one architecture head by head: :func:`diff` -> :class:`HeadDiff`.

Example::

    import headmaps as hm
    d = hm.diff(hm.load("base"), hm.load("finetuned"), relations=["country_to_capital"])
    d.ranking("country_to_capital")      # heads whose change lies beyond the noise floor
    d.gained_lost("country_to_capital")  # heads that crossed tau = 0.15, up or down
    d.summary_markdown(); d.figure(); d.save("diff/")

Projection: ``projection=`` is resolved on ``a`` by :func:`headmaps.projection_for` and
its options read both models. Stream: per model, one shared vocabulary stream
(:meth:`headmaps.projection.Projection.vocabulary`) for the salient operations and the QK
profiles, stepped together by :func:`headmaps.steps.run_steps`.
"""

from .compute import ShapeMismatchError, check_shapes, diff, vocabulary_map
from .noise import DEFAULT_ALPHA, DEFAULT_N_BOOT, paired_floor, resample_counts
from .results import NO_FLOOR, HeadDiff

__all__ = ["DEFAULT_ALPHA", "DEFAULT_N_BOOT", "HeadDiff", "NO_FLOOR", "ShapeMismatchError",
           "check_shapes", "diff", "paired_floor", "resample_counts", "vocabulary_map"]
