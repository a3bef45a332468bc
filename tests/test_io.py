"""Atomic writing: files appear whole or not at all, with the modes of ordinary files."""

from __future__ import annotations

import json
import os
import stat

import pandas as pd
import pytest

from headmaps.io import atomic_path, markdown_table, write_text


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_written_file_has_the_umask_mode(tmp_path):
    write_text(tmp_path / "a" / "x.md", "hello")
    mode = stat.S_IMODE((tmp_path / "a" / "x.md").stat().st_mode)
    assert mode == 0o666 & ~_umask()
    assert (tmp_path / "a" / "x.md").read_text() == "hello"


def test_failure_leaves_nothing(tmp_path):
    target = tmp_path / "y.txt"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_writing_never_touches_the_process_umask(tmp_path, monkeypatch):
    """A momentary umask of 0 would give files other threads create meanwhile mode 0o666."""
    expected = 0o666 & ~_umask()

    def no_umask(_mask):
        raise AssertionError("os.umask called while writing")

    monkeypatch.setattr(os, "umask", no_umask)
    write_text(tmp_path / "z.txt", "z")
    assert stat.S_IMODE((tmp_path / "z.txt").stat().st_mode) == expected


def test_markdown_table():
    text = markdown_table(pd.DataFrame({"a": ["x"], "r": [0.12345], "tiny": [1e-5]}))
    assert text.splitlines() == ["| a | r | tiny |", "|---|---|---|", "| x | 0.12 | 1.0e-05 |"]


def test_run_header_records_the_run(tmp_path):
    from headmaps.io import RUN_HEADER_KEYS, command_line, run_header, versions

    h = run_header("python benchmarks/x.py --seed 3", "smollm2-135m", 3,
                   {"relations": ["copying"], "pairs_per_relation": 8}, note="test")
    assert set(RUN_HEADER_KEYS) <= set(h)
    assert h["versions"] == versions() and set(h["versions"]) == {"headmaps", "torch",
                                                                  "transformers", "numpy"}
    assert h["seed"] == 3 and h["note"] == "test" and h["date"].endswith("+00:00")
    # the machine behind the numbers: CPU, the flags the precision rule reads (patched by
    # the test session to a CPU without native bfloat16), and what auto picks there
    assert h["machine"]["cpu"] and h["machine"]["cpu_flags"]["avx512_bf16"] is False
    assert h["machine"]["cpu_bfloat16"].startswith("no native bfloat16")
    assert run_header(["a", "b"], "m", None, {})["command"] == ["a", "b"]
    script = tmp_path / "bench x.py"
    assert command_line(script, ["--out", "a b"]) == f"python '{script}' --out 'a b'"


@pytest.mark.parametrize("loader, name, kind", [
    ("ScanResult", "scores.parquet", "headmaps.ScanResult"),
    ("SalientAll", "salient.parquet", "headmaps.SalientAll"),
    ("AttentionSummary", "attention.parquet", "headmaps.AttentionSummary"),
    ("HeadTypes", "head_types.parquet", "headmaps.HeadTypes"),
])
def test_a_results_file_with_the_right_kind_but_wrong_content_is_corrupt(tmp_path, loader, name,
                                                                         kind):
    import pandas as pd

    import headmaps as hm
    from headmaps.errors import CorruptFileError

    path = tmp_path / name
    pd.DataFrame({"x": [1, 2]}).to_parquet(path)
    path.with_suffix(".json").write_text(json.dumps({"kind": kind}))
    with pytest.raises(CorruptFileError, match=f"{name} is not a readable headmaps"):
        getattr(hm, loader).load(path)


def test_a_malformed_descriptions_file_is_corrupt(tmp_path):
    from headmaps.describe import load_descriptions
    from headmaps.errors import CorruptFileError

    path = tmp_path / "descriptions.jsonl"
    path.write_text('{"unknown_field": 1}\n')
    with pytest.raises(CorruptFileError, match="descriptions.jsonl is not a readable"):
        load_descriptions(path)
    path.write_text("not json\n")
    with pytest.raises(CorruptFileError):
        load_descriptions(path)


def test_a_header_written_before_origin_was_named_so_reads_as_origin(tmp_path):
    """``model_info["source"]`` (files written before the rename) loads as ``"origin"``."""
    from headmaps.explorer.synthetic import synthetic_scan
    from headmaps.scoring.results import ScanResult

    scan, _ = synthetic_scan(n_layers=2, n_heads=2, n_relations=2, with_extras=False)
    written = scan.save(tmp_path / "scan.parquet")
    header = written.with_suffix(".json")
    h = json.loads(header.read_text())
    h["model_info"]["source"] = h["model_info"].pop("origin")
    header.write_text(json.dumps(h))
    info = ScanResult.load(written).model_info
    assert info["origin"] == scan.model_info["origin"] and "source" not in info
