"""`HeadTypes`: the parameter-only head types of every head; saves and loads itself."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._html import html_card
from ..errors import HeadmapsError
from ..io import load_table, markdown_table, reads_result, save_table, saved_model_info, table_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Head types, in display order.
TYPES = ("previous_token", "induction", "duplicate_token", "copying", "copy_suppression",
         "successor")


@dataclass
class HeadTypes:
    """Static type scores and labels of every head.

    Attributes:
        model_id: the model.
        n_layers, n_heads: sizes.
        scores: type -> ``(n_layers, n_heads)`` static score (higher = more of that type);
            NaN where it could not be computed (see ``skipped``).
        labels: type -> ``(n_layers, n_heads)`` bool, the score's threshold rule passed.
        components: name -> ``(n_layers, n_heads)`` ingredients of the scores
            (``eigen_copying``, ``copying_relation``, ``copying_suppression``,
            ``successor_relation``, ``prev_mass``, ``k_composition``, ``self_preference``).
        thresholds: type -> the rule behind its label, in words, with its threshold on
            this model (:mod:`headmaps.headtypes.rules`).
        skipped: ingredient -> why it is missing.
        preset, options: projection choices; params: the other arguments; seconds: time.
        model_info, versions: provenance.
        zscores, percentiles, confidence: type -> ``(n_layers, n_heads)`` evidence of every
            head: the robust z of its score in this model, its percentile (100 = top) and
            the label confidence (:func:`headmaps.headtypes.rules.confidence`).
        notes: type -> a remark for the reader, e.g. "no clear induction head; top
            candidates ..." when no head passes the rule.
    """

    model_id: str
    n_layers: int
    n_heads: int
    scores: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    components: dict[str, np.ndarray]
    thresholds: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    preset: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    model_info: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    zscores: dict[str, np.ndarray] = field(default_factory=dict)
    percentiles: dict[str, np.ndarray] = field(default_factory=dict)
    confidence: dict[str, np.ndarray] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Fill the evidence of any type that lacks it from its scores (robust z, percentile)."""
        from . import rules as R

        for t, s in self.scores.items():
            if t not in self.zscores:
                self.zscores[t] = R.robust_z(s)[0].astype(np.float32)
            if t not in self.percentiles:
                self.percentiles[t] = R.percentile(s).astype(np.float32)
            if t not in self.confidence:
                self.confidence[t] = R.confidence(self.zscores[t]).astype(np.float32)

    def heads_of(self, kind: str) -> list[tuple[int, int]]:
        """Heads labelled ``kind``, as ``(layer, head)``, by descending score."""
        if kind not in self.labels:
            raise HeadmapsError(f"unknown head type {kind!r}; known: {', '.join(self.labels)}")
        lab, s = self.labels[kind], np.nan_to_num(self.scores[kind], nan=-np.inf)
        idx = [tuple(map(int, x)) for x in np.argwhere(lab)]
        return sorted(idx, key=lambda lh: -s[lh])

    def top(self, kind: str, n: int = 10) -> list[tuple[int, int, float]]:
        """The ``n`` highest-scoring heads for ``kind`` as ``(layer, head, score)``."""
        s = np.nan_to_num(self.scores[kind], nan=-np.inf)
        flat = np.argsort(-s, axis=None, kind="stable")[:n]
        L, H = np.unravel_index(flat, s.shape)
        return [(int(a), int(b), float(s[a, b])) for a, b in zip(L, H)]

    def types_of(self, layer: int, head: int) -> list[str]:
        """The type labels of one head."""
        return [t for t in self.labels if bool(self.labels[t][layer, head])]

    def evidence(self, layer: int, head: int, kind: str | None = None) -> list[dict[str, Any]]:
        """Why a head carries its labels (or its standing for ``kind``).

        Per type: the label, score, robust z, percentile, confidence and rule.
        """
        if not (0 <= layer < self.n_layers and 0 <= head < self.n_heads):
            raise HeadmapsError(f"head {layer}.{head} is outside {self.n_layers} x "
                                f"{self.n_heads} heads")
        if kind is not None and kind not in self.scores:
            raise HeadmapsError(f"unknown head type {kind!r}; types: {', '.join(self.scores)}")
        kinds = [kind] if kind is not None else self.types_of(layer, head)
        return [{"type": t, "label": bool(self.labels[t][layer, head]),
                 "score": float(self.scores[t][layer, head]),
                 "z": float(self.zscores[t][layer, head]),
                 "percentile": float(self.percentiles[t][layer, head]),
                 "confidence": float(self.confidence[t][layer, head]),
                 "rule": self.thresholds.get(t, "")} for t in kinds]

    def evidence_text(self, layer: int, head: int) -> dict[str, str]:
        """Type -> why head ``layer.head`` carries that label, in words (labelled types only)."""
        return {e["type"]: (f"{e['type'].replace('_', ' ')} (from parameters): score "
                            f"{e['score']:.4g}, robust z {e['z']:.1f}, percentile "
                            f"{e['percentile']:.1f}, confidence {e['confidence']:.2f}; "
                            f"rule: {e['rule']}")
                for e in self.evidence(layer, head)}

    def to_frame(self) -> pd.DataFrame:
        """Tidy table, one row per head.

        ``<type>`` scores, ``is_<type>`` labels, the evidence ``z_<type>`` (robust z),
        ``pct_<type>`` (percentile), ``conf_<type>`` (confidence), ``c_<component>``
        ingredients and ``types`` (the labels, comma-separated).
        """
        L, H = np.meshgrid(np.arange(self.n_layers), np.arange(self.n_heads), indexing="ij")
        cols: dict[str, Any] = {"layer": L.ravel(), "head": H.ravel()}
        for t, s in self.scores.items():
            cols[t] = s.ravel().astype(np.float32)
        for t, lab in self.labels.items():
            cols[f"is_{t}"] = lab.ravel().astype(bool)
        for prefix, ev in (("z", self.zscores), ("pct", self.percentiles),
                           ("conf", self.confidence)):
            for t, v in ev.items():
                cols[f"{prefix}_{t}"] = np.asarray(v).ravel().astype(np.float32)
        for c, v in self.components.items():
            cols[f"c_{c}"] = v.ravel().astype(np.float32)
        frame = pd.DataFrame(cols)
        frame["types"] = [",".join(self.types_of(int(a), int(b))) for a, b in zip(frame["layer"],
                                                                                  frame["head"])]
        return frame

    def header(self) -> dict[str, Any]:
        """Everything but the arrays, as a JSON-able dict."""
        return {"kind": "headmaps.HeadTypes", "model_id": self.model_id, "n_layers": self.n_layers,
                "n_heads": self.n_heads, "types": list(self.scores),
                "components": list(self.components),
                "thresholds": self.thresholds, "skipped": self.skipped, "preset": self.preset,
                "options": self.options, "params": self.params, "seconds": self.seconds,
                "model_info": self.model_info, "versions": self.versions, "notes": self.notes,
                "calibration": self.calibration}

    def save(self, path: str | os.PathLike, *, show_paths: bool = False) -> Path:
        """Write ``head_types.parquet`` (or the given .parquet/.csv file) and a ``.json`` header.

        Args:
            path: a folder (the file goes in it as ``head_types.parquet``) or a .parquet/.csv file.
            show_paths: keep absolute local paths in the header (by default file names only).
        """
        return save_table(self.to_frame(), self.header(), table_path(path, "head_types.parquet"),
                          show_paths=show_paths)

    @classmethod
    @reads_result("head-types result")
    def load(cls, path: str | os.PathLike) -> HeadTypes:
        """Read a result written by :meth:`save`."""
        frame, h = load_table(path, "head_types.parquet", "headmaps.HeadTypes",
                              "head-types result")
        L, H = int(h["n_layers"]), int(h["n_heads"])
        frame = frame.sort_values(["layer", "head"])

        def grid(col: str, dtype: Any) -> np.ndarray:
            return frame[col].to_numpy().astype(dtype).reshape(L, H)

        return cls(h["model_id"], L, H, {t: grid(t, np.float32) for t in h["types"]},
                   {t: grid(f"is_{t}", bool) for t in h["types"]},
                   {c: grid(f"c_{c}", np.float32) for c in h["components"]}, dict(h["thresholds"]),
                   dict(h["skipped"]), h["preset"], dict(h["options"]), dict(h["params"]),
                   float(h["seconds"]),
                   saved_model_info(h["model_info"]), dict(h.get("versions", {})),
                   {t: grid(f"z_{t}", np.float32) for t in h["types"] if f"z_{t}" in frame},
                   {t: grid(f"pct_{t}", np.float32) for t in h["types"] if f"pct_{t}" in frame},
                   {t: grid(f"conf_{t}", np.float32) for t in h["types"] if f"conf_{t}" in frame},
                   dict(h.get("notes", {})), dict(h.get("calibration") or {}))

    def text(self, n: int = 8) -> str:
        """Which heads are which type, as plain text.

        Per type the rule (with its threshold on this model), then each labelled head
        (best first, at most ``n``) with its score, robust z, percentile and confidence; a
        type with no label says so and names its best candidates.
        """
        from . import rules as R

        lines = []
        for t in self.scores:
            hs = self.heads_of(t)
            lines.append(f"{t:<17} {len(hs):>4} heads")
            if t in self.thresholds:
                lines.append(f"    rule: {self.thresholds[t]}")
            on = getattr(R.RULES.get(t), "on", "")
            for a, b in hs[:n]:
                val = (f" ({on.replace('_', ' ')} {self.components[on][a, b]:.4g})"
                       if on in self.components else "")
                lines.append(f"    {f'{a}.{b}':<7} score {self.scores[t][a, b]:<8.4g}{val} z "
                             f"{self.zscores[t][a, b]:5.1f}  percentile "
                             f"{self.percentiles[t][a, b]:5.1f}  confidence "
                             f"{self.confidence[t][a, b]:.2f}")
            if len(hs) > n:
                lines.append(f"    ... {len(hs) - n} more")
            if not hs and self.notes.get(t):
                lines.append(f"    {self.notes[t]}")
        return "\n".join(lines)

    def _overview(self) -> pd.DataFrame:
        """Per type: how many heads carry the label, the highest-scoring heads, the rule."""
        rows = [{"type": t, "labelled": len(self.heads_of(t)),
                 "top heads (score)": ", ".join(f"{a}.{b} ({v:.2f})" for a, b, v in self.top(t, 6)
                                                if np.isfinite(v)),
                 "rule": self.thresholds.get(t, "")} for t in self.scores]
        return pd.DataFrame(rows, columns=["type", "labelled", "top heads (score)", "rule"])

    def _title(self) -> str:
        return (f"head types of {self.model_id or 'model'}: {self.n_layers} x {self.n_heads} "
                f"heads, preset {self.preset or '?'}")

    def _repr_html_(self) -> str:
        """Jupyter: per type, how many heads carry the label and the highest-scoring heads."""
        notes = [f"skipped {k}: {v}" for k, v in self.skipped.items()]
        return html_card(self._title(), self._overview(), notes)

    def summary_markdown(self) -> str:
        """Markdown: per type, the labelled heads, best scores and rule; what was skipped."""
        lines = [f"# {self._title()[0].upper()}{self._title()[1:]}", "",
                 markdown_table(self._overview()), ""]
        lines += [f"- skipped {k}: {v}" for k, v in self.skipped.items()]
        return "\n".join(lines)

    def figure(self) -> Figure:
        """One map per type: its score over layers x heads, labelled heads outlined."""
        from .. import figures

        return figures.grids_figure(dict(self.scores), outlines=dict(self.labels),
                                    title=self._title(), colour_label="score")
