"""The choices the validation experiments share, defined once.

:func:`~headmaps.experiments.correlation`, :func:`~headmaps.experiments.multitoken` and
:func:`~headmaps.experiments.causal` take these as keywords (``k=5, max_pairs=20``) or
as one :class:`RunOptions` (``run=RunOptions(k=5)``); the static scores' projection is
one of them (``projection=hm.projection_for(m, "norms", fold_norms=False)``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

from .. import projection as P
from ..errors import HeadmapsError
from ..relations import MIN_PAIRS

T = TypeVar("T")


def take(cls: type[T], base: T | None, kwargs: dict[str, Any], **defaults: Any) -> T:
    """``base`` (or ``cls(**defaults)``) with the fields of ``cls`` found in ``kwargs``.

    The keywords used are removed from ``kwargs``, so several option classes can share
    one ``**kwargs``.
    """
    own = {f.name: kwargs.pop(f.name) for f in fields(cls) if f.name in kwargs}  # type: ignore[arg-type]
    return replace(base if base is not None else cls(**defaults), **own)  # type: ignore[type-var]


@dataclass(frozen=True)
class RunOptions:
    """What every validation experiment is run with.

    Attributes:
        k: top-k, one for all relations or per relation (default: per relation, see
            :func:`headmaps.scoring.default_k`).
        projection: the projection of the static scores: a
            :class:`~headmaps.projection.Projection`, a preset name, options or None (the
            model's stored calibration, else :data:`~headmaps.projection.DEFAULT_PRESET`),
            resolved by :func:`~headmaps.projection.projection_for`.
        max_pairs: at most this many pairs (prompts) per relation, a seeded subset;
            None for all.
        min_pairs: a relation needs this many single-token pairs.
        batch_size: prompts per forward pass.
        seed: seed of pair subsets and random draws.
        progress: show progress bars.
    """

    k: int | dict[str, int] | None = None
    projection: P.ProjectionLike = None
    max_pairs: int | None = None
    min_pairs: int = MIN_PAIRS
    batch_size: int = 32
    seed: int = 0
    progress: bool = False

    @classmethod
    def from_kwargs(cls, run: RunOptions | None, kwargs: dict[str, Any],
                    **defaults: Any) -> RunOptions:
        """``run`` (or the defaults) with keyword overrides.

        Raises:
            HeadmapsError: a keyword that is no field here.
        """
        out = take(cls, run, kwargs, **defaults)
        if kwargs:
            raise HeadmapsError(
                f"unknown option(s) {', '.join(sorted(kwargs))}; experiment options: "
                f"{', '.join(f.name for f in fields(cls))} (projection options go to "
                "hm.projection_for)")
        return out
