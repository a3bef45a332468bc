"""The explorer's diff view: a :class:`~headmaps.diff.HeadDiff` as one self-contained HTML page.

:func:`write_diff_report` (also reached through :func:`headmaps.report` with a
``HeadDiff`` or a saved diff folder, and ``headmaps diff A B --html FILE``) writes a page of
its own (``assets/diff.html``, ``diff.js``, the explorer's stylesheet): per head both
models' scores side by side and the change as the colour, a relation picker (relations,
suppression, head types and the per-head weight figures), heads beyond the noise floor
marked apart from the unchanged ones, and a head detail with both sides' salient
operations and positional profiles when the diff holds them.

The data travels as in the explorer (:mod:`headmaps.explorer.encode`): scores as ``uint16``
quantised with the threshold nudged so that ``q >= tauQ`` holds exactly when the score
``>= tau``, and the "beyond the floor" flags computed here (``HeadDiff.changed``), so the
page never disagrees with the library about which heads changed, gained or lost.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import html
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import HeadmapsError
from ..io import check_page_path, write_text
from .build import asset, fill_page, json_for_script
from .encode import Interner, Q, b64, quantise
from .redact import shareable

#: Per-head figures offered in the picker (a single value per head, no noise floor).
HEAD_FIGURES = {
    "wvo_change": "relative change of W_VO (Frobenius)",
    "wqk_change": "relative change of W_QK (Frobenius)",
    "ov_read_angle": "OV read subspace angle (degrees)",
    "ov_write_angle": "OV write subspace angle (degrees)",
    "salient_source_overlap": "salient source overlap (Jaccard)",
    "salient_mapping_overlap": "salient mapping overlap (Jaccard)",
    "profile_tv": "positional profile change (total variation)",
}


def is_diff(subject: Any) -> bool:
    """Whether ``subject`` is a :class:`~headmaps.diff.HeadDiff` or where one was saved."""
    from ..diff import HeadDiff
    from ..diff.results import RELATIONS_FILE

    if isinstance(subject, HeadDiff):
        return True
    if not isinstance(subject, (str, os.PathLike)):
        return False
    p = Path(subject)
    if p.is_dir():
        return (p / RELATIONS_FILE).is_file() and (p / "diff.json").is_file()
    return p.name in (RELATIONS_FILE, "diff.json") and p.is_file()


def _bits(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype=np.uint8).tobytes()).decode("ascii")


def _fig(a: np.ndarray) -> list[float | None]:
    """A per-head figure as a JSON list (4 significant digits, None where not finite)."""
    return [float(f"{x:.4g}") if math.isfinite(x) else None
            for x in np.asarray(a, dtype=np.float64).ravel()]


def _salient_entry(sal: Any, layer: int, head: int, intern: Interner) -> list[Any] | None:
    """One head's salient operations: ``[[token, saliency, [target, score, ...]], ...]``."""
    if sal is None or layer not in sal.layers:
        return None
    ops = sal[layer, head]
    return [[intern(s), float(f"{v:.3g}"),
             [x for t, sc in zip(ts, scs) for x in (intern(t), float(f"{sc:.3g}"))]]
            for s, v, ts, scs in zip(ops.tokens, ops.saliency, ops.targets, ops.scores)]


def sides(d: Any) -> tuple[list[str], list[Any]]:
    """Both sides' salient operations and profiles: (token table, one entry per head).

    Each entry is None or ``{"sa": salient of a, "sb": of b, "pa": profile weights of a,
    "pb": of b}`` (each key present when the diff holds it); the page parses a head's
    entry when it shows that head.
    """
    intern = Interner()
    out: list[Any] = []
    for layer in range(d.n_layers):
        for h in range(d.n_heads):
            e: dict[str, Any] = {}
            for key, sal in (("sa", d.salient_a), ("sb", d.salient_b)):
                v = _salient_entry(sal, layer, h, intern)
                if v is not None:
                    e[key] = v
            for key, prof in (("pa", d.profile_a), ("pb", d.profile_b)):
                if prof is not None:
                    e[key] = [float(f"{w:.3g}") for w in np.asarray(prof[layer, h], np.float64)]
            out.append(e or None)
    return intern.table, out


