"""Publication-ready static plots of a scan (matplotlib, no display needed).

Every ``plot_*`` function takes a :class:`~headmaps.scoring.ScanResult` and a path; the format
follows the suffix (``.png``, ``.svg``, ``.pdf``). Figures are built with
:class:`matplotlib.figure.Figure` directly, so the global pyplot backend is never touched
and nothing opens a window.

* :func:`plot_heatmap`: one relation, layers x heads, colour bar, cells >= tau outlined.
* :func:`plot_heatmaps`: small multiples of several relations with one shared colour bar.
* :func:`heatmap_figure`, :func:`heatmaps_figure`: the same as Figures, not written
  (what :meth:`ScanResult.plot <headmaps.scoring.ScanResult.plot>` returns in a notebook).
* :func:`plot_layer_distribution`: per layer, how many heads implement each relation.
* :func:`relation_heatmaps`: one heatmap file per relation in a folder.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.collections import PatchCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from ..errors import HeadmapsError
from ..io import atomic_path
from ..scoring.results import ScanResult

log = logging.getLogger(__name__)

FORMATS = (".png", ".svg", ".pdf")
_RC = {"font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "xtick.labelsize": 7,
       "ytick.labelsize": 7,
       "legend.fontsize": 7, "svg.fonttype": "none", "pdf.fonttype": 42}


def _check_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise HeadmapsError(f"cannot plot to {path}: use a {', '.join(FORMATS)} file")
    return path


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 200) -> Path:
    """Write ``fig`` atomically; the format follows the suffix of ``path``."""
    path = _check_path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix[1:].lower(), dpi=dpi, bbox_inches="tight",
                    metadata={"Creator": "headmaps"} if path.suffix.lower() != ".svg" else None)
    log.info("wrote %s", path)
    return path


def _relation_index(scan: ScanResult, relation: str) -> int:
    if relation not in scan.relations:
        scan[relation]  # raises a KeyError that says what was scanned or why it was skipped
    return scan.relations.index(relation)


def _relations_to_plot(scan: ScanResult,
                       relations: Sequence[str] | None) -> tuple[list[str], list[int]]:
    """The relations to plot (default: all scanned) and their indices in ``scan``."""
    rels = list(relations) if relations is not None else list(scan.relations)
    if not rels:
        raise HeadmapsError("no relations to plot: the scan holds none")
    return rels, [_relation_index(scan, r) for r in rels]


def _cmap(suppression: bool) -> str:
    return "Reds" if suppression else "Blues"


def draw_heatmap(ax, scores: np.ndarray, tau: float, *, suppression: bool = False,
                 outline: bool = True,
                 labels: bool = True, max_ticks: int = 12):
    """Draw one ``(n_layers, n_heads)`` score map on ``ax``; returns the image (for a colour bar).

    Layer 0 is the top row, head 0 the left column; cells with score >= ``tau`` get a
    black outline.
    """
    L, H = scores.shape
    im = ax.imshow(scores, cmap=_cmap(suppression), vmin=0.0, vmax=1.0, aspect="auto",
                   interpolation="nearest", origin="upper")
    if outline:
        ys, xs = np.nonzero(scores >= tau)
        if len(xs):
            lw = 0.9 if max(L, H) <= 40 else 0.5
            boxes = [Rectangle((x - 0.5, y - 0.5), 1, 1) for y, x in zip(ys, xs)]
            ax.add_collection(PatchCollection(boxes, facecolor="none", edgecolor="black",
                                              linewidth=lw))
    ax.xaxis.set_major_locator(MaxNLocator(nbins=min(H, max_ticks), integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=min(L, max_ticks), integer=True))
    ax.set_xlim(-0.5, H - 0.5)
    ax.set_ylim(L - 0.5, -0.5)
    if labels:
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
    ax.tick_params(length=2)
    return im


def _colorbar(fig: Figure, im, axes, tau: float, suppression: bool) -> None:
    cb = fig.colorbar(im, ax=axes, fraction=0.02 if isinstance(axes, list) else 0.046, pad=0.02)
    cb.set_label("suppression score" if suppression
                 else r"relation score $\varphi$ (top-$k$ hit rate)")
    cb.ax.axhline(tau, color="black", linewidth=1.2)
    cb.ax.text(-0.25, tau, r"$\tau$", transform=cb.ax.get_yaxis_transform(), ha="right",
               va="center", fontsize=8)


def _title(scan: ScanResult, r: int) -> str:
    rel = scan.relations[r]
    return f"{rel.replace('_', ' ')} (n={scan.n_pairs.get(rel, 0)}, k={scan.k.get(rel, '?')})"


def heatmap_figure(scan: ScanResult, relation: str, *, suppression: bool = False,
                   title: str | None = None) -> Figure:
    """The heatmap of one relation's scores over layers x heads, as a Figure.

    Args:
        scan: the scan result.
        relation: a scanned relation.
        suppression: plot the suppression score instead of the relation score.
        title: figure title (default: relation, pairs, k, model).

    Returns:
        A :class:`matplotlib.figure.Figure` (not registered with pyplot: nothing opens a
        window; Jupyter shows it inline).
    """
    r = _relation_index(scan, relation)
    L, H = scan.n_layers, scan.n_heads
    import matplotlib as mpl

    with mpl.rc_context(_RC):
        fig = Figure(figsize=(min(7.0, max(3.2, 0.2 * H + 1.8)),
                              min(9.0, max(2.6, 0.13 * L + 1.2))), layout="constrained")
        ax = fig.add_subplot()
        im = draw_heatmap(ax, (scan.suppression if suppression else scan.scores)[r], scan.tau,
                          suppression=suppression)
        _colorbar(fig, im, ax, scan.tau, suppression)
        ax.set_title(title or f"{scan.model_id}: {_title(scan, r)}"
                     + (" - suppression" if suppression else ""))
    return fig


def plot_heatmap(scan: ScanResult, path: str | os.PathLike, relation: str, *,
                 suppression: bool = False,
                 title: str | None = None, dpi: int = 200) -> Path:
    """Heatmap of one relation's scores over layers x heads (:func:`heatmap_figure`) to a file.

    Args:
        scan: the scan result.
        path: output file (.png, .svg or .pdf).
        relation: a scanned relation.
        suppression: plot the suppression score instead of the relation score.
        title: figure title (default: relation, pairs, k, model).
        dpi: resolution of raster output.

    Returns:
        The path written.
    """
    path = _check_path(path)
    return _save(heatmap_figure(scan, relation, suppression=suppression, title=title), path, dpi)


def heatmaps_figure(scan: ScanResult, relations: Sequence[str] | None = None, *,
                    suppression: bool = False, ncols: int | None = None,
                    title: str | None = None) -> Figure:
    """Small multiples as a Figure: one heatmap per relation, one shared colour bar.

    Args:
        scan: the scan result.
        relations: which relations (default: all scanned).
        suppression: plot suppression scores.
        ncols: panels per row (default: up to 5).
        title: figure title (default: the model).

    Returns:
        A :class:`matplotlib.figure.Figure` (see :func:`heatmap_figure`).
    """
    rels, idx = _relations_to_plot(scan, relations)
    n = len(idx)
    ncols = ncols or min(5, n)
    nrows = math.ceil(n / ncols)
    L, H = scan.n_layers, scan.n_heads
    pw = 1.6 if H <= 32 else 2.0
    ph = pw * min(2.0, max(0.6, L / max(H, 1)))
    import matplotlib as mpl

    with mpl.rc_context(_RC):
        fig = Figure(figsize=(ncols * pw + 1.2, nrows * (ph + 0.45) + 0.4), layout="constrained")
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
        data = scan.suppression if suppression else scan.scores
        im = None
        for k, ax in enumerate(axes):
            if k >= n:
                ax.set_visible(False)
                continue
            im = draw_heatmap(ax, data[idx[k]], scan.tau, suppression=suppression, labels=False,
                              max_ticks=6)
            ax.set_title(rels[k].replace("_", " "), fontsize=7.5)
            if k % ncols == 0:
                ax.set_ylabel("layer")
            if k // ncols == nrows - 1 or k + ncols >= n:
                ax.set_xlabel("head")
        _colorbar(fig, im, list(axes[:n]), scan.tau, suppression)
        fig.suptitle(title or f"{scan.model_id}: {'suppression' if suppression else 'relation'} "
                              "scores, "
                     f"cells with score $\\geq \\tau$ = {scan.tau:g} outlined", fontsize=9)
    return fig


def plot_heatmaps(scan: ScanResult, path: str | os.PathLike, relations: Sequence[str] | None = None,
                  *,
                  suppression: bool = False, ncols: int | None = None, title: str | None = None,
                  dpi: int = 200) -> Path:
    """Small multiples (:func:`heatmaps_figure`) to a file.

    Args:
        scan: the scan result.
        path: output file (.png, .svg or .pdf).
        relations: which relations (default: all scanned).
        suppression: plot suppression scores.
        ncols: panels per row (default: up to 5).
        title: figure title (default: the model).
        dpi: resolution of raster output.

    Returns:
        The path written.
    """
    path = _check_path(path)
    fig = heatmaps_figure(scan, relations, suppression=suppression, ncols=ncols, title=title)
    return _save(fig, path, dpi)


def _save(fig: Figure, path: Path, dpi: int) -> Path:
    """:func:`save_figure` under the module's rc settings (the PDF/SVG font types apply at save)."""
    import matplotlib as mpl

    with mpl.rc_context(_RC):
        return save_figure(fig, path, dpi)


