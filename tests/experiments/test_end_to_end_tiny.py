"""The three experiments end to end on a tiny Llama with a word-level tokenizer (fast)."""

from __future__ import annotations

import numpy as np
import pytest

import headmaps as hm
from headmaps import experiments as ex
from headmaps.experiments.results import CAUSAL_COLUMNS, CORRELATION_COLUMNS
from tiny import tiny_model
from tiny_tokenizer import tiny_tokenizer

SOURCES = [f"s{i}" for i in range(36)]
TARGETS = [f"t{i}" for i in range(36)]
TEMPLATES = ["this is about <X>", "no <X> means no"]


@pytest.fixture(scope="module")
def toy():
    words = SOURCES + TARGETS + ["this", "is", "about", "no", "means", "x", "y", "z", "->", ";"]
    words += [f"{a}{b}" for a in "xyz" for b in "xyz"]  # two-token sources: "x y"
    model = hm.load(tiny_model("llama"), tokenizer=tiny_tokenizer(words))
    pairs = list(zip(SOURCES, TARGETS))
    return model, pairs


def test_correlation_and_multitoken_tiny(toy):
    model, pairs = toy
    res = ex.correlation(model, {"toy": pairs}, TEMPLATES, k=5, max_pairs=20, min_pairs=10)
    assert list(res.per_relation.columns) == CORRELATION_COLUMNS
    assert res.per_relation.loc[0, "n_pairs"] == 20
    assert res.dynamic.with_context.shape == (1, 2, model.n_layers, model.n_heads)
    assert np.isfinite(res.per_relation.loc[0, "corr_without_context"])
    # reuse of the dynamic scores with another preset gives the same dynamic arrays
    again = ex.correlation(model, dynamic=res.dynamic, projection="norms")
    assert again.dynamic is res.dynamic and again.preset == "norms"
    multi = [(f"{a} {b}", t) for (a,
                                  b), t in zip([("x", "y"), ("y", "z"), ("z", "x"), ("x", "z")] * 3,
                                                  TARGETS)]
    mt = ex.multitoken(model, {"toy": pairs[:12] + multi}, TEMPLATES, k=5, min_pairs=10)
    assert mt.per_relation.loc[0, "n_pairs"] == 12 and mt.dynamic.multitoken


def test_causal_tiny(toy):
    model, pairs = toy
    res = ex.causal(model, {"toy": pairs, "toy2": pairs[::-1]}, k=5, m=3, n_random=2,
                    random_points=2,
                    min_pairs=10, prompt_templates={"toy": "<X> ->", "toy2": "<X> ; ->"})
    assert list(res.per_relation.columns) == CAUSAL_COLUMNS
    assert set(res.per_relation.relation) == {"toy", "toy2"}
    curve = res.curves[res.curves.relation == "toy"]
    n = int(res.per_relation.set_index("relation").loc["toy", "n_heads_removed"])
    assert list(curve.n_heads_removed) == list(range(n + 1))
    # the prefix-cache evaluator agrees with full forward passes
    from headmaps.experiments.causal import Evaluator, accuracy, build_task
    task = build_task(model, "toy", pairs, "<X> ->")
    heads = [(0, 1), (2, 3)]
    assert Evaluator(model, task,
                     7).accuracy(heads) == pytest.approx(accuracy(model, task, heads, 7))
