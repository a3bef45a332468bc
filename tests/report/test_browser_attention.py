"""The explorer's head detail shows the QK half: summary line, key tokens, profile drawn.

Real extras from a tiny model's :func:`headmaps.attention_summary`, merged into a
synthetic scan's extras, rendered in headless Chromium (same launch as test_browser.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright import sync_api

import headmaps as hm
from headmaps.report import synthetic_scan, write_report
from tiny import tiny_model

CHROMIUM = os.environ.get("HEADMAPS_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def report_with_attention(tmp_path_factory):
    m = hm.load(tiny_model("llama"))  # 3 layers x 8 heads
    att = hm.attention_summary(m, max_distance=16)
    scan, extras = synthetic_scan(m.n_layers, m.n_heads, 4, seed=2)
    for key, value in att.to_extras().items():
        extras.setdefault(key, {}).update(value)
    path = write_report(tmp_path_factory.mktemp("report") / "qk.html", scan, extras)
    return path, att


def test_head_detail_draws_the_positional_profile(report_with_attention):
    path, att = report_with_attention
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install it with `apt-get install -y chromium`")
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            pg = browser.new_page(viewport={"width": 1400, "height": 1000})
            pg.on("pageerror", lambda e: errors.append(str(e)))
            pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            pg.goto(path.resolve().as_uri())
            pg.wait_for_function("() => window.__headmapsReady === true", timeout=10_000)
            pg.click('#hm-grid [data-head="2.5"]')
            panel = pg.locator("#hm-panel")
            text = panel.inner_text()
            assert "What it attends to" in text
            assert att.to_extras()["2.5"]["attention"]["summary"] in text
            bars = panel.locator("svg.qk-profile rect")
            assert bars.count() == 17  # Δ = 0..16
            heights = [float(bars.nth(d).get_attribute("height")) for d in range(17)]
            weights = att.profile_at(2, 5).weights
            top = max(range(17), key=lambda d: weights[d])
            assert heights[top] == pytest.approx(64, abs=0.2)  # the largest weight fills the plot
            assert panel.locator(".qk-keys .tok").count() == 6
            top_key = att.preferences(2, 5).key_tokens[0].replace(" ", "\u2423")
            assert panel.locator(".qk-keys .tok").first.inner_text() == top_key
        finally:
            browser.close()
    assert not errors, errors
