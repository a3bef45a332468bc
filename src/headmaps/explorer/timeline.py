"""The explorer's timeline view: a :class:`~headmaps.track.TrackResult` as one HTML page.

:func:`write_timeline_report` (also reached through :func:`headmaps.report` with a
``TrackResult`` or a saved track folder, and ``headmaps track ... --html FILE``) writes a
self-contained page (``assets/timeline.html``, ``timeline.js``, the explorer's
stylesheet): pick a relation or a head type; every head is a cell coloured by the step at
which it first passes its rule (earlier is darker); a head's score over the steps is drawn
when its cell is picked, with the threshold and the crossing marked; a table lists the
heads by the step they first cross.

The crossings are the library's (:meth:`TrackResult.first_crossing`), computed here, so
the page never disagrees with it. Scores travel as ``uint16`` per series: ``lo + q / MAXQ
* (hi - lo)``, with ``NAN_Q`` for a failed checkpoint.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import html
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import HeadmapsError
from ..io import check_page_path, write_text
from .build import asset, fill_page, json_for_script
from .encode import b64
from .redact import shareable

#: Largest quantised score; ``NAN_Q`` marks a checkpoint without a score (it failed).
MAXQ, NAN_Q = 65534, 65535


def is_track(subject: Any) -> bool:
    """Whether ``subject`` is a :class:`~headmaps.track.TrackResult` or a folder holding one."""
    from ..track import TrackResult
    from ..track.results import TABLE_FILE

    if isinstance(subject, TrackResult):
        return True
    return isinstance(subject, (str, os.PathLike)) and (Path(subject) / TABLE_FILE).is_file()


def _quantised(values: np.ndarray) -> tuple[str, float, float]:
    """``(b64 uint16, lo, hi)`` of ``values`` ``(C, L, H)``; NaN -> :data:`NAN_Q`."""
    finite = values[np.isfinite(values)]
    lo = float(finite.min()) if finite.size else 0.0
    hi = float(finite.max()) if finite.size else 1.0
    span = hi - lo if hi > lo else 1.0
    q = np.rint((np.nan_to_num(values, nan=lo) - lo) / span * MAXQ).clip(0, MAXQ)
    q = np.where(np.isfinite(values), q, NAN_Q)
    return b64(q.astype("<u2")), lo, hi


def timeline_payload(track: Any, title: str) -> dict[str, Any]:
    """Everything the page draws: steps, sizes, and per series its scores and crossings."""
    series = []
    for kind, names in (("relation", track.relations), ("type", track.types)):
        for name in names:
            sel = {"relation": name} if kind == "relation" else {"type": name}
            vals, _, _ = track.series(sel.get("relation"), type=sel.get("type"))
            first = np.full((track.n_layers, track.n_heads), -1, dtype=np.int32)
            for row in track.first_crossing(**sel).itertuples(index=False):
                first[row.layer, row.h] = row.checkpoint
            data, lo, hi = _quantised(np.asarray(vals, dtype=np.float64))
            series.append({"name": name, "kind": kind, "scores": data, "lo": lo, "hi": hi,
                           "first": first.ravel().tolist(),
                           "threshold": float(track.tau) if kind == "relation" else None})
    return {"format": 1, "title": title, "nL": track.n_layers, "nH": track.n_heads,
            "steps": [int(s) for s in track.steps], "checkpoints": list(track.checkpoints),
            "failed": sorted(int(i) for i in track.failed), "MAXQ": MAXQ, "NANQ": NAN_Q,
            "series": series,
            "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def _card(track: Any, generated: str) -> str:
    rows = [("Checkpoints", f"{track.n_checkpoints} (steps {int(track.steps[0])} to "
                            f"{int(track.steps[-1])}), {len(track.failed)} failed"),
            ("Heads", f"{track.n_layers} layers x {track.n_heads} heads"),
            ("Projection", track.preset or "?"), ("τ (relations)", track.tau),
            ("Tracked", f"{len(track.relations)} relations, {len(track.types)} head types"),
            ("Generated", generated)]
    dl = "".join(f"<div><dt>{html.escape(k)}</dt><dd>{html.escape(str(x))}</dd></div>"
                 for k, x in rows)
    parts = [f'<dl class="card-grid">{dl}</dl>']
    if track.failed:
        li = "".join(f"<li><b>{html.escape(track.checkpoints[i])}</b>: {html.escape(str(w))}"
                     "</li>" for i, w in sorted(track.failed.items()))
        parts.append(f"<details><summary>Failed checkpoints ({len(track.failed)})</summary>"
                     f"<ul>{li}</ul></details>")
    return "".join(parts)


def build_timeline_report(track: Any, *, title: str | None = None,
                          show_paths: bool = False) -> str:
    """The timeline view of ``track`` as one self-contained HTML page.

    Args:
        track: a :class:`~headmaps.track.TrackResult`, or the folder it was saved to.
        title: page title (default ``headmaps track · first -> last checkpoint``).
        show_paths: keep absolute local paths in the page (by default file names only).
    """
    from ..track import TrackResult

    if not isinstance(track, TrackResult):
        if not is_track(track):
            raise HeadmapsError(f"{track!r} is not a checkpoint series (hm.track's result, or a "
                                "folder written by TrackResult.save / headmaps track --out)")
        track = TrackResult.load(track)
    if not show_paths:
        track = dataclasses.replace(track, checkpoints=[shareable(c) for c in track.checkpoints],
                                    failed=shareable(track.failed))
        title = shareable(title)
    title = title or (f"headmaps track · {track.checkpoints[0]} \u2192 "
                      f"{track.checkpoints[-1]}")
    payload = timeline_payload(track, title)
    values = {"CSS": asset("report.css"), "JS": asset("timeline.js"),
              "TITLE": html.escape(title), "CARD": _card(track, payload["generated"]),
              "DATA": json_for_script(payload)}
    return fill_page("timeline.html", values)


def write_timeline_report(path: str | os.PathLike, track: Any, *, title: str | None = None,
                          show_paths: bool = False) -> Path:
    """Build the timeline view (:func:`build_timeline_report`) and write it atomically.

    Returns:
        The path written.
    """
    path = check_page_path(path, "the timeline view")
    write_text(path, build_timeline_report(track, title=title, show_paths=show_paths))
    return path
