"""The explorer's head detail shows the QK half: summary line, key tokens, profile drawn.

A tiny model's :func:`headmaps.attention_summary` in a head report beside a synthetic
scan and its extras, rendered in headless Chromium (same launch as test_browser.py).
"""

from __future__ import annotations

import pytest

import headmaps as hm
from browser_page import report_page
from headmaps.attention import describe_qk
from headmaps.explorer import synthetic_scan, write_report
from tiny import tiny_model

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def report_with_attention(tmp_path_factory):
    m = hm.load(tiny_model("llama"))  # 3 layers x 8 heads
    att = hm.attention_summary(m, max_distance=16)
    scan, extras = synthetic_scan(m.n_layers, m.n_heads, 4, seed=2)
    path = write_report(tmp_path_factory.mktemp("report") / "qk.html",
                        hm.HeadReport(scan, attention=att), extras)
    return path, att


def test_head_detail_draws_the_positional_profile(report_with_attention):
    path, att = report_with_attention
    errors: list[str] = []
    with report_page(path, errors, timeout_ms=10_000) as pg:
        pg.click('#hm-grid [data-head="2.5"]')
        panel = pg.locator("#hm-panel")
        text = panel.inner_text()
        assert "What it attends to" in text
        assert describe_qk(att.preferences(2, 5), att.profile_at(2, 5)) in text
        bars = panel.locator("svg.qk-profile rect")
        assert bars.count() == 17  # Δ = 0..16
        heights = [float(bars.nth(d).get_attribute("height")) for d in range(17)]
        weights = att.profile_at(2, 5).weights
        top = max(range(17), key=lambda d: weights[d])
        assert heights[top] == pytest.approx(64, abs=0.2)  # the largest weight fills the plot
        assert panel.locator(".qk-keys .tok").count() == 6
        top_key = att.preferences(2, 5).key_tokens[0].replace(" ", "\u2423")
        assert panel.locator(".qk-keys .tok").first.inner_text() == top_key
    assert not errors, errors
