"""One call from a model (or a saved scan) to the HTML explorer: :func:`report`."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ..errors import HeadmapsError
from ..scoring.results import ScanResult
from .build import write_report
from .extras import collect_extras

log = logging.getLogger(__name__)


def report(source: Any, path: str | os.PathLike = "report.html", *,
           scan: ScanResult | str | os.PathLike | None = None,
           describe: str = "pattern", salient: bool | None = None,
           extras: dict[str, Any] | None = None,
           title: str | None = None, progress: bool = False, show_paths: bool = False,
           **load_options: Any) -> Path:
    """Write the self-contained HTML explorer of a model's heads.

    Args:
        source: a :class:`~headmaps.HeadModel`, anything :func:`headmaps.load` accepts
            (alias, hub id, folder, .gguf), or a :class:`~headmaps.scoring.ScanResult`
            (then no model is loaded and the report shows the scores and ``extras``).
        path: the HTML file to write.
        scan: a scan result or a folder/file it was saved to; default: scan every
            relation of the library now.
        describe: ``"pattern"``, ``"llm"`` or ``"none"`` (see :func:`collect_extras`).
        salient: compute salient operations (and descriptions) of every head; default:
            when a model is at hand. False keeps the report to the scores (and ``extras``).
        extras: per-head extras to add (schema :data:`~headmaps.report.schema.HeadExtras`);
            they override computed ones head by head.
        title: page title.
        progress: show progress bars.
        show_paths: keep absolute local paths (model file, cache) in the page; by default
            only file names, aliases and hub ids appear, so the page can be shared.
        **load_options: passed to :func:`headmaps.load` when ``source`` is a name.

    Returns:
        The path written.
    """
    if isinstance(source, ScanResult):
        model, scan = None, source
    else:
        from ..models import HeadModel, load

        model = source if isinstance(source, HeadModel) else load(source, **load_options)
    if isinstance(scan, (str, os.PathLike)):
        scan = ScanResult.load(scan)
    if scan is None:
        from ..scoring import scan as run_scan

        scan = run_scan(model, "all", progress=progress)
    if salient is None:
        salient = model is not None
    if salient and model is None:
        raise HeadmapsError("salient operations need the model: pass the model as source and the "
                            "scan as scan=..., or salient=False")
    computed = collect_extras(model, scan, describe, progress=progress) if salient else {}
    for key, value in (extras or {}).items():
        computed.setdefault(key, {}).update(value)
    return write_report(path, scan, computed or None, title=title, show_paths=show_paths)