def plot_layer_distribution(scan: ScanResult, path: str | os.PathLike,
                            relations: Sequence[str] | None = None, *,
                            suppression: bool = False, title: str | None = None,
                            dpi: int = 200) -> Path:
    """Per layer, the number of heads with score >= tau, stacked by relation.

    A black step line marks heads implementing at least one of the plotted relations (a
    head counted for two relations is stacked twice but counted once by the line).

    Args:
        scan: the scan result.
        path: output file (.png, .svg or .pdf).
        relations: which relations (default: all scanned).
        suppression: count suppression heads instead.
        title: figure title.
        dpi: resolution of raster output.

    Returns:
        The path written.
    """
    path = _check_path(path)
    rels, idx = _relations_to_plot(scan, relations)
    data = (scan.suppression if suppression else scan.scores)[idx] >= scan.tau  # (R, L, H)
    counts = data.sum(axis=2)
    any_ = data.any(axis=0).sum(axis=1)
    L = scan.n_layers
    import matplotlib as mpl

    with mpl.rc_context(_RC):
        fig = Figure(figsize=(min(7.0, max(3.4, 0.09 * L + 2.8)), 2.8), layout="constrained")
        ax = fig.add_subplot()
        cmap = mpl.colormaps["tab20"] if len(rels) <= 20 else mpl.colormaps["turbo"]
        bottom = np.zeros(L)
        x = np.arange(L)
        for k, rel in enumerate(rels):
            colour = cmap(k % 20) if len(rels) <= 20 else cmap(k / max(1, len(rels) - 1))
            ax.bar(x, counts[k], bottom=bottom, width=0.85, color=colour,
                   label=rel.replace("_", " "), linewidth=0)
            bottom += counts[k]
        ax.step(x, any_, where="mid", color="black", linewidth=1.0, label="any (distinct heads)")
        ax.set_xlim(-0.6, L - 0.4)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=min(L, 16), integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("layer")
        ax.set_ylabel(f"heads with {'suppression' if suppression else 'score'} " + r"$\geq \tau$")
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
                  ncol=1 if len(rels) <= 12 else 2)
        ax.set_title(title or f"{scan.model_id}: {'suppression' if suppression else 'relation'} "
                              "heads per layer "
                     + rf"($\tau$ = {scan.tau:g})")
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
    _check_path(folder / f"x{suffix}")
    out = []
    for rel in scan.relations:
        safe = re.sub(r"[^\w.-]+", "_", rel)
        name = f"{safe}.suppression{suffix}" if suppression else f"{safe}{suffix}"
        out.append(plot_heatmap(scan, folder / name, rel, suppression=suppression, dpi=dpi))
    return out
