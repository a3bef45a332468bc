"""Big-model options: parsing, checks, and the static weights of a dispatched model.

A model that accelerate offloads keeps the offloaded weights on the ``meta`` device; the
static side must read the real values (from the offload store or the checkpoint).
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

import headmaps as hm
from headmaps.errors import HeadmapsError
from headmaps.models.bigmodel import BigModelOptions, parse_max_memory, parse_size
from tiny import tiny_model

#: Small enough that the tiny Llama's blocks go to disk (its embedding is ~100 kB).
TINY_BUDGET = {"cpu": "150kB"}


@pytest.fixture(scope="module")
def saved_llama(tmp_path_factory):
    """The tiny Llama (float64) saved as safetensors, and the in-memory original."""
    model = tiny_model("llama")
    d = tmp_path_factory.mktemp("tiny_llama")
    model.save_pretrained(d)
    return d, model


def test_parse_max_memory():
    assert parse_max_memory("0=70GiB,1=70GiB,cpu=100GiB") == {0: 70 * 2**30, 1: 70 * 2**30,
                                                              "cpu": 100 * 2**30}
    assert parse_max_memory("cpu=150MB, disk=2.5GB") == {"cpu": 150 * 10**6,
                                                          "disk": 2_500_000_000}
    assert parse_max_memory("cuda:1=1024") == {1: 1024}
    assert parse_size(" 3 KiB ") == 3072


@pytest.mark.parametrize("text, says", [
    ("cpu", "DEVICE=SIZE"),
    ("cpu=lots", "cannot read memory size 'lots'"),
    ("cpu=2GiB,cpu=3GiB", "appears twice"),
    ("tpu=2GiB", "unknown device 'tpu'"),
    ("cpu=2 parsecs", "cannot read memory size"),
])
def test_bad_max_memory_is_a_clear_error(text, says):
    with pytest.raises(HeadmapsError, match=says):
        BigModelOptions.create(max_memory=text)


def test_options_defaults_and_bad_device_map():
    assert BigModelOptions.create() is None
    opts = BigModelOptions.create(max_memory={"cpu": "1GB"}, offload_folder="/x")
    assert opts.device_map == "auto"  # a budget implies the auto map
    assert opts.from_pretrained_kwargs() == {"device_map": "auto", "max_memory": {"cpu": 10**9},
                                             "offload_folder": "/x"}
    with pytest.raises(HeadmapsError, match="unknown device_map 'everywhere'.*auto, balanced"):
        BigModelOptions.create(device_map="everywhere")


def test_a_gpu_this_machine_lacks_is_a_clear_error():
    opts = BigModelOptions.create(max_memory={torch.cuda.device_count(): "1GiB", "cpu": "1GiB"})
    with pytest.raises(HeadmapsError, match="names GPU .* CUDA device"):
        opts.from_pretrained_kwargs()


def test_missing_accelerate_is_a_clear_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "accelerate" else real(name, *a))
    with pytest.raises(HeadmapsError, match="pip install accelerate"):
        hm.load("anything", device_map="auto")


def test_in_memory_model_with_device_map_is_refused(tiny_llama):
    with pytest.raises(HeadmapsError, match="dispatch an in-memory model yourself"):
        hm.load(tiny_llama, device_map="auto")


def test_folder_with_budget_offloads_and_reads_exact_weights(saved_llama, tmp_path):
    folder, original = saved_llama
    plain = hm.load(original)
    big = hm.load(folder, max_memory=TINY_BUDGET, offload_folder=tmp_path / "off")
    assert "device_map=auto" in big.origin
    placed = big.hf_model.hf_device_map
    assert "disk" in set(placed.values()), placed  # the budget really forced offload
    for layer in range(plain.n_layers):
        for h in range(plain.n_heads):
            for a, b in zip(plain.ov(layer, h), big.ov(layer, h)):
                torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(plain.U, big.U, rtol=0, atol=0)


def test_dispatched_in_memory_model_reads_offloaded_weights(saved_llama, tmp_path):
    """The meta-device trap: a model the user dispatched, passed to hm.load as it is."""
    from transformers import AutoModelForCausalLM

    folder, original = saved_llama
    dispatched = AutoModelForCausalLM.from_pretrained(
        folder, device_map="auto", max_memory=TINY_BUDGET, offload_folder=str(tmp_path))
    assert dispatched.model.layers[1].self_attn.v_proj.weight.device.type == "meta"
    plain, big = hm.load(original), hm.load(dispatched)
    for layer in range(plain.n_layers):
        a, b = plain.attention(layer), big.attention(layer)
        torch.testing.assert_close(a.W_V, b.W_V, rtol=0, atol=0)
        torch.testing.assert_close(a.W_O, b.W_O, rtol=0, atol=0)
        torch.testing.assert_close(a.input_norm.weight, b.input_norm.weight, rtol=0, atol=0)
    mlp_a, mlp_b = plain.first_mlp().mlp, big.first_mlp().mlp
    torch.testing.assert_close(mlp_a.W_in, mlp_b.W_in, rtol=0, atol=0)
