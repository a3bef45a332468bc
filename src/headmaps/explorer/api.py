"""One call from a model, a head report or a scan to the HTML explorer: :func:`report`."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ..headreport import HeadReport, analyse
from ..scoring.results import ScanResult
from .build import write_report
from .schema import HeadExtras

log = logging.getLogger(__name__)


def report(subject: Any, path: str | os.PathLike = "report.html", *,
           extras: HeadExtras | None = None, title: str | None = None,
           show_paths: bool = False, salient: Any = None, attention: Any = None,
           head_types: Any = None, describe: Any = "pattern", score_descriptions: Any = False,
           **options: Any) -> Path:
    """Write the self-contained HTML explorer of a model's heads.

    The computing is :func:`headmaps.analyse`; this renders its
    :class:`~headmaps.headreport.HeadReport`, every part it holds, in one encoding step.

    Args:
        subject: what the page shows: a :class:`~headmaps.headreport.HeadReport`
            (rendered as it is), a :class:`~headmaps.diff.HeadDiff` or a saved diff folder
            (the diff view), a :class:`~headmaps.track.TrackResult` or its folder (the
            timeline view), a :class:`~headmaps.HeadModel` or anything :func:`headmaps.load` accepts
            (alias, hub id, folder, .gguf, an in-memory transformers / TransformerLens /
            nnsight model; analysed now), or a :class:`~headmaps.scoring.ScanResult`
            (then no model is loaded and the report shows the scores and ``extras``).
        path: the HTML file to write.
        extras: hand-written per-head data (schema
            :data:`~headmaps.explorer.schema.HeadExtras`); they win over computed parts
            head by head.
        title: page title.
        show_paths: keep absolute local paths (model file, cache) in the page; by default
            only file names, aliases and hub ids appear, so the page can be shared.
        salient: compute salient operations (and descriptions) of every head; default:
            when a model is at hand. A :class:`~headmaps.SalientAll` is used as it is.
        attention: the QK half; default: when a model is at hand.
        head_types: the head types; default: when a model is at hand.
        describe: ``"pattern"``, ``"llm"``, ``"none"`` or a describer (see
            :func:`headmaps.analyse`).
        score_descriptions: score the descriptions offline on held-out tokens (see
            :func:`headmaps.analyse`); the page shows each score beside its description.
        **options: the other arguments of :func:`headmaps.analyse` (``scan``,
            ``relations``, ``projection``, ``llm_options``, ``progress``...) and of
            :func:`headmaps.load` when ``subject`` is a name.

    Returns:
        The path written.

    A :class:`~headmaps.diff.HeadDiff` (or the folder one was saved to) opens the diff
    view instead (:func:`headmaps.explorer.diffview.write_diff_report`): both models' scores
    per head, the change as the colour, both sides in the head detail. A
    :class:`~headmaps.track.TrackResult` (or its folder) opens the timeline view
    (:func:`headmaps.explorer.timeline.write_timeline_report`).
    """
    from .diffview import is_diff, write_diff_report
    from .timeline import is_track, write_timeline_report

    if is_diff(subject):
        return write_diff_report(path, subject, title=title, show_paths=show_paths)
    if is_track(subject):
        return write_timeline_report(path, subject, title=title, show_paths=show_paths)
    if isinstance(subject, HeadReport):
        result = subject
    else:
        has_model = not isinstance(subject, ScanResult)
        if not has_model:
            options["scan"] = subject

        def want(flag: Any) -> Any:
            return has_model if flag is None else flag

        result = analyse(subject if has_model else None, salient=want(salient),
                         describe=describe if want(salient) is not False else "none",
                         attention=want(attention), head_types=want(head_types),
                         score_descriptions=score_descriptions, **options)
    return write_report(path, result, extras, title=title, show_paths=show_paths)
