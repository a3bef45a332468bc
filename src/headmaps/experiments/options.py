"""The choices the validation experiments share, defined once.

:func:`~headmaps.experiments.correlation`, :func:`~headmaps.experiments.multitoken` and
:func:`~headmaps.experiments.causal` take these as keywords (``k=5, max_pairs=20``) or
as one :class:`RunOptions` (``run=RunOptions(k=5)``); keywords that name no field
are projection overrides of the static scores (``fold_norms=True``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
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
        preset: projection preset of the static scores (default
            :data:`~headmaps.projection.DEFAULT_PRESET`).
        max_pairs: at most this many pairs (prompts) per relation, a seeded subset;
            None for all.
        min_pairs: a relation needs this many single-token pairs.
        batch_size: prompts per forward pass.
        seed: seed of pair subsets and random draws.
        progress: show progress bars.
        projection: overrides of :class:`~headmaps.projection.ProjectionOptions` fields
            for the static scores.
        calibration: with no preset or projection option, use the model's stored
            calibration (None or True: yes, False: no; see
            :mod:`headmaps.projection.calibration`).
    """

    k: int | dict[str, int] | None = None
    preset: str | P.ProjectionOptions | None = None
    max_pairs: int | None = None
    min_pairs: int = MIN_PAIRS
    batch_size: int = 32
    seed: int = 0
    progress: bool = False
    projection: dict[str, Any] = field(default_factory=dict)
    calibration: bool | None = None

    @classmethod
    def from_kwargs(cls, run: RunOptions | None, kwargs: dict[str, Any],
                    **defaults: Any) -> RunOptions:
        """``run`` (or the defaults) with keyword overrides.

        The keywords that name no field must be projection options.

        Raises:
            HeadmapsError: a keyword that is neither a field here nor a projection option.
        """
        out = take(cls, run, kwargs, **defaults)
        valid = {f.name for f in fields(P.ProjectionOptions)}
        unknown = sorted(set(kwargs) - valid)
        if unknown:
            raise HeadmapsError(
                f"unknown option(s) {', '.join(unknown)}; experiment options: "
                f"{', '.join(f.name for f in fields(cls) if f.name != 'projection')}; "
                f"projection options: {', '.join(sorted(valid))}")
        return replace(out, projection={**out.projection, **kwargs})
