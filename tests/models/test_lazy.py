"""Lazy checkpoints: same tensors as the eager path, clear errors, a per-layer memory bound."""

from __future__ import annotations

import fnmatch
import gc
import json
import shutil
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch

import headmaps as hm
import tiny
from headmaps.errors import CorruptFileError, ModelNotFoundError
from headmaps.models import lazy
from headmaps.models.lazy import (
    PickleCheckpointError,
    PickleStore,
    SafetensorsStore,
    checkpoint_bytes,
    load_lazy,
    should_load_lazily,
)
from headmaps.models.tensors import MissingTensorError
from headmaps.models.weights import Norm
from tiny import tiny_model

#: Every tiny architecture and wiring variant the test helpers define (none skipped).
ARCHS = sorted({**tiny.TINY_CONFIGS, **getattr(tiny, "TINY_VARIANTS", {})})


def _save(model: torch.nn.Module, folder: Path, shard: str = "30KB") -> Path:
    """Save ``model`` as sharded safetensors (several shards + index json)."""
    model.save_pretrained(folder, max_shard_size=shard)
    return folder


def _same(a, b, what: str) -> None:
    if a is None or b is None:
        assert a is None and b is None, what
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype, f"{what}: {a.dtype} != {b.dtype}"
        assert a.shape == b.shape and torch.equal(a, b), what
    elif isinstance(a, Norm):
        assert (a.kind, a.eps, a.gain_offset) == (b.kind, b.eps, b.gain_offset), what
        _same(a.weight, b.weight, what + ".weight")
        _same(a.bias, b.bias, what + ".bias")
    else:
        raise TypeError(type(a))


def _assert_same_model(lz: hm.HeadModel, ea: hm.HeadModel) -> None:
    assert lz.spec == ea.spec
    assert lz.hf_model is None
    _same(lz.E, ea.E, "E")
    _same(lz.U, ea.U, "U")
    _same(lz.unembedding_bias, ea.unembedding_bias, "unembedding bias")
    _same(lz.final_norm, ea.final_norm, "final norm")
    for layer in range(lz.n_layers):
        a, b = lz.attention(layer), ea.attention(layer)
        for f in ("W_V", "W_O", "b_V", "b_O", "input_norm", "post_norm"):
            _same(getattr(a, f), getattr(b, f), f"layer {layer} {f}")
        for head in range(lz.n_heads):
            for x, y in zip(lz.ov(layer, head), ea.ov(layer, head)):
                _same(x, y, f"ov({layer}, {head})")
    fa, fb = lz.mlp(lz.n_layers - 1), ea.mlp(ea.n_layers - 1)
    _same(fa.pre_norm, fb.pre_norm, "mlp pre norm")
    _same(fa.post_norm, fb.post_norm, "mlp post norm")
    for f in ("W_in", "b_in", "W_gate", "W_out", "b_out"):
        _same(getattr(fa.mlp, f), getattr(fb.mlp, f), f"mlp {f}")
    assert fa.mlp.act == fb.mlp.act
    x = torch.randn(7, lz.d_model, generator=torch.Generator().manual_seed(1), dtype=torch.float32)
    _same(fa(x), fb(x), "mlp output")


# ---- exactness ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("arch", ARCHS)
def test_lazy_matches_eager(arch, dtype, tmp_path):
    model = tiny_model(arch).to(dtype)
    _save(model, tmp_path)
    assert len(list(tmp_path.glob("*.safetensors"))) > 1, "the checkpoint should be sharded"
    assert (tmp_path / lazy.SAFE_INDEX).is_file()
    lz = hm.load(tmp_path, lazy=True)
    assert isinstance(lz.adapter.store, SafetensorsStore)
    assert lz.E.dtype == dtype  # the checkpoint's dtype is kept
    _assert_same_model(lz, hm.load(model))


def test_lazy_single_file_and_explicit_files(tmp_path):
    model = tiny_model("llama").to(torch.float32)
    model.save_pretrained(tmp_path)  # one model.safetensors, no index
    assert not (tmp_path / lazy.SAFE_INDEX).exists()
    _assert_same_model(load_lazy(tmp_path), hm.load(model))
    store = SafetensorsStore([tmp_path / "model.safetensors"])
    assert torch.equal(store.get("model.embed_tokens.weight"), model.model.embed_tokens.weight)


