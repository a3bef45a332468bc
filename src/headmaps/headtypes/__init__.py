"""Head types (copying, copy suppression, previous-token, induction, duplicate-token, successor) from parameters."""

from .compute import THRESHOLDS, combine, head_types
from .results import TYPES, HeadTypes

__all__ = ["THRESHOLDS", "TYPES", "HeadTypes", "combine", "head_types"]
