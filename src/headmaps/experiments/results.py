"""Result dataclasses of the validation experiments; they follow the results protocol.

Each result is a table (CSV, with the exact columns the CLI promises) plus a JSON
header beside it (:mod:`headmaps.io`); per-head data go to a second table. A result
saved with the command that made it is a documented run folder: the tables, the figure,
``summary.md`` and the run header ``run.json``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .. import figures
from .._html import html_card
from ..io import (
    header_for_file,
    load_table,
    markdown_table,
    reads_result,
    run_header,
    save_table,
    saved_model_info,
    versions,
    write_figure,
    write_json,
    write_text,
)
from ..projection.calibration import label as projection_label
from ..scoring import ScanResult
from .dynamic import DynamicScores

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Columns of the correlation table (see :mod:`headmaps.experiments.correlation`): the
#: paper's, then the in-context score, its control, the oracle and the two ceilings.
CONTEXT_COLUMNS = ["corr_ctx_static", "corr_ctx_shuffled", "corr_oracle", "ceiling_ctx",
                   "split_half_ctx", "ceiling_per_head"]
#: The correlation columns whose medians over relations summarise a template set.
MEDIAN_COLUMNS = ["corr_without_context", "corr_with_context", "corr_ctx_static",
                  "corr_ctx_shuffled", "corr_oracle", "ceiling_ctx", "split_half_ctx",
                  "ceiling_per_head"]
CORRELATION_COLUMNS = ["relation", "n_pairs", "corr_without_context", "corr_with_context",
                       "supp_corr_without_context", "supp_corr_with_context",
                       "p_without_context", "p_with_context", *CONTEXT_COLUMNS]
#: Columns of the per-template table (:func:`headmaps.experiments.correlation.template_table`).
TEMPLATE_COLUMNS = ["relation", "template_index", "template", "sets", "ends_with_source",
                    "corr_without_context", "corr_with_context", "corr_ctx_static",
                    "corr_oracle", "ceiling_ctx"]
CAUSAL_COLUMNS = ["relation", "n_heads_removed", "base_acc", "acc_relation_heads_removed",
                  "acc_random_mean", "acc_random_std", "n_control", "control_base_acc",
                  "control_acc_after"]
CURVE_COLUMNS = ["relation", "n_heads_removed", "acc_relation", "acc_random_mean", "acc_random_std"]
_HEAD_COLUMNS = ["relation", "template", "layer", "head", "static", "static_supp",
                 "without_context", "with_context", "supp_without_context", "supp_with_context"]
#: Optional per-head columns: in-context scores, attention to the source, half scores.
_CONTROL_COLUMNS = ["static_ctx", "static_supp_ctx", "to_source", "with_context_even",
                    "with_context_odd"]


#: Resolution of the PNG a saved run folder holds.
RUN_DPI = 110


def _save_run(result: Any, out: Path, command: str | None, show_paths: bool) -> None:
    """The documented run files of a result: its figure, ``summary.md`` and ``run.json``."""
    name = result.kind
    write_figure(result.figure(), out / f"{name}.png", dpi=RUN_DPI)
    write_text(out / "summary.md", result.summary_markdown(command, figure=f"{name}.png"))
    if command is not None:
        write_json(out / "run.json", header_for_file(result.run_header(command), show_paths))


@dataclass
class CorrelationResult:
    """Static vs dynamic scores per relation (correlation or multi-token experiment).

    Attributes:
        per_relation: one row per relation, columns :data:`CORRELATION_COLUMNS`
            (:meth:`to_frame`).
        static: the static scores, ``scores``/``suppression`` ``(R, n_layers, n_heads)``.
        dynamic: per-head dynamic scores ``(R, T, n_layers, n_heads)``.
        model_id: the model; preset, options: of the static scores.
        kind: ``"correlation"`` or ``"multitoken"``.
        seed: the seed of the pair subsets.
        per_set: the correlation columns per named template set the run holds whole
            (``templates`` column: ``"headmaps"``, ``"paper"``), long format.
        per_template: one row per (relation, template), :data:`TEMPLATE_COLUMNS`.
    """

    per_relation: pd.DataFrame
    static: ScanResult
    dynamic: DynamicScores
    model_id: str = ""
    preset: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    kind: str = "correlation"
    seed: int = 0
    per_set: pd.DataFrame = field(default_factory=pd.DataFrame)
    per_template: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def calibration(self) -> dict[str, Any]:
        """How the static scores' projection was chosen (see ``ScanResult.calibration``)."""
        return self.static.calibration

    def projection(self) -> str:
        """The static scores' projection, as printed (with its calibration status)."""
        return projection_label(self.preset, self.options, self.calibration)

    def median(self, column: str = "corr_without_context") -> float:
        """Median of a column over the relations (NaN rows ignored)."""
        col = self.per_relation[column]
        return float(np.nanmedian(col)) if len(col) else float("nan")

    def to_frame(self) -> pd.DataFrame:
        """One row per relation, columns :data:`CORRELATION_COLUMNS` (a copy)."""
        return self.per_relation.copy()

    def _repr_html_(self) -> str:
        """Jupyter: the per-relation table, with the median correlations."""
        return html_card(f"{self.kind} of {self.model_id or 'model'}: static vs dynamic scores, "
                         f"preset {self.preset or '?'}", self.per_relation,
                         [f"median r without context {self.median():.2f}, with context "
                          f"{self.median('corr_with_context'):.2f}"])

    def summary_markdown(self, command: str | None = None, *, figure: str | None = None) -> str:
        """Markdown: the run, the median correlations, the per-relation table.

        Args:
            command: the command that made the result, quoted at the top.
            figure: a file name of the figure to link under the table.
        """
        d = self.dynamic
        n_def = int(self.per_relation["corr_without_context"].notna().sum())
        lines = [f"# {self.kind.capitalize()} with inference: {self.model_id}", "",
                 (f"`{command}`; " if command else "")
                 + f"projection `{self.projection()}`, {len(d.templates)} templates, "
                 f"pairs per relation: {', '.join(f'{r} {n}' for r, n in d.n_pairs.items())}.",
                 "", f"Median correlation without context {self.median():.2f}, with context "
                 f"{self.median('corr_with_context'):.2f} over the {n_def} of "
                 f"{len(self.per_relation)} relations with a defined correlation (undefined: no "
                 "head has a non-zero static score on these pairs).", ""]
        if self.per_relation.get("corr_ctx_static", pd.Series(dtype=float)).notna().any():
            lines += [self._context_line(self.per_relation), ""]
        lines += [markdown_table(self.per_relation), ""]
        if len(self.per_set):
            lines += ["## By template set", "", "Medians over the relations of each named "
                      "template set (`paper`: the four templates the MAPS paper reports, as "
                      "published; `headmaps`: the library's own; `source_last`: the templates "
                      "whose prompt ends with the source, the query `phi_ctx` models; "
                      "`source_inside`: the others).", "",
                      markdown_table(self.set_medians()), ""]
        if figure:
            lines += [f"![scatter]({figure})", ""]
        if d.skipped:
            lines += ["Skipped: " + "; ".join(f"{k} ({v})" for k, v in d.skipped.items()), ""]
        return "\n".join(lines)

    def _context_line(self, table: pd.DataFrame) -> str:
        med = lambda c: float(np.nanmedian(table[c])) if table[c].notna().any() else float("nan")  # noqa: E731
        return (f"With context: `phi` {med('corr_with_context'):.2f}, in-context score "
                f"`phi_ctx` {med('corr_ctx_static'):.2f} (control, attention shuffled across "
                f"heads: {med('corr_ctx_shuffled'):.2f}); not static: oracle `phi` x measured "
                f"attention to the source {med('corr_oracle'):.2f}; ceilings: without- vs "
                f"with-context dynamic scores {med('ceiling_ctx'):.2f}, split-half "
                f"{med('split_half_ctx'):.2f}, one number per head "
                f"{med('ceiling_per_head'):.2f} (medians over relations).")

    def set_medians(self) -> pd.DataFrame:
        """Per named template set, the median of every correlation column over relations."""
        cols = MEDIAN_COLUMNS
        if not len(self.per_set):
            return pd.DataFrame(columns=["templates", "n_relations", *cols])
        g = self.per_set.groupby("templates", sort=False)
        out = g[cols].median().reset_index()
        out.insert(1, "n_relations", g.size().to_numpy())
        return out

    def run_header(self, command: str) -> dict[str, Any]:
        """The run header (:func:`headmaps.io.run_header`) of ``command`` making this result."""
        d = self.dynamic
        return run_header(command, self.model_id, self.seed,
                          {"relations": list(d.relations), "pairs_per_relation": d.n_pairs,
                           "templates": list(d.templates), "skipped": d.skipped},
                          projection=self.projection())

    def heads_frame(self) -> pd.DataFrame:
        """Per (relation, template, head) static and dynamic scores, long format."""
        d = self.dynamic
        frames = []
        for r, name in enumerate(d.relations):
            i = self.static.relations.index(name)
            T, L, H = d.with_context.shape[1:]
            t, layer, head = np.meshgrid(np.arange(T), np.arange(L), np.arange(H), indexing="ij")
            cols = {
                "relation": name, "template": t.ravel(), "layer": layer.ravel(),
                "head": head.ravel(),
                "static": np.tile(self.static.scores[i].ravel(), T),
                "static_supp": np.tile(self.static.suppression[i].ravel(), T),
                "without_context": d.without_context[r].ravel(),
                "with_context": d.with_context[r].ravel(),
                "supp_without_context": d.supp_without_context[r].ravel(),
                "supp_with_context": d.supp_with_context[r].ravel()}
            if self.static.phi_ctx is not None:
                cols["static_ctx"] = np.tile(self.static.phi_ctx[i].ravel(), T)
                cols["static_supp_ctx"] = np.tile(self.static.supp_ctx[i].ravel(), T)
            if d.to_source is not None:
                cols["to_source"] = d.to_source[r].ravel()
            if d.with_context_halves is not None:
                cols["with_context_even"] = d.with_context_halves[0, r].ravel()
                cols["with_context_odd"] = d.with_context_halves[1, r].ravel()
            frames.append(pd.DataFrame(cols))
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
                "calibration": self.static.calibration, "seed": self.seed}

    def save(self, out: str | os.PathLike, *, command: str | None = None,
             show_paths: bool = False) -> Path:
        """Write the run folder ``out``; returns the path of ``<kind>.csv``.

        ``<kind>.csv`` (+ ``.json``), ``<kind>_heads.csv``, the figure ``<kind>.png`` and
        ``summary.md``; with ``command``, also the run header ``run.json``.

        Args:
            out: the run folder.
            command: the command line that made the result (for ``run.json``).
            show_paths: keep absolute local paths in the headers (by default file names only).
        """
        out = Path(out)
        path = save_table(self.per_relation, self.header(), out / f"{self.kind}.csv",
                          show_paths=show_paths)
        save_table(self.heads_frame(), {"kind": f"{self.kind}_heads", "model_id": self.model_id},
                   out / f"{self.kind}_heads.csv", show_paths=show_paths)
        for part, frame in (("sets", self.per_set), ("templates", self.per_template)):
            if len(frame):
                save_table(frame, {"kind": f"{self.kind}_{part}", "model_id": self.model_id},
                           out / f"{self.kind}_{part}.csv", show_paths=show_paths)
        _save_run(self, out, command, show_paths)
        return path

    @classmethod
    @reads_result("correlation result")
    def load(cls, out: str | os.PathLike, kind: str | None = None) -> CorrelationResult:
        """Read a result written by :meth:`save` from folder ``out``.

        ``kind`` is ``"correlation"`` or ``"multitoken"``; default: the one the folder holds.
        """
        out = Path(out)
        if kind is None:
            kind = "multitoken" if (out / "multitoken.csv").is_file() and not (
                out / "correlation.csv").is_file() else "correlation"
        table, h = load_table(out / f"{kind}.csv", f"{kind}.csv")
        heads, _ = load_table(out / f"{kind}_heads.csv", f"{kind}_heads.csv")
        rels = list(table["relation"])
        T, L, H = len(h["templates"]), h["n_layers"], h["n_heads"]

        def arr(col: str, per_template: bool = True) -> np.ndarray | None:
            if col not in heads.columns:
                return None
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
                                          for k, v in h.get("static_pairs", {}).items()},
                            to_source=arr("to_source"))
        if "with_context_even" in heads.columns:
            dyn.with_context_halves = np.stack([arr("with_context_even"), arr("with_context_odd")])
        static = ScanResult(model_id=h["model_id"],
                            model_info=saved_model_info(h.get("model_info")), relations=rels,
                            scores=arr("static", False), suppression=arr("static_supp", False),
                            n_pairs=h["n_static_pairs"], k=h["k"], preset=h["preset"],
                            options=h["options"], calibration=dict(h.get("calibration") or {}),
                            phi_ctx=arr("static_ctx", False),
                            supp_ctx=arr("static_supp_ctx", False))
        parts = {}
        for part in ("sets", "templates"):
            f = out / f"{kind}_{part}.csv"
            parts[part] = load_table(f, f.name)[0] if f.is_file() else pd.DataFrame()
        return cls(table, static, dyn, h["model_id"], h["preset"], h["options"], h["kind"],
                   int(h.get("seed", 0)), parts["sets"], parts["templates"])

    def figure(self, max_relations: int = 20) -> Figure:
        """Scatter of static vs dynamic scores per relation (one panel each), a Figure."""
        d = self.dynamic
        panels = []
        for name in d.relations[:max_relations]:
            r, i = d.relations.index(name), self.static.relations.index(name)
            x = np.tile(self.static.scores[i].ravel(), d.with_context.shape[1])
            row = self.per_relation[self.per_relation["relation"] == name].iloc[0]
            panels.append((f"{name}\nr={row.corr_without_context:.2f} / "
                           f"{row.corr_with_context:.2f}", x,
                           {"without context": d.without_context[r].ravel(),
                            "with context": d.with_context[r].ravel()}))
        return figures.scatter_panels(panels, xlabel="static phi", ylabel="dynamic",
                                      title=f"{self.model_id}: static vs dynamic ({self.kind}, "
                                            f"preset {self.preset})")


