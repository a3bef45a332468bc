"""Gemma 1, 2 and 3 (text part): Llama-like layout with Gemma's conventions.

* RMSNorm multiplies by ``1 + w``; ``Norm.weight`` holds that effective gain and
  ``gain_offset`` is 1.
* Embeddings are multiplied by ``sqrt(d_model)`` (``ArchSpec.embedding_scale``).
* Gemma 2/3 wrap both sublayers in norms: ``post_attention_layernorm`` normalises the
  attention *output* (``AttentionWeights.post_norm``), and the MLP sits between
  ``pre_feedforward_layernorm`` and ``post_feedforward_layernorm``. In Gemma 1,
  ``post_attention_layernorm`` is the MLP's input norm, as in Llama.
* Gated MLP with tanh-approximated GELU; multi-query (2B) and grouped-query attention.
* QK: the score scale is ``query_pre_attn_scalar ** -0.5`` (Gemma 2/3); Gemma 2 soft-caps
  attention logits (``attn_logit_softcapping``); Gemma 3 has per-head ``q_norm``/``k_norm``
  (``1 + w`` gains) and different rotary bases for local (sliding) and global layers.

Gemma 3 multimodal checkpoints keep the text model under ``model.language_model.``
(transformers 5) or ``language_model.model.`` (hub files); both are found.
"""

from __future__ import annotations

import functools

import torch

from .base import MLP, AttentionWeights, MLPBlock, Norm, QKWeights, sqrt_scale
from .llama import LlamaAdapter

_TEXT_STEMS = ("model", "model.language_model", "language_model.model")
_LM_HEADS = ("lm_head.weight", "language_model.lm_head.weight")


class GemmaAdapter(LlamaAdapter):
    """Adapter for Gemma 1/2/3 causal LMs and the text part of Gemma 3 multimodal models."""

    model_types = ("gemma", "gemma2", "gemma3", "gemma3_text")
    family = "gemma"
    norm_kind = "rmsnorm"

    @functools.cached_property
    def stem(self) -> str:  # type: ignore[override]
        """Where the text model's tensors live in this checkpoint."""
        for p in _TEXT_STEMS:
            if self.store.has(f"{p}.embed_tokens.weight"):
                return p
        return _TEXT_STEMS[0]

    @property
    def sandwich(self) -> bool:
        """Whether blocks have post-attention and pre/post-feedforward norms (Gemma 2/3)."""
        return self.architecture != "gemma"

    def embedding_scale(self, d_model: int) -> float:
        return sqrt_scale(d_model)

    def norm(self, stem: str, eps: float, gain_offset: float = 1.0) -> Norm:
        """Every Gemma RMSNorm stores ``gain - 1``."""
        return super().norm(stem, eps, gain_offset)

    def unembedding(self) -> torch.Tensor:
        name = self.first_name(*_LM_HEADS)
        if self.spec.tied_embeddings or not self.store.has(name):
            return self.embedding().T
        return self.get(name).T

    def attention(self, layer: int) -> AttentionWeights:
        a = super().attention(layer)
        if self.sandwich:
            a.post_norm = self.norm(f"{self.stem}.layers.{layer}.post_attention_layernorm",
                                    self.eps())
        return a

    def head_scale(self) -> float:
        scalar = self.cfg("query_pre_attn_scalar")
        return float(scalar) ** -0.5 if scalar else super().head_scale()

    def qk(self, layer: int) -> QKWeights:
        q = super().qk(layer)
        cap = self.cfg("attn_logit_softcapping")
        q.softcap = float(cap) if cap else None
        return q

    def _act(self) -> str:
        # Gemma 1 configs name it hidden_act (its legacy "gelu" means the tanh form);
        # Gemma 2/3 use hidden_activation.
        if self.sandwich:
            return self.cfg("hidden_activation", "hidden_act", default="gelu_pytorch_tanh")
        act = self.cfg("hidden_act", "hidden_activation", default="gelu_pytorch_tanh")
        return "gelu_pytorch_tanh" if act == "gelu" else act

    def mlp(self, layer: int) -> MLPBlock:
        p = f"{self.stem}.layers.{layer}"
        mlp = MLP(
            W_in=self.get(f"{p}.mlp.up_proj.weight").T,
            b_in=None,
            W_gate=self.get(f"{p}.mlp.gate_proj.weight").T,
            W_out=self.get(f"{p}.mlp.down_proj.weight").T,
            b_out=None,
            act=self._act(),
        )
        if self.sandwich:
            return MLPBlock(
                self.norm(f"{p}.pre_feedforward_layernorm", self.eps()),
                mlp,
                self.norm(f"{p}.post_feedforward_layernorm", self.eps()),
            )
        return MLPBlock(self.norm(f"{p}.post_attention_layernorm", self.eps()), mlp)
