"""Static plots: every format written, non-empty, with the right magic bytes; bad input refused."""

from __future__ import annotations

import pytest

from headmaps.errors import HeadmapsError
from headmaps.explorer import plots, synthetic_scan

MAGIC = {".png": b"\x89PNG", ".pdf": b"%PDF", ".svg": b"<?xml"}


@pytest.fixture(scope="module")
def scan():
    return synthetic_scan(8, 6, 3, seed=2, with_extras=False)[0]


@pytest.mark.parametrize("suffix", [".png", ".svg", ".pdf"])
def test_heatmap_formats(scan, tmp_path, suffix):
    path = plots.plot_heatmap(scan, tmp_path / f"h{suffix}", "copying", dpi=60)
    data = path.read_bytes()
    assert data.startswith(MAGIC[suffix]) and len(data) > 1000


def test_heatmaps_suppression_and_layers(scan, tmp_path):
    p1 = plots.plot_heatmaps(scan, tmp_path / "all.png", suppression=True, dpi=60)
    p2 = plots.plot_layer_distribution(scan, tmp_path / "layers.svg", ["copying", "name_copying"])
    assert p1.stat().st_size > 1000
    svg = p2.read_text()
    assert "<svg" in svg and "name copying" in svg  # text stays text in SVG


def test_tau_outline_drawn(scan, tmp_path):
    """Every cell >= tau gets its own outline rectangle."""
    import matplotlib as mpl
    from matplotlib.collections import PatchCollection
    from matplotlib.figure import Figure

    with mpl.rc_context():
        ax = Figure().add_subplot()
        plots.draw_heatmap(ax, scan.scores[0], scan.tau)
        boxes = [c for c in ax.collections if isinstance(c, PatchCollection)]
    assert len(boxes) == 1
    assert len(boxes[0].get_paths()) == int((scan.scores[0] >= scan.tau).sum())


def test_relation_heatmaps_folder(scan, tmp_path):
    paths = plots.relation_heatmaps(scan, tmp_path / "maps", dpi=40)
    assert [p.name for p in paths] == [f"{r}.png" for r in scan.relations]
    assert all(p.stat().st_size > 500 for p in paths)


def test_bad_input(scan, tmp_path):
    with pytest.raises(HeadmapsError, match="png"):
        plots.plot_heatmap(scan, tmp_path / "x.jpg", "copying")
    with pytest.raises(KeyError, match="not in this scan"):
        plots.plot_heatmap(scan, tmp_path / "x.png", "no_such_relation")
    with pytest.raises(HeadmapsError):
        plots.plot_heatmaps(scan, tmp_path / "x.png", [])