def test_prefix_variants_resolve(tmp_path):
    model = tiny_model("llama").to(torch.float32)
    _save(model, tmp_path)
    store = SafetensorsStore(tmp_path)
    w = model.model.layers[1].self_attn.v_proj.weight
    assert torch.equal(store.get("layers.1.self_attn.v_proj.weight"), w)  # wrapper stem added
    assert store.has("model.layers.1.self_attn.v_proj.weight") and not store.has("nope.weight")


def test_dtype_conversion_and_tokenizer(tmp_path):
    model = tiny_model("llama").to(torch.bfloat16)
    _save(model, tmp_path)
    tok = _word_tokenizer([f"w{i}" for i in range(50)])
    tok.save_pretrained(tmp_path)
    lz = hm.load(tmp_path, lazy=True, dtype="float32")
    assert lz.E.dtype == torch.float32 and lz.attention(0).W_V.dtype == torch.float32
    assert lz.tokenizer is not None and lz.tokenizer.encode(" w3", add_special_tokens=False) == [4]


def test_missing_tokenizer_warns(tmp_path, caplog):
    _save(tiny_model("llama").to(torch.float32), tmp_path)
    with caplog.at_level("WARNING"):
        m = hm.load(tmp_path, lazy=True)
    assert m.tokenizer is None and "no tokenizer" in caplog.text


# ---- scan results --------------------------------------------------------------------

