"""The forward-pass experiments on a model dispatched with disk offload give the plain results.

A memory budget far below the model's size makes accelerate put blocks on the disk (their
weights on ``meta`` between passes); hooks, captured activations, the static weights and
the prefix-cache evaluator must all give what the plain load gives.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import headmaps as hm
from headmaps.experiments import hooks as H
from headmaps.experiments.causal import Evaluator, build_task
from headmaps.experiments.dynamic import dynamic_scores, pad_right
from tiny import tiny_model
from tiny_tokenizer import tiny_tokenizer

SOURCES = [f"s{i}" for i in range(24)]
TARGETS = [f"t{i}" for i in range(24)]
TEMPLATES = ["this is about <X>", "no <X> means no"]
ARRAYS = ("with_context", "without_context", "supp_with_context", "supp_without_context")


@pytest.fixture(scope="module")
def plain_and_offloaded(tmp_path_factory):
    """The tiny Llama with a word tokenizer, saved, then loaded plainly and with a budget."""
    tok = tiny_tokenizer(SOURCES + TARGETS + ["this", "is", "about", "no", "means", "->"])
    original = tiny_model("llama")
    folder = tmp_path_factory.mktemp("tiny_llama_tok")
    original.save_pretrained(folder)
    tok.save_pretrained(folder)
    big = hm.load(folder, dtype="float64", max_memory={"cpu": "150kB"},
                  offload_folder=tmp_path_factory.mktemp("offload"))
    # the baseline is the same checkpoint loaded plainly (a reloaded model differs from
    # the in-memory original by float rounding of its rotary buffers)
    return hm.load(folder, dtype="float64"), big


def test_the_budget_forces_disk_offload(plain_and_offloaded):
    _, big = plain_and_offloaded
    placed = big.hf_model.hf_device_map
    assert "disk" in set(placed.values()), placed
    assert any(p.device.type == "meta" for p in big.hf_model.parameters())


def test_captured_activations_equal_the_plain_load(plain_and_offloaded):
    plain, big = plain_and_offloaded
    ids, mask = pad_right([[5, 17, 33, 8, 9], [7, 3, 44]], 1)
    src = torch.tensor([2, 1])
    a, b = H.capture(plain, ids, mask, src), H.capture(big, ids, mask, src)
    for x, y in ((a.z, b.z), (a.attn_in, b.attn_in), (a.hidden, b.hidden)):
        assert y.device == big.device
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)


def test_dynamic_scores_equal_the_plain_load(plain_and_offloaded):
    plain, big = plain_and_offloaded
    rel = {"toy": list(zip(SOURCES, TARGETS))}
    kw = dict(k=5, max_pairs=16, min_pairs=10, batch_size=5)
    a, b = dynamic_scores(plain, rel, TEMPLATES, **kw), dynamic_scores(big, rel, TEMPLATES, **kw)
    assert a.n_pairs == b.n_pairs == {"toy": 16}
    assert a.with_context.any()  # some head scores, so the comparison means something
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_ablation_with_prefix_cache_equals_the_plain_load(plain_and_offloaded):
    plain, big = plain_and_offloaded
    pairs = list(zip(SOURCES, TARGETS))[:10]
    heads = [(0, 1), (1, 3), (2, 0)]
    for model in (plain, big):
        task = build_task(model, "toy", pairs, "<X> ->")
        ev = Evaluator(model, task, batch_size=4)
        base, ablated = ev.predictions(), ev.predictions(heads)
        if model is plain:
            want = (base, ablated)
        else:
            torch.testing.assert_close(base, want[0])
            torch.testing.assert_close(ablated, want[1])
    assert not torch.equal(want[0], want[1])  # the ablation changes some prediction


@pytest.mark.slow
def test_smollm2_with_disk_offload_gives_the_plain_dynamic_scores(smollm2, tmp_path):
    """SmolLM2-135M (540 MB in float32) with a 150 MB CPU budget: most blocks on disk."""
    big = hm.load("smollm2-135m", max_memory={"cpu": "150MB"}, offload_folder=tmp_path)
    placed = big.hf_model.hf_device_map
    n_disk = sum(v == "disk" for v in placed.values())
    assert n_disk >= 10, placed
    rels = ["country_to_capital", "name_copying"]
    kw = dict(max_pairs=16, batch_size=16)
    templates = ["This is a document about <X>", "No <X> means no"]
    a = dynamic_scores(smollm2, rels, templates, **kw)
    b = dynamic_scores(big, rels, templates, **kw)
    assert a.relations == b.relations == rels and a.n_pairs == b.n_pairs
    assert a.without_context.max() > 0.5  # real relation heads: the scores carry signal
    for name in ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        # the same float32 arithmetic: at most a near-tie at the k-th logit may flip one pair
        assert np.abs(x - y).max() <= 1 / 16 + 1e-6, name
        assert (x == y).mean() > 0.99, name


def test_module_device_follows_accelerate_execution_device():
    """A dispatched module computes on its hook's execution device, wherever its weights are."""
    from types import SimpleNamespace

    lin = torch.nn.Linear(2, 2, device="meta")
    assert H.module_device(lin) == torch.device("cpu")  # only meta weights: the CPU
    lin._hf_hook = SimpleNamespace(execution_device=1)
    assert H.module_device(lin) == torch.device("cuda:1")
    lin._hf_hook = SimpleNamespace(hooks=[SimpleNamespace(), SimpleNamespace(
        execution_device="cpu")])  # accelerate's SequentialHook
    assert H.module_device(lin) == torch.device("cpu")
    emb = torch.nn.Embedding(3, 2)
    emb._hf_hook = SimpleNamespace(execution_device=torch.device("cuda:0"))
    hf = SimpleNamespace(get_input_embeddings=lambda: emb)
    assert H.input_device(hf) == torch.device("cuda:0")
