"""Loading from every kind of source, the conversion cache, and the error cases."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import headmaps as hm
from headmaps.models import cache
from tiny import tiny_model


def test_in_memory_model_without_tokenizer_is_clear_when_needed(tiny_llama_hm):
    assert tiny_llama_hm.tokenizer is None
    with pytest.raises(hm.HeadmapsError, match="has no tokenizer"):
        hm.scan(tiny_llama_hm, [("a", "b")] * 40)


def test_headmodel_passes_through(tiny_llama_hm):
    assert hm.load(tiny_llama_hm) is tiny_llama_hm


def test_unknown_name_lists_aliases(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(hm.ModelNotFoundError, match="smollm2-135m.*gemma3-270m.*network"):
        hm.load("no-such-model-anywhere")


def test_missing_paths(tmp_path):
    with pytest.raises(hm.ModelNotFoundError, match="GGUF file not found"):
        hm.load(tmp_path / "absent.gguf")
    with pytest.raises(hm.ModelNotFoundError, match="no such file or folder"):
        hm.load(str(tmp_path / "absent_dir") + "/")


def test_corrupt_gguf(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf at all" * 10)
    with pytest.raises(hm.CorruptFileError, match="not a GGUF file"):
        hm.load(bad)
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 20)
    with pytest.raises(hm.CorruptFileError, match="could not read GGUF"):
        hm.load(truncated)


def test_unsupported_architecture_in_folder(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "bert", "hidden_size": 8, "num_attention_heads": 2, "num_hidden_layers": 1}))
    with pytest.raises(hm.UnsupportedArchitectureError, match="model_type='bert'.*llama"):
        hm.load(tmp_path)


def test_local_folder_round_trip(tmp_path):
    from tiny_tokenizer import tiny_tokenizer

    m = tiny_model("gpt2")
    m.save_pretrained(tmp_path)
    tiny_tokenizer(["a", "b"]).save_pretrained(tmp_path)
    loaded = hm.load(tmp_path)
    assert loaded.architecture == "gpt2" and loaded.tokenizer is not None
    assert (loaded.E == hm.load(m).E).all()


def test_dtype_and_bad_dtype(tiny_llama):
    m = hm.load(tiny_llama, dtype="bf16")
    assert m.E.dtype == hm.load(tiny_llama, dtype="bfloat16").E.dtype
    with pytest.raises(hm.HeadmapsError, match="unknown dtype"):
        hm.load(tiny_llama, dtype="int3")


def test_head_and_layer_ranges(tiny_llama_hm):
    with pytest.raises(IndexError, match="layers 0..2"):
        tiny_llama_hm.ov(3, 0)
    with pytest.raises(IndexError, match="heads 0..7"):
        tiny_llama_hm.ov(0, 8)


def test_cache_builds_once_and_rebuilds_corrupt_entries(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADMAPS_CACHE", str(tmp_path))
    calls = []

    def build(folder):
        calls.append(folder)
        (folder / "weights.bin").write_bytes(b"x" * 100)

    entry = cache.get_or_build("key", build)
    assert cache.get_or_build("key", build) == entry and len(calls) == 1
    (entry / "weights.bin").write_bytes(b"x" * 10)  # truncated: sizes no longer match
    assert not cache.entry_is_complete(entry)
    cache.get_or_build("key", build)
    assert len(calls) == 2 and cache.entry_is_complete(entry)


def test_interrupted_cache_build_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADMAPS_CACHE", str(tmp_path))

    def build(folder):
        (folder / "half.bin").write_bytes(b"x")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.get_or_build("key", build)
    # only the (empty) lock file stays: no entry, no temporary folder
    assert [p.name for p in (tmp_path / "models").iterdir()] == [".key.lock"]


@pytest.mark.slow
def test_smollm2_alias_sizes_and_fast_reload(smollm2):
    m = smollm2
    assert (m.n_layers, m.n_heads, m.n_kv_heads, m.d_model, m.d_head,
            m.vocab_size) == (30, 9, 3, 576, 64, 49152)
    assert m.architecture == "llama" and m.tied_embeddings
    W_V, W_O = m.ov(23, 4)
    assert W_V.shape == (576, 64) and W_O.shape == (64, 576)
    # a new process reads the conversion cache written above
    out = subprocess.run([sys.executable, "-m", "headmaps.cli", "info", "smollm2-135m"],
                         capture_output=True, text=True, check=True).stdout
    assert "cache:" in out and "n_kv_heads" in out
