"""Notebook display of head types: a compact, escaped table."""

from __future__ import annotations

import re

import numpy as np

from headmaps.headtypes import HeadTypes


def test_head_types_repr_html():
    copy = np.array([[0.9, np.nan, 0.1], [0.7, 0.2, 0.6]], dtype=np.float32)
    prev = np.array([[0.0, 0.8, 0.1], [0.3, 0.2, 0.1]], dtype=np.float32)
    types = HeadTypes("<m>", 2, 3, {"copying": copy, "previous_token": prev},
                      {"copying": copy >= 0.5, "previous_token": prev >= 0.5},
                      {}, {"copying": "eigen copying >= 0.5"}, {"successor_relation": "a & b"},
                      preset="norms")
    page = types._repr_html_()
    assert "head types of &lt;m&gt;: 2 x 3 heads, preset norms" in page
    assert "skipped successor_relation: a &amp; b" in page
    rows = re.findall(r"<tr>\s*<td>(\w+)</td>\s*<td>(\d+)</td>\s*<td>([^<]*)</td>", page)
    assert rows == [("copying", "3", "0.0 (0.90), 1.0 (0.70), 1.2 (0.60), 1.1 (0.20), 0.2 (0.10)"),
                    ("previous_token", "1",
                     "0.1 (0.80), 1.0 (0.30), 1.1 (0.20), 0.2 (0.10), 1.2 (0.10), 0.0 (0.00)")]
    assert "eigen copying &gt;= 0.5" in page
