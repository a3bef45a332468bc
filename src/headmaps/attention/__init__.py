"""The QK half of a head from its parameters: content preferences and positional profile.

Projection: ``projection=`` of every function here, resolved by
:func:`headmaps.projection_for`. Stream: the whole vocabulary's rows come from
:class:`headmaps.projection.Vocabulary`, shared with the salient operations when
``summary_steps`` gets a stream (``sources=``), else made here.
"""

from .compute import attention_logits, attention_preferences, attention_summary, positional_profile
from .results import AttentionPreferences, AttentionSummary, PositionalProfile, describe_qk

__all__ = ["AttentionPreferences", "AttentionSummary", "PositionalProfile", "attention_logits",
           "attention_preferences", "attention_summary", "describe_qk", "positional_profile"]
