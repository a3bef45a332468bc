"""Notebook display: results render as compact HTML tables."""

from __future__ import annotations

import numpy as np

from headmaps.report import synthetic_scan
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
