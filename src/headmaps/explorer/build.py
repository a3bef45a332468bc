"""Build the self-contained HTML explorer of a head report: one file, no network requests.

The page is a template (``assets/report.html``) with the stylesheet, the script and the
data inlined. The data is the compact payload of :mod:`headmaps.explorer.encode` (the one
encoding step from a :class:`~headmaps.headreport.HeadReport`) in a
``<script type="application/json" id="hm-data">`` element, and the per-head extras one
JSON text per line (head ``layer * n_heads + head``) in ``<script type="text/plain"
id="hm-ex">``; the script draws the heatmap, the table, the head panel and the summaries.
"""

from __future__ import annotations

import dataclasses
import html
import json
import logging
import os
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..headreport import HeadReport
from ..io import write_text
from ..projection.calibration import label as projection_label
from ..scoring.analysis import kv_group_size
from ..scoring.results import ScanResult
from .encode import encode
from .redact import shareable
from .schema import HeadExtras, normalise_extras

log = logging.getLogger(__name__)

_WIDE = ' class="wide"'
_PLACEHOLDER = re.compile(r"\{\{([A-Z]+)\}\}")


@cache
def asset(name: str) -> str:
    """The text of one file of ``headmaps/explorer/assets``."""
    return resources.files("headmaps.explorer").joinpath("assets", name).read_text(encoding="utf-8")


def fill_page(template: str, values: dict[str, str]) -> str:
    """The page ``assets/<template>`` with its ``{{NAME}}`` placeholders filled.

    ``{{HEAD}}`` is the ``<head>`` every page shares (``head.html``: the content security
    policy that keeps a page offline, and ``{{TITLE}}``); then one pass over the template
    fills the rest from ``values``, so inserted text is never searched for placeholders.
    A name ``values`` lacks stays as it is.
    """
    page = asset(template).replace("{{HEAD}}\n", asset("head.html"), 1)
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), page)


