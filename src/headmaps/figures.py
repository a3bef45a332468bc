"""Every figure of headmaps, drawn from arrays: matplotlib, no display, nothing written.

Each function takes numpy arrays and labels and returns a
:class:`matplotlib.figure.Figure` built directly (pyplot and its backend are never
touched, so nothing opens a window and a notebook's inline backend stays as it is). The
results' ``figure()`` methods call these functions; :func:`headmaps.io.write_figure`
writes a figure to a file. This module knows no result class: it sits beside
:mod:`headmaps.io`, below everything that computes.

* :func:`heatmap_figure`, :func:`heatmaps_figure`: scores over layers x heads, one map or
  small multiples with one colour bar (cells >= tau outlined).
* :func:`layer_counts_figure`: per layer, heads implementing each relation, stacked.
* :func:`grids_figure`: several ``(n_layers, n_heads)`` maps side by side (head types,
  saliency, positional masses).
* :func:`bars_figure`: labelled horizontal bars (calibration candidates, salient tokens).
* :func:`scatter_panels`, :func:`curve_panels`: one panel per relation (validation).
* :func:`coverage_figure`: per layer, heads described and measured correct.
* :func:`diff_figure`: a head diff's score change, weight change and scatter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import HeadmapsError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Small print for figures meant for papers (the PDF/SVG font settings apply when written).
RC = {"font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "xtick.labelsize": 7,
      "ytick.labelsize": 7, "legend.fontsize": 7, "svg.fonttype": "none", "pdf.fonttype": 42}


def _figure(**kwargs: Any) -> Figure:
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _rc():
    import matplotlib as mpl

    return mpl.rc_context(RC)


def draw_heatmap(ax: Axes, scores: np.ndarray, tau: float | None, *, suppression: bool = False,
                 outline: bool = True, labels: bool = True, max_ticks: int = 12,
                 cmap: str | None = None, vmin: float = 0.0, vmax: float = 1.0):
    """Draw one ``(n_layers, n_heads)`` map on ``ax``; returns the image (for a colour bar).

    Layer 0 is the top row, head 0 the left column; with ``outline``, cells with a value
    >= ``tau`` get a black outline (none when ``tau`` is None).
    """
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import MaxNLocator

    scores = np.asarray(scores, dtype=np.float64)
    L, H = scores.shape
    im = ax.imshow(scores, cmap=cmap or ("Reds" if suppression else "Blues"), vmin=vmin,
                   vmax=vmax, aspect="auto", interpolation="nearest", origin="upper")
    if outline and tau is not None:
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


def _colorbar(fig: Figure, im, axes, tau: float | None, label: str) -> None:
    cb = fig.colorbar(im, ax=axes, fraction=0.02 if isinstance(axes, list) else 0.046, pad=0.02)
    cb.set_label(label)
    if tau is not None:
        cb.ax.axhline(tau, color="black", linewidth=1.2)
        cb.ax.text(-0.25, tau, r"$\tau$", transform=cb.ax.get_yaxis_transform(), ha="right",
                   va="center", fontsize=8)


def _score_label(suppression: bool) -> str:
    return "suppression score" if suppression else r"relation score $\varphi$ (top-$k$ hit rate)"


def heatmap_figure(scores: np.ndarray, tau: float, *, title: str = "",
                   suppression: bool = False) -> Figure:
    """One relation's scores over layers x heads, with its colour bar.

    Args:
        scores: ``(n_layers, n_heads)`` scores in [0, 1].
        tau: the threshold marked on the colour bar and outlined in the map.
        title: the axes title.
        suppression: suppression scores (red) instead of relation scores (blue).
    """
    L, H = np.shape(scores)
    with _rc():
        fig = _figure(figsize=(min(7.0, max(3.2, 0.2 * H + 1.8)),
                               min(9.0, max(2.6, 0.13 * L + 1.2))), layout="constrained")
        ax = fig.add_subplot()
        im = draw_heatmap(ax, scores, tau, suppression=suppression)
        _colorbar(fig, im, ax, tau, _score_label(suppression))
        ax.set_title(title)
    return fig


def heatmaps_figure(scores: np.ndarray, names: Sequence[str], tau: float, *, title: str = "",
                    suppression: bool = False, ncols: int | None = None) -> Figure:
    """Small multiples: one heatmap per relation, one shared colour bar.

    Args:
        scores: ``(n_relations, n_layers, n_heads)`` scores in [0, 1].
        names: one panel title per relation (underscores shown as spaces).
        tau: the threshold (see :func:`heatmap_figure`).
        title: the figure title.
        suppression: suppression scores.
        ncols: panels per row (default: up to 5).
    """
    n, L, H = np.shape(scores)
    if n == 0:
        raise HeadmapsError("no relations to plot: the scan holds none")
    ncols = ncols or min(5, n)
    nrows = math.ceil(n / ncols)
    pw = 1.6 if H <= 32 else 2.0
    ph = pw * min(2.0, max(0.6, L / max(H, 1)))
    with _rc():
        fig = _figure(figsize=(ncols * pw + 1.2, nrows * (ph + 0.45) + 0.4), layout="constrained")
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
        im = None
        for k, ax in enumerate(axes):
            if k >= n:
                ax.set_visible(False)
                continue
            im = draw_heatmap(ax, scores[k], tau, suppression=suppression, labels=False,
                              max_ticks=6)
            ax.set_title(names[k].replace("_", " "), fontsize=7.5)
            if k % ncols == 0:
                ax.set_ylabel("layer")
            if k // ncols == nrows - 1 or k + ncols >= n:
                ax.set_xlabel("head")
        _colorbar(fig, im, list(axes[:n]), tau, _score_label(suppression))
        fig.suptitle(title, fontsize=9)
    return fig


def layer_counts_figure(hits: np.ndarray, names: Sequence[str], *, ylabel: str,
                        title: str = "") -> Figure:
    """Per layer, the number of heads of each relation, stacked; a step line for distinct heads.

    Args:
        hits: bool ``(n_relations, n_layers, n_heads)``: the head implements the relation.
        names: the relations' names (legend).
        ylabel: the y axis label.
        title: the axes title.
    """
    import matplotlib as mpl
    from matplotlib.ticker import MaxNLocator

    hits = np.asarray(hits, dtype=bool)
    counts = hits.sum(axis=2)
    any_ = hits.any(axis=0).sum(axis=1)
    L = hits.shape[1]
    with _rc():
        fig = _figure(figsize=(min(7.0, max(3.4, 0.09 * L + 2.8)), 2.8), layout="constrained")
        ax = fig.add_subplot()
        many = len(names) > 20
        cmap = mpl.colormaps["turbo" if many else "tab20"]
        bottom = np.zeros(L)
        x = np.arange(L)
        for k, name in enumerate(names):
            colour = cmap(k / max(1, len(names) - 1)) if many else cmap(k % 20)
            ax.bar(x, counts[k], bottom=bottom, width=0.85, color=colour,
                   label=name.replace("_", " "), linewidth=0)
            bottom += counts[k]
        ax.step(x, any_, where="mid", color="black", linewidth=1.0, label="any (distinct heads)")
        ax.set_xlim(-0.6, L - 0.4)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=min(L, 16), integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("layer")
        ax.set_ylabel(ylabel)
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
                  ncol=1 if len(names) <= 12 else 2)
        ax.set_title(title)
    return fig


def grids_figure(grids: Mapping[str, np.ndarray], *, title: str = "",
                 outlines: Mapping[str, np.ndarray] | None = None, cmap: str = "viridis",
                 vmin: float | None = None, vmax: float | None = None,
                 colour_label: str = "") -> Figure:
    """Several ``(n_layers, n_heads)`` maps side by side, each with its colour bar.

    Args:
        grids: panel title -> ``(n_layers, n_heads)`` values (NaN cells blank).
        title: the figure title.
        outlines: panel title -> bool ``(n_layers, n_heads)``: cells to outline.
        cmap: the colour map.
        vmin: the low end of the colour range (default: each panel's finite minimum).
        vmax: the high end (default: each panel's finite maximum).
        colour_label: label of every colour bar.
    """
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle

    names = list(grids)
    n = max(1, len(names))
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    shape = np.shape(grids[names[0]]) if names else (1, 1)
    ph = min(4.0, max(1.6, 0.12 * shape[0] + 0.8))
    with _rc():
        fig = _figure(figsize=(ncols * 3.0 + 0.4, nrows * (ph + 0.5) + 0.3), layout="constrained")
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
        for k, ax in enumerate(axes):
            if k >= len(names):
                ax.set_visible(False)
                continue
            a = np.asarray(grids[names[k]], dtype=np.float64)
            im = draw_heatmap(ax, a, None, cmap=cmap, max_ticks=8,
                              vmin=_finite(a, np.nanmin, 0.0) if vmin is None else vmin,
                              vmax=_finite(a, np.nanmax, 1.0) if vmax is None else vmax)
            mark = (outlines or {}).get(names[k])
            if mark is not None and np.any(mark):
                ys, xs = np.nonzero(mark)
                ax.add_collection(PatchCollection(
                    [Rectangle((x - 0.5, y - 0.5), 1, 1) for y, x in zip(ys, xs)],
                    facecolor="none", edgecolor="black", linewidth=0.8))
            ax.set_title(names[k].replace("_", " "), fontsize=8)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02).set_label(colour_label)
        fig.suptitle(title, fontsize=9)
    return fig


def _finite(a: np.ndarray, reduce, default: float) -> float:
    fin = a[np.isfinite(a)]
    return float(reduce(fin)) if fin.size else default


def bars_figure(labels: Sequence[str], values: np.ndarray, *, xlabel: str, title: str = "",
                notes: Sequence[str] | None = None, highlight: int | None = None) -> Figure:
    """Labelled horizontal bars, the first label on top.

    Args:
        labels: one label per bar.
        values: ``(n,)`` bar lengths (NaN: no bar).
        xlabel: the x axis label.
        title: the axes title.
        notes: one text per bar, written at its end (e.g. the top targets of a token).
        highlight: index of a bar drawn darker (e.g. the chosen candidate).
    """
    values = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)
    n = len(labels)
    with _rc():
        fig = _figure(figsize=(6.0, max(1.6, 0.24 * n + 0.9)), layout="constrained")
        ax = fig.add_subplot()
        y = np.arange(n)
        colours = ["#4472c4" if i == highlight else "#9db3de" for i in range(n)]
        ax.barh(y, values, color=colours)
        ax.set_yticks(y, [str(s) for s in labels])
        ax.set_ylim(n - 0.5, -0.5)
        for i, text in enumerate(notes or []):
            ax.text(values[i], i, f"  {text}", va="center", fontsize=6)
        ax.set_xlabel(xlabel)
        ax.spines[["top", "right"]].set_visible(False)
        ax.set_title(title)
    return fig


def _panels(n: int, height: float, max_cols: int = 5) -> tuple[Figure, np.ndarray]:
    """A figure with one panel per item (at most ``max_cols`` a row); spare panels hidden."""
    n = max(1, n)
    cols = min(max_cols, n)
    rows = (n + cols - 1) // cols
    fig = _figure(figsize=(3.2 * cols, height * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.axis("off")
    return fig, axes


def _finish_panels(fig: Figure, axes: np.ndarray, legend: bool, title: str) -> Figure:
    for ax in axes:
        ax.tick_params(labelsize=6)
    if legend:
        axes[0].legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def scatter_panels(panels: Sequence[tuple[str, np.ndarray, Mapping[str, np.ndarray]]], *,
                   xlabel: str, ylabel: str, title: str = "") -> Figure:
    """One scatter panel per item: ``(panel title, x (n,), {series label: y (n,)})``."""
    fig, axes = _panels(len(panels), height=3.0)
    for ax, (name, x, series) in zip(axes, panels):
        for label, y in series.items():
            ax.scatter(x, y, s=6, alpha=0.5, label=label)
        ax.set_title(name, fontsize=8)
        ax.set_xlabel(xlabel, fontsize=7)
        ax.set_ylabel(ylabel, fontsize=7)
    return _finish_panels(fig, axes, bool(panels), title)


def curve_panels(panels: Sequence[tuple[str, Mapping[str, np.ndarray]]], *, xlabel: str,
                 ylabel: str, title: str = "") -> Figure:
    """Accuracy curves, one panel per item: ``(title, {x, y, random_x, random_y, random_err})``.

    ``y`` is drawn as a line over ``x`` (the relation heads); ``random_y`` with error bars
    ``random_err`` over ``random_x`` (random heads).
    """
    fig, axes = _panels(len(panels), height=2.8)
    for ax, (name, c) in zip(axes, panels):
        ax.plot(c["x"], c["y"], label="relation heads")
        ax.errorbar(c["random_x"], c["random_y"], yerr=c["random_err"], fmt="o--", ms=3,
                    label="random heads")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(name, fontsize=8)
        ax.set_xlabel(xlabel, fontsize=7)
        ax.set_ylabel(ylabel, fontsize=7)
    return _finish_panels(fig, axes, bool(panels), title)


def coverage_figure(layers: np.ndarray, coverage: np.ndarray, accurate: np.ndarray | None = None,
                    baseline: np.ndarray | None = None, *, title: str = "",
                    ylabel: str = "heads (%)") -> Figure:
    """Per layer: heads described (bars), the part measured correct, the shuffled baseline.

    All arrays are ``(n_layers_shown,)`` fractions; ``accurate`` and ``baseline`` are
    optional (coverage alone is one bar per layer).
    """
    fig = _figure(figsize=(max(4.0, 0.28 * len(layers) + 2), 3.2), dpi=120)
    ax = fig.add_subplot()
    ax.bar(layers, np.asarray(coverage) * 100, color="#4472c4" if accurate is None else "#c9d6ef",
           label="described")
    if accurate is not None:
        ax.bar(layers, np.asarray(accurate) * 100, color="#4472c4",
               label="described and measured correct")
    if baseline is not None:
        ax.plot(layers, np.asarray(baseline) * 100, "k_", markersize=10,
                label="shuffled baseline")
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    if accurate is not None or baseline is not None:
        ax.legend(fontsize=7, loc="upper left")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def diff_figure(weight_change: np.ndarray, *, title: str = "",
                relation: str | None = None, change: np.ndarray | None = None,
                changed: np.ndarray | None = None, gained: Sequence[tuple[int, int]] = (),
                scores_a: np.ndarray | None = None, scores_b: np.ndarray | None = None,
                tau: float = 0.0, names: tuple[str, str] = ("a", "b")) -> Figure:
    """A head diff: one relation's score change, the weight change, and a before/after scatter.

    Args:
        weight_change: ``(n_layers, n_heads)`` relative change of ``W_VO`` (NaN: unknown).
        title: the figure title.
        relation: the relation shown (None: the weight change alone).
        change: ``(n_layers, n_heads)`` score change ``b - a`` of ``relation``.
        changed: bool ``(n_layers, n_heads)``: beyond the noise floor.
        gained: heads ``(layer, head)`` that gained the relation (outlined).
        scores_a: ``(n_layers, n_heads)`` the relation's scores in the first model.
        scores_b: the same in the second model.
        tau: the threshold drawn on the scatter.
        names: the two models' names.
    """
    from matplotlib.patches import Rectangle

    wvo = np.asarray(weight_change, dtype=np.float64)
    L, H = wvo.shape
    import matplotlib as mpl

    with mpl.rc_context({"font.size": 8}):
        fig = _figure(figsize=(11, min(9.0, max(3.2, 0.14 * L + 1.6))), layout="constrained")
        fig.suptitle(title)
        axes = fig.subplots(1, 3 if relation is not None else 1, squeeze=False)[0]
        if relation is not None:
            ch = np.where(changed, change, np.nan)
            lim = max(float(np.nanmax(np.abs(ch))) if np.isfinite(ch).any() else 0.0, 0.05)
            ax = axes[0]
            im = ax.imshow(ch, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto",
                           interpolation="nearest")
            for y, x in gained:
                ax.add_patch(Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, lw=1.2, ec="black"))
            fig.colorbar(im, ax=ax, label="score change (beyond floor)")
            ax.set(title=f"{relation}: score change b - a", xlabel="head", ylabel="layer")
            sc = axes[2]
            c = np.asarray(changed).ravel()
            a, b = np.asarray(scores_a).ravel(), np.asarray(scores_b).ravel()
            sc.scatter(a[~c], b[~c], s=8, c="0.7", label="within floor")
            sc.scatter(a[c], b[c], s=12, c="tab:red", label="beyond floor")
            sc.plot([0, 1], [0, 1], lw=0.6, c="0.3")
            sc.axhline(tau, lw=0.5, ls=":", c="0.3")
            sc.axvline(tau, lw=0.5, ls=":", c="0.3")
            sc.set(xlabel=f"{relation} score in {names[0]}", ylabel=f"score in {names[1]}",
                   xlim=(-0.02, 1.02), ylim=(-0.02, 1.02))
            sc.legend(loc="lower right")
        ax = axes[1] if relation is not None else axes[0]
        im = ax.imshow(np.where(np.isfinite(wvo), wvo, np.nan), cmap="viridis", aspect="auto",
                       interpolation="nearest")
        fig.colorbar(im, ax=ax, label="||dW_VO|| / ||W_VO||")
        ax.set(title="relative change of W_VO", xlabel="head", ylabel="layer")
        if H <= 16:
            for a_ in axes[:2]:
                a_.set_xticks(range(H))
    return fig
