"""What a series decides once and every checkpoint's job checks: the plan and the fingerprint.

:class:`SeriesPlan` carries the choices made from the first checkpoint (relations and
their pairs, k, the projection, what else to compute); :func:`fingerprint` and
:func:`check_fingerprint` make sure every later checkpoint belongs to the same series.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

from .. import projection as P
from ..errors import HeadmapsError
from ..io import shareable
from ..models import HeadModel
from ..scoring.results import DEFAULT_TAU


class SeriesMismatchError(HeadmapsError, ValueError):
    """A checkpoint whose architecture or tokenizer differs from the series' first one."""


@dataclass(frozen=True)
class SeriesPlan:
    """What every checkpoint's job is told: the choices made once for the series.

    Attributes:
        relations: relation -> its single-token pairs on the first checkpoint (empty: none).
        k: relation -> top-k.
        skipped: relation -> why it is not tracked.
        projection: the projection resolved on the first checkpoint (prefix resolved);
            every checkpoint is read through its options.
        fingerprint: architecture, sizes and a hash of the tokenizer's vocabulary; every
            checkpoint must match it.
        tau: the relation threshold.
        types: also compute the head types (:func:`headmaps.head_types`).
        composition: also call :func:`headmaps.composition`.
        seed: seed of the head types' token sample.
        load: keyword arguments of :func:`headmaps.load` for every checkpoint.
    """

    relations: dict[str, list] = field(default_factory=dict)
    k: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    projection: P.Projection | None = None
    fingerprint: dict[str, Any] = field(default_factory=dict)
    tau: float = DEFAULT_TAU
    types: bool = True
    composition: bool = False
    seed: int = 0
    load: dict[str, Any] = field(default_factory=dict)


def fingerprint(model: HeadModel) -> dict[str, Any]:
    """What two checkpoints of one series share: architecture, sizes, tokenizer vocabulary.

    Returns:
        ``{"architecture", "n_layers", "n_heads", "n_kv_heads", "d_model", "d_head",
        "vocab_size", "tokenizer"}``; ``tokenizer`` is a SHA-256 prefix of the sorted
        vocabulary (None without a tokenizer).
    """
    s = model.spec
    tok = None
    if model.tokenizer is not None:
        vocab = sorted(model.tokenizer.get_vocab().items())
        tok = hashlib.sha256(json.dumps(vocab).encode()).hexdigest()[:16]
    return {"architecture": s.architecture, "n_layers": s.n_layers, "n_heads": s.n_heads,
            "n_kv_heads": s.n_kv_heads, "d_model": s.d_model, "d_head": s.d_head,
            "vocab_size": s.vocab_size, "tokenizer": tok}


def check_fingerprint(expected: dict[str, Any], got: dict[str, Any], label: str) -> None:
    """Raise :class:`SeriesMismatchError` (one line) unless ``got`` matches ``expected``."""
    bad = [f"{k} {expected.get(k)} vs {got.get(k)}" for k in expected
           if expected.get(k) != got.get(k)]
    if bad:
        raise SeriesMismatchError(f"checkpoint {label} does not belong to the series (its first "
                                  f"checkpoint differs: {', '.join(bad)})")


def label_of(checkpoint: Any) -> str:
    """A checkpoint's name in results: its path's last parts, or its model id."""
    if isinstance(checkpoint, (str, os.PathLike)):
        return str(shareable(str(checkpoint)))
    return str(getattr(checkpoint, "model_id", None) or type(checkpoint).__name__)
