"""Approach B: the salient operations of attention heads, one head or all of them.

Projection: ``projection=`` of :func:`salient_all` / :func:`salient_operations`, resolved by
:func:`headmaps.projection_for` (under ``paper`` with the reference code's layer-0 choice,
:meth:`~headmaps.projection.Projection.for_salient`). Stream: the whole vocabulary's rows
come from :class:`headmaps.projection.Vocabulary`, shared with the QK half when
``salient_steps`` gets a stream (``sources=``), else made here.
"""

from ..projection import DEFAULT_CHUNK_ROWS
from .compute import salient_all, salient_operations
from .results import SalientAll, SalientOperations
from .tokens import is_word, token_strings, visible, word_mask

__all__ = ["DEFAULT_CHUNK_ROWS", "SalientAll", "SalientOperations", "is_word",

           "salient_all", "salient_operations", "token_strings", "visible", "word_mask"]
