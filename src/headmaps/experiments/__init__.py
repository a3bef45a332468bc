"""The paper's validation experiments, run with forward hooks on the real model.

Correlation with inference, causal ablation and multi-token generalisation
(docs/results/smollm2-135m.md).

Projection: the static scores' ``projection=`` (a field of :class:`RunOptions`), resolved by
:func:`headmaps.projection_for`; the static side is a scan of the sampled pairs (no
vocabulary stream). :func:`calibrate` tries candidate projections and stores the winner,
which :func:`headmaps.projection_for` then picks when nothing explicit is given.
"""

from .calibrate import calibrate
from .causal import AblationOptions, causal
from .correlation import correlation, pearson
from .dynamic import DynamicScores, dynamic_scores, head_outputs
from .multitoken import multitoken
from .options import RunOptions
from .results import CausalResult, CorrelationResult

__all__ = ["AblationOptions", "CausalResult", "CorrelationResult", "DynamicScores",
           "calibrate", "causal",
           "correlation",
           "dynamic_scores", "head_outputs", "multitoken", "pearson", "RunOptions"]
