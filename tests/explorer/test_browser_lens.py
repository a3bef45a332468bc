"""The explorer of in-memory models: ``hm.report(model, path)`` on a TL 4 bridge and nnsight.

A tiny GQA Llama (3 layers x 8 heads over the tiny word vocabulary) booted as a
TransformerLens 4 ``TransformerBridge`` in compatibility mode, and the same architecture
wrapped in an nnsight ``LanguageModel``, each reported straight from the in-memory model
(the CLI takes names and paths only) and opened in headless Chromium (same launch as
test_browser.py): every head is listed, and a head's detail shows its QK half.
"""

from __future__ import annotations

import warnings

import nnsight
import pytest
import torch
from transformer_lens.model_bridge import TransformerBridge

import headmaps as hm
import tiny_vocab
from browser_page import report_page
from headmaps.attention import describe_qk
from tiny import tiny_model

pytestmark = pytest.mark.browser


def bridge_model(folder):
    tiny_model("llama").save_pretrained(folder)
    tiny_vocab.tokenizer().save_pretrained(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bridge = TransformerBridge.boot_transformers(str(folder), device="cpu",
                                                     dtype=torch.float64)
        bridge.enable_compatibility_mode(disable_warnings=True)
    return bridge


def nnsight_model(folder):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nnsight.LanguageModel(tiny_model("llama"), tokenizer=tiny_vocab.tokenizer())


@pytest.mark.parametrize("make", [bridge_model, nnsight_model], ids=["tl4-bridge", "nnsight"])
def test_report_of_an_in_memory_model_in_the_browser(make, tmp_path):
    model = make(tmp_path / "model")
    path = hm.report(model, tmp_path / "report.html")
    att = hm.attention_summary(hm.load(model))
    summary = describe_qk(att.preferences(2, 5), att.profile_at(2, 5))
    errors: list[str] = []
    with report_page(path, errors) as pg:
        assert pg.get_attribute("#hm-count", "data-count") == "24"  # 3 layers x 8 heads
        pg.click('#hm-grid [data-head="2.5"]')
        panel = pg.locator("#hm-panel")
        assert panel.get_attribute("data-head") == "2.5"
        text = panel.inner_text()
        assert "What it attends to" in text and summary in text
        assert panel.locator(".qk-keys .tok").count() > 0
    assert not errors, errors