def diff_payload(d: Any, title: str) -> dict[str, Any]:
    """The JSON payload of the diff page (everything but the per-head sides)."""
    R, N = len(d.relations), d.n_layers * d.n_heads
    qa, tau_q = quantise(d.scores_a, d.tau)
    qb, _ = quantise(d.scores_b, d.tau)
    pa, _ = quantise(d.supp_a, d.tau)
    pb, _ = quantise(d.supp_b, d.tau)
    floors = [np.clip(np.rint(np.nan_to_num(f, nan=0.0) * Q), 0, Q).astype("<u2")
              for f in (d.floor, d.supp_floor)]
    figures = {k: _fig(d.heads[k]) for k in HEAD_FIGURES if k in d.heads}
    pairs = {}
    for t in d.types:
        if f"type_{t}_a" in d.heads:
            pairs[t] = {"a": _fig(d.heads[f"type_{t}_a"]), "b": _fig(d.heads[f"type_{t}_b"]),
                        "la": _fig(d.heads[f"is_{t}_a"]), "lb": _fig(d.heads[f"is_{t}_b"])}
    extra = {}
    for k in ("prev_mass", "preferred_distance"):
        if f"{k}_a" in d.heads:
            extra[k] = {"a": _fig(d.heads[f"{k}_a"]), "b": _fig(d.heads[f"{k}_b"])}
    gl = [d.gained_lost(r) for r in d.relations]
    sgl = [d.gained_lost(r, suppression=True) for r in d.relations]
    return {
        "format": 1, "kind": "diff", "title": title,
        "model_a": d.model_a, "model_b": d.model_b, "matching": d.matching,
        "relations": list(d.relations),
        "n_pairs": [int(d.n_pairs.get(r, 0)) for r in d.relations],
        "k": [int(d.k.get(r, 0)) for r in d.relations],
        "nL": d.n_layers, "nH": d.n_heads, "N": N, "R": R,
        "tau": float(d.tau), "Q": Q, "tauQ": tau_q, "alpha": float(d.alpha),
        "n_boot": int(d.n_boot),
        "scoresA": b64(qa), "scoresB": b64(qb), "suppA": b64(pa), "suppB": b64(pb),
        "floor": b64(floors[0]), "suppFloor": b64(floors[1]),
        "changed": _bits(d.changed.reshape(R, N)),
        "suppChanged": _bits(d.supp_changed.reshape(R, N)),
        "figures": figures, "figureNames": {k: HEAD_FIGURES[k] for k in figures},
        "types": pairs, "qk": extra,
        "summary": {"changed": [int(d.changed[i].sum()) for i in range(R)],
                    "suppChanged": [int(d.supp_changed[i].sum()) for i in range(R)],
                    "gained": [g["gained"] for g in gl], "lost": [g["lost"] for g in gl],
                    "suppGained": [g["gained"] for g in sgl], "suppLost": [g["lost"] for g in sgl],
                    "types": d.types_gained_lost() if d.types else {}},
        "noFloor": dict(d.no_floor),
        "hasSalient": d.salient_a is not None and d.salient_b is not None,
        "hasProfiles": d.profile_a is not None and d.profile_b is not None,
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _card(d: Any, generated: str) -> str:
    v = d.vocab or {}
    vocab = ("equal" if v.get("equal") else
             f"mapped by {v.get('by', 'token string')}: {v.get('shared')} token strings shared "
             f"({v.get('size_a')} and {v.get('size_b')} tokens)")
    rows = [("Model A", d.model_a), ("Model B", d.model_b),
            ("Heads", f"{d.n_layers} layers x {d.n_heads} heads, matched by {d.matching} "
                      "(L.H with L.H)"),
            ("Vocabularies", vocab), ("Projection (both)", d.projection_label()),
            ("τ (implements)", d.tau),
            ("Noise floor", f"paired bootstrap over pairs, {d.n_boot} draws, "
                            f"{1 - d.alpha:.0%} quantile"),
            ("Relations", f"{len(d.relations)} diffed, {len(d.skipped)} skipped"),
            ("Generated", generated)]
    dl = "".join(f"<div><dt>{html.escape(k)}</dt><dd>{html.escape(str(x))}</dd></div>"
                 for k, x in rows)
    rel = "".join(f"<tr><td>{html.escape(r)}</td><td>{d.n_pairs.get(r, 0):,}</td>"
                  f"<td>{d.k.get(r, '-')}</td></tr>" for r in d.relations)
    parts = [f'<dl class="card-grid">{dl}</dl>',
             "<details><summary>Relations diffed: pairs single tokens in both models, top-k"
             '</summary><table class="plain"><thead><tr><th>relation</th><th>pairs</th>'
             f"<th>k</th></tr></thead><tbody>{rel}</tbody></table></details>"]
    if d.skipped:
        li = "".join(f"<li><b>{html.escape(r)}</b>: {html.escape(str(w))}</li>"
                     for r, w in d.skipped.items())
        parts.append(f"<details><summary>Relations skipped ({len(d.skipped)})</summary>"
                     f"<ul>{li}</ul></details>")
    if d.no_floor:
        li = "".join(f"<li><b>{html.escape(p)}</b>: {html.escape(w)}</li>"
                     for p, w in d.no_floor.items())
        parts.append(f"<details><summary>Parts without a noise floor ({len(d.no_floor)})"
                     f"</summary><ul>{li}</ul></details>")
    return "".join(parts)


def _load(diff: Any) -> Any:
    from ..diff import HeadDiff

    if isinstance(diff, HeadDiff):
        return diff
    if is_diff(diff):
        return HeadDiff.load(diff)
    raise HeadmapsError(f"{diff!r} is not a head diff (hm.diff's result, or a folder written "
                        "by HeadDiff.save / headmaps diff --out)")


def build_diff_report(diff: Any, *, title: str | None = None, show_paths: bool = False) -> str:
    """The diff view of ``diff`` as one self-contained HTML page.

    Args:
        diff: a :class:`~headmaps.diff.HeadDiff`, or the folder it was saved to.
        title: page title (default ``headmaps diff · A → B``).
        show_paths: keep absolute local paths in the page (by default file names only).
    """
    d = _load(diff)
    if not show_paths:
        d = dataclasses.replace(d, model_a=shareable(d.model_a), model_b=shareable(d.model_b),
                                skipped=shareable(d.skipped), options=shareable(d.options))
        title = shareable(title)
    title = title or f"headmaps diff · {d.model_a} \u2192 {d.model_b}"
    payload = diff_payload(d, title)
    toks, heads = sides(d)
    payload["toks"] = toks
    values = {"CSS": asset("report.css") + asset("diff.css"), "JS": asset("diff.js"),
              "TITLE": html.escape(title), "CARD": _card(d, payload["generated"]),
              "DATA": json_for_script(payload),
              "SIDES": "\n".join("" if h is None else json_for_script(h) for h in heads)}
    return fill_page("diff.html", values)


def write_diff_report(path: str | os.PathLike, diff: Any, *, title: str | None = None,
                      show_paths: bool = False) -> Path:
    """Build the diff view (:func:`build_diff_report`) and write it atomically to ``path``.

    Returns:
        The path written.
    """
    path = check_page_path(path, "the diff view")
    write_text(path, build_diff_report(diff, title=title, show_paths=show_paths))
    return path