def json_for_script(obj: Any) -> str:
    """JSON safe to place inside a ``<script>`` element (no ``</script>``, no ``<!--``)."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={_fmt(x)}" for k, x in v.items()) or "-"
    if v is None or v == "":
        return "-"
    return str(v)


def stream_precision(report: HeadReport) -> str | None:
    """How the report's whole-vocabulary stream ran (dtype and why), or None (no stream).

    Read from the options of the parts that stream the vocabulary (salient operations,
    the QK half).
    """
    from ..projection.precision import describe

    for part in (report.salient, report.attention):
        opts = getattr(part, "options", None) or {}
        if opts.get("source") == "token_alone" and opts.get("stream_dtype"):
            return describe(opts["stream_dtype"], opts.get("stream_reason", ""))
    return None


def model_card(scan: ScanResult, generated: str, stream: str | None = None) -> str:
    """The model card as an HTML fragment (a definition list and relation details).

    ``stream``: the vocabulary stream's precision as :func:`stream_precision` prints it.
    """
    info = scan.model_info or {}
    group = kv_group_size(scan)
    kv = info.get("n_kv_heads", scan.n_heads)
    arch = info.get("architecture", "")
    if info.get("family") and info.get("family") != arch:
        arch = f"{arch} ({info['family']})" if arch else info["family"]
    d = f"{_fmt(info.get('d_model'))} / {_fmt(info.get('d_head'))}" if info.get("d_model") else None
    rows = [
        ("Model", scan.model_id or info.get("model")),
        ("Architecture", arch),
        ("Layers", scan.n_layers),
        ("Heads per layer", scan.n_heads),
        ("KV heads", f"{_fmt(kv)}" + (f" ({group} query heads each)" if group > 1 else "")),
        ("Total heads", scan.n_layers * scan.n_heads),
        ("d_model / d_head", d),
        ("Vocabulary", info.get("vocab_size")),
        ("Tied embeddings", info.get("tied_embeddings")),
        ("Origin", info.get("origin")),
        ("Preset", scan.preset),
        ("Projection", projection_label(scan.preset, scan.options,
                                        getattr(scan, "calibration", None))),
        ("Options", scan.options),
        *([("Vocabulary stream", stream)] if stream else []),
        ("τ (implements)", scan.tau),
        ("Relations", f"{len(scan.relations)} scored, {len(scan.skipped)} skipped"),
        ("Versions", scan.versions),
        ("Generated", generated),
    ]
    dl = "".join(f'<div{_WIDE if len(_fmt(v)) > 44 else ""}><dt>{html.escape(k)}</dt>'
                 f"<dd>{html.escape(_fmt(v))}</dd></div>"
                 for k, v in rows)
    rel = "".join(
        f"<tr><td>{html.escape(r)}</td><td>{scan.n_pairs.get(r, 0):,}</td>"
        f"<td>{scan.k.get(r, '-')}</td></tr>"
        for r in scan.relations)
    skipped = "".join(f"<li><b>{html.escape(r)}</b>: "
                      f"{html.escape(str(why))}</li>" for r, why in scan.skipped.items())
    parts = [f'<dl class="card-grid">{dl}</dl>',
             '<details><summary>Relations scored: pairs that survived tokenisation, top-k</summary>'
             '<table '
             f'class="plain"><thead><tr><th>relation</th><th>pairs</th><th>k</th></tr></thead><tbody>{rel}</tbody></table></details>']
    if skipped:
        parts.append("<details><summary>Relations skipped "
                     f"({len(scan.skipped)})</summary><ul>{skipped}</ul></details>")
    return "".join(parts)


def build_report(result: HeadReport | ScanResult, extras: HeadExtras | None = None, *,
                 title: str | None = None, show_paths: bool = False) -> str:
    """The full HTML page of a head report.

    Args:
        result: a :class:`~headmaps.headreport.HeadReport` (every part it holds is shown),
            or a bare :class:`~headmaps.scoring.ScanResult` (the scores alone).
        extras: hand-written per-head data in the :data:`~headmaps.explorer.schema.HeadExtras`
            schema (``{"L.H": {...}}``); their fields win over the report's head by head.
        title: page title (default ``headmaps · MODEL``).
        show_paths: keep absolute local paths (model file, cache folder) in the page;
            by default each is shown as its file name only, so the page can be shared.

    Returns:
        A self-contained HTML document (inline CSS, JS and data; no external resources).
    """
    report = result if isinstance(result, HeadReport) else HeadReport(result)
    scan = report.scan
    if not show_paths:
        scan = dataclasses.replace(scan, model_id=shareable(scan.model_id),
                                   model_info=shareable(scan.model_info),
                                   skipped=shareable(scan.skipped), options=shareable(scan.options))
        report = dataclasses.replace(report, scan=scan)
        title = shareable(title)
    title = title or f"headmaps · {scan.model_id or 'scan'}"
    payload, heads = encode(report, title, normalise_extras(extras, scan.n_layers, scan.n_heads))
    values = {"CSS": asset("report.css"), "JS": asset("report.js"), "TITLE": html.escape(title),
              "CARD": model_card(scan, payload["generated"], stream_precision(report)),
              "DATA": json_for_script(payload),
              "EXTRAS": "\n".join("" if h is None else json_for_script(h) for h in heads)}
    page = fill_page("report.html", values)
    log.info("report for %s: %d heads, %d relations, parts %s, %d heads with details, %.1f MB",
             scan.model_id, scan.n_layers * scan.n_heads, len(scan.relations), report.parts(),
             sum(h is not None for h in heads), len(page) / 1e6)
    return page


def write_report(path: str | os.PathLike, result: HeadReport | ScanResult,
                 extras: HeadExtras | None = None, *, title: str | None = None,
                 show_paths: bool = False) -> Path:
    """Build the report (see :func:`build_report`) and write it atomically to ``path``.

    Returns:
        The path written.
    """
    path = Path(path)
    write_text(path, build_report(result, extras, title=title, show_paths=show_paths))
    return path
