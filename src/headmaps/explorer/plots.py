"""Publication-ready static plots of a scan, written to files (matplotlib, no display needed).

The figures are drawn by :mod:`headmaps.figures` through :meth:`ScanResult.figure
<headmaps.scoring.ScanResult.figure>` and :meth:`~headmaps.scoring.ScanResult.layer_figure`;
these functions only write them, through :func:`headmaps.io.write_figure` (atomic; the
format follows the suffix: ``.png``, ``.svg``, ``.pdf``).

* :func:`plot_heatmap`: one relation, layers x heads, colour bar, cells >= tau outlined.
* :func:`plot_heatmaps`: small multiples of several relations with one shared colour bar.
* :func:`plot_layer_distribution`: per layer, how many heads implement each relation.
* :func:`relation_heatmaps`: one heatmap file per relation in a folder.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

from ..figures import draw_heatmap
from ..io import FIGURE_SUFFIXES, figure_path, write_figure
from ..scoring.results import ScanResult

log = logging.getLogger(__name__)

FORMATS = FIGURE_SUFFIXES
__all__ = ["FORMATS", "draw_heatmap", "plot_heatmap", "plot_heatmaps", "plot_layer_distribution",
           "relation_heatmaps", "save_figure"]


def save_figure(fig, path: str | os.PathLike, dpi: int = 200) -> Path:
    """Write ``fig`` atomically (:func:`headmaps.io.write_figure`); logs the path."""
    path = write_figure(fig, path, dpi)
    log.info("wrote %s", path)
    return path


def plot_heatmap(scan: ScanResult, path: str | os.PathLike, relation: str, *,
                 suppression: bool = False, title: str | None = None, dpi: int = 200) -> Path:
    """One relation's heatmap (:meth:`ScanResult.figure` of ``relation``) to a file.

    Returns:
        The path written.
    """
    path = figure_path(path)
    return save_figure(scan.figure(relation, suppression=suppression, title=title), path, dpi)


def plot_heatmaps(scan: ScanResult, path: str | os.PathLike,
                  relations: Sequence[str] | None = None, *, suppression: bool = False,
                  ncols: int | None = None, title: str | None = None, dpi: int = 200) -> Path:
    """Small multiples of ``relations`` (default all; :meth:`ScanResult.figure`) to a file.

    Returns:
        The path written.
    """
    path = figure_path(path)
    fig = scan.figure(list(scan.relations) if relations is None else list(relations),
                      suppression=suppression, ncols=ncols, title=title)
    return save_figure(fig, path, dpi)


def plot_layer_distribution(scan: ScanResult, path: str | os.PathLike,
                            relations: Sequence[str] | None = None, *,
                            suppression: bool = False, title: str | None = None,
                            dpi: int = 200) -> Path:
    """Heads per layer with score >= tau, stacked by relation (:meth:`ScanResult.layer_figure`).

    Returns:
        The path written.
    """
    path = figure_path(path)
    fig = scan.layer_figure(relations, suppression=suppression, title=title)
    return save_figure(fig, path, dpi)


def relation_heatmaps(scan: ScanResult, folder: str | os.PathLike, *, suppression: bool = False,
                      fmt: str = "png", dpi: int = 150) -> list[Path]:
    """One heatmap file per scanned relation (``<relation>.<fmt>``) in ``folder``.

    Suppression maps, when asked for, are named ``<relation>.suppression.<fmt>``.

    Returns:
        The paths written, in relation order.
    """
    folder = Path(folder)
    suffix = "." + fmt.lower().lstrip(".")
    figure_path(folder / f"x{suffix}")
    out = []
    for rel in scan.relations:
        safe = re.sub(r"[^\w.-]+", "_", rel)
        name = f"{safe}.suppression{suffix}" if suppression else f"{safe}{suffix}"
        out.append(plot_heatmap(scan, folder / name, rel, suppression=suppression, dpi=dpi))
    return out
