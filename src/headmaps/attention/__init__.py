"""The QK half of a head from its parameters: content preferences and positional profile."""

from .compute import attention_logits, attention_preferences, attention_summary, positional_profile
from .results import AttentionPreferences, AttentionSummary, PositionalProfile, describe_qk

__all__ = ["AttentionPreferences", "AttentionSummary", "PositionalProfile", "attention_logits",
           "attention_preferences", "attention_summary", "describe_qk", "positional_profile"]