def _word_tokenizer(words: list[str]):
    """A word-level fast tokenizer: ``[UNK]`` is 0, ``words[i]`` is ``i + 1``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(words)}}
    t = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=t, unk_token="[UNK]")


@pytest.mark.parametrize("arch", ["llama", "gemma3_text"])
def test_scan_results_match_eager(arch, tmp_path):
    words = [f"s{i}" for i in range(40)] + [f"t{i}" for i in range(40)]
    tok = _word_tokenizer(words)
    pairs = [(f"s{i}", f"t{(7 * i) % 40}") for i in range(40)]
    model = tiny_model(arch).to(torch.bfloat16)
    _save(model, tmp_path)
    tok.save_pretrained(tmp_path)
    lz = hm.load(tmp_path, lazy=True)
    ea = hm.load(model, tokenizer=tok)
    for preset in ("paper", None, "alone"):  # alone reads every earlier block's MLP too
        a = hm.scan(lz, {"custom": pairs}, k=5, projection=preset)
        b = hm.scan(ea, {"custom": pairs}, k=5, projection=preset)
        assert a.n_pairs == b.n_pairs == {"custom": 40}
        np.testing.assert_array_equal(a.scores, b.scores)
        np.testing.assert_array_equal(a.suppression, b.suppression)


# ---- errors ---------------------------------------------------------------------------

def test_missing_shard(tmp_path):
    _save(tiny_model("llama").to(torch.float32), tmp_path)
    shard = sorted(tmp_path.glob("model-*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(ModelNotFoundError, match=shard.name):
        hm.load(tmp_path, lazy=True)


def test_shard_removed_after_opening(tmp_path):
    _save(tiny_model("llama").to(torch.float32), tmp_path)
    m = hm.load(tmp_path, lazy=True)
    name = "model.layers.2.self_attn.v_proj.weight"
    shard = m.adapter.store.shard_of(name)
    shard.unlink()
    with pytest.raises(ModelNotFoundError, match=shard.name):
        m.attention(2)


def test_missing_tensor_names_tensor_and_architecture(tmp_path):
    _save(tiny_model("llama").to(torch.float32), tmp_path)
    index = tmp_path / lazy.SAFE_INDEX
    data = json.loads(index.read_text())
    del data["weight_map"]["model.layers.1.self_attn.o_proj.weight"]
    index.write_text(json.dumps(data))
    m = hm.load(tmp_path, lazy=True)
    m.attention(0)
    with pytest.raises(MissingTensorError,
                       match=r"model\.layers\.1\.self_attn\.o_proj\.weight.*'llama'"):
        m.attention(1)
    with pytest.raises(MissingTensorError, match="o_proj.*llama"):
        m.adapter.store.get("model.layers.1.self_attn.o_proj.weight")


def test_corrupt_shard(tmp_path):
    _save(tiny_model("llama").to(torch.float32), tmp_path, shard="10GB")
    (tmp_path / "model.safetensors").write_bytes(b"\x05\x00garbage")
    with pytest.raises(CorruptFileError, match="model.safetensors"):
        hm.load(tmp_path, lazy=True)


def test_no_weights_and_no_config(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(ModelNotFoundError, match="config.json"):
        load_lazy(tmp_path / "a")
    tiny_model("llama").config.save_pretrained(tmp_path / "b")
    with pytest.raises(ModelNotFoundError, match="no weights"):
        load_lazy(tmp_path / "b")


def _save_pickle(model: torch.nn.Module, folder: Path) -> None:
    """A two-shard ``pytorch_model-*.bin`` checkpoint with its index json."""
    model.config.save_pretrained(folder)
    state = {k: v.contiguous() for k, v in model.state_dict().items() if "rotary" not in k}
    names = sorted(state)
    half = len(names) // 2
    weight_map = {}
    for i, part in enumerate((names[:half], names[half:])):
        fname = f"pytorch_model-0000{i + 1}-of-00002.bin"
        torch.save({n: state[n] for n in part}, folder / fname)
        weight_map.update({n: fname for n in part})
    (folder / lazy.PICKLE_INDEX).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def test_pickle_refused_by_default_and_allowed_with_flag(tmp_path):
    model = tiny_model("llama").to(torch.float32)
    _save_pickle(model, tmp_path)
    with pytest.raises(PickleCheckpointError, match="safetensors") as err:
        hm.load(tmp_path, lazy=True)
    assert isinstance(err.value, hm.HeadmapsError) and "allow_pickle=True" in str(err.value)
    m = hm.load(tmp_path, lazy=True, allow_pickle=True)
    assert isinstance(m.adapter.store, PickleStore)
    _assert_same_model(m, hm.load(model))


def test_pickle_without_index(tmp_path):
    model = tiny_model("llama").to(torch.float32)
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    _assert_same_model(load_lazy(tmp_path, allow_pickle=True), hm.load(model))


# ---- hub ------------------------------------------------------------------------------

def test_hub_download_fetches_only_needed_files(tmp_path, monkeypatch):
    """``download_lazy`` asks the hub for config, tokenizer, index and listed shards only."""
    import huggingface_hub

    repo = tmp_path / "repo"
    _save(tiny_model("llama").to(torch.float32), repo)
    _word_tokenizer(["a", "b"]).save_pretrained(repo)
    (repo / "consolidated.safetensors").write_bytes(b"not needed")
    (repo / "pytorch_model.bin").write_bytes(b"not needed")
    (repo / "README.md").write_text("not needed")
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    calls = []

    def fake_snapshot_download(repo_id, *, revision=None, allow_patterns=None,
                               local_files_only=False, **kw):
        calls.append((repo_id, revision, list(allow_patterns), local_files_only))
        for f in repo.iterdir():
            if any(fnmatch.fnmatch(f.name, p) for p in allow_patterns):
                shutil.copy(f, snapshot / f.name)
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    m = hm.load("someone/tiny-llama", lazy=True, revision="main")
    assert m.model_id == "someone/tiny-llama" and m.tokenizer is not None
    got = {p.name for p in snapshot.iterdir()}
    assert not got & {"consolidated.safetensors", "pytorch_model.bin", "README.md"}
    assert {p.name for p in repo.glob("model-*.safetensors")} <= got
    assert all(c[0] == "someone/tiny-llama" and c[1] == "main" and c[3] for c in calls)
    _assert_same_model(m, load_lazy(repo))


def test_hub_failure_is_model_not_found(monkeypatch):
    import huggingface_hub

    def boom(*a, **kw):
        raise OSError("offline")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", boom)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="no/such-model"):
        load_lazy("no/such-model")


# ---- when to load lazily ---------------------------------------------------------------

def test_should_load_lazily(tmp_path):
    model = tiny_model("llama").to(torch.float32)
    _save(model, tmp_path)
    n = sum(p.numel() * p.element_size() for n_, p in model.state_dict().items()
            if "rotary" not in n_)
    assert checkpoint_bytes(tmp_path) == n
    assert should_load_lazily(tmp_path, available=4 * n) is False
    assert should_load_lazily(tmp_path, available=n) is True
    assert should_load_lazily(tmp_path / "missing") is False
    (tmp_path / lazy.SAFE_INDEX).unlink()  # sizes from the safetensors headers instead
    assert checkpoint_bytes(tmp_path) == n
    assert lazy.available_memory() is None or lazy.available_memory() > 0


# ---- memory: a layer's tensors are read when asked for, and released ---------------------

D, LAYERS, VOCAB, HEADS, KV = 512, 8, 8192, 8, 2


@pytest.fixture(scope="module")
def medium_checkpoint(tmp_path_factory) -> Path:
    """A bf16 Llama (d_model 512, 8 layers, vocab 8k; ~60 MB) saved in 20 MB shards."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    folder = tmp_path_factory.mktemp("medium")
    config = LlamaConfig(hidden_size=D, intermediate_size=1376, num_hidden_layers=LAYERS,
                         num_attention_heads=HEADS, num_key_value_heads=KV, vocab_size=VOCAB,
                         max_position_embeddings=128, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).to(torch.bfloat16)
    _save(model, folder, shard="20MB")
    words = [f"s{i}" for i in range(40)] + [f"t{i}" for i in range(40)]
    _word_tokenizer(words).save_pretrained(folder)
    del model
    gc.collect()
    return folder


