"""Describe many heads, and measure coverage: the fraction of heads with a clear description."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..io import atomic_path, reads_result, write_figure
from ..salient import SalientAll, SalientOperations
from .base import Describer, Description


def describe_all(ops: SalientAll | Iterable[SalientOperations], describer: Describer, *,
                 progress: bool = False) -> list[Description]:
    """Describe every head in ``ops`` (a :class:`SalientAll` or any iterable of operations)."""
    total = len(ops) if hasattr(ops, "__len__") else None
    return [describer.describe(o) for o in tqdm(ops, total=total, desc="describe", unit="head",
                                                 disable=not progress)]


def coverage(descriptions: Iterable[Description]) -> pd.DataFrame:
    """Per layer: heads, heads with a clear (non-"Unclear") description, their fraction.

    Returns:
        DataFrame with columns ``layer``, ``n_heads``, ``n_clear``, ``coverage``, sorted by
        layer, plus one last row with ``layer = "all"``.
    """
    rows = [(d.layer, not d.unclear) for d in descriptions]
    frame = pd.DataFrame(rows, columns=["layer", "clear"])
    if frame.empty:
        return pd.DataFrame(columns=["layer", "n_heads", "n_clear", "coverage"])
    g = frame.groupby("layer")["clear"].agg(n_heads="size", n_clear="sum").reset_index()
    g["n_clear"] = g["n_clear"].astype(int)
    total = pd.DataFrame([{"layer": "all", "n_heads": int(g["n_heads"].sum()),
                           "n_clear": int(g["n_clear"].sum())}])
    g["layer"] = g["layer"].astype(object)
    out = pd.concat([g, total], ignore_index=True)
    out["coverage"] = (out["n_clear"] / out["n_heads"]).round(4)
    return out


def plot_coverage(frame: pd.DataFrame, path: str | os.PathLike, title: str | None = None) -> Path:
    """Bar chart of coverage per layer (a :func:`coverage` frame), written as PNG (atomic)."""
    from ..figures import coverage_figure

    per_layer = frame[frame["layer"] != "all"]
    fig = coverage_figure(per_layer["layer"].astype(int).to_numpy(),
                          per_layer["coverage"].to_numpy(np.float64), title=title or "",
                          ylabel="heads with a clear description (%)")
    return write_figure(fig, path, dpi=120)


def save_descriptions(descriptions: Iterable[Description], path: str | os.PathLike) -> Path:
    """Write one JSON object per line (atomic)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for d in descriptions:
                f.write(json.dumps(d.to_dict(), ensure_ascii=False) + "\n")
    return path


@reads_result("descriptions file")
def load_descriptions(path: str | os.PathLike) -> list[Description]:
    """Read what :func:`save_descriptions` wrote."""
    with open(path, encoding="utf-8") as f:
        return [Description.from_dict(json.loads(line)) for line in f if line.strip()]
