"""Result types of the QK half.

One head's content preferences and positional profile, and every head at once.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._html import html_card
from ..errors import HeadmapsError
from ..io import load_table, markdown_table, reads_result, save_table, saved_model_info, table_path
from ..salient.tokens import visible

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_BARS = "▁▂▃▄▅▆▇█"
#: Distances counted as "local" by :attr:`PositionalProfile.local_mass`.
LOCAL_DISTANCE = 4


def _softmax(x: np.ndarray) -> np.ndarray:
    finite = np.isfinite(x)
    if not finite.any():
        return np.zeros_like(x, dtype=np.float64)
    z = np.where(finite, x - x[finite].max(), -np.inf).astype(np.float64)
    e = np.exp(z)
    return e / e.sum()


@dataclass
class PositionalProfile:
    """The logit a head gives a key ``Δ = 0..max_distance`` tokens back, content averaged.

    Attributes:
        layer, head: the head.
        logits: ``(max_distance + 1,)``; ``-inf`` outside a sliding window.
        positions: the layer's positional scheme in words.
        model_id, preset: provenance.
        sampled: ``(max_distance + 1,)`` expected attention by distance of a random query
            token over random key tokens (content variation kept), or None.
    """

    layer: int
    head: int
    logits: np.ndarray
    positions: str = ""
    model_id: str = ""
    preset: str = ""
    sampled: np.ndarray | None = None

    @property
    def sampled_prev_mass(self) -> float:
        """Expected attention on ``Δ = 1`` over random tokens (:attr:`sampled`); NaN without it."""
        if self.sampled is not None and len(self.sampled) > 1:
            return float(self.sampled[1])
        return float("nan")

    @property
    def weights(self) -> np.ndarray:
        """Softmax of :attr:`logits`: the attention of a query that sees exactly these keys."""
        return _softmax(np.asarray(self.logits, dtype=np.float64))

    @property
    def self_mass(self) -> float:
        """Weight on ``Δ = 0`` (the query's own token)."""
        return float(self.weights[0])

    @property
    def prev_mass(self) -> float:
        """A head's previous-token mass (one definition, shared with the head types).

        The expected attention on ``Δ = 1`` over random tokens (:attr:`sampled_prev_mass`,
        which ``headmaps types`` shows too); the mean-vector weight (:attr:`mean_prev_mass`)
        only when no sampled profile is at hand.
        """
        sampled = self.sampled_prev_mass
        return sampled if math.isfinite(sampled) else self.mean_prev_mass

    @property
    def mean_prev_mass(self) -> float:
        """Weight on ``Δ = 1`` of the mean-vector profile (:attr:`weights`)."""
        return float(self.weights[1]) if len(self.logits) > 1 else 0.0

    @property
    def local_mass(self) -> float:
        """Weight on ``Δ <= 4``."""
        return float(self.weights[:LOCAL_DISTANCE + 1].sum())

    @property
    def preferred_distance(self) -> int:
        """The distance with the largest logit."""
        return int(np.argmax(np.where(np.isfinite(self.logits), self.logits, -np.inf)))

    @property
    def flatness(self) -> float:
        """Entropy of :attr:`weights` over its maximum (1 = no positional preference)."""
        w = self.weights
        n = int(np.isfinite(self.logits).sum())
        if n < 2:
            return 0.0
        nz = w[w > 0]
        return float(-(nz * np.log(nz)).sum() / math.log(n))

    def kind(self) -> str:
        """A short positional label.

        ``previous-token`` / ``self`` (half the weight or more on Δ = 1 / 0), ``mostly
        previous-token`` / ``mostly self`` / ``Δ=k`` (the preferred distance holds 30% or
        more), ``flat`` (entropy >= 95% of its maximum), ``local`` (half on Δ <= 4), else ``broad``.
        """
        if self.prev_mass >= 0.5:
            return "previous-token"
        if self.self_mass >= 0.5:
            return "self"
        d = self.preferred_distance
        if self.weights[d] >= 0.3:
            return {0: "mostly self", 1: "mostly previous-token"}.get(d, f"Δ={d}")
        if self.flatness >= 0.95:
            return "flat"
        return "local" if self.local_mass >= 0.5 else "broad"

    def sparkline(self, width: int | None = None) -> str:
        """The profile as a line of block characters, distance 0 on the left."""
        x = np.asarray(self.logits if width is None else self.logits[:width], dtype=np.float64)
        fin = np.isfinite(x)
        if not fin.any():
            return " " * len(x)
        lo, hi = x[fin].min(), x[fin].max()
        span = hi - lo if hi > lo else 1.0
        return "".join(_BARS[int(round((v - lo) / span * (len(_BARS) - 1)))] if f else " "
                       for v, f in zip(x, fin))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (``-inf`` logits as None)."""
        return {"layer": self.layer, "head": self.head, "positions": self.positions,
                "model_id": self.model_id, "preset": self.preset,
                "logits": [float(v) if np.isfinite(v) else None for v in self.logits],
                "weights": [float(v) for v in self.weights], "kind": self.kind(),
                "prev_mass": self.prev_mass, "self_mass": self.self_mass,
                "local_mass": self.local_mass,
                "preferred_distance": self.preferred_distance, "flatness": self.flatness,
                "sampled": None if self.sampled is None else [float(v) for v in self.sampled]}

    def _repr_html_(self, width: int = 12) -> str:
        """Jupyter: the kind, the masses and the first ``width`` distances' weights and logits."""
        n = min(width, len(self.logits))
        frame = pd.DataFrame({"Δ": ["weight", "logit"]}
                             | {str(d): [self.weights[d], self.logits[d]] for d in range(n)})
        notes = [f"previous {self.prev_mass:.2f}, self {self.self_mass:.2f}, Δ<={LOCAL_DISTANCE} "
                 f"{self.local_mass:.2f}, preferred Δ={self.preferred_distance}, flatness "
                 f"{self.flatness:.2f}; Δ=0..{len(self.logits) - 1} {self.sparkline()}"]
        return html_card(f"positional profile of {self.layer}.{self.head} ({self.positions}): "
                         f"{self.kind()}", frame, notes, "{:.2f}")

    def __str__(self) -> str:
        return (f"positional profile of {self.layer}.{self.head} ({self.positions}): "
                f"{self.kind()}; "
                f"Δ=0..{len(self.logits) - 1} {self.sparkline()}; previous {self.prev_mass:.2f}, "
                f"self {self.self_mass:.2f}, preferred Δ={self.preferred_distance}")


@dataclass
class AttentionPreferences:
    """What one head looks for by content (position ignored: the logit at distance 0).

    Attributes:
        layer, head: the head.
        key_ids, key_tokens, key_scores: ``(n_keys,)`` key tokens with the largest
            key-side preference (the logit the average query gives them).
        query_ids, query_tokens, selectivity: ``(n_queries,)`` query tokens with the
            largest spread of logits over keys.
        pair_ids, pair_tokens, pair_scores: ``(n_queries, n_pairs)`` each query's
            preferred keys by the query-specific logit ``scale * (q_a - q̄) . k_b``.
        model_id, preset: provenance.
    """

    layer: int
    head: int
    key_ids: np.ndarray
    key_tokens: list[str]
    key_scores: np.ndarray
    query_ids: np.ndarray
    query_tokens: list[str]
    selectivity: np.ndarray
    pair_ids: np.ndarray
    pair_tokens: list[list[str]]
    pair_scores: np.ndarray
    model_id: str = ""
    preset: str = ""

    @property
    def pairs(self) -> list[tuple[str, list[str]]]:
        """``[(query token, [preferred key tokens]), ...]``, most selective first."""
        return list(zip(self.query_tokens, self.pair_tokens))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return {
            "layer": self.layer, "head": self.head, "model_id": self.model_id,
            "preset": self.preset,
            "keys": [{"id": int(i), "token": t, "score": float(s)}
                     for i, t, s in zip(self.key_ids, self.key_tokens, self.key_scores)],
            "queries": [{"id": int(i), "token": t, "selectivity": float(s),
                         "keys": [{"id": int(pi), "token": pt, "score": float(ps)}
                                  for pi, pt, ps in zip(pids, ptoks, pscs)]}
                        for i, t, s, pids, ptoks, pscs in zip(self.query_ids, self.query_tokens,
                                                              self.selectivity,
                                                              self.pair_ids, self.pair_tokens,
                                                              self.pair_scores)],
        }

    def text(self) -> str:
        """Plain text: key-side preferences, then query tokens and their preferred keys."""
        keys = ", ".join(f"{visible(t)} ({s:.2f})" for t, s in zip(self.key_tokens,
                                                                   self.key_scores))
        lines = [f"key side (any query): {keys}"]
        for t, sel, toks, scs in zip(self.query_tokens, self.selectivity, self.pair_tokens,
                                     self.pair_scores):
            prefs = ", ".join(f"{visible(k)} ({s:+.2f})" for k, s in zip(toks, scs))
            lines.append(f"  {visible(t)} [{sel:.2f}] -> {prefs}")
        return "\n".join(lines)

    def to_frame(self) -> pd.DataFrame:
        """Tidy frame: the key-side preferences, then each query's preferred keys.

        One ``side="key"`` row per key-side preference, then one ``side="pair"`` row per
        (query, preferred key) with the query's selectivity.
        """
        n_q, n_p = np.shape(self.pair_ids) if np.ndim(self.pair_ids) == 2 else (0, 0)
        keys = pd.DataFrame({"side": "key", "rank": np.arange(len(self.key_tokens)),
                             "query_id": -1, "query": "", "selectivity": np.nan,
                             "key_rank": np.arange(len(self.key_tokens)),
                             "key_id": np.asarray(self.key_ids, dtype=np.int64),
                             "key": list(self.key_tokens),
                             "score": np.asarray(self.key_scores, dtype=np.float64)})
        qi, pi = np.meshgrid(np.arange(n_q), np.arange(n_p), indexing="ij")
        qi, pi = qi.ravel(), pi.ravel()
        pairs = pd.DataFrame({"side": "pair", "rank": qi,
                              "query_id": np.asarray(self.query_ids, dtype=np.int64)[qi],
                              "query": [self.query_tokens[q] for q in qi],
                              "selectivity": np.asarray(self.selectivity, dtype=np.float64)[qi],
                              "key_rank": pi,
                              "key_id": np.asarray(self.pair_ids, dtype=np.int64).ravel(),
                              "key": [self.pair_tokens[q][k] for q, k in zip(qi, pi)],
                              "score": np.asarray(self.pair_scores, dtype=np.float64).ravel()})
        frame = pd.concat([keys, pairs], ignore_index=True)
        return frame.astype({"rank": np.int64, "query_id": np.int64, "key_rank": np.int64,
                             "key_id": np.int64})

    def header(self) -> dict[str, Any]:
        """Provenance, sizes and the token strings (exact, whatever a CSV reader does)."""
        return {"kind": "headmaps.AttentionPreferences", "layer": self.layer, "head": self.head,
                "model_id": self.model_id, "preset": self.preset,
                "n_keys": len(self.key_tokens), "n_queries": len(self.query_tokens),
                "n_pairs": int(np.shape(self.pair_ids)[1]) if np.ndim(self.pair_ids) == 2 else 0,
                "key_tokens": list(self.key_tokens), "query_tokens": list(self.query_tokens),
                "pair_tokens": [list(p) for p in self.pair_tokens]}

    def save(self, path: str | os.PathLike, *, show_paths: bool = False) -> Path:
        """Write ``preferences.parquet`` (or a given .parquet/.csv file) and its JSON header.

        Args:
            path: a folder (the file goes in it as ``preferences.parquet``) or a .parquet/.csv file.
            show_paths: keep absolute local paths in the header (by default file names only).
        """
        return save_table(self.to_frame(), self.header(), table_path(path, "preferences.parquet"),
                          show_paths=show_paths)

    @classmethod
    @reads_result("attention preferences")
    def load(cls, path: str | os.PathLike) -> AttentionPreferences:
        """Read what :meth:`save` wrote (a file, or a folder holding preferences.parquet)."""
        frame, h = load_table(path, "preferences.parquet", "headmaps.AttentionPreferences",
                              "attention preferences")
        n_k, n_q, n_p = int(h["n_keys"]), int(h["n_queries"]), int(h["n_pairs"])
        keys = frame[frame["side"] == "key"].sort_values("rank", kind="stable")
        pairs = frame[frame["side"] == "pair"].sort_values(["rank", "key_rank"], kind="stable")
        if len(keys) != n_k or len(pairs) != n_q * n_p:
            raise HeadmapsError(f"{path}: expected {n_k} key rows and {n_q * n_p} pair rows")
        first = pairs.groupby("rank", sort=True).first()
        return cls(int(h["layer"]), int(h["head"]), keys["key_id"].to_numpy(np.int64),
                   list(h["key_tokens"]), keys["score"].to_numpy(np.float32),
                   first["query_id"].to_numpy(np.int64), list(h["query_tokens"]),
                   first["selectivity"].to_numpy(np.float32),
                   pairs["key_id"].to_numpy(np.int64).reshape(n_q, n_p),
                   [list(p) for p in h["pair_tokens"]],
                   pairs["score"].to_numpy(np.float32).reshape(n_q, n_p),
                   h.get("model_id", ""), h.get("preset", ""))

    def figure(self) -> Figure:
        """The key-side preferences as bars (the logit the average query gives each key)."""
        from .. import figures

        return figures.bars_figure(
            [visible(t) for t in self.key_tokens], self.key_scores,
            xlabel="key-side logit (average query)",
            title=f"{self.layer}.{self.head} of {self.model_id or 'model'}: keys it looks for")

    def summary_markdown(self) -> str:
        """Markdown: the key-side preferences, then each query token and its preferred keys."""
        keys = ", ".join(f"`{visible(t)}` ({s:.2f})" for t, s in zip(self.key_tokens,
                                                                     self.key_scores))
        frame = pd.DataFrame({
            "query": [visible(t) for t in self.query_tokens],
            "selectivity": np.asarray(self.selectivity, dtype=np.float64),
            "preferred keys (logit)": [", ".join(f"{visible(k)} ({s:+.2f})" for k, s in zip(ks, ss))
                                       for ks, ss in zip(self.pair_tokens, self.pair_scores)]})
        return "\n".join([f"# Content preferences of {self.layer}.{self.head} of "
                          f"{self.model_id or 'model'}", "", "Position ignored. Key side (any "
                          f"query): {keys}.", "", markdown_table(frame), ""])

    def _repr_html_(self) -> str:
        """Jupyter: the key-side preferences, then each query token and its preferred keys."""
        keys = ", ".join(f"{visible(t)} ({s:.2f})"
                         for t, s in zip(self.key_tokens, self.key_scores))
        frame = pd.DataFrame({
            "query": [visible(t) for t in self.query_tokens],
            "selectivity": self.selectivity,
            "preferred keys (logit)": [", ".join(f"{visible(k)} ({s:+.2f})" for k, s in zip(ks, ss))
                                       for ks, ss in zip(self.pair_tokens, self.pair_scores)],
        })
        return html_card(f"content preferences of {self.layer}.{self.head} of "
                         f"{self.model_id or 'model'} (position ignored)", frame,
                         [f"key side (any query): {keys}"], "{:.2f}")

    def __str__(self) -> str:
        return f"content preferences of {self.layer}.{self.head} (position ignored)\n{self.text()}"


def describe_qk(prefs: AttentionPreferences, profile: PositionalProfile, n: int = 3) -> str:
    """One line on where a head looks: its positional kind and favoured key tokens."""
    keys = ", ".join(visible(t) for t in prefs.key_tokens[:n])
    return (f"attends {profile.kind()} (Δ=1 {profile.prev_mass:.0%}, "
            f"Δ=0 {profile.self_mass:.0%}); keys favoured: {keys}")


@dataclass
class AttentionSummary:
    """The QK half of every head of the chosen layers.

    Attributes:
        layers: the layers computed; n_heads: heads per layer.
        profile: ``(L, H, max_distance + 1)`` positional logits (mean query on mean key).
        sampled: ``(L, H, max_distance + 1)`` expected attention by distance over random tokens.
        key_ids, key_scores: ``(L, H, n_keys)`` key-side preferences.
        query_ids, selectivity: ``(L, H, n_queries)`` most selective query tokens.
        pair_ids, pair_scores: ``(L, H, n_queries, n_pairs)`` their preferred keys.
        key_spread: ``(L, H)`` std over the vocabulary of the key-side preference.
        positions: per layer, the positional scheme in words.
        strings: token id -> decoded string for every id that appears.
        model_id, model_info, preset, options, versions: provenance.
    """

    layers: list[int]
    n_heads: int
    profile: np.ndarray
    sampled: np.ndarray
    key_ids: np.ndarray
    key_scores: np.ndarray
    query_ids: np.ndarray
    selectivity: np.ndarray
    pair_ids: np.ndarray
    pair_scores: np.ndarray
    key_spread: np.ndarray
    positions: list[str]
    strings: dict[int, str]
    model_id: str = ""
    model_info: dict[str, Any] = field(default_factory=dict)
    preset: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)

    _ARRAYS = ("profile", "sampled", "key_ids", "key_scores", "query_ids", "selectivity",
               "pair_ids", "pair_scores",
               "key_spread")

    @property
    def heads(self) -> list[tuple[int, int]]:
        """Every computed head as ``(layer, head)``."""
        return [(layer, h) for layer in self.layers for h in range(self.n_heads)]

    def _index(self, layer: int, head: int) -> int:
        if layer not in self.layers:
            raise IndexError(f"layer {layer} was not computed; layers: {self.layers}")
        if not 0 <= head < self.n_heads:
            raise IndexError(f"head {head} out of range: heads 0..{self.n_heads - 1}")
        return self.layers.index(layer)

    def token_text(self, token_id: Any) -> str:
        """The text of token ``token_id`` as kept in :attr:`strings` (``<id>`` when not kept)."""
        return self.strings.get(int(token_id), f"<{int(token_id)}>")

    def profile_at(self, layer: int, head: int) -> PositionalProfile:
        """One head's :class:`PositionalProfile`."""
        i = self._index(layer, head)
        return PositionalProfile(layer, head, self.profile[i, head].copy(), self.positions[i],
                                 self.model_id,
                                 self.preset, self.sampled[i, head].copy())

    def preferences(self, layer: int, head: int) -> AttentionPreferences:
        """One head's :class:`AttentionPreferences`."""
        i = self._index(layer, head)
        k, q, p = self.key_ids[i, head], self.query_ids[i, head], self.pair_ids[i, head]
        text = self.token_text
        return AttentionPreferences(
            layer, head, k.copy(), [text(t) for t in k], self.key_scores[i, head].copy(),
            q.copy(), [text(t) for t in q], self.selectivity[i, head].copy(),
            p.copy(), [[text(t) for t in row] for row in p], self.pair_scores[i, head].copy(),
            self.model_id, self.preset)

    def to_frame(self) -> pd.DataFrame:
        """Tidy frame, one row per head: positional summaries and top key tokens."""
        rows = []
        for layer, h in self.heads:
            pr, pf = self.profile_at(layer, h), self.preferences(layer, h)
            rows.append({
                "layer": layer, "head": h, "kind": pr.kind(), "prev_mass": pr.prev_mass,
                "self_mass": pr.self_mass, "local_mass": pr.local_mass,
                "preferred_distance": pr.preferred_distance, "flatness": pr.flatness,
                "sampled_prev_mass": pr.sampled_prev_mass,
                "key_spread": float(self.key_spread[self.layers.index(layer), h]),
                "top_key": pf.key_tokens[0], "top_key_score": float(pf.key_scores[0]),
                "top_query": pf.query_tokens[0], "selectivity": float(pf.selectivity[0]),
            })
        return pd.DataFrame(rows)

    def _kinds(self) -> pd.DataFrame:
        """Per positional kind: how many heads, the most peaked of them, their top keys."""
        frame = self.to_frame().sort_values("flatness", kind="stable")
        rows = [{"kind": kind, "heads": len(g),
                 "most peaked": ", ".join(f"{a}.{b}" for a, b in zip(g["layer"][:8], g["head"][:8]))
                 + (" ..." if len(g) > 8 else ""),
                 "their top keys": ", ".join(visible(t) for t in g["top_key"][:4])}
                for kind, g in frame.groupby("kind", sort=False)]
        rows.sort(key=lambda r: -r["heads"])
        return pd.DataFrame(rows, columns=["kind", "heads", "most peaked", "their top keys"])

    def _title(self) -> str:
        return (f"attention (QK) of {self.model_id or 'model'}: {len(self.layers)} "
                f"layers x {self.n_heads} heads, preset {self.preset or '?'}")

    def _repr_html_(self) -> str:
        """Jupyter: per positional kind, how many heads and the most peaked of them."""
        return html_card(self._title(), self._kinds())

    def summary_markdown(self) -> str:
        """Markdown: per positional kind, how many heads and the most peaked of them."""
        return "\n".join([f"# {self._title()}", "", markdown_table(self._kinds()), ""])

    def figure(self) -> Figure:
        """Per head: attention on the previous token, on itself and within Δ<=4 (rows: layers)."""
        from .. import figures

        f = self.to_frame()
        grid = {name: f[col].to_numpy(np.float64).reshape(len(self.layers), self.n_heads)
                for name, col in (("previous token (Δ=1)", "prev_mass"), ("self (Δ=0)",
                                  "self_mass"), (f"local (Δ<={LOCAL_DISTANCE})", "local_mass"))}
        return figures.grids_figure(grid, vmin=0.0, vmax=1.0, colour_label="attention",
                                    title=f"{self._title()} (rows: layers {self.layers[0]}.."
                                          f"{self.layers[-1]})" if self.layers else self._title())

    def header(self) -> dict[str, Any]:
        """Provenance and every array, JSON-able (non-finite logits as None)."""
        arrays = {}
        for name in self._ARRAYS:
            a = getattr(self, name)
            arrays[name] = {"shape": list(a.shape), "dtype": str(a.dtype),
                            "data": [None if not np.isfinite(v) else v.item() for v in a.ravel()]}
        return {"kind": "headmaps.AttentionSummary", "model_id": self.model_id,
                "model_info": self.model_info,
                "layers": list(self.layers), "n_heads": self.n_heads,
                "positions": list(self.positions),
                "preset": self.preset, "options": self.options, "versions": self.versions,
                "calibration": self.calibration,
                "strings": {str(k): v for k, v in sorted(self.strings.items())}, "arrays": arrays}

    def save(self, path: str | os.PathLike, *, show_paths: bool = False) -> Path:
        """Write ``attention.parquet`` (or the given .parquet/.csv file) and its ``.json`` header.

        The frame is :meth:`to_frame`; the header keeps every array and token string, so
        :meth:`load` restores the result exactly.

        Args:
            path: a folder (the file goes in it as ``attention.parquet``) or a .parquet/.csv file.
            show_paths: keep absolute local paths in the header (by default file names only).
        """
        return save_table(self.to_frame(), self.header(), table_path(path, "attention.parquet"),
                          show_paths=show_paths)

    @classmethod
    @reads_result("attention summary")
    def load(cls, path: str | os.PathLike) -> AttentionSummary:
        """Read what :meth:`save` wrote (a file, or a folder holding attention.parquet)."""
        _, h = load_table(path, "attention.parquet", "headmaps.AttentionSummary",
                          "attention summary")
        arrays = {}
        for name in cls._ARRAYS:
            a = h["arrays"][name]
            data = [np.nan if v is None else v for v in a["data"]]
            arr = np.asarray(data, dtype=a["dtype"]).reshape(a["shape"])
            if name == "profile":
                arr = np.where(np.isnan(arr), -np.inf, arr).astype(np.float32)
            arrays[name] = arr
        return cls(layers=[int(x) for x in h["layers"]], n_heads=int(h["n_heads"]),
                   positions=list(h["positions"]),
                   strings={int(k): v for k, v in h["strings"].items()},
                   model_id=h.get("model_id", ""), model_info=saved_model_info(h.get("model_info")),
                   preset=h.get("preset", ""), options=dict(h.get("options", {})),
                   versions=dict(h.get("versions", {})),
                   calibration=dict(h.get("calibration") or {}), **arrays)