class _LiveBytes:
    """Counts the bytes of source tensors still alive (by their storages) and the peak."""

    def __init__(self, store):
        self.alive = 0
        self.peak = 0
        read = store._read

        def tracked(stored, shard):
            t = read(stored, shard)
            n = t.numel() * t.element_size()
            self.alive += n
            self.peak = max(self.peak, self.alive)
            weakref.finalize(t.untyped_storage(), self._release, n)
            return t

        store._read = tracked

    def _release(self, n: int) -> None:
        self.alive -= n


def _layer_names(layer: int) -> set[str]:
    p = f"model.layers.{layer}"
    return {f"{p}.self_attn.v_proj.weight", f"{p}.self_attn.o_proj.weight",
            f"{p}.input_layernorm.weight"}


def test_each_layer_reads_only_its_ov_tensors(medium_checkpoint):
    m = hm.load(medium_checkpoint, lazy=True)
    store = m.adapter.store
    store.trace = []
    live = _LiveBytes(store)
    eu = m.E.numel() * 2 + m.U.numel() * 2
    assert store.bytes_read == eu == 2 * VOCAB * D * 2
    d_head = D // HEADS
    layer_bytes = (KV * d_head * D + D * D + D) * 2
    for layer in range(LAYERS):
        store.reset_counters()
        a = m.attention(layer)
        assert {n for n, _ in store.trace} == _layer_names(layer)
        assert store.bytes_read == layer_bytes
        _ = (a.W_V.float().sum() + a.W_O.float().sum()).item()  # touch the weights
        del a
        gc.collect()
        assert live.alive == eu  # the layer's tensors are gone; E and U stay (cached)
    assert live.peak == eu + layer_bytes
    # what a scan reads is a small part of the checkpoint
    assert eu + LAYERS * layer_bytes < 0.5 * checkpoint_bytes(medium_checkpoint)


def test_scan_streams_layers(medium_checkpoint):
    """Through ``hm.scan``: every layer's V/O read once; at most E + U + MLP_0 + 2 layers alive."""
    m = hm.load(medium_checkpoint, lazy=True)
    store = m.adapter.store
    store.trace = []
    live = _LiveBytes(store)
    pairs = [(f"s{i}", f"t{(3 * i) % 40}") for i in range(40)]
    res = hm.scan(m, {"custom": pairs}, k=10, projection="paper")
    assert res.scores.shape == (1, LAYERS, HEADS)
    names = [n for n, _ in store.trace]
    for layer in range(LAYERS):
        p = f"model.layers.{layer}.self_attn."
        assert names.count(p + "v_proj.weight") == 1 and names.count(p + "o_proj.weight") == 1
        if layer > 0:  # nothing but attention's V/O and norms of later layers
            assert not [n for n in names if n.startswith(f"model.layers.{layer}.")
                        and n.rsplit(".", 2)[-2] not in {"v_proj", "o_proj", "input_layernorm",
                                                         "post_attention_layernorm"}]
    d_head = D // HEADS
    eu = 2 * VOCAB * D * 2
    mlp0 = 3 * D * 1376 * 2 + 2 * D * 2
    layer_bytes = (KV * d_head * D + D * D + D) * 2
    assert live.peak <= eu + mlp0 + 2 * layer_bytes
    del res
    gc.collect()
    assert live.alive <= eu + 2 * D * 2  # E, U (+ norm gains a result may keep) remain
