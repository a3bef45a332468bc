"""Tiny random transformers models of every supported architecture, for tests.

``tiny_model(model_type)`` builds a seeded random model from a transformers config
class (no download), in float64 so exactness tests can use tight tolerances.
"""

from __future__ import annotations

import torch

#: model_type -> (config class name, kwargs). Sizes are small but keep every feature
#: that matters: grouped-query attention, biases, norms.
_LLAMA_LIKE = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=3, vocab_size=211,
                   max_position_embeddings=64)

TINY_CONFIGS: dict[str, tuple[str, dict]] = {
    "llama": ("LlamaConfig", dict(hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                                   num_attention_heads=8, num_key_value_heads=2, vocab_size=211,
                                   max_position_embeddings=64, tie_word_embeddings=False)),
    "mistral": ("MistralConfig", dict(_LLAMA_LIKE, num_attention_heads=4, num_key_value_heads=2,
                                       sliding_window=4, tie_word_embeddings=False)),
    "qwen2": ("Qwen2Config", dict(_LLAMA_LIKE, num_attention_heads=4, num_key_value_heads=2,
                                   tie_word_embeddings=True)),
    "qwen3": ("Qwen3Config", dict(_LLAMA_LIKE, num_attention_heads=4, num_key_value_heads=2,
                                   head_dim=24, tie_word_embeddings=False)),
    "gemma": ("GemmaConfig", dict(_LLAMA_LIKE, num_attention_heads=4, num_key_value_heads=1,
                                   head_dim=16)),
    "gemma2": ("Gemma2Config", dict(_LLAMA_LIKE, num_attention_heads=4, num_key_value_heads=2,
                                     head_dim=16, query_pre_attn_scalar=16, sliding_window=4)),
    "gemma3_text": ("Gemma3TextConfig", dict(_LLAMA_LIKE, num_attention_heads=4,
                                              num_key_value_heads=1, head_dim=16,
                                              query_pre_attn_scalar=16, sliding_window=4,
                                              sliding_window_pattern=2)),
    "phi3": ("Phi3Config", dict(_LLAMA_LIKE, num_attention_heads=4, num_key_value_heads=2,
                                 pad_token_id=0, eos_token_id=2, tie_word_embeddings=False)),
    "phi": ("PhiConfig", dict(_LLAMA_LIKE, num_attention_heads=4, num_key_value_heads=2,
                               tie_word_embeddings=False)),
    "gpt2": ("GPT2Config", dict(n_embd=64, n_layer=3, n_head=4, vocab_size=211, n_positions=64,
                                bos_token_id=1, eos_token_id=2)),
    "gpt_neox": ("GPTNeoXConfig", dict(_LLAMA_LIKE, num_attention_heads=4, intermediate_size=128,
                                        use_parallel_residual=True, tie_word_embeddings=False)),
    "gptj": ("GPTJConfig", dict(n_embd=64, n_layer=3, n_head=4, vocab_size=211, n_positions=64,
                                rotary_dim=8, tie_word_embeddings=False, bos_token_id=1,
                                eos_token_id=2)),
    "opt": ("OPTConfig", dict(hidden_size=64, ffn_dim=128, num_hidden_layers=3,
                               num_attention_heads=4, vocab_size=211, max_position_embeddings=64,
                               word_embed_proj_dim=64, pad_token_id=1)),
}

#: Variants that exercise a wiring option of an architecture; the name before ``-`` is
#: the ``model_type``.
TINY_VARIANTS: dict[str, tuple[str, dict]] = {
    "gpt_neox-sequential": ("GPTNeoXConfig", dict(TINY_CONFIGS["gpt_neox"][1],
                                                  use_parallel_residual=False)),
    "opt-projected": ("OPTConfig", dict(TINY_CONFIGS["opt"][1], word_embed_proj_dim=48)),
    "phi-qk_layernorm": ("PhiConfig", dict(TINY_CONFIGS["phi"][1], qk_layernorm=True)),
}


#: Rotary-scaling variants for the QK exactness tests (not run by the OV adapter tests).
ROPE_VARIANTS: dict[str, tuple[str, dict]] = {
    "llama-rope_linear": ("LlamaConfig", dict(TINY_CONFIGS["llama"][1], rope_parameters=dict(
        rope_type="linear", factor=4.0, rope_theta=500.0))),
    "llama-rope_llama3": ("LlamaConfig", dict(TINY_CONFIGS["llama"][1], rope_parameters=dict(
        rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
        original_max_position_embeddings=16, rope_theta=10000.0))),
    "llama-rope_yarn": ("LlamaConfig", dict(TINY_CONFIGS["llama"][1], rope_parameters=dict(
        rope_type="yarn", factor=4.0, original_max_position_embeddings=16, rope_theta=10000.0))),
    "gpt2-scaled": ("GPT2Config", dict(TINY_CONFIGS["gpt2"][1],
                                       scale_attn_by_inverse_layer_idx=True)),
}


def tiny_config(model_type: str):
    """The transformers config of ``tiny_model(model_type)``, without building the model."""
    import transformers

    cls_name, kwargs = {**TINY_CONFIGS, **TINY_VARIANTS, **ROPE_VARIANTS}[model_type]
    return getattr(transformers, cls_name)(**kwargs)


def tiny_model(model_type: str, seed: int = 0, dtype: torch.dtype = torch.float64):
    """A random ``*ForCausalLM`` for ``model_type`` (or a ``TINY_VARIANTS`` name), eager, eval."""
    import transformers

    config = tiny_config(model_type)
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # make norm gains and biases non-trivial so tests see them
        for name, p in model.named_parameters():
            if "norm" in name or "ln" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    return model.to(dtype).eval()


def prefixed_tiny(model_type: str):
    """A tiny model with a 150-word tokenizer (``w0`` ... ``w149``), and ``token_alone``
    options (norms folded) after the prefix word ``w3``: ``(HeadModel, ProjectionOptions)``."""
    import headmaps as hm
    from tiny_tokenizer import tiny_tokenizer

    m = hm.load(tiny_model(model_type), tokenizer=tiny_tokenizer([f"w{i}" for i in range(150)]))
    return m, hm.ProjectionOptions(source="token_alone", fold_norms=True, prefix="w3")
