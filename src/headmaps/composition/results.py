"""`CompositionResult`: Q/K/V-composition of every pair of heads; saves and loads itself."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._html import html_card
from ..errors import HeadmapsError, OutOfRangeError
from ..io import load_table, markdown_table, reads_result, save_table, saved_model_info, table_path
from .compute import INDUCTION, KINDS, METHODS, canonical_kind

if TYPE_CHECKING:
    from matplotlib.figure import Figure

KIND = "headmaps.CompositionResult"
FILE = "composition.parquet"


@dataclass
class CompositionResult:
    """Composition scores of every (earlier head, later head) pair.

    Attributes:
        model_id: the model.
        n_layers, n_heads: sizes.
        kinds: the kinds computed (some of ``Q``, ``K``, ``V``, ``induction``).
        scores: method (``projection``, ``raw``) -> kind -> ``(L, H, L, H)`` float32;
            ``[l_h, h, l_g, g]`` is the composition of head ``g`` of layer ``l_g`` into
            head ``h`` of layer ``l_h``; NaN unless ``l_g < l_h``.
        preset, options, calibration: the projection of the token sample.
        params: ``n_tokens``, ``seed`` (and the first sample ids).
        seconds: wall time.
        model_info, versions: provenance.
    """

    model_id: str
    n_layers: int
    n_heads: int
    kinds: tuple[str, ...]
    scores: dict[str, dict[str, np.ndarray]]
    preset: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    model_info: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    def grid(self, kind: str = "K", method: str = "projection") -> np.ndarray:
        """The ``(L, H, L, H)`` scores of one kind and method (see ``scores``)."""
        kind = canonical_kind(kind)
        if method not in self.scores:
            raise HeadmapsError(f"unknown method {method!r}; use {' or '.join(METHODS)}")
        if kind not in self.scores[method]:
            raise HeadmapsError(f"kind {kind!r} was not computed; this result has "
                                f"{', '.join(self.kinds)}")
        return self.scores[method][kind]

    def _check(self, layer: int, head: int) -> None:
        if not (0 <= layer < self.n_layers and 0 <= head < self.n_heads):
            raise OutOfRangeError(f"head {layer}.{head} is out of range: {self.model_id} has "
                                  f"layers 0..{self.n_layers - 1} and heads "
                                  f"0..{self.n_heads - 1}")

    def partners(self, layer: int, head: int, kind: str = "K", n: int = 3,
                 method: str = "projection") -> list[tuple[int, int, float]]:
        """The ``n`` earlier heads that compose most with head ``layer.head``, best first.

        Returns:
            ``(layer, head, score)`` of each earlier head; empty for layer 0.
        """
        self._check(layer, head)
        s = np.nan_to_num(self.grid(kind, method)[layer, head], nan=-np.inf)
        order = np.argsort(-s, axis=None, kind="stable")[:n]
        L, H = np.unravel_index(order, s.shape)
        return [(int(a), int(b), float(s[a, b])) for a, b in zip(L, H) if np.isfinite(s[a, b])]

    def readers(self, layer: int, head: int, kind: str = "K", n: int = 3,
                method: str = "projection") -> list[tuple[int, int, float]]:
        """The ``n`` later heads that read head ``layer.head`` most, best first."""
        self._check(layer, head)
        s = np.nan_to_num(self.grid(kind, method)[:, :, layer, head], nan=-np.inf)
        order = np.argsort(-s, axis=None, kind="stable")[:n]
        L, H = np.unravel_index(order, s.shape)
        return [(int(a), int(b), float(s[a, b])) for a, b in zip(L, H) if np.isfinite(s[a, b])]

    def top_pairs(self, kind: str = "K", n: int = 10,
                  method: str = "projection") -> list[tuple[int, int, int, int, float]]:
        """The ``n`` strongest pairs as ``(l_g, g, l_h, h, score)`` (writer first), best first."""
        s = np.nan_to_num(self.grid(kind, method), nan=-np.inf)
        order = np.argsort(-s, axis=None, kind="stable")[:n]
        idx = np.unravel_index(order, s.shape)
        return [(int(c), int(d), int(a), int(b), float(s[a, b, c, d]))
                for a, b, c, d in zip(*idx) if np.isfinite(s[a, b, c, d])]

    def to_frame(self) -> pd.DataFrame:
        """Tidy table, one row per pair ``src_layer < layer``.

        Columns ``layer``, ``head`` (the reader), ``src_layer``, ``src_head`` (the
        writer), then ``<kind>_<method>`` scores.
        """
        L, H = self.n_layers, self.n_heads
        a, b, c, d = np.meshgrid(np.arange(L), np.arange(H), np.arange(L), np.arange(H),
                                 indexing="ij")
        keep = (c < a).ravel()
        cols: dict[str, Any] = {"layer": a.ravel()[keep], "head": b.ravel()[keep],
                                "src_layer": c.ravel()[keep], "src_head": d.ravel()[keep]}
        for k in self.kinds:
            for m in METHODS:
                cols[f"{k}_{m}"] = self.scores[m][k].ravel()[keep].astype(np.float32)
        return pd.DataFrame(cols)

    def header(self) -> dict[str, Any]:
        """Everything but the arrays, as a JSON-able dict."""
        return {"kind": KIND, "model_id": self.model_id, "n_layers": self.n_layers,
                "n_heads": self.n_heads, "kinds": list(self.kinds), "methods": list(METHODS),
                "preset": self.preset, "options": self.options, "calibration": self.calibration,
                "params": self.params, "seconds": self.seconds, "model_info": self.model_info,
                "versions": self.versions}

    def save(self, path: str | os.PathLike, *, show_paths: bool = False) -> Path:
        """Write ``composition.parquet`` (or the given .parquet/.csv file) and a .json header."""
        return save_table(self.to_frame(), self.header(), table_path(path, FILE),
                          show_paths=show_paths)

    @classmethod
    @reads_result("composition result")
    def load(cls, path: str | os.PathLike) -> CompositionResult:
        """Read a result written by :meth:`save`."""
        frame, h = load_table(path, FILE, KIND, "composition result")
        L, H = int(h["n_layers"]), int(h["n_heads"])
        kinds = tuple(h["kinds"])
        idx = tuple(frame[c].to_numpy().astype(int) for c in ("layer", "head", "src_layer",
                                                                "src_head"))
        scores: dict[str, dict[str, np.ndarray]] = {}
        for m in h["methods"]:
            scores[m] = {}
            for k in kinds:
                a = np.full((L, H, L, H), np.nan, dtype=np.float32)
                a[idx] = frame[f"{k}_{m}"].to_numpy().astype(np.float32)
                scores[m][k] = a
        return cls(h["model_id"], L, H, kinds, scores, h["preset"], dict(h["options"]),
                   dict(h.get("calibration", {})), dict(h["params"]), float(h["seconds"]),
                   saved_model_info(h["model_info"]), dict(h.get("versions", {})))

    def partner_table(self, kind: str = "K", n: int = 3) -> pd.DataFrame:
        """Per head of layer >= 1: its ``n`` best partners by each method, as text."""
        rows = []
        for layer in range(1, self.n_layers):
            for head in range(self.n_heads):
                row = {"head": f"{layer}.{head}"}
                for m in METHODS:
                    row[m] = ", ".join(f"{a}.{b} ({s:.3g})"
                                       for a, b, s in self.partners(layer, head, kind, n, m))
                rows.append(row)
        return pd.DataFrame(rows, columns=["head", *METHODS])

    def _overview(self, n: int = 5) -> pd.DataFrame:
        rows = []
        for k in self.kinds:
            for m in METHODS:
                pairs = ", ".join(f"{a}.{b}->{c}.{d} ({s:.3g})"
                                  for a, b, c, d, s in self.top_pairs(k, n, m))
                rows.append({"kind": k, "method": m, "strongest pairs (writer -> reader)": pairs})
        return pd.DataFrame(rows)

    def _title(self) -> str:
        return (f"composition of {self.model_id or 'model'}: {self.n_layers} x {self.n_heads} "
                f"heads, {self.params.get('n_tokens', '?')} sample tokens, preset "
                f"{self.preset or '?'}")

    def _repr_html_(self) -> str:
        """Jupyter: the strongest pairs per kind and method."""
        return html_card(self._title(), self._overview())

    def summary_markdown(self) -> str:
        """Markdown: the strongest pairs per kind and method."""
        t = self._title()
        return "\n".join([f"# {t[0].upper()}{t[1:]}", "", markdown_table(self._overview()), "",
                          "Scores: raw = Elhage et al.'s weight-matrix composition; projection "
                          "= the RMS change of the reader's logits (outputs) that the writer's "
                          "output causes on the token sample, over their RMS spread "
                          "(headmaps.composition.compute); induction = the z-score of each "
                          "token's query on the key the writer's output for it makes."])

    def figure(self, method: str = "projection") -> Figure:
        """One map per kind: every reader (rows) against every writer (columns).

        The figure is not registered with pyplot (no window, nothing to close).
        """
        from matplotlib.figure import Figure as _Figure

        n = self.n_layers * self.n_heads
        fig = _Figure(figsize=(4.2 * len(self.kinds), 4))
        axes = fig.subplots(1, len(self.kinds), squeeze=False)
        for ax, k in zip(axes[0], self.kinds):
            im = ax.imshow(self.grid(k, method).reshape(n, n), cmap="viridis",
                           interpolation="nearest")
            ax.set_title(f"{'induction circuit' if k == INDUCTION else k + '-composition'} "
                         f"({method})")
            ax.set_xlabel("writer (layer x head)")
            ax.set_ylabel("reader (layer x head)")
            fig.colorbar(im, ax=ax, shrink=0.8)
        fig.suptitle(self._title())
        fig.tight_layout()
        return fig


__all__ = ["KINDS", "CompositionResult"]
