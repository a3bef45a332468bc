"""Result types of approach B: the salient operations of one head, or of every head."""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._html import html_card
from ..errors import HeadmapsError, OutOfRangeError
from ..io import load_table, markdown_table, reads_result, save_table, saved_model_info, table_path
from .tokens import visible

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass
class SalientOperations:
    """The most salient source tokens of one head and where the head maps them.

    Attributes:
        layer, head: the head (Hugging Face numbering).
        token_ids: ``(n_tokens,)`` salient source token ids, most salient first.
        tokens: their decoded strings (``"<id>"`` when the model has no tokenizer).
        saliency: ``(n_tokens,)`` ``||x_t W_VO|| / ||x_t||``.
        target_ids: ``(n_tokens, n_mappings)`` top targets of each source in ``M[t, :]``.
        targets: their decoded strings, ``n_tokens`` lists of ``n_mappings``.
        scores: ``(n_tokens, n_mappings)`` the mapping scores ``M[t, target]``.
        model_id: the model; preset: preset name; options: projection options.
        skip_nonwords: ``none``, ``source``, ``target`` or ``both``.
        calibration: how the projection was chosen (see ``ScanResult.calibration``).
    """

    layer: int
    head: int
    token_ids: np.ndarray
    tokens: list[str]
    saliency: np.ndarray
    target_ids: np.ndarray
    targets: list[list[str]]
    scores: np.ndarray
    model_id: str = ""
    preset: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    skip_nonwords: str = "none"
    calibration: dict[str, Any] = field(default_factory=dict)

    @property
    def n_tokens(self) -> int:
        """Number of salient source tokens."""
        return len(self.tokens)

    @property
    def n_mappings(self) -> int:
        """Targets kept per source token."""
        return int(self.target_ids.shape[1]) if self.target_ids.ndim == 2 else 0

    @property
    def name(self) -> str:
        """``"L.H"``."""
        return f"{self.layer}.{self.head}"

    @property
    def mappings(self) -> list[tuple[str, list[str]]]:
        """``[(source, [target, ...]), ...]`` in saliency order."""
        return list(zip(self.tokens, self.targets))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (arrays as lists)."""
        return {
            "layer": self.layer, "head": self.head, "model_id": self.model_id,
            "preset": self.preset, "options": dict(self.options),
            "skip_nonwords": self.skip_nonwords, "calibration": dict(self.calibration),
            "tokens": [
                {"id": int(i), "token": s, "saliency": float(sal),
                 "mappings": [{"id": int(ti), "token": ts, "score": float(sc)}
                              for ti, ts, sc in zip(tids, tstr, scs)]}
                for i, s, sal, tids, tstr, scs in zip(self.token_ids, self.tokens, self.saliency,
                                                      self.target_ids, self.targets, self.scores)
            ],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SalientOperations:
        """Inverse of :meth:`to_dict`."""
        toks = d["tokens"]
        k = len(toks[0]["mappings"]) if toks else 0
        return cls(
            int(d["layer"]), int(d["head"]),
            np.array([t["id"] for t in toks], dtype=np.int64),
            [t["token"] for t in toks],
            np.array([t["saliency"] for t in toks], dtype=np.float32),
            np.array([[m["id"] for m in t["mappings"]] for t in toks],
                     dtype=np.int64).reshape(len(toks), k),
            [[m["token"] for m in t["mappings"]] for t in toks],
            np.array([[m["score"] for m in t["mappings"]] for t in toks],
                     dtype=np.float32).reshape(len(toks), k),
            d.get("model_id", ""), d.get("preset", ""), dict(d.get("options", {})),
            d.get("skip_nonwords", "none"), dict(d.get("calibration") or {}),
        )

    def text(self, scores: bool = True) -> str:
        """A plain-text table: rank, saliency, source token, its top targets.

        Leading spaces of tokens show as ``␣``.
        """
        rows = []
        for r, (s, sal, tstr,
                scs) in enumerate(zip(self.tokens, self.saliency, self.targets, self.scores), 1):
            maps = ", ".join(f"{visible(t)} "
                             f"({sc:.2f})" if scores else visible(t) for t, sc in zip(tstr, scs))
            rows.append((str(r), f"{sal:.3f}", visible(s), maps))
        head = ("#", "saliency", "token",
                f"top {self.n_mappings} mappings" + (" (score)" if scores else ""))
        widths = [max(len(x[i]) for x in [head, *rows]) for i in range(3)]
        lines = [f"{head[0]:>{widths[0]}}  {head[1]:>{widths[1]}}  {head[2]:<{widths[2]}}  "
                 f"{head[3]}"]
        lines.append("-" * (sum(widths) + 6 + len(head[3])))
        lines += [f"{a:>{widths[0]}}  {b:>{widths[1]}}  {c:<{widths[2]}}  "
                  f"{d}" for a, b, c, d in rows]
        return "\n".join(lines)

    def to_frame(self) -> pd.DataFrame:
        """Tidy frame, one row per (rank, target_rank): the source, its saliency, the target."""
        T, K = len(self.tokens), self.n_mappings
        ti, ki = np.meshgrid(np.arange(T), np.arange(K), indexing="ij")
        return pd.DataFrame({
            "layer": self.layer, "head": self.head, "rank": ti.ravel(),
            "token_id": np.asarray(self.token_ids, dtype=np.int64)[ti.ravel()],
            "token": [self.tokens[t] for t in ti.ravel()],
            "saliency": np.asarray(self.saliency, dtype=np.float32)[ti.ravel()],
            "target_rank": ki.ravel(),
            "target_id": np.asarray(self.target_ids, dtype=np.int64).reshape(T, K).ravel(),
            "target": [self.targets[t][k] for t, k in zip(ti.ravel(), ki.ravel())],
            "score": np.asarray(self.scores, dtype=np.float32).reshape(T, K).ravel()})

    def header(self) -> dict[str, Any]:
        """Provenance and the token strings (exact, whatever a CSV reader makes of them)."""
        return {"kind": "headmaps.SalientOperations", "layer": self.layer, "head": self.head,
                "n_tokens": self.n_tokens, "n_mappings": self.n_mappings,
                "model_id": self.model_id, "preset": self.preset, "options": self.options,
                "skip_nonwords": self.skip_nonwords, "calibration": self.calibration,
                "token_ids": [int(i) for i in self.token_ids], "tokens": list(self.tokens),
                "saliency": [float(x) for x in self.saliency],
                "targets": [list(t) for t in self.targets]}

    def save(self, path: str | os.PathLike, *, show_paths: bool = False) -> Path:
        """Write ``salient_head.parquet`` (or a given .parquet/.csv file) and its JSON header.

        Args:
            path: a folder (the file goes in it as ``salient_head.parquet``) or a
                .parquet/.csv file.
            show_paths: keep absolute local paths in the header (by default file names only).
        """
        return save_table(self.to_frame(), self.header(), table_path(path, "salient_head.parquet"),
                          show_paths=show_paths)

    @classmethod
    @reads_result("salient operations of a head")
    def load(cls, path: str | os.PathLike) -> SalientOperations:
        """Read what :meth:`save` wrote (a file, or a folder holding salient_head.parquet)."""
        frame, h = load_table(path, "salient_head.parquet", "headmaps.SalientOperations",
                              "salient operations of a head")
        T, K = int(h["n_tokens"]), int(h["n_mappings"])
        if len(frame) != T * K:
            raise HeadmapsError(f"{path}: expected {T * K} rows, found {len(frame)}")
        frame = frame.sort_values(["rank", "target_rank"], kind="stable")
        return cls(int(h["layer"]), int(h["head"]), np.asarray(h["token_ids"], dtype=np.int64),
                   list(h["tokens"]), np.asarray(h["saliency"], dtype=np.float32),
                   frame["target_id"].to_numpy(np.int64).reshape(T, K),
                   [list(t) for t in h["targets"]],
                   frame["score"].to_numpy(np.float32).reshape(T, K),
                   h.get("model_id", ""), h.get("preset", ""), dict(h.get("options") or {}),
                   h.get("skip_nonwords", "none"), dict(h.get("calibration") or {}))

    def figure(self) -> Figure:
        """The saliency of each salient token (bars, most salient on top), top targets beside."""
        from .. import figures

        return figures.bars_figure(
            [visible(t) for t in self.tokens], self.saliency, xlabel="saliency",
            notes=[", ".join(visible(t) for t in ts[:3]) for ts in self.targets],
            title=f"head {self.name} of {self.model_id or 'model'}: salient tokens -> top mappings")

    def summary_markdown(self) -> str:
        """Markdown: the head, then a table of its salient tokens and their top mappings."""
        frame = pd.DataFrame({
            "#": range(1, self.n_tokens + 1), "token": [visible(t) for t in self.tokens],
            "saliency": np.asarray(self.saliency, dtype=np.float64),
            "top mappings (score)": [", ".join(f"{visible(t)} ({sc:.2f})" for t, sc in zip(ts, ss))
                                     for ts, ss in zip(self.targets, self.scores)]})
        return "\n".join([f"# Head {self.name} of {self.model_id or 'model'}", "",
                          f"Preset `{self.preset or '?'}`, skip non-words: {self.skip_nonwords}.",
                          "", markdown_table(frame), ""])

    def _repr_html_(self) -> str:
        """Jupyter: the salient tokens and their top mappings as an HTML table."""
        esc = html.escape
        rows = "".join(
            f"<tr><td>{r}</td><td>{sal:.3f}</td><td><code>{esc(visible(s))}</code></td><td>"
            + ", ".join(f"<code>{esc(visible(t))}</code> ({sc:.2f})" for t, sc in zip(tstr, scs))
            + "</td></tr>"
            for r, (s, sal, tstr, scs) in enumerate(zip(self.tokens, self.saliency, self.targets,
                                                        self.scores), 1))
        return (f"<div><b>head {esc(self.name)}</b> of {esc(self.model_id or 'model')} "
                f"(preset {esc(self.preset or '?')})<table><thead><tr><th>#</th><th>saliency</th>"
                f"<th>token</th><th>top {self.n_mappings} mappings (score)</th></tr></thead>"
                f"<tbody>{rows}</tbody></table></div>")

    def __str__(self) -> str:
        return (f"head {self.name} of {self.model_id or 'model'} (preset {self.preset or '?'})\n"
                f"{self.text()}")


@dataclass
class SalientAll:
    """Salient operations of every head of the chosen layers.

    Attributes:
        layers: the layers computed, in order.
        n_heads: heads per layer.
        token_ids: ``(n_layers_computed, n_heads, n_tokens)``.
        saliency: ``(n_layers_computed, n_heads, n_tokens)``.
        target_ids: ``(n_layers_computed, n_heads, n_tokens, n_mappings)``.
        scores: ``(n_layers_computed, n_heads, n_tokens, n_mappings)``.
        strings: token id -> decoded string for every id that appears.
        model_id, model_info, preset, options, skip_nonwords, versions: provenance.
        calibration: how the projection was chosen (see ``ScanResult.calibration``).
    """

    layers: list[int]
    n_heads: int
    token_ids: np.ndarray
    saliency: np.ndarray
    target_ids: np.ndarray
    scores: np.ndarray
    strings: dict[int, str]
    model_id: str = ""
    model_info: dict[str, Any] = field(default_factory=dict)
    preset: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    skip_nonwords: str = "none"
    versions: dict[str, str] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)

    @property
    def heads(self) -> list[tuple[int, int]]:
        """Every computed head as ``(layer, head)``."""
        return [(layer, h) for layer in self.layers for h in range(self.n_heads)]

    def __len__(self) -> int:
        return len(self.layers) * self.n_heads

    def __iter__(self):
        for layer, h in self.heads:
            yield self[layer, h]

    def __getitem__(self, key: tuple[int, int]) -> SalientOperations:
        """``res[layer, head]`` -> :class:`SalientOperations`."""
        layer, head = key
        if layer not in self.layers:
            raise OutOfRangeError(f"layer {layer} was not computed; layers: {_ranges(self.layers)}")
        if not 0 <= head < self.n_heads:
            raise OutOfRangeError(f"head {head} out of range: heads 0..{self.n_heads - 1}")
        i = self.layers.index(layer)
        ids = self.token_ids[i, head]
        tids = self.target_ids[i, head]
        text = self.token_text
        return SalientOperations(
            layer, head, ids.copy(), [text(t) for t in ids], self.saliency[i, head].copy(),
            tids.copy(), [[text(t) for t in row] for row in tids], self.scores[i, head].copy(),
            self.model_id, self.preset, dict(self.options), self.skip_nonwords,
            dict(self.calibration),
        )

    def token_text(self, token_id: Any) -> str:
        """The text of token ``token_id`` as kept in :attr:`strings` (``<id>`` when not kept)."""
        return self.strings.get(int(token_id), f"<{int(token_id)}>")

    def _repr_html_(self, max_heads: int = 30, n_tokens: int = 3) -> str:
        """Jupyter: per head (the first ``max_heads``), its top sources and their best target."""
        rows = self._overview(n_tokens)
        notes = [f"{len(rows) - max_heads} more heads; res[layer, head] shows one in full"
                 ] if len(rows) > max_heads else []
        return html_card(f"salient operations of {self.model_id or 'model'}: layers "
                         f"{_ranges(self.layers)} x {self.n_heads} heads, preset "
                         f"{self.preset or '?'}", rows.head(max_heads), notes)

    def _overview(self, n_tokens: int = 3) -> pd.DataFrame:
        """One row per head: its top sources and their best target."""
        return pd.DataFrame(
            [{"head": f"{layer}.{h}",
              "top sources → best target": ", ".join(
                  f"{visible(self.token_text(t))} → {visible(self.token_text(g))}"
                  for t, g in zip(self.token_ids[i, h, :n_tokens],
                                  self.target_ids[i, h, :n_tokens, 0]))}
             for i, layer in enumerate(self.layers) for h in range(self.n_heads)],
            columns=["head", "top sources → best target"])

    def summary_markdown(self, max_heads: int = 50) -> str:
        """Markdown: the run, then per head (the first ``max_heads``) its top sources."""
        frame = self._overview()
        more = (f"\n{len(frame) - max_heads} more heads; `res[layer, head]` shows one in full.\n"
                if len(frame) > max_heads else "")
        return "\n".join([f"# Salient operations of {self.model_id or 'model'}", "",
                          f"Layers {_ranges(self.layers)} x {self.n_heads} heads, preset "
                          f"`{self.preset or '?'}`, skip non-words: {self.skip_nonwords}.", "",
                          markdown_table(frame.head(max_heads)), more])

    def figure(self) -> Figure:
        """Per head: the saliency of its most salient token and its best mapping score."""
        from .. import figures

        return figures.grids_figure(
            {"top saliency": self.saliency[..., 0], "best mapping score": self.scores[..., 0, 0]},
            title=f"salient operations of {self.model_id or 'model'} (rows: layers "
                  f"{_ranges(self.layers)})")

    def to_frame(self) -> pd.DataFrame:
        """Tidy frame, one row per (layer, head, rank, target_rank)."""
        L, H, T, K = self.target_ids.shape
        li, hi, ti, ki = np.meshgrid(np.arange(L), np.arange(H), np.arange(T), np.arange(K),
                                     indexing="ij")
        src = self.token_ids[li, hi, ti].ravel()
        tgt = self.target_ids.ravel()
        return pd.DataFrame({
            "layer": np.asarray(self.layers, dtype=np.int64)[li.ravel()],
            "head": hi.ravel(),
            "rank": ti.ravel(),
            "token_id": src,
            "token": [self.token_text(x) for x in src],
            "saliency": self.saliency[li, hi, ti].ravel(),
            "target_rank": ki.ravel(),
            "target_id": tgt,
            "target": [self.token_text(x) for x in tgt],
            "score": self.scores.ravel(),
        })

    def header(self) -> dict[str, Any]:
        """Provenance and shapes, JSON-able."""
        L, H, T, K = self.target_ids.shape
        return {"kind": "headmaps.SalientAll", "model_id": self.model_id,
                "model_info": self.model_info,
                "layers": list(self.layers), "n_heads": H, "n_tokens": T, "n_mappings": K,
                "preset": self.preset, "options": self.options, "skip_nonwords": self.skip_nonwords,
                "versions": self.versions, "calibration": self.calibration}

    def save(self, path: str | os.PathLike, *, show_paths: bool = False) -> Path:
        """Write ``salient.parquet`` (or the given .parquet/.csv file) and its ``.json`` header.

        CSV readers may alter token strings (``" 1990"`` read back as a number), so with
        a .csv file the header also keeps the exact strings.

        Args:
            path: a folder (the file goes in it as ``salient.parquet``) or a .parquet/.csv file.
            show_paths: keep absolute local paths in the header (by default file names only).
        """
        path = table_path(path, "salient.parquet")
        header = self.header()
        if path.suffix.lower() == ".csv":
            header["strings"] = {str(k): v for k, v in sorted(self.strings.items())}
        return save_table(self.to_frame(), header, path, show_paths=show_paths)

    @classmethod
    @reads_result("salient-operations result")
    def load(cls, path: str | os.PathLike) -> SalientAll:
        """Read what :meth:`save` wrote (a file, or a folder holding salient.parquet)."""
        frame, h = load_table(path, "salient.parquet", "headmaps.SalientAll",
                              "salient-operations result")
        layers = [int(x) for x in h["layers"]]
        L, H, T, K = len(layers), int(h["n_heads"]), int(h["n_tokens"]), int(h["n_mappings"])
        if len(frame) != L * H * T * K:
            raise HeadmapsError(f"{path}: expected {L * H * T * K} rows, found {len(frame)}")
        frame = frame.sort_values(["layer", "head", "rank", "target_rank"], kind="stable")
        shape = (L, H, T, K)
        token_ids = frame["token_id"].to_numpy(np.int64).reshape(shape)[..., 0]
        saliency = frame["saliency"].to_numpy(np.float32).reshape(shape)[..., 0]
        target_ids = frame["target_id"].to_numpy(np.int64).reshape(shape)
        scores = frame["score"].to_numpy(np.float32).reshape(shape)
        strings: dict[int, str] = {}
        for col_id, col_s in (("token_id", "token"), ("target_id", "target")):
            strings.update(zip(frame[col_id].astype(int), frame[col_s].fillna("").astype(str)))
        strings.update({int(k): v for k, v in h.get("strings", {}).items()})
        return cls(layers, H, token_ids, saliency, target_ids, scores, strings,
                   h.get("model_id", ""),
                   saved_model_info(h.get("model_info")), h.get("preset", ""),
                   dict(h.get("options", {})),
                   h.get("skip_nonwords", "none"), dict(h.get("versions", {})),
                   dict(h.get("calibration") or {}))


def _ranges(xs: list[int]) -> str:
    """``[1,2,3,7]`` -> ``"1-3, 7"``."""
    xs = sorted(set(xs))
    out, start = [], None
    for i, x in enumerate(xs):
        if start is None:
            start = x
        if i + 1 == len(xs) or xs[i + 1] != x + 1:
            out.append(str(start) if start == x else f"{start}-{x}")
            start = None
    return ", ".join(out)
