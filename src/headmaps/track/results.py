"""`TrackResult`: every head's scores over a series of checkpoints (:func:`headmaps.track`).

Saved as a folder: ``track.parquet`` (long format, one row per checkpoint, quantity and
head) with ``track.json`` (everything else) beside it, and ``composition.parquet`` when
composition was tracked.
"""

from __future__ import annotations

import html
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import CorruptFileError, HeadmapsError
from ..io import load_table, markdown_table, reads_result, save_table, saved_model_info
from ..relations.errors import UnknownRelationError
from ..scoring.results import DEFAULT_TAU

if TYPE_CHECKING:
    from matplotlib.figure import Figure

KIND, COMPOSITION_KIND = "headmaps.TrackResult", "headmaps.TrackResult.composition"
TABLE_FILE, COMPOSITION_FILE = "track.parquet", "composition.parquet"



#: The share of its rise past which a trajectory counts as started (:func:`onset_index`).
ONSET_FRACTION = 0.1


def onset_index(curve: np.ndarray, fraction: float = ONSET_FRACTION) -> int | None:
    """Index of the first point from which ``curve`` stays past ``fraction`` of its rise.

    Args:
        curve: ``(n,)`` values over checkpoints; NaN (a failed checkpoint) is skipped.
        fraction: the share of the change from the first to the last value that counts
            as started (a fall counts like a rise, in its direction).

    Returns:
        The index into ``curve``, or None where fewer than two values are finite or the
        first and last are equal.
    """
    curve = np.asarray(curve, dtype=np.float64)
    idx = np.flatnonzero(np.isfinite(curve))
    if len(idx) < 2 or curve[idx[0]] == curve[idx[-1]]:
        return None
    vals = curve[idx]
    start, end = vals[0], vals[-1]
    level = start + fraction * (end - start)
    past = vals >= level if end > start else vals <= level
    below = np.flatnonzero(~past)
    return int(idx[below[-1] + 1]) if len(below) else int(idx[0])

