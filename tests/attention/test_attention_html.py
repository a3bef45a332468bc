"""Notebook display of the QK results: compact, escaped HTML tables."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

import headmaps as hm
from headmaps.attention import AttentionPreferences, PositionalProfile
from tiny import tiny_model


def test_positional_profile_repr_html():
    prof = PositionalProfile(3, 2, np.array([0.0, 5.0, 1.0, -np.inf], dtype=np.float32),
                             positions="<rotary>", model_id="m")
    page = prof._repr_html_()
    assert "positional profile of 3.2 (&lt;rotary&gt;): previous-token" in page
    assert "<rotary>" not in page
    cells = re.findall(r"<td>([^<]*)</td>", page)
    assert cells[:5] == ["weight"] + [f"{w:.2f}" for w in prof.weights]
    assert cells[5:] == ["logit", "0.00", "5.00", "1.00", "-inf"]
    assert f"previous {prof.prev_mass:.2f}" in page


def test_attention_preferences_repr_html_escapes_tokens():
    prefs = AttentionPreferences(
        1, 0, np.array([4, 5]), [" <b>", "x&y"], np.array([0.5, 0.25], dtype=np.float32),
        np.array([7]), ["q"], np.array([0.125], dtype=np.float32),
        np.array([[4, 5]]), [[" <b>", "x&y"]], np.array([[1.5, -0.5]], dtype=np.float32),
        model_id="m")
    page = prefs._repr_html_()
    assert "content preferences of 1.0 of m" in page
    assert "key side (any query): ␣&lt;b&gt; (0.50), x&amp;y (0.25)" in page
    assert "<td>␣&lt;b&gt; (+1.50), x&amp;y (-0.50)</td>" in page and "<td>0.12</td>" in page
    assert "<b> " not in page.replace("<b>content", "")


@pytest.fixture(scope="module")
def summary():
    return hm.attention_summary(hm.load(tiny_model("llama")), max_distance=6, n_keys=3,
                                n_queries=2, n_pairs=2, chunk_rows=40)


def test_attention_summary_repr_html_counts_every_head_by_kind(summary):
    page = summary._repr_html_()
    rows = re.findall(r"<tr>\s*<td>([^<]*)</td>\s*<td>(\d+)</td>", page)
    kinds = Counter(summary.profile_at(layer, h).kind() for layer, h in summary.heads)
    assert {k: int(n) for k, n in rows} == dict(kinds)
    assert sum(int(n) for _, n in rows) == len(summary.layers) * summary.n_heads
    assert f"{len(summary.layers)} layers x {summary.n_heads} heads" in page
