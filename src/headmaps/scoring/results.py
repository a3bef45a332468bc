"""Result dataclasses of approach A; they save and load themselves."""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import HeadmapsError
from ..io import load_table, reads_result, save_table, saved_model_info, table_path
from ..relations.errors import UnknownRelationError
from . import analysis

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: The MAPS relation threshold: a head "implements" a relation at a score of at least this.
DEFAULT_TAU = 0.15


@dataclass
class RelationScores:
    """Relation and suppression scores of every head for one relation.

    Attributes:
        relation: relation name (or ``custom`` for a list of pairs).
        scores: ``(n_layers, n_heads)``: fraction of pairs whose target is in the top-k
            of the source's row of ``M``.
        suppression: ``(n_layers, n_heads)``: the same for ``-M``.
        n_pairs: pairs that survived tokenisation.
        k: top-k used.
        model_id: the model.
        preset: preset name (``custom`` after overrides).
        options: projection options as a dict.
        tau: the threshold for "implements" of the scan that computed the scores (the
            default of :meth:`heads`).
        phi_ctx: ``(n_layers, n_heads)``: the in-context score (the same hit rate, read at
            the head's output when the source follows the document prefix and the head
            attends over both with its own weights; see :mod:`headmaps.scoring.context`),
            or None when the projection has no prefix.
        supp_ctx: ``(n_layers, n_heads)``: the same for the bottom-k, or None.
        tau_ctx: the threshold of the in-context score (the default of ``heads(context=True)``).
        calibration: how the projection was chosen (the scan's ``calibration``).
    """

    relation: str
    scores: np.ndarray
    suppression: np.ndarray
    n_pairs: int
    k: int
    model_id: str = ""
    preset: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    tau: float = DEFAULT_TAU
    phi_ctx: np.ndarray | None = None
    supp_ctx: np.ndarray | None = None
    tau_ctx: float = DEFAULT_TAU
    calibration: dict[str, Any] = field(default_factory=dict)

    def _scores(self, suppression: bool, context: bool) -> np.ndarray:
        if not context:
            return self.suppression if suppression else self.scores
        a = self.supp_ctx if suppression else self.phi_ctx
        if a is None:
            raise HeadmapsError("no in-context score: the projection has no prefix (use the "
                                "default `through` projection)")
        return a

    def top_heads(self, n: int = 5, suppression: bool = False,
                  context: bool = False) -> list[tuple[int, int, float]]:
        """The ``n`` best heads as ``(layer, head, score)``, best first.

        ``context``: rank by the in-context score ``phi_ctx`` instead of ``phi``.
        """
        return _top(self._scores(suppression, context), n)

    def heads(self, tau: float | None = None, suppression: bool = False,
              context: bool = False) -> list[tuple[int, int]]:
        """Heads whose score is at least ``tau``, as ``(layer, head)``.

        ``tau`` defaults to the scan's own (``self.tau``; ``self.tau_ctx`` in context).
        ``context``: by the in-context score ``phi_ctx`` instead of ``phi``.
        """
        a = self._scores(suppression, context)
        if tau is None:
            tau = self.tau_ctx if context else self.tau
        return [tuple(map(int, x)) for x in np.argwhere(a >= tau)]

    def _repr_html_(self) -> str:
        """Jupyter: the ten best heads as a compact table."""
        frame = pd.DataFrame([{"head": f"{layer}.{h}", "score": s} for layer, h,
                              s in self.top_heads(10)])
        title = (f"<b>{html.escape(self.relation)}</b> on {html.escape(self.model_id or 'model')}: "
                 f"{self.n_pairs} pairs, k = {self.k}, preset {html.escape(self.preset or '?')}")
        return f"<div>{title}{frame.to_html(index=False, float_format='{:.3f}'.format)}</div>"


