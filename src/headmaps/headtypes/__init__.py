"""Head types from parameters.

Copying, copy suppression, previous-token, induction, duplicate-token and successor heads.

Projection: ``projection=`` of :func:`head_types`, resolved by
:func:`headmaps.projection_for`. Stream: the token sample's rows are a subset of a shared
vocabulary stream when given (``sources=``, as ``hm.analyse`` does), else a
:class:`~headmaps.projection.Sources` of the sample made here; the copying and successor
scores come from a scan when :func:`reusable_scan` allows it.
"""

from .compute import THRESHOLDS, combine, head_types, reusable_scan
from .results import TYPES, HeadTypes

__all__ = ["THRESHOLDS", "TYPES", "HeadTypes", "combine", "head_types", "reusable_scan"]
