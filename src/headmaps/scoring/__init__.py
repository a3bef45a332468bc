"""Approach A: which heads implement (or suppress) which relation.

Projection: ``projection=`` of :func:`scan` and :func:`relation_scores`, resolved by
:func:`headmaps.projection_for`. Stream: only the relations' source tokens are streamed
(a :class:`~headmaps.projection.Sources` of them, made by the scan), not the vocabulary.
"""

from .engine import DEFAULT_CHUNK_BYTES, count_hits, default_k, relation_scores, scan
from .reference import reference_scores
from .results import DEFAULT_TAU, RelationScores, ScanResult

__all__ = ["DEFAULT_CHUNK_BYTES", "DEFAULT_TAU", "RelationScores", "ScanResult", "count_hits",
           "default_k", "reference_scores", "relation_scores", "scan"]