@dataclass
class ScanResult:
    """Scores of every head for many relations, plus what was skipped and why.

    Attributes:
        model_id: the model.
        model_info: ``HeadModel.info()`` at scan time.
        relations: names of the scored relations, in order.
        scores: ``(n_relations, n_layers, n_heads)`` relation scores.
        suppression: ``(n_relations, n_layers, n_heads)`` suppression scores.
        n_pairs: relation -> pairs that survived tokenisation.
        k: relation -> top-k used.
        skipped: relation -> reason it was not scored (too few single-token pairs...).
        preset: preset name; options: projection options dict.
        tau: threshold for "implements"; versions: library versions.
        calibration: how the projection was chosen: ``{}`` when given explicitly,
            ``{"status": "uncalibrated"}`` for the default preset without a stored
            calibration, else the calibration's ``status``, ``label``, ``choice``,
            ``median_r``, ``n_pairs``, ``fingerprint`` (see :mod:`headmaps.projection.calibration`).
        phi_ctx: ``(n_relations, n_layers, n_heads)`` in-context scores (see
            :class:`RelationScores`), or None when not computed.
        supp_ctx: the same for suppression, or None.
        tau_ctx: threshold of the in-context score for "implements in context".
    """

    model_id: str
    model_info: dict[str, Any]
    relations: list[str]
    scores: np.ndarray
    suppression: np.ndarray
    n_pairs: dict[str, int]
    k: dict[str, int]
    skipped: dict[str, str] = field(default_factory=dict)
    preset: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    tau: float = DEFAULT_TAU
    versions: dict[str, str] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    phi_ctx: np.ndarray | None = None
    supp_ctx: np.ndarray | None = None
    tau_ctx: float = DEFAULT_TAU

    @property
    def n_layers(self) -> int:
        """Layers of the scanned model."""
        return int(self.scores.shape[1])

    @property
    def n_heads(self) -> int:
        """Heads per layer of the scanned model."""
        return int(self.scores.shape[2])

    def __getitem__(self, relation: str) -> RelationScores:
        """The :class:`RelationScores` of one scanned relation."""
        if relation not in self.relations:
            why = f" (skipped: {self.skipped[relation]})" if relation in self.skipped else ""
            raise UnknownRelationError(f"relation {relation!r} not in this scan{why}; scanned: "
                                       f"{', '.join(self.relations)}")
        i = self.relations.index(relation)
        ctx = self.phi_ctx is not None
        return RelationScores(relation, self.scores[i], self.suppression[i], self.n_pairs[relation],
                              self.k[relation], self.model_id, self.preset, dict(self.options),
                              self.tau, self.phi_ctx[i] if ctx else None,
                              self.supp_ctx[i] if ctx else None, self.tau_ctx,
                              dict(self.calibration))

    # Analyses (see headmaps.scoring.analysis for details).
    def relation_heads(self, tau: float | None = None,
                       suppression: bool = False) -> dict[str, list[str]]:
        """Relation -> heads ``"L.H"`` with score >= tau (default ``self.tau``), best first."""
        return analysis.relation_heads(self, tau, suppression)

    def multi_relation_heads(self, tau: float | None = None,
                             min_relations: int = 2) -> pd.DataFrame:
        """Heads implementing at least ``min_relations`` relations (see analysis module)."""
        return analysis.multi_relation_heads(self, tau, min_relations)

    def layer_distribution(self, tau: float | None = None,
                           suppression: bool = False) -> pd.DataFrame:
        """Relation heads per layer: index layer, one column per relation."""
        return analysis.layer_distribution(self, tau, suppression)

    def gqa_agreement(self, tau: float | None = None) -> pd.DataFrame:
        """Per relation, how much heads sharing a value head agree, against chance."""
        return analysis.gqa_agreement(self, tau=tau)

    def top_heads(self, relation: str, n: int = 5, suppression: bool = False) -> pd.DataFrame:
        """The ``n`` best heads for ``relation``."""
        return analysis.top_heads(self, relation, n, suppression)

    def summary_markdown(self, tau: float | None = None) -> str:
        """A Markdown summary of the scan."""
        return analysis.summary_markdown(self, tau)

    def _repr_html_(self) -> str:
        """Jupyter: one row per relation with its best heads (see ``summary_markdown``)."""
        title = (f"<b>scan of {html.escape(self.model_id or 'model')}</b>: {len(self.relations)} "
                 "relations, "
                 f"{self.n_layers} x {self.n_heads} heads, preset "
                 f"{html.escape(self.preset or '?')}, "
                 f"tau = {self.tau}")
        table = analysis.summary_table(self).to_html(index=False)
        return f"<div>{title}{table}</div>"

    def figure(self, relation: str | Sequence[str] | None = None, *, suppression: bool = False,
               ncols: int | None = None, title: str | None = None) -> Figure:
        """Heatmap(s) of the scores over layers x heads (cells >= tau outlined).

        Args:
            relation: one scanned relation (one heatmap with its colour bar), several (a grid
                of small multiples), or None for every scanned relation (a grid).
            suppression: plot the suppression scores instead.
            ncols: panels per row of a grid (default: up to 5).
            title: figure title.

        Returns:
            The :class:`matplotlib.figure.Figure` (not registered with pyplot); Jupyter shows
            it inline, :func:`headmaps.io.write_figure` writes it.
        """
        from .. import figures

        data = self.suppression if suppression else self.scores
        if isinstance(relation, str):
            r = self._index(relation)
            rel = self.relations[r]
            default = (f"{self.model_id}: {rel.replace('_', ' ')} (n={self.n_pairs.get(rel, 0)}, "
                       f"k={self.k.get(rel, '?')})" + (" - suppression" if suppression else ""))
            return figures.heatmap_figure(data[r], self.tau, title=title or default,
                                          suppression=suppression)
        rels = list(self.relations) if relation is None else list(relation)
        idx = [self._index(r) for r in rels]
        default = (f"{self.model_id}: {'suppression' if suppression else 'relation'} scores, "
                   f"cells with score $\\geq \\tau$ = {self.tau:g} outlined")
        return figures.heatmaps_figure(data[idx], rels, self.tau, title=title or default,
                                       suppression=suppression, ncols=ncols)

    def layer_figure(self, relations: Sequence[str] | None = None, *, suppression: bool = False,
                     title: str | None = None) -> Figure:
        """Per layer, the heads with score >= tau, stacked by relation (a Figure).

        A black step line marks heads implementing at least one of the plotted relations
        (a head counted for two relations is stacked twice but counted once by the line).
        """
        from .. import figures

        rels = list(self.relations) if relations is None else list(relations)
        if not rels:
            raise HeadmapsError("no relations to plot: the scan holds none")
        idx = [self._index(r) for r in rels]
        what = "suppression" if suppression else "score"
        hits = (self.suppression if suppression else self.scores)[idx] >= self.tau
        default = (f"{self.model_id}: {'suppression' if suppression else 'relation'} heads per "
                   f"layer ($\\tau$ = {self.tau:g})")
        return figures.layer_counts_figure(hits, rels, ylabel=f"heads with {what} $\\geq \\tau$",
                                           title=title or default)

    def _index(self, relation: str) -> int:
        if relation not in self.relations:
            self[relation]  # raises an error that says what was scanned or why it was skipped
        return self.relations.index(relation)

    def to_frame(self) -> pd.DataFrame:
        """Tidy frame: one row per (relation, layer, head) with score and suppression.

        With in-context scores, also ``phi_ctx`` and ``supp_ctx``.
        """
        R, L, H = self.scores.shape
        rel, layer, head = np.meshgrid(np.arange(R), np.arange(L), np.arange(H), indexing="ij")
        columns = {
            "relation": np.asarray(self.relations, dtype=object)[rel.ravel()],
            "layer": layer.ravel(),
            "head": head.ravel(),
            "score": self.scores.ravel(),
            "suppression": self.suppression.ravel(),
        }
        if self.phi_ctx is not None:
            columns["phi_ctx"] = self.phi_ctx.ravel()
            columns["supp_ctx"] = self.supp_ctx.ravel()
        return pd.DataFrame(columns)

    def header(self) -> dict[str, Any]:
        """Everything but the score arrays, as JSON-able dict."""
        return {
            "kind": "headmaps.ScanResult",
            "model_id": self.model_id, "model_info": self.model_info, "relations": self.relations,
            "n_layers": self.n_layers, "n_heads": self.n_heads,
            "n_pairs": self.n_pairs, "k": self.k, "skipped": self.skipped, "preset": self.preset,
            "options": self.options, "tau": self.tau, "versions": self.versions,
            "calibration": self.calibration, "tau_ctx": self.tau_ctx,
        }

    def save(self, path: str | os.PathLike, *, show_paths: bool = False) -> Path:
        """Write ``scores.parquet`` (or the given .parquet/.csv file) and its ``.json`` header.

        Args:
            path: a folder (the file goes in it as ``scores.parquet``) or a .parquet/.csv file.
            show_paths: keep absolute local paths in the header (by default file names only).
        """
        return save_table(self.to_frame(), self.header(), table_path(path, "scores.parquet"),
                          show_paths=show_paths)

    @classmethod
    @reads_result("scan result")
    def load(cls, path: str | os.PathLike) -> ScanResult:
        """Read a result written by :meth:`save` (a file, or a folder holding scores.parquet)."""
        frame, h = load_table(path, "scores.parquet", "headmaps.ScanResult", "scan result")
        R, L, H = len(h["relations"]), h["n_layers"], h["n_heads"]
        scores = np.zeros((R, L, H), dtype=np.float32)
        supp = np.zeros_like(scores)
        index = {r: i for i, r in enumerate(h["relations"])}
        ri = frame["relation"].map(index)
        if ri.isna().any():
            raise ValueError("the table names relations its header does not list")
        ri = ri.to_numpy(dtype=np.int64)
        li, hi = frame["layer"].to_numpy(dtype=np.int64), frame["head"].to_numpy(dtype=np.int64)
        scores[ri, li, hi] = frame["score"].to_numpy()
        supp[ri, li, hi] = frame["suppression"].to_numpy()
        ctx = {}
        if "phi_ctx" in frame.columns:
            for name in ("phi_ctx", "supp_ctx"):
                ctx[name] = np.zeros_like(scores)
                ctx[name][ri, li, hi] = frame[name].to_numpy()
        return cls(h["model_id"], saved_model_info(h["model_info"]), list(h["relations"]),
                   scores, supp,
                   dict(h["n_pairs"]), {r: int(v) for r, v in h["k"].items()}, dict(h["skipped"]),
                   h["preset"], dict(h["options"]), float(h["tau"]), dict(h.get("versions", {})),
                   dict(h.get("calibration") or {}), ctx.get("phi_ctx"), ctx.get("supp_ctx"),
                   float(h.get("tau_ctx", h["tau"])))


def _top(a: np.ndarray, n: int) -> list[tuple[int, int, float]]:
    flat = np.argsort(-a, axis=None, kind="stable")[:n]
    L, H = np.unravel_index(flat, a.shape)
    return [(int(layer), int(h), float(a[layer, h])) for layer, h in zip(L, H)]
