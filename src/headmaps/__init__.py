"""headmaps: what every attention head does, from its parameters alone (MAPS).

Quick start::

    import headmaps as hm
    m = hm.load("smollm2-135m")
    scan = hm.scan(m)             # every built-in relation x every head
    res = hm.analyse(m)           # + salient operations, descriptions, QK half, head types
    hm.report(res, "report.html") # the offline HTML explorer

How heads are read (the projection) is one value, resolved once by
``proj = hm.projection_for(m)`` (explicit options > the model's stored calibration >
``through``) and passed as ``projection=proj`` to every entry point, which also accepts a
preset name and resolves it the same way; :mod:`headmaps.projection` says every way it is
chosen and where the vocabulary stream is computed.

Every result follows one protocol (``save``/``load``, ``to_frame``, ``_repr_html_``,
``figure``, ``summary_markdown``; see :mod:`headmaps._protocol`). The pipeline leads
``__all__``; every other name is importable from its module (``headmaps.salient``,
``headmaps.attention``, ``headmaps.headtypes``, ``headmaps.experiments``, ...) and, for
the names below, from ``headmaps`` itself. The computing of :func:`analyse` lives in
:mod:`headmaps.headreport`, the rendering of :func:`report` in :mod:`headmaps.explorer`.
"""

from . import describe, experiments, projection, relations
from ._version import __version__
from .attention import (
    AttentionPreferences,
    AttentionSummary,
    PositionalProfile,
    attention_logits,
    attention_preferences,
    attention_summary,
    positional_profile,
)
from .composition import CompositionResult, composition
from .describe import DescriptionScore, DescriptionScores, score_descriptions
from .diff import HeadDiff, diff
from .errors import (
    CorruptFileError,
    HeadmapsError,
    ModelNotFoundError,
    UnsupportedArchitectureError,
)
from .experiments.calibrate import calibrate
from .explorer.api import report
from .headreport import HeadReport, analyse
from .headtypes import HeadTypes, head_types
from .models import DEFAULT_MODEL, HeadModel, load
from .projection import DEFAULT_PRESET, PRESETS, Projection, ProjectionOptions, projection_for
from .projection.calibration import Calibration, load_calibration
from .salient import SalientAll, SalientOperations, salient_all, salient_operations
from .scoring import RelationScores, ScanResult, relation_scores, scan
from .track import TrackResult, track

__all__ = [
    # the pipeline: a model -> its scan -> everything about every head -> the HTML explorer
    "load", "scan", "analyse", "report",
    # what they return, and the errors they raise
    "HeadModel", "ScanResult", "HeadReport", "HeadmapsError", "__version__",
    # one relation, one head
    "relation_scores", "salient_operations", "relations",
]
