"""Show a scan: the self-contained HTML explorer and publication-ready static plots.

* :func:`report`: a :class:`~headmaps.analyse.HeadReport` (or a model, analysed by
  :func:`headmaps.analyse`, or a saved scan) -> HTML.
* :func:`build_report` / :func:`write_report`: a :class:`~headmaps.scoring.ScanResult`
  plus optional per-head extras (schema: :mod:`headmaps.report.schema`) -> one offline
  HTML file.
* :mod:`headmaps.report.plots`: heatmaps and per-layer distributions with matplotlib.
* :func:`synthetic_scan`: a realistic synthetic scan (+ extras) for tests and demos.
"""

from .api import report
from .build import build_report, write_report
from .extras import (
    extras_from_descriptions,
    extras_from_report,
    extras_from_salient,
    load_extras,
    merge_extras,
)
from .schema import COVERAGE, HeadExtra, HeadExtras, SalientEntry, coverage, normalise_extras
from .synthetic import synthetic_scan

_PLOTS = ("plot_heatmap", "plot_heatmaps", "plot_layer_distribution", "relation_heatmaps")


def __getattr__(name: str):
    """The plot functions, imported on first use (matplotlib loads only when plotting)."""
    if name in _PLOTS:
        from . import plots

        return getattr(plots, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["COVERAGE", "HeadExtra", "HeadExtras", "SalientEntry", "build_report",
           "coverage",
           "extras_from_descriptions", "extras_from_report", "extras_from_salient", "load_extras",
           "merge_extras", "normalise_extras",
           "plot_heatmap", "plot_heatmaps", "plot_layer_distribution", "relation_heatmaps",
           "report",
           "synthetic_scan", "write_report"]
