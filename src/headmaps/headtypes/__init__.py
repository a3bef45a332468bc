"""Head types from parameters.

Copying, copy suppression, previous-token, induction, duplicate-token and successor heads.
"""

from .compute import THRESHOLDS, combine, head_types, reusable_scan
from .results import TYPES, HeadTypes

__all__ = ["THRESHOLDS", "TYPES", "HeadTypes", "combine", "head_types", "reusable_scan"]