@dataclass
class TrackResult:
    """Every head's relation and head-type scores over a series of checkpoints.

    Attributes:
        checkpoints: the checkpoints' names, first to last.
        steps: ``(n_checkpoints,)`` their training steps (strictly increasing).
        n_layers, n_heads: sizes (the same for every checkpoint).
        relations: the tracked relations, in order.
        types: the tracked head types (empty when not computed).
        scores: ``(n_checkpoints, n_relations, n_layers, n_heads)`` relation scores (NaN
            for a failed checkpoint).
        suppression: the same for suppression.
        type_scores: ``(n_checkpoints, n_types, n_layers, n_heads)`` head-type scores.
        type_labels: the same, bool: the head passes its type's rule at that checkpoint
            (:data:`headmaps.headtypes.rules.RULES`; False for a failed checkpoint).
        failed: checkpoint index -> why it has no scores (after its retries).
        attempts: checkpoint index -> reasons of its failed attempts (retried or not).
        tau: the relation threshold; n_pairs, k, skipped: per relation, decided once.
        preset, options, calibration: the projection of every checkpoint.
        fingerprint: architecture, sizes and tokenizer hash every checkpoint matched.
        seed: seed of the head types' token sample.
        execution: how the jobs ran (``mode``, ``workers``, ``scheduler``).
        seconds: ``total`` and per checkpoint.
        model_info, versions: provenance (of the first checkpoint).
        composition: the concatenated ``to_frame()`` of :func:`headmaps.composition` per
            checkpoint (columns ``checkpoint``, ``step`` added), or None.
    """

    checkpoints: list[str]
    steps: np.ndarray
    n_layers: int
    n_heads: int
    relations: list[str]
    types: list[str]
    scores: np.ndarray
    suppression: np.ndarray
    type_scores: np.ndarray
    type_labels: np.ndarray
    failed: dict[int, str] = field(default_factory=dict)
    attempts: dict[int, list[str]] = field(default_factory=dict)
    tau: float = DEFAULT_TAU
    n_pairs: dict[str, int] = field(default_factory=dict)
    k: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    preset: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    fingerprint: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    execution: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    model_info: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    composition: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def n_checkpoints(self) -> int:
        """Number of checkpoints (failed ones included)."""
        return len(self.checkpoints)

    # ---- selection ------------------------------------------------------------------
    def series(self, relation: str | None = None, *, type: str | None = None,
               suppression: bool = False) -> tuple[np.ndarray, np.ndarray, str]:
        """One relation's (or head type's) scores at every checkpoint, for every head.

        Args:
            relation: a tracked relation; give it or ``type``.
            type: a tracked head type.
            suppression: the relation's suppression scores instead.

        Returns:
            ``(values, passes, name)``: ``values`` ``(C, L, H)`` (NaN at a failed
            checkpoint), ``passes`` ``(C, L, H)`` bool (a relation's score reaches
            :attr:`tau`, a type's label is set) and the relation's or type's name.

        Raises:
            UnknownRelationError: ``relation`` was not tracked.
            HeadmapsError: both or neither of ``relation`` and ``type``; ``type`` was not
                tracked.
        """
        if (relation is None) == (type is None):
            raise HeadmapsError("give exactly one of relation= and type=")
        if relation is not None:
            if relation not in self.relations:
                why = f" (skipped: {self.skipped[relation]})" if relation in self.skipped else ""
                raise UnknownRelationError(f"relation {relation!r} not tracked{why}; tracked: "
                                           f"{', '.join(self.relations) or 'none'}")
            r = self.relations.index(relation)
            vals = (self.suppression if suppression else self.scores)[:, r]
            return vals, np.nan_to_num(vals, nan=-np.inf) >= self.tau - 1e-6, relation
        if type not in self.types:
            raise HeadmapsError(f"head type {type!r} not tracked; tracked: "
                                f"{', '.join(self.types) or 'none (types=False)'}")
        t = self.types.index(type)
        return self.type_scores[:, t], self.type_labels[:, t], type

    def trajectory(self, layer: int, head: int, relation: str | None = None, *,
                   type: str | None = None, suppression: bool = False) -> np.ndarray:
        """One head's score at every checkpoint ``(n_checkpoints,)`` (NaN where failed).

        Args:
            layer: the head's layer.
            head: its index in the layer.
            relation: a tracked relation, or
            type: a tracked head type (exactly one of the two).
            suppression: the relation's suppression score instead.
        """
        if not (0 <= layer < self.n_layers and 0 <= head < self.n_heads):
            raise HeadmapsError(f"no head {layer}.{head}: {self.n_layers} layers x "
                                f"{self.n_heads} heads")
        vals, _, _ = self.series(relation, type=type, suppression=suppression)
        return vals[:, layer, head].astype(np.float64)

    def first_crossing(self, relation: str | None = None, *, type: str | None = None,
                       suppression: bool = False) -> pd.DataFrame:
        """Every head that passes its rule at some checkpoint, and the step it first does.

        The rule: a relation score of at least ``tau``; for a head type, the type's label
        rule at that checkpoint (:data:`headmaps.headtypes.rules.RULES`). Failed
        checkpoints never count as passing.

        Returns:
            Columns ``head`` (``"L.H"``), ``layer``, ``h``, ``step``, ``checkpoint`` (its
            index), ``score`` (at the crossing), ``final`` (score at the last checkpoint),
            ``stays`` (passes at every later successful checkpoint), sorted by step.
        """
        vals, passes, _ = self.series(relation, type=type, suppression=suppression)
        ok = np.array([i not in self.failed for i in range(self.n_checkpoints)])
        rows = []
        for layer, head in zip(*np.nonzero(passes.any(0))):
            col = passes[:, layer, head]
            c = int(np.argmax(col))
            rows.append({"head": f"{layer}.{head}", "layer": int(layer), "h": int(head),
                         "step": int(self.steps[c]), "checkpoint": c,
                         "score": float(vals[c, layer, head]),
                         "final": float(vals[-1, layer, head]),
                         "stays": bool(col[c:][ok[c:]].all())})
        cols = ["head", "layer", "h", "step", "checkpoint", "score", "final", "stays"]
        frame = pd.DataFrame(rows, columns=cols)
        return frame.sort_values(["step", "layer", "h"], kind="stable").reset_index(drop=True)

    def onset(self, layer: int, head: int, relation: str | None = None, *,
              type: str | None = None, suppression: bool = False,
              fraction: float = ONSET_FRACTION) -> int | None:
        """The step at which one head's score leaves its start for good (:func:`onset_index`).

        A rule on the onset, not on a threshold: the first checkpoint from which the
        head's trajectory stays, through the last checkpoint, past its first value plus
        ``fraction`` of its rise to its last value. Scores that keep growing after a
        circuit forms (static attention probabilities grow with the weights' norms) move
        a half-way point late but not the onset: on the induction ground truth
        (docs/results/track.md) it falls within 2 checkpoints of the behavioural jump on
        three seeds fixed after the rule was.

        Returns:
            The step, or None where the head's score never moves (or fewer than two
            checkpoints succeeded).
        """
        i = onset_index(self.trajectory(layer, head, relation, type=type,
                                        suppression=suppression), fraction)
        return None if i is None else int(self.steps[i])

    # ---- tables ---------------------------------------------------------------------
    def to_frame(self) -> pd.DataFrame:
        """Long format: one row per (checkpoint, relation or type, layer, head).

        Columns ``checkpoint`` (index), ``step``, ``kind`` (``relation`` | ``type``),
        ``name``, ``layer``, ``head``, ``score``, ``suppression`` (NaN for types),
        ``passes`` (the rule of :meth:`first_crossing`).
        """
        C, L, H = self.n_checkpoints, self.n_layers, self.n_heads
        parts = []
        for kind, names, vals, supp, passes in (
                ("relation", self.relations, self.scores, self.suppression,
                 np.nan_to_num(self.scores, nan=-np.inf) >= self.tau - 1e-6),
                ("type", self.types, self.type_scores, None, self.type_labels)):
            N = len(names)
            if not N:
                continue
            c, n, layer, head = np.meshgrid(np.arange(C), np.arange(N), np.arange(L),
                                            np.arange(H), indexing="ij")
            parts.append(pd.DataFrame({
                "checkpoint": c.ravel(), "step": np.asarray(self.steps)[c.ravel()],
                "kind": kind, "name": np.asarray(names, dtype=object)[n.ravel()],
                "layer": layer.ravel(), "head": head.ravel(), "score": vals.ravel(),
                "suppression": (supp.ravel() if supp is not None
                                else np.full(c.size, np.nan, np.float32)),
                "passes": passes.ravel()}))
        cols = ["checkpoint", "step", "kind", "name", "layer", "head", "score", "suppression",
                "passes"]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)

    def crossings(self) -> pd.DataFrame:
        """:meth:`first_crossing` of every relation and type, with ``kind`` and ``name``."""
        frames = [self.first_crossing(relation=r).assign(kind="relation", name=r)
                  for r in self.relations]
        frames += [self.first_crossing(type=t).assign(kind="type", name=t) for t in self.types]
        frames = [f for f in frames if len(f)]
        if not frames:
            return pd.DataFrame(columns=["kind", "name", "head", "step", "score", "final",
                                         "stays"])
        out = pd.concat(frames, ignore_index=True)
        return out[["kind", "name", "head", "layer", "h", "step", "checkpoint", "score", "final",
                    "stays"]]

    def summary_markdown(self, n: int = 5) -> str:
        """A Markdown summary: the series, failures, and per relation/type the first crossings."""
        lines = [f"# Track: {self.n_checkpoints} checkpoints, {self.n_layers} layers x "
                 f"{self.n_heads} heads", "",
                 f"- steps: {', '.join(str(s) for s in self.steps)}",
                 f"- first: {self.checkpoints[0]}; last: {self.checkpoints[-1]}",
                 f"- projection (every checkpoint): {self.projection_label()}; tau = {self.tau}",
                 f"- ran: {self._execution()}", ""]
        if self.failed:
            lines += ["## Failed checkpoints (NaN scores)", ""]
            lines += [f"- {i} ({self.checkpoints[i]}, step {int(self.steps[i])}): {why}"
                      for i, why in sorted(self.failed.items())]
            lines.append("")
        retried = {i: a for i, a in self.attempts.items() if i not in self.failed}
        if retried:
            lines += [f"- checkpoint {i} succeeded after {len(a)} failed attempt(s): {a[-1]}"
                      for i, a in sorted(retried.items())]
            lines.append("")
        cross = self.crossings()
        if len(cross):
            rows = []
            for (kind, name), g in cross.groupby(["kind", "name"], sort=False):
                count = len(g)
                g = g.sort_values(["step", "final"], ascending=[True, False]).head(n)
                rows.append({"kind": kind, "name": name, "heads": count,
                             "first crossings (step)": ", ".join(
                                 f"{h} ({s}{'' if st else ', unstable'})" for h, s, st in
                                 zip(g["head"], g["step"], g["stays"]))})
            lines += ["## First crossings (relations: score >= tau; types: the label rule)", "",
                      markdown_table(pd.DataFrame(rows)), ""]
        else:
            lines += ["No head crosses its rule at any checkpoint.", ""]
        for r, why in self.skipped.items():
            lines.append(f"- skipped {r}: {why}")
        return "\n".join(lines) + "\n"

    def projection_label(self) -> str:
        """The projection every checkpoint was read with, as one label (its name, or options)."""
        from ..projection.calibration import label

        return label(self.preset or "?", self.options, self.calibration)

    def _execution(self) -> str:
        e = self.execution
        where = f" on {e['scheduler']}" if e.get("scheduler") else ""
        return f"{e.get('mode', '?')}, {e.get('workers', '?')} worker(s){where}"

    def _repr_html_(self) -> str:
        """Jupyter: the series and the first crossings."""
        title = (f"<b>track</b>: {self.n_checkpoints} checkpoints (steps "
                 f"{int(self.steps[0])}&ndash;{int(self.steps[-1])}), {self.n_layers} x "
                 f"{self.n_heads} heads, {len(self.relations)} relations, {len(self.types)} "
                 f"types, {len(self.failed)} failed")
        cross = self.crossings()
        table = (cross.drop(columns=["layer", "h", "checkpoint"]).head(20).to_html(index=False)
                 if len(cross) else "<p>no head crosses its rule</p>")
        return f"<div>{html.escape(title, quote=False).replace('&amp;', '&')}{table}</div>"

    def figure(self, relation: str | None = None, *, type: str | None = None,
               heads: list[tuple[int, int]] | None = None, n: int = 5) -> Figure:
        """Score over steps for chosen heads (one line each).

        Args:
            relation: a tracked relation, or
            type: a tracked head type; default the first type, else the first relation.
            heads: ``(layer, head)`` pairs; default the ``n`` heads of highest final score
                among those that cross, else of highest final score.
            n: heads by default.

        Returns:
            A :class:`matplotlib.figure.Figure` (not registered with pyplot); the relation
            threshold ``tau`` as a dashed line; failed checkpoints as gaps.
        """
        from matplotlib.figure import Figure

        if relation is None and type is None:
            if self.types:
                type = self.types[0]
            elif self.relations:
                relation = self.relations[0]
            else:
                raise HeadmapsError("nothing was tracked: no relation and no type")
        vals, passes, name = self.series(relation, type=type)
        if heads is None:
            final = np.nan_to_num(vals[-1], nan=-np.inf)
            crossing = passes.any(0)
            key = np.where(crossing, final, -np.inf) if crossing.any() else final
            flat = np.argsort(-key, axis=None, kind="stable")[:n]
            heads = [(int(a), int(b)) for a, b in zip(*np.unravel_index(flat, key.shape))]
        fig = Figure(figsize=(6.4, 3.6))
        ax = fig.add_subplot()
        for layer, head in heads:
            ax.plot(self.steps, vals[:, layer, head], marker="o", ms=3, label=f"{layer}.{head}")
        if relation is not None:
            ax.axhline(self.tau, ls="--", color="grey", lw=1, label=f"tau = {self.tau:g}")
        ax.set_xlabel("training step")
        ax.set_ylabel(f"{'relation' if relation else 'head-type'} score")
        ax.set_title(f"{name} over {self.n_checkpoints} checkpoints")
        ax.legend(fontsize=8, loc="best")
        fig.tight_layout()
        return fig

    # ---- save / load ----------------------------------------------------------------
    def header(self) -> dict[str, Any]:
        """Everything but the arrays, as a JSON-able dict."""
        return {"kind": KIND, "checkpoints": self.checkpoints,
                "steps": [int(s) for s in self.steps], "n_layers": self.n_layers,
                "n_heads": self.n_heads, "relations": self.relations, "types": self.types,
                "failed": {str(i): w for i, w in self.failed.items()},
                "attempts": {str(i): a for i, a in self.attempts.items()}, "tau": self.tau,
                "n_pairs": self.n_pairs, "k": self.k, "skipped": self.skipped,
                "preset": self.preset, "options": self.options, "calibration": self.calibration,
                "fingerprint": self.fingerprint, "seed": self.seed, "execution": self.execution,
                "seconds": self.seconds, "model_info": self.model_info,
                "versions": self.versions,
                "composition_file": COMPOSITION_FILE if self.composition is not None else None}

    def save(self, path: str | os.PathLike, *, show_paths: bool = False) -> Path:
        """Write the folder ``path`` (``composition.parquet`` first, ``track.parquet`` last).

        Args:
            path: the folder.
            show_paths: keep absolute local paths in the header (by default names only).

        Returns:
            The folder.
        """
        folder = Path(path)
        if folder.suffix:
            raise HeadmapsError(f"a track result is saved to a folder, not a file: {folder}")
        if self.composition is not None:
            save_table(self.composition, {"kind": COMPOSITION_KIND}, folder / COMPOSITION_FILE,
                       show_paths=show_paths)
        save_table(self.to_frame(), self.header(), folder / TABLE_FILE, show_paths=show_paths)
        return folder

    @classmethod
    @reads_result("track result")
    def load(cls, path: str | os.PathLike) -> TrackResult:
        """Read a result written by :meth:`save` (its folder, or ``track.parquet`` in it)."""
        path = Path(path)
        folder = path.parent if path.suffix else path
        frame, h = load_table(folder, TABLE_FILE, KIND, "track result")
        C, L, H = len(h["checkpoints"]), int(h["n_layers"]), int(h["n_heads"])
        rel, kinds = list(h["relations"]), list(h["types"])
        arr = {"scores": np.full((C, len(rel), L, H), np.nan, np.float32),
               "suppression": np.full((C, len(rel), L, H), np.nan, np.float32),
               "type_scores": np.full((C, len(kinds), L, H), np.nan, np.float32),
               "type_labels": np.zeros((C, len(kinds), L, H), bool)}
        for kind, names, targets in (("relation", rel, ("scores", "suppression")),
                                     ("type", kinds, ("type_scores", "type_labels"))):
            part = frame[frame["kind"] == kind]
            if len(part) != C * len(names) * L * H:
                raise CorruptFileError(f"{folder / TABLE_FILE} has {len(part)} {kind} rows, "
                                       f"expected {C * len(names) * L * H}")
            if not len(part):
                continue
            ni = part["name"].map({r: i for i, r in enumerate(names)}).to_numpy()
            if np.isnan(ni.astype(np.float64)).any():
                raise CorruptFileError(f"{folder / TABLE_FILE} holds {kind}s its header does "
                                       "not name")
            idx = (part["checkpoint"].to_numpy(), ni.astype(int), part["layer"].to_numpy(),
                   part["head"].to_numpy())
            first, second = targets
            arr[first][idx] = part["score"].to_numpy(np.float32)
            arr[second][idx] = (part["suppression"].to_numpy(np.float32) if kind == "relation"
                                else part["passes"].to_numpy(bool))
        comp = None
        if h.get("composition_file"):
            comp, _ = load_table(folder / h["composition_file"], COMPOSITION_FILE,
                                 COMPOSITION_KIND, "track result (composition)")
        tau = float(h["tau"])
        return cls(list(h["checkpoints"]), np.asarray(h["steps"], np.int64), L, H, rel, kinds,
                   **arr, failed={int(i): str(w) for i, w in (h.get("failed") or {}).items()},
                   attempts={int(i): list(a) for i, a in (h.get("attempts") or {}).items()},
                   tau=tau if math.isfinite(tau) else DEFAULT_TAU,
                   n_pairs={r: int(v) for r, v in h["n_pairs"].items()},
                   k={r: int(v) for r, v in h["k"].items()}, skipped=dict(h["skipped"]),
                   preset=h.get("preset", ""), options=dict(h.get("options") or {}),
                   calibration=dict(h.get("calibration") or {}),
                   fingerprint=dict(h.get("fingerprint") or {}), seed=int(h.get("seed", 0)),
                   execution=dict(h.get("execution") or {}),
                   seconds={p: float(s) for p, s in (h.get("seconds") or {}).items()},
                   model_info=saved_model_info(h.get("model_info")),
                   versions=dict(h.get("versions") or {}), composition=comp)
