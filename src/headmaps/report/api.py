"""One call from a model, a saved head report or a scan to the HTML explorer: :func:`report`."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ..analyse import HeadReport, analyse
from ..scoring.results import ScanResult
from .build import write_report
from .extras import extras_from_report, merge_extras

log = logging.getLogger(__name__)


def report(source: Any, path: str | os.PathLike = "report.html", *,
           scan: ScanResult | str | os.PathLike | None = None,
           describe: Any = "pattern", salient: bool | None = None,
           attention: bool | None = None, head_types: bool | None = None,
           score_descriptions: bool = False,
           extras: dict[str, Any] | None = None,
           title: str | None = None, progress: bool = False, show_paths: bool = False,
           **load_options: Any) -> Path:
    """Write the self-contained HTML explorer of a model's heads.

    The computing is :func:`headmaps.analyse`; this renders its
    :class:`~headmaps.analyse.HeadReport`.

    Args:
        source: a :class:`~headmaps.analyse.HeadReport` (rendered as it is), a
            :class:`~headmaps.diff.HeadDiff` or a saved diff folder (the diff view), a
            :class:`~headmaps.HeadModel` or anything :func:`headmaps.load` accepts
            (alias, hub id, folder, .gguf; analysed now), or a
            :class:`~headmaps.scoring.ScanResult` (then no model is loaded and the report
            shows the scores and ``extras``).
        path: the HTML file to write.
        scan: a scan result or a folder/file it was saved to; default: scan every
            relation of the library now.
        describe: ``"pattern"``, ``"llm"``, ``"none"`` or a describer (see
            :func:`headmaps.analyse`).
        salient: compute salient operations (and descriptions) of every head; default:
            when a model is at hand.
        attention: compute the QK half of every head; default: when a model is at hand.
        head_types: compute the head types; default: when a model is at hand.
        score_descriptions: score the descriptions offline on held-out tokens (see
            :func:`headmaps.analyse`); the page shows each score beside its description.
        extras: per-head extras to add (schema :data:`~headmaps.report.schema.HeadExtras`);
            they override computed ones head by head.
        title: page title.
        progress: show progress bars.
        show_paths: keep absolute local paths (model file, cache) in the page; by default
            only file names, aliases and hub ids appear, so the page can be shared.
        **load_options: passed to :func:`headmaps.load` when ``source`` is a name.

    Returns:
        The path written.

    A :class:`~headmaps.diff.HeadDiff` (or the folder one was saved to) opens the diff
    view instead (:func:`headmaps.report.diffview.write_diff_report`): both models' scores
    per head, the change as the colour, both sides in the head detail.
    """
    from .diffview import is_diff, write_diff_report

    if is_diff(source):
        return write_diff_report(path, source, title=title, show_paths=show_paths)
    if isinstance(source, HeadReport):
        result = source
    else:
        has_model = not isinstance(source, ScanResult)
        if not has_model:
            scan = source

        def want(flag: bool | None) -> bool:
            return has_model if flag is None else flag

        result = analyse(source if has_model else None, scan=scan, salient=want(salient),
                         describe=describe if want(salient) else "none",
                         attention=want(attention), head_types=want(head_types),
                         score_descriptions=score_descriptions, progress=progress,
                         **load_options)
    computed = merge_extras(extras_from_report(result), extras)
    return write_report(path, result.scan, computed or None, title=title, show_paths=show_paths)
