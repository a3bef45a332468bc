"""Approach B: the salient operations of attention heads, one head or all of them."""

from ..projection import DEFAULT_CHUNK_ROWS
from .compute import salient_all, salient_operations
from .results import SalientAll, SalientOperations
from .tokens import is_word, token_strings, visible, word_mask

__all__ = ["DEFAULT_CHUNK_ROWS", "SalientAll", "SalientOperations", "is_word",

           "salient_all", "salient_operations", "token_strings", "visible", "word_mask"]
