"""Tiny random transformers models of every supported architecture, for tests.

``tiny_model(model_type)`` builds a seeded random model from a transformers config
class (no download), in float64 so exactness tests can use tight tolerances.
"""

from __future__ import annotations

import torch

#: model_type -> (config class name, kwargs). Sizes are small but keep every feature
#: that matters: grouped-query attention, biases, norms.
TINY_CONFIGS: dict[str, tuple[str, dict]] = {
    "llama": ("LlamaConfig", dict(hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                                   num_attention_heads=8, num_key_value_heads=2, vocab_size=211,
                                   max_position_embeddings=64, tie_word_embeddings=False)),
}


def tiny_model(model_type: str, seed: int = 0, dtype: torch.dtype = torch.float64):
    """A random ``*ForCausalLM`` for ``model_type`` with eager attention, in eval mode."""
    import transformers

    cls_name, kwargs = TINY_CONFIGS[model_type]
    config = getattr(transformers, cls_name)(**kwargs)
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # make norm gains and biases non-trivial so tests see them
        for name, p in model.named_parameters():
            if "norm" in name or "ln" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    return model.to(dtype).eval()
