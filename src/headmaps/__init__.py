"""headmaps: what every attention head does, from its parameters alone (MAPS).

Quick start::

    import headmaps as hm
    m = hm.load("smollm2-135m")
    res = hm.relation_scores(m, "country_to_capital")
    res.scores            # (n_layers, n_heads)
    scan = hm.scan(m)     # every built-in relation at once
"""

from . import describe, experiments, projection, relations
from ._version import __version__
from .analyse import HeadReport, analyse
from .attention import (
    AttentionPreferences,
    AttentionSummary,
    PositionalProfile,
    attention_logits,
    attention_preferences,
    attention_summary,
    positional_profile,
)
from .describe.score import DescriptionScore, DescriptionScores, score_descriptions
from .diff import HeadDiff, diff
from .errors import (
    CorruptFileError,
    HeadmapsError,
    ModelNotFoundError,
    UnsupportedArchitectureError,
)
from .experiments.calibrate import calibrate
from .headtypes import HeadTypes, head_types
from .models import DEFAULT_MODEL, HeadModel, load
from .projection import DEFAULT_PRESET, PRESETS, ProjectionOptions
from .projection.calibration import Calibration, load_calibration
from .report.api import report
from .salient import SalientAll, SalientOperations, salient_all, salient_operations
from .scoring import RelationScores, ScanResult, relation_scores, scan

__all__ = [
    "HeadReport", "analyse",
    "AttentionPreferences", "AttentionSummary",
    "Calibration", "calibrate", "load_calibration", "PositionalProfile", "attention_logits",
    "attention_preferences", "attention_summary", "positional_profile",
    "CorruptFileError", "DEFAULT_MODEL", "DEFAULT_PRESET", "HeadModel", "HeadmapsError",
    "ModelNotFoundError", "PRESETS", "ProjectionOptions", "RelationScores", "ScanResult",
    "SalientAll", "SalientOperations", "UnsupportedArchitectureError", "__version__", "describe",
    "experiments", "HeadDiff", "HeadTypes", "diff", "head_types",
    "load", "projection", "report", "relation_scores", "relations", "salient_all",
    "salient_operations", "scan",
    "DescriptionScore", "DescriptionScores", "score_descriptions",
]
