"""Show a head report: the self-contained HTML explorer and publication-ready static plots.

* :func:`report` (``hm.report``): a :class:`~headmaps.headreport.HeadReport` (or a model,
  analysed by :func:`headmaps.analyse`, or a saved scan) -> HTML.
* :func:`build_report` / :func:`write_report`: a head report (or a bare scan) plus optional
  hand-written per-head extras (schema: :mod:`headmaps.explorer.schema`) -> one offline
  HTML file, encoded in one step (:mod:`headmaps.explorer.encode`).
* :func:`write_diff_report` / :func:`build_diff_report`: a
  :class:`~headmaps.diff.HeadDiff` (or a saved diff folder) -> the diff view, one offline
  HTML file (:mod:`headmaps.explorer.diffview`; ``hm.report`` opens it for a diff).
* :mod:`headmaps.explorer.plots`: scan figures written to files (the figures themselves are
  :meth:`ScanResult.figure <headmaps.scoring.ScanResult.figure>`).
* :func:`synthetic_scan`: a realistic synthetic scan (+ extras) for tests and demos.
"""

from .api import report
from .build import build_report, write_report
from .diffview import build_diff_report, write_diff_report
from .schema import (
    COVERAGE,
    HeadExtra,
    HeadExtras,
    SalientEntry,
    coverage,
    load_extras,
    normalise_extras,
)
from .synthetic import synthetic_scan

_PLOTS = ("plot_heatmap", "plot_heatmaps", "plot_layer_distribution", "relation_heatmaps")


def __getattr__(name: str):
    """The plot functions, imported on first use (matplotlib loads only when plotting)."""
    if name in _PLOTS:
        from . import plots

        return getattr(plots, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["COVERAGE", "HeadExtra", "HeadExtras", "SalientEntry", "build_diff_report",
           "build_report", "coverage", "load_extras", "normalise_extras", "plot_heatmap",
           "plot_heatmaps", "plot_layer_distribution", "relation_heatmaps", "report",
           "synthetic_scan", "write_diff_report", "write_report"]
