"""Notebook display: results render as compact HTML tables."""

from __future__ import annotations

import numpy as np
import pytest

from headmaps.explorer import synthetic_scan
from headmaps.salient.results import SalientOperations


def test_scan_and_relation_scores_repr_html():
    scan, _ = synthetic_scan(n_layers=4, n_heads=3, n_relations=3, seed=1, with_extras=False)
    page = scan._repr_html_()
    assert page.count("<tr") == 1 + len(scan.relations) and "<table" in page
    rel = scan[scan.relations[0]]
    page = rel._repr_html_()
    layer, head, score = rel.top_heads(1)[0]
    assert f"<td>{layer}.{head}</td>" in page and f"{score:.3f}" in page
    assert page.count("<tr") == 1 + 10


def test_salient_operations_repr_html_escapes_tokens():
    ops = SalientOperations.from_dict({"layer": 2, "head": 1, "model_id": "m", "preset": "norms",
                                       "tokens": [
        {"id": 5, "token": " <b>", "saliency": 2.5, "mappings": [{"id": 6, "token": " x&y",
                                                                  "score": 1.25}]}]})
    page = ops._repr_html_()
    assert "head 2.1" in page and "&lt;b&gt;" in page and "x&amp;y" in page and "2.500" in page
    assert "<b>" not in page.replace("<b>head", "")
    assert np.isclose(ops.saliency[0], 2.5)


def test_scan_plot_one_relation_is_one_heatmap():
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    scan, _ = synthetic_scan(n_layers=5, n_heads=4, n_relations=3, seed=2, with_extras=False)
    rel = scan.relations[1]
    open_figures = len(plt.get_fignums())
    fig = scan.figure(rel)
    assert isinstance(fig, Figure)
    assert len(plt.get_fignums()) == open_figures  # not registered with pyplot: no window
    heat, bar = fig.axes  # the heatmap and its colour bar
    assert rel.replace("_", " ") in heat.get_title() and scan.model_id in heat.get_title()
    (image,) = heat.get_images()
    assert np.array_equal(image.get_array(), scan.scores[1])
    assert image.get_cmap().name == "Blues"
    sup = scan.figure(rel, suppression=True).axes[0].get_images()[0]
    assert np.array_equal(sup.get_array(), scan.suppression[1]) and sup.get_cmap().name == "Reds"


def test_scan_plot_grid_of_relations():
    scan, _ = synthetic_scan(n_layers=5, n_heads=4, n_relations=3, seed=2, with_extras=False)
    panels = [a for a in scan.figure().axes if a.get_visible() and a.get_images()]
    assert [a.get_title() for a in panels] == [r.replace("_", " ") for r in scan.relations]
    two = scan.relations[::2]
    panels = [a for a in scan.figure(two, ncols=1).axes if a.get_visible() and a.get_images()]
    assert [np.asarray(a.get_images()[0].get_array()).tolist() for a in panels] == \
        [scan[r].scores.tolist() for r in two]
    with pytest.raises(KeyError, match="not in this scan"):
        scan.figure("no_such_relation")
