"""`HeadDiff`: the result of :func:`headmaps.diff`; saves and loads itself."""

from __future__ import annotations

import html
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

#: Parts of a diff without a noise floor, and why.
NO_FLOOR = {
    "weights": "exact functions of the weights (no sample)",
    "salient": "deterministic over the whole vocabulary (no sample)",
    "qk": "the positional profile of the mean query on the mean key is deterministic",
    "types": "not estimated: the previous-token type comes from a sample of random tokens "
             "(the same seed on both sides), the others are deterministic",
}
#: Files of a saved diff inside its folder: per (relation, head), per head.
RELATIONS_FILE, HEADS_FILE = "diff.parquet", "heads.parquet"
#: Optional files: both models' salient operations and positional profiles (for the view).
SALIENT_FILES = {"salient_a": "salient_a.parquet", "salient_b": "salient_b.parquet"}
PROFILES_FILE, PROFILES_KIND = "profiles.parquet", "headmaps.HeadDiff.profiles"
KIND, HEADS_KIND = "headmaps.HeadDiff", "headmaps.HeadDiff.heads"
_REL_ARRAYS = ("scores_a", "scores_b", "supp_a", "supp_b", "floor", "supp_floor")


@dataclass
class HeadDiff:
    """What changed in every head from model ``a`` to model ``b`` (heads matched by position).

    Attributes:
        model_a, model_b: the two models' ids.
        n_layers, n_heads: sizes (equal for both).
        relations: the relations scored on both, in order.
        scores_a, scores_b: ``(n_relations, n_layers, n_heads)`` relation scores.
        supp_a, supp_b: the same for suppression.
        floor, supp_floor: ``(n_relations, n_layers, n_heads)`` noise floors of the score
            (suppression) change: a change counts when its size exceeds its floor.
        heads: name -> ``(n_layers, n_heads)`` per-head figures: ``wvo_change``,
            ``wqk_change`` (relative Frobenius change), ``ov_read_angle``,
            ``ov_write_angle`` (largest principal angle in degrees), and when computed
            ``salient_source_overlap``, ``salient_mapping_overlap`` (Jaccard),
            ``profile_tv``, ``prev_mass_a/_b``, ``preferred_distance_a/_b``,
            ``type_<t>_a/_b`` and ``is_<t>_a/_b`` (0/1).
        n_pairs: relation -> pairs used (single tokens in both models).
        k: relation -> top-k (the same for both).
        skipped: relation -> why it was not scored.
        vocab: how the vocabularies relate (``equal``, ``shared``, ``size_a``, ``size_b``, ``by``).
        matching: how heads are matched (``"position"``: ``L.H`` with ``L.H``).
        types: head types compared (empty when not computed).
        tau, alpha, n_boot, seed: threshold, floor quantile, bootstrap draws, seed.
        preset, options, calibration: the projection both models used.
        no_floor: part -> why it has no noise floor.
        params: other arguments; seconds: part -> time taken.
        model_info_a, model_info_b, versions: provenance.
        salient_a, salient_b: both models' salient operations
            (:class:`~headmaps.salient.SalientAll`), or None (not computed).
        profile_a, profile_b: both models' positional profile weights
            ``(n_layers, n_heads, max_distance + 1)`` (softmax over distances), or None.
    """

    model_a: str
    model_b: str
    n_layers: int
    n_heads: int
    relations: list[str]
    scores_a: np.ndarray
    scores_b: np.ndarray
    supp_a: np.ndarray
    supp_b: np.ndarray
    floor: np.ndarray
    supp_floor: np.ndarray
    heads: dict[str, np.ndarray]
    n_pairs: dict[str, int] = field(default_factory=dict)
    k: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    vocab: dict[str, Any] = field(default_factory=dict)
    matching: str = "position"
    types: list[str] = field(default_factory=list)
    tau: float = DEFAULT_TAU
    alpha: float = 0.05
    n_boot: int = 0
    seed: int = 0
    preset: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    no_floor: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    model_info_a: dict[str, Any] = field(default_factory=dict)
    model_info_b: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    salient_a: Any = field(default=None, repr=False)
    salient_b: Any = field(default=None, repr=False)
    profile_a: np.ndarray | None = field(default=None, repr=False)
    profile_b: np.ndarray | None = field(default=None, repr=False)

    # ---- derived arrays -------------------------------------------------------------
    @property
    def change(self) -> np.ndarray:
        """``(n_relations, n_layers, n_heads)`` relation score change ``b - a``."""
        return self.scores_b - self.scores_a

    @property
    def supp_change(self) -> np.ndarray:
        """``(n_relations, n_layers, n_heads)`` suppression score change ``b - a``."""
        return self.supp_b - self.supp_a

    @property
    def changed(self) -> np.ndarray:
        """``(n_relations, n_layers, n_heads)`` bool: the score change exceeds its noise floor."""
        return np.abs(self.change) > self.floor

    @property
    def supp_changed(self) -> np.ndarray:
        """The same for suppression."""
        return np.abs(self.supp_change) > self.supp_floor

    def _r(self, relation: str) -> int:
        if relation not in self.relations:
            why = f" (skipped: {self.skipped[relation]})" if relation in self.skipped else ""
            raise UnknownRelationError(f"relation {relation!r} not in this diff{why}; diffed: "
                                       f"{', '.join(self.relations) or 'none'}")
        return self.relations.index(relation)

    # ---- analyses -------------------------------------------------------------------
    def ranking(self, relation: str, suppression: bool = False,
                changed_only: bool = True) -> pd.DataFrame:
        """Heads by how far their change lies beyond the noise floor, largest first.

        Args:
            relation: a diffed relation.
            suppression: rank the suppression change instead.
            changed_only: keep only heads whose change exceeds the floor.

        Returns:
            Columns ``head`` (``"L.H"``), ``layer``, ``h``, ``a``, ``b``, ``change``,
            ``floor``, ``beyond`` (``|change| - floor``), ``changed``.
        """
        r = self._r(relation)
        a, b = (self.supp_a, self.supp_b) if suppression else (self.scores_a, self.scores_b)
        fl = (self.supp_floor if suppression else self.floor)[r]
        ch = b[r] - a[r]
        beyond = np.abs(ch) - fl
        L, H = np.meshgrid(np.arange(self.n_layers), np.arange(self.n_heads), indexing="ij")
        frame = pd.DataFrame({"head": [f"{x}.{y}" for x, y in zip(L.ravel(), H.ravel())],
                              "layer": L.ravel(), "h": H.ravel(), "a": a[r].ravel(),
                              "b": b[r].ravel(), "change": ch.ravel(), "floor": fl.ravel(),
                              "beyond": beyond.ravel(), "changed": (beyond > 0).ravel()})
        if changed_only:
            frame = frame[frame["changed"]]
        return frame.sort_values(["beyond", "layer", "h"], ascending=[False, True, True],
                                 kind="stable").reset_index(drop=True)

    def top_heads(self, relation: str, n: int = 5, suppression: bool = False) -> list[str]:
        """The ``n`` heads whose change of ``relation`` lies furthest beyond the floor."""
        return list(self.ranking(relation, suppression)["head"][:n])

    def gained_lost(self, relation: str, suppression: bool = False) -> dict[str, list[str]]:
        """Heads that gained / lost ``relation``: crossing ``tau`` by a change beyond the floor.

        Returns:
            ``{"gained": [...], "lost": [...]}``, heads ``"L.H"`` by how far beyond the floor.
        """
        frame = self.ranking(relation, suppression)
        up = frame[(frame["a"] < self.tau) & (frame["b"] >= self.tau)]
        down = frame[(frame["a"] >= self.tau) & (frame["b"] < self.tau)]
        return {"gained": list(up["head"]), "lost": list(down["head"])}

    def types_gained_lost(self) -> dict[str, dict[str, list[str]]]:
        """Per head type, heads whose label switched on (gained) or off (lost); no noise floor."""
        out = {}
        for t in self.types:
            la, lb = self.heads[f"is_{t}_a"] > 0.5, self.heads[f"is_{t}_b"] > 0.5
            out[t] = {"gained": [f"{x}.{y}" for x, y in np.argwhere(lb & ~la)],
                      "lost": [f"{x}.{y}" for x, y in np.argwhere(la & ~lb)]}
        return out

    def n_changed(self) -> dict[str, int]:
        """Relation -> heads whose score change exceeds the floor."""
        return {r: int(self.changed[i].sum()) for i, r in enumerate(self.relations)}

    # ---- tables ---------------------------------------------------------------------
    def to_frame(self) -> pd.DataFrame:
        """Tidy frame: one row per (relation, layer, head) with both scores, changes and floors."""
        R, L, H = len(self.relations), self.n_layers, self.n_heads
        rel, layer, head = np.meshgrid(np.arange(R), np.arange(L), np.arange(H), indexing="ij")
        cols: dict[str, Any] = {
            "relation": np.asarray(self.relations, dtype=object)[rel.ravel()],
            "layer": layer.ravel(), "head": head.ravel()}
        for name in _REL_ARRAYS:
            cols[name] = getattr(self, name).ravel()
        cols["change"] = self.change.ravel()
        cols["changed"] = self.changed.ravel()
        cols["supp_change"] = self.supp_change.ravel()
        cols["supp_changed"] = self.supp_changed.ravel()
        return pd.DataFrame(cols)

    def head_frame(self) -> pd.DataFrame:
        """Tidy frame: one row per head (``layer``, ``head``) with every per-head figure."""
        L, H = np.meshgrid(np.arange(self.n_layers), np.arange(self.n_heads), indexing="ij")
        cols: dict[str, Any] = {"layer": L.ravel(), "head": H.ravel()}
        for name, v in self.heads.items():
            cols[name] = v.ravel().astype(bool) if name.startswith("is_") else v.ravel()
        return pd.DataFrame(cols)

    def summary_markdown(self, n: int = 5) -> str:
        """A Markdown summary: models, vocabularies, per relation the heads beyond the floor."""
        v = self.vocab
        vocab = ("equal" if v.get("equal") else
                 f"mapped by {v.get('by', 'token string')}: {v.get('shared')} token strings shared "
                 f"({v.get('size_a')} and {v.get('size_b')} tokens)")
        lines = [f"# Head diff: {self.model_a} -> {self.model_b}", "",
                 f"- heads matched by {self.matching} (L.H with L.H): "
                 f"{self.n_layers} layers x {self.n_heads} heads",
                 f"- vocabularies: {vocab}",
                 f"- projection (both models): {self.projection_label()}; tau = {self.tau}; noise "
                 "floor: paired "
                 f"bootstrap over pairs, {self.n_boot} draws, {1 - self.alpha:.0%} quantile",
                 ""]
        if self.relations:
            rows = []
            for r in self.relations:
                gl = self.gained_lost(r)
                top = self.ranking(r).head(n)
                rows.append({"relation": r, "pairs": self.n_pairs.get(r, 0), "k": self.k.get(r, 0),
                             "changed": int(self.changed[self._r(r)].sum()),
                             "top (change)": ", ".join(f"{h} ({c:+.2f})" for h, c in
                                                       zip(top["head"], top["change"])) or "-",
                             "gained": ", ".join(gl["gained"]) or "-",
                             "lost": ", ".join(gl["lost"]) or "-"})
            lines += ["## Relation scores (changes beyond the noise floor)", "",
                      markdown_table(pd.DataFrame(rows)), ""]
        for r, why in self.skipped.items():
            lines.append(f"- skipped {r}: {why}")
        w = self.head_frame()
        w["head"] = [f"{x}.{y}" for x, y in zip(w["layer"], w["head"])]
        top_w = w.sort_values("wvo_change", ascending=False, kind="stable").head(n)
        cols = [c for c in ("head", "wvo_change", "wqk_change", "ov_read_angle", "ov_write_angle",
                            "salient_mapping_overlap", "profile_tv") if c in w.columns]
        lines += ["## Weights (largest relative change of W_VO)", "",
                  markdown_table(top_w[cols].reset_index(drop=True), 3), ""]
        if self.types:
            lines += ["## Head types (label switches; no noise floor)", ""]
            for t, gl in self.types_gained_lost().items():
                lines.append(f"- {t}: gained {', '.join(gl['gained']) or '-'}; lost "
                             f"{', '.join(gl['lost']) or '-'}")
            lines.append("")
        lines += ["No noise floor: " + "; ".join(f"{p} ({why})" for p, why in
                                                 self.no_floor.items()) + "."]
        return "\n".join(lines) + "\n"

    def projection_label(self) -> str:
        """The projection both models were read with, as one label (its name, or options)."""
        from ..projection.calibration import label

        return label(self.preset or "?", self.options, self.calibration)

    def _repr_html_(self) -> str:
        """Jupyter: per relation the heads beyond the floor, gained and lost."""
        title = (f"<b>diff {html.escape(self.model_a)} &rarr; {html.escape(self.model_b)}</b>: "
                 f"{self.n_layers} x {self.n_heads} heads matched by {self.matching}, "
                 f"{len(self.relations)} relations, tau = {self.tau}")
        rows = []
        for r in self.relations:
            gl, top = self.gained_lost(r), self.top_heads(r, 3)
            rows.append({"relation": r, "pairs": self.n_pairs.get(r, 0),
                         "changed": int(self.changed[self._r(r)].sum()),
                         "top": ", ".join(top) or "-", "gained": ", ".join(gl["gained"]) or "-",
                         "lost": ", ".join(gl["lost"]) or "-"})
        table = pd.DataFrame(rows).to_html(index=False) if rows else "<p>no relations</p>"
        return f"<div>{title}{table}</div>"

    def figure(self, relation: str | None = None) -> Figure:
        """The change of one relation's scores per head, beside the weight change and a scatter.

        Args:
            relation: a diffed relation; default the one with the most heads beyond the floor.

        Returns:
            A :class:`matplotlib.figure.Figure` (not registered with pyplot): left, the score
            change over layers x heads (heads within the noise floor blank, gained heads
            outlined); middle, the relative change of ``W_VO``; right, score in ``a``
            against ``b`` (beyond the floor in colour).
        """
        from .. import figures

        title = f"{self.model_a} -> {self.model_b} (heads matched by {self.matching})"
        wvo = np.asarray(self.heads["wvo_change"], dtype=np.float64)
        if not self.relations:
            return figures.diff_figure(wvo, title=title)
        if relation is None:
            relation = max(self.relations, key=lambda r: (self.changed[self._r(r)].sum(),
                                                          -self._r(r)))
        r = self._r(relation)
        gained = [tuple(map(int, h.split("."))) for h in self.gained_lost(relation)["gained"]]
        return figures.diff_figure(wvo, title=title, relation=relation, change=self.change[r],
                                   changed=self.changed[r], gained=gained,
                                   scores_a=self.scores_a[r], scores_b=self.scores_b[r],
                                   tau=self.tau, names=(self.model_a, self.model_b))

    # ---- save / load ----------------------------------------------------------------
    def header(self) -> dict[str, Any]:
        """Everything but the arrays, as a JSON-able dict."""
        return {"kind": KIND, "model_a": self.model_a, "model_b": self.model_b,
                "n_layers": self.n_layers, "n_heads": self.n_heads, "relations": self.relations,
                "n_pairs": self.n_pairs, "k": self.k, "skipped": self.skipped,
                "vocab": self.vocab, "matching": self.matching, "types": self.types,
                "tau": self.tau, "alpha": self.alpha, "n_boot": self.n_boot, "seed": self.seed,
                "preset": self.preset, "options": self.options, "calibration": self.calibration,
                "no_floor": self.no_floor, "params": self.params, "seconds": self.seconds,
                "model_info_a": self.model_info_a, "model_info_b": self.model_info_b,
                "versions": self.versions, "heads_file": HEADS_FILE,
                "salient_files": {k: f for k, f in SALIENT_FILES.items()
                                  if getattr(self, k) is not None},
                "profiles_file": PROFILES_FILE if self.profile_a is not None else None}

    def save(self, path: str | os.PathLike, *, show_paths: bool = False) -> Path:
        """Write the folder ``path``: ``heads.parquet`` first, then ``diff.parquet`` (+ headers).

        Each file is written atomically; ``diff.json`` (written last) is what :meth:`load`
        starts from.

        Args:
            path: the folder.
            show_paths: keep absolute local paths in the headers (by default file names only).

        Returns:
            The folder.
        """
        folder = Path(path)
        if folder.suffix:
            raise HeadmapsError(f"a head diff is saved to a folder, not a file: {folder}")
        save_table(self.head_frame(), {"kind": HEADS_KIND}, folder / HEADS_FILE,
                   show_paths=show_paths)
        for name, file in SALIENT_FILES.items():
            if getattr(self, name) is not None:
                getattr(self, name).save(folder / file, show_paths=show_paths)
        if self.profile_a is not None and self.profile_b is not None:
            save_table(_profile_frame(self.profile_a, self.profile_b), {"kind": PROFILES_KIND},
                       folder / PROFILES_FILE, show_paths=show_paths)
        save_table(self.to_frame(), self.header(), folder / RELATIONS_FILE, show_paths=show_paths)
        return folder

    @classmethod
    @reads_result("head diff")
    def load(cls, path: str | os.PathLike) -> HeadDiff:
        """Read a diff written by :meth:`save` (its folder, or ``diff.parquet`` in it)."""
        path = Path(path)
        folder = path.parent if path.suffix else path
        frame, h = load_table(folder, RELATIONS_FILE, KIND, "head diff")
        heads_frame, _ = load_table(folder / h.get("heads_file", HEADS_FILE), HEADS_FILE,
                                    HEADS_KIND, "head diff (per-head table)")
        R, L, H = len(h["relations"]), int(h["n_layers"]), int(h["n_heads"])
        arr = {n: np.zeros((R, L, H), np.float32) for n in _REL_ARRAYS}
        if R:
            index = {r: i for i, r in enumerate(h["relations"])}
            ri = frame["relation"].map(index).to_numpy()
            if np.isnan(ri.astype(np.float64)).any():
                raise CorruptFileError(f"{folder / RELATIONS_FILE} holds relations its header "
                                       "does not name")
            li, hi = frame["layer"].to_numpy(), frame["head"].to_numpy()
            for n in _REL_ARRAYS:
                arr[n][ri.astype(int), li, hi] = frame[n].to_numpy()
        if len(heads_frame) != L * H:
            raise CorruptFileError(f"{folder / HEADS_FILE} has {len(heads_frame)} rows, expected "
                                   f"{L * H}")
        li, hi = heads_frame["layer"].to_numpy(), heads_frame["head"].to_numpy()
        heads = {}
        for c in heads_frame.columns:
            if c in ("layer", "head"):
                continue
            a = np.zeros((L, H), np.float32)
            a[li, hi] = heads_frame[c].to_numpy().astype(np.float32)
            heads[c] = a
        sides: dict[str, Any] = {}
        for name, file in (h.get("salient_files") or {}).items():
            from ..salient import SalientAll

            if name in SALIENT_FILES:
                sides[name] = SalientAll.load(folder / file)
        if h.get("profiles_file"):
            prof, _ = load_table(folder / h["profiles_file"], PROFILES_FILE, PROFILES_KIND,
                                 "head diff (profiles)")
            sides["profile_a"], sides["profile_b"] = _profile_arrays(prof, L, H)
        return cls(h["model_a"], h["model_b"], L, H, list(h["relations"]), **arr, heads=heads,
                   n_pairs={r: int(v) for r, v in h["n_pairs"].items()},
                   k={r: int(v) for r, v in h["k"].items()}, skipped=dict(h["skipped"]),
                   vocab=dict(h["vocab"]), matching=h.get("matching", "position"),
                   types=list(h.get("types", [])), tau=float(h["tau"]), alpha=float(h["alpha"]),
                   n_boot=int(h["n_boot"]), seed=int(h["seed"]), preset=h.get("preset", ""),
                   options=dict(h.get("options") or {}),
                   calibration=dict(h.get("calibration") or {}),
                   no_floor=dict(h.get("no_floor") or {}), params=dict(h.get("params") or {}),
                   seconds={p: float(s) for p, s in (h.get("seconds") or {}).items()},
                   model_info_a=saved_model_info(h.get("model_info_a")),
                   model_info_b=saved_model_info(h.get("model_info_b")),
                   versions=dict(h.get("versions") or {}), **sides)


def _profile_frame(a: np.ndarray, b: np.ndarray) -> pd.DataFrame:
    """Both profiles, one row per (layer, head, distance)."""
    L, H, D = a.shape
    li, hi, di = np.meshgrid(np.arange(L), np.arange(H), np.arange(D), indexing="ij")
    return pd.DataFrame({"layer": li.ravel(), "head": hi.ravel(), "distance": di.ravel(),
                         "a": np.asarray(a, np.float32).ravel(),
                         "b": np.asarray(b, np.float32).ravel()})


def _profile_arrays(frame: pd.DataFrame, L: int, H: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`_profile_frame`."""
    D = int(frame["distance"].max()) + 1 if len(frame) else 0
    if len(frame) != L * H * D:
        raise CorruptFileError(f"{PROFILES_FILE} has {len(frame)} rows, expected {L * H * D}")
    out = []
    for side in ("a", "b"):
        arr = np.zeros((L, H, D), np.float32)
        arr[frame["layer"].to_numpy(), frame["head"].to_numpy(),
            frame["distance"].to_numpy()] = frame[side].to_numpy(np.float32)
        out.append(arr)
    return out[0], out[1]
