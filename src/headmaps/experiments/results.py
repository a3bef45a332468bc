"""Result dataclasses of the validation experiments: save/load and plots.

Each result is a table (CSV, with the exact columns the CLI promises) plus a JSON
header beside it (:mod:`headmaps.io`); per-head data go to a second table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._html import html_card
from ..io import load_table, reads_result, save_table, versions
from ..scoring import ScanResult
from .dynamic import DynamicScores

CORRELATION_COLUMNS = ["relation", "n_pairs", "corr_without_context", "corr_with_context",
                       "supp_corr_without_context", "supp_corr_with_context",
                       "p_without_context", "p_with_context"]
CAUSAL_COLUMNS = ["relation", "n_heads_removed", "base_acc", "acc_relation_heads_removed",
                  "acc_random_mean", "acc_random_std", "n_control", "control_base_acc",
                  "control_acc_after"]
CURVE_COLUMNS = ["relation", "n_heads_removed", "acc_relation", "acc_random_mean", "acc_random_std"]
_HEAD_COLUMNS = ["relation", "template", "layer", "head", "static", "static_supp",
                 "without_context", "with_context", "supp_without_context", "supp_with_context"]


def _panels(n: int, height: float, max_cols: int = 5):
    """A figure with one panel per relation (at most ``max_cols`` a row); spare panels hidden.

    The figure is a bare :class:`matplotlib.figure.Figure`: pyplot and its backend are not
    touched (a notebook's inline backend stays as it is).

    Returns:
        ``(figure, axes)`` with ``axes`` a flat array of at least ``n`` panels.
    """
    from matplotlib.figure import Figure

    n = max(1, n)
    cols = min(max_cols, n)
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(3.2 * cols, height * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.axis("off")
    return fig, axes


def _save_panels(fig, axes, legend: bool, path: str | os.PathLike, title: str) -> Path:
    """Small labels and a legend in the first panel, the title; write ``path`` (PNG)."""
    for ax in axes:
        ax.tick_params(labelsize=6)
    if legend:
        axes[0].legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


@dataclass
class CorrelationResult:
    """Static vs dynamic scores per relation (correlation or multi-token experiment).

    Attributes:
        table: one row per relation, columns :data:`CORRELATION_COLUMNS`.
        static: the static scores, ``scores``/``suppression`` ``(R, n_layers, n_heads)``.
        dynamic: per-head dynamic scores ``(R, T, n_layers, n_heads)``.
        model_id: the model; preset, options: of the static scores.
        kind: ``"correlation"`` or ``"multitoken"``.
    """

    table: pd.DataFrame
    static: ScanResult
    dynamic: DynamicScores
    model_id: str = ""
    preset: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    kind: str = "correlation"

    @property
    def calibration(self) -> dict[str, Any]:
        """How the static scores' projection was chosen (see ``ScanResult.calibration``)."""
        return self.static.calibration

    def median(self, column: str = "corr_without_context") -> float:
        """Median of a column over the relations (NaN rows ignored)."""
        return float(np.nanmedian(self.table[column])) if len(self.table) else float("nan")

    def _repr_html_(self) -> str:
        """Jupyter: the per-relation table, with the median correlations."""
        return html_card(f"{self.kind} of {self.model_id or 'model'}: static vs dynamic scores, "
                         f"preset {self.preset or '?'}", self.table,
                         [f"median r without context {self.median():.2f}, with context "
                          f"{self.median('corr_with_context'):.2f}"])

    def heads_frame(self) -> pd.DataFrame:
        """Per (relation, template, head) static and dynamic scores, long format."""
        d = self.dynamic
        frames = []
        for r, name in enumerate(d.relations):
            i = self.static.relations.index(name)
            T, L, H = d.with_context.shape[1:]
            t, layer, head = np.meshgrid(np.arange(T), np.arange(L), np.arange(H), indexing="ij")
            frames.append(pd.DataFrame({
                "relation": name, "template": t.ravel(), "layer": layer.ravel(),
                "head": head.ravel(),
                "static": np.tile(self.static.scores[i].ravel(), T),
                "static_supp": np.tile(self.static.suppression[i].ravel(), T),
                "without_context": d.without_context[r].ravel(),
                "with_context": d.with_context[r].ravel(),
                "supp_without_context": d.supp_without_context[r].ravel(),
                "supp_with_context": d.supp_with_context[r].ravel()}))
        return pd.concat(frames,
                         ignore_index=True) if frames else pd.DataFrame(columns=_HEAD_COLUMNS)

    def header(self) -> dict[str, Any]:
        """JSON header: everything needed to rebuild the result besides the tables."""
        d = self.dynamic
        return {"kind": self.kind, "model_id": self.model_id, "preset": self.preset,
                "options": self.options, "templates": d.templates, "k": d.k, "n_pairs": d.n_pairs,
                "n_static_pairs": self.static.n_pairs, "skipped": d.skipped,
                "multitoken": d.multitoken, "fold_norms_dynamic": d.fold_norms,
                "static_pairs": d.static_pairs, "first_target_token": d.first_target_token,
                "n_layers": self.static.n_layers, "n_heads": self.static.n_heads,
                "model_info": self.static.model_info, "versions": versions(),
                "calibration": self.static.calibration}

    def save(self, out: str | os.PathLike) -> Path:
        """Write ``<kind>.csv`` (+ ``.json``) and ``<kind>_heads.csv`` under folder ``out``."""
        out = Path(out)
        path = save_table(self.table, self.header(), out / f"{self.kind}.csv")
        save_table(self.heads_frame(), {"kind": f"{self.kind}_heads", "model_id": self.model_id},
                   out / f"{self.kind}_heads.csv")
        return path

    @classmethod
    @reads_result("correlation result")
    def load(cls, out: str | os.PathLike, kind: str = "correlation") -> CorrelationResult:
        """Read a result written by :meth:`save` from folder ``out``."""
        out = Path(out)
        table, h = load_table(out / f"{kind}.csv", f"{kind}.csv")
        heads, _ = load_table(out / f"{kind}_heads.csv", f"{kind}_heads.csv")
        rels = list(table["relation"])
        T, L, H = len(h["templates"]), h["n_layers"], h["n_heads"]

        def arr(col: str, per_template: bool = True) -> np.ndarray:
            a = np.zeros((len(rels), T, L, H), np.float32)
            for r, name in enumerate(rels):
                sub = heads[heads["relation"] == name]
                a[r, sub["template"], sub["layer"], sub["head"]] = sub[col]
            return a if per_template else a[:, 0]

        dyn = DynamicScores(rels, h["templates"], arr("with_context"), arr("without_context"),
                            arr("supp_with_context"), arr("supp_without_context"),
                            {k: int(v) for k, v in h["n_pairs"].items()}, h["k"],
                            skipped=h["skipped"],
                            multitoken=h["multitoken"], fold_norms=h["fold_norms_dynamic"],
                            first_target_token=h.get("first_target_token", False),
                            static_pairs={k: [tuple(p) for p in v]
                                          for k, v in h.get("static_pairs", {}).items()})
        static = ScanResult(model_id=h["model_id"], model_info=h.get("model_info", {}),
                            relations=rels,
                            scores=arr("static", False), suppression=arr("static_supp", False),
                            n_pairs=h["n_static_pairs"], k=h["k"], preset=h["preset"],
                            options=h["options"], calibration=dict(h.get("calibration") or {}))
        return cls(table, static, dyn, h["model_id"], h["preset"], h["options"], h["kind"])

    def plot(self, path: str | os.PathLike, max_relations: int = 20) -> Path:
        """Scatter of static vs dynamic scores per relation (one panel each), as PNG."""
        d = self.dynamic
        names = d.relations[:max_relations]
        fig, axes = _panels(len(names), height=3.0)
        for ax, name in zip(axes, names):
            r = d.relations.index(name)
            i = self.static.relations.index(name)
            T = d.with_context.shape[1]
            x = np.tile(self.static.scores[i].ravel(), T)
            ax.scatter(x, d.without_context[r].ravel(), s=6, alpha=0.5, label="without context")
            ax.scatter(x, d.with_context[r].ravel(), s=6, alpha=0.5, label="with context")
            row = self.table[self.table["relation"] == name].iloc[0]
            ax.set_title(f"{name}\nr={row.corr_without_context:.2f} / {row.corr_with_context:.2f}",
                         fontsize=8)
            ax.set_xlabel("static phi", fontsize=7)
            ax.set_ylabel("dynamic", fontsize=7)
        return _save_panels(fig, axes, bool(names), path,
                            f"{self.model_id}: static vs dynamic ({self.kind}, preset "
                            f"{self.preset})")


@dataclass
class CausalResult:
    """Accuracy after zeroing relation heads, random heads and on control relations.

    Attributes:
        table: one row per relation, columns :data:`CAUSAL_COLUMNS`.
        curves: accuracy vs heads removed, columns :data:`CURVE_COLUMNS` (random
            columns are NaN where random heads were not evaluated).
        heads: relation -> removed heads ``"L.H"`` in removal order.
        controls: relation -> its control relations.
        model_id, preset, options: the model and the static scores' projection.
        meta: anything else for the header (m, draws, prompt counts, templates).
    """

    table: pd.DataFrame
    curves: pd.DataFrame
    heads: dict[str, list[str]] = field(default_factory=dict)
    controls: dict[str, list[str]] = field(default_factory=dict)
    model_id: str = ""
    preset: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def calibration(self) -> dict[str, Any]:
        """How the static scores' projection was chosen (see ``ScanResult.calibration``)."""
        return dict(self.meta.get("calibration") or {})

    def _repr_html_(self) -> str:
        """Jupyter: the per-relation table (accuracy before and after zeroing heads)."""
        return html_card(f"causal ablation on {self.model_id or 'model'}: zeroing relation "
                         f"heads vs random heads, preset {self.preset or '?'}", self.table)

    def header(self) -> dict[str, Any]:
        """JSON header of the saved table."""
        return {"kind": "causal", "model_id": self.model_id, "preset": self.preset,
                "options": self.options, "heads": self.heads, "controls": self.controls,
                "meta": self.meta, "versions": versions()}

    def save(self, out: str | os.PathLike) -> Path:
        """Write ``causal.csv`` (+ ``.json``) and ``causal_curves.csv`` under folder ``out``."""
        out = Path(out)
        path = save_table(self.table, self.header(), out / "causal.csv")
        save_table(self.curves, {"kind": "causal_curves", "model_id": self.model_id},
                   out / "causal_curves.csv")
        return path

    @classmethod
    @reads_result("causal result")
    def load(cls, out: str | os.PathLike) -> CausalResult:
        """Read a result written by :meth:`save` from folder ``out``."""
        out = Path(out)
        table, h = load_table(out / "causal.csv", "causal.csv")
        curves, _ = load_table(out / "causal_curves.csv", "causal_curves.csv")
        return cls(table, curves, h["heads"], h["controls"], h["model_id"], h["preset"],
                   h["options"], h.get("meta", {}))

    def plot(self, path: str | os.PathLike) -> Path:
        """Accuracy vs heads removed per relation (relation heads; random heads mean ± std)."""
        names = list(self.table["relation"])
        fig, axes = _panels(len(names), height=2.8)
        for ax, name in zip(axes, names):
            c = self.curves[self.curves["relation"] == name]
            ax.plot(c["n_heads_removed"], c["acc_relation"], label="relation heads")
            rnd = c.dropna(subset=["acc_random_mean"])
            ax.errorbar(rnd["n_heads_removed"], rnd["acc_random_mean"], yerr=rnd["acc_random_std"],
                        fmt="o--", ms=3, label="random heads")
            ax.set_ylim(-0.02, 1.02)
            ax.set_title(name, fontsize=8)
            ax.set_xlabel("heads removed", fontsize=7)
            ax.set_ylabel("accuracy", fontsize=7)
        return _save_panels(fig, axes, bool(names), path,
                            f"{self.model_id}: zeroing heads at the last position (preset "
                            f"{self.preset})")