@dataclass
class CausalResult:
    """Accuracy after zeroing relation heads, random heads and on control relations.

    Attributes:
        per_relation: one row per relation, columns :data:`CAUSAL_COLUMNS`
            (:meth:`to_frame`).
        curves: accuracy vs heads removed, columns :data:`CURVE_COLUMNS` (random
            columns are NaN where random heads were not evaluated).
        heads: relation -> removed heads ``"L.H"`` in removal order.
        controls: relation -> its control relations.
        model_id, preset, options: the model and the static scores' projection.
        meta: anything else for the header (m, draws, prompt counts, templates, seed).
    """

    per_relation: pd.DataFrame
    curves: pd.DataFrame
    heads: dict[str, list[str]] = field(default_factory=dict)
    controls: dict[str, list[str]] = field(default_factory=dict)
    model_id: str = ""
    preset: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    kind = "causal"

    @property
    def calibration(self) -> dict[str, Any]:
        """How the static scores' projection was chosen (see ``ScanResult.calibration``)."""
        return dict(self.meta.get("calibration") or {})

    def projection(self) -> str:
        """The static scores' projection, as printed (with its calibration status)."""
        return projection_label(self.preset, self.options, self.calibration)

    def to_frame(self) -> pd.DataFrame:
        """One row per relation, columns :data:`CAUSAL_COLUMNS` (a copy)."""
        return self.per_relation.copy()

    def _repr_html_(self) -> str:
        """Jupyter: the per-relation table (accuracy before and after zeroing heads)."""
        return html_card(f"causal ablation on {self.model_id or 'model'}: zeroing relation "
                         f"heads vs random heads, preset {self.preset or '?'}", self.per_relation)

    def summary_markdown(self, command: str | None = None, *, figure: str | None = None) -> str:
        """Markdown: the run, then the per-relation table (arguments as for correlation)."""
        m = self.meta
        prompts = m.get("n_prompts") or {}
        lines = [f"# Causal ablation: {self.model_id}", "",
                 (f"`{command}`; " if command else "")
                 + f"projection `{self.projection()}`, up to {m.get('m', '?')} heads removed, "
                 f"{m.get('n_random', '?')} random draws, prompts per relation: "
                 f"{', '.join(f'{r} {n}' for r, n in prompts.items()) or '-'}.", "",
                 markdown_table(self.per_relation), ""]
        if figure:
            lines += [f"![curves]({figure})", ""]
        return "\n".join(lines)

    def run_header(self, command: str) -> dict[str, Any]:
        """The run header (:func:`headmaps.io.run_header`) of ``command`` making this result."""
        m = self.meta
        return run_header(command, self.model_id, m.get("seed"),
                          {"relations": list(self.per_relation["relation"]),
                           "prompts_per_relation": m.get("n_prompts"),
                           "templates": m.get("templates"), "m": m.get("m"),
                           "n_random": m.get("n_random"), "max_controls": m.get("max_controls")},
                          projection=self.projection())

    def header(self) -> dict[str, Any]:
        """JSON header of the saved table."""
        return {"kind": "causal", "model_id": self.model_id, "preset": self.preset,
                "options": self.options, "heads": self.heads, "controls": self.controls,
                "meta": self.meta, "versions": versions()}

    def save(self, out: str | os.PathLike, *, command: str | None = None,
             show_paths: bool = False) -> Path:
        """Write the run folder ``out``; returns the path of ``causal.csv``.

        ``causal.csv`` (+ ``.json``), ``causal_curves.csv``, the figure ``causal.png`` and
        ``summary.md``; with ``command``, also the run header ``run.json``.

        Args:
            out: the run folder.
            command: the command line that made the result (for ``run.json``).
            show_paths: keep absolute local paths in the headers (by default file names only).
        """
        out = Path(out)
        path = save_table(self.per_relation, self.header(), out / "causal.csv",
                          show_paths=show_paths)
        save_table(self.curves, {"kind": "causal_curves", "model_id": self.model_id},
                   out / "causal_curves.csv", show_paths=show_paths)
        _save_run(self, out, command, show_paths)
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

    def figure(self) -> Figure:
        """Accuracy vs heads removed per relation (relation heads; random heads mean ± std)."""
        panels = []
        for name in self.per_relation["relation"]:
            c = self.curves[self.curves["relation"] == name]
            rnd = c.dropna(subset=["acc_random_mean"])
            panels.append((name, {"x": c["n_heads_removed"], "y": c["acc_relation"],
                                  "random_x": rnd["n_heads_removed"],
                                  "random_y": rnd["acc_random_mean"],
                                  "random_err": rnd["acc_random_std"]}))
        return figures.curve_panels(panels, xlabel="heads removed", ylabel="accuracy",
                                    title=f"{self.model_id}: zeroing heads at the last position "
                                          f"(preset {self.preset})")
