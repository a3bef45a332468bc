"""The adapter contract, checked for every registered adapter class.

An adapter is the whole architecture knowledge of a family: the ``model_type`` values it
reads, its family name, where the experiments hook the running model, and the
canonical weights with their shapes. A new adapter that misses a piece fails here.
"""

from __future__ import annotations

import pytest
import torch

import headmaps as hm
from headmaps.experiments.hooks import layer_modules
from headmaps.models.adapters import ADAPTERS, Adapter, HookModules
from tiny import TINY_CONFIGS, tiny_model

CLASSES = sorted(set(ADAPTERS.values()), key=lambda c: c.__name__)


def tiny_type(cls: type[Adapter]) -> str:
    """A ``model_type`` of ``cls`` that tests/tiny.py can build."""
    types = [t for t in cls.model_types if t in TINY_CONFIGS]
    assert types, f"{cls.__name__}: no tiny model in tests/tiny.py for any of {cls.model_types}"
    return types[0]


@pytest.fixture(scope="module", params=CLASSES, ids=lambda c: c.__name__)
def built(request):
    cls = request.param
    model = tiny_model(tiny_type(cls))
    return cls, model, hm.load(model)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_declares_family_types_and_hook_modules(cls):
    assert cls.family and cls.model_types
    assert all(ADAPTERS[t] is cls for t in cls.model_types)  # one class per model_type
    assert cls.norm_kind in ("layernorm", "rmsnorm")
    assert isinstance(cls.hook_modules, HookModules) and all(cls.hook_modules)


def test_families_have_one_hook_table():
    """Classes of one family agree on where to hook (the family names the layout)."""
    by_family: dict[str, set] = {}
    for cls in CLASSES:
        by_family.setdefault(cls.family, set()).add(cls.hook_modules)
    assert all(len(v) == 1 for v in by_family.values()), by_family


def test_spec_and_weights_have_canonical_shapes(built):
    cls, model, m = built
    s = m.spec
    assert type(m.adapter) is cls and s.family == cls.family and s.norm_kind == cls.norm_kind
    assert s.architecture in cls.model_types
    assert (s.n_layers, s.vocab_size) == (model.config.num_hidden_layers, model.config.vocab_size)
    assert s.group_size * s.n_kv_heads == s.n_heads
    assert [s.kv_head(h) for h in range(s.n_heads)] == s.kv_index().tolist()
    assert m.info()["kv_group_size"] == s.group_size
    assert m.E.shape == (s.vocab_size, s.d_model) and m.U.shape == (s.d_model, s.vocab_size)
    for layer in range(s.n_layers):
        a = m.attention(layer)
        assert a.W_V.shape == (s.n_kv_heads, s.d_model, s.d_head)
        assert a.W_O.shape == (s.n_heads, s.d_head, s.d_model)
        assert a.b_V is None or a.b_V.shape == (s.n_kv_heads, s.d_head)
        assert a.input_norm.kind == cls.norm_kind
    assert m.final_norm.kind == cls.norm_kind
    x = torch.randn(5, s.d_model, dtype=torch.float64)
    assert m.first_mlp()(x).shape == (5, s.d_model)


def test_hook_modules_are_in_the_model(built):
    _, _, m = built
    mods = layer_modules(m)
    assert len(mods) == m.n_layers
    for lm in mods:
        w = lm.out_proj.weight
        # the output projection reads every query head: n_heads * d_head inputs
        assert m.n_heads * m.d_head in w.shape and m.d_model in w.shape
