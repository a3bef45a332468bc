"""Composition between heads: which earlier head's output a later head reads.

Q-, K- and V-composition of every pair of heads, from parameters: the raw-matrix
scores of Elhage et al. (2021) and the headmaps version measured through the
projection's token representations (:mod:`.compute`, where both are derived);
:func:`composition` computes every pair, :class:`CompositionResult` keeps them
(:mod:`.results`). The check against behaviour (path patching of induction heads) is
:mod:`headmaps.experiments.pathpatch`.

Projection: ``projection=`` of :func:`composition`, resolved by
:func:`headmaps.projection_for`. Stream: the token sample's rows, a
:class:`~headmaps.projection.Sources` made here (not the vocabulary).
"""

from .compute import KINDS, METHODS
from .results import CompositionResult
from .run import composition

__all__ = ["KINDS", "METHODS", "CompositionResult", "composition"]
