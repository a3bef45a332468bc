"""nnsight models in ``hm.load``: the HeadModel is the transformers model they wrap.

TransformerLens models have their own tests: ``tests/models/test_bridge.py`` (TL 4
``TransformerBridge``) and ``tests/lens3/`` (TL 3 ``HookedTransformer``, run by ``make
test`` in its own venv, since one venv holds one TransformerLens version).
"""

from __future__ import annotations

import warnings

# make test installs the [nnsight] extra: a missing one fails, never skips
import nnsight  # noqa: E402
import torch

import headmaps as hm


def test_nnsight_language_model_is_its_transformers_model(tiny_llama):
    from tiny_tokenizer import tiny_tokenizer

    tok = tiny_tokenizer(["Paris", "France"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lm = nnsight.LanguageModel(tiny_llama, tokenizer=tok)
    m = hm.load(lm)
    direct = hm.load(tiny_llama)
    assert m.tokenizer is tok and m.hf_model is tiny_llama
    assert "nnsight" in m.origin
    for layer in range(m.n_layers):
        assert torch.equal(m.attention(layer).W_O, direct.attention(layer).W_O)
        assert torch.equal(m.attention(layer).W_V, direct.attention(layer).W_V)
