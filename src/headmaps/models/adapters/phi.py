"""Phi-1/1.5/2: ``q/k/v_proj`` and ``dense`` with biases, parallel attention and MLP.

Both branches read ``input_layernorm(x)``; the final norm is ``final_layernorm`` and the
untied LM head has a bias. Queries and keys use partial rotary embeddings
(``partial_rotary_factor``, rotate-half) and, with ``qk_layernorm``, LayerNorms over
``d_head`` shared by all heads (``q_layernorm``/``k_layernorm``).
"""

from __future__ import annotations

import torch

from .base import MLP, Adapter, AttentionWeights, HookModules, MLPBlock, Norm, QKWeights


class PhiAdapter(Adapter):
    """Adapter for Phi-1, Phi-1.5 and Phi-2 (transformers ``phi`` layout)."""

    model_types = ("phi",)
    family = "phi"
    hook_modules = HookModules("layers", "self_attn", "dense")
    norm_kind = "layernorm"
    parallel_attn_mlp = True
    stem = "model"

    def eps(self) -> float:
        """LayerNorm epsilon from the config."""
        return self.cfg("layer_norm_eps", default=1e-5)

    def embedding(self) -> torch.Tensor:
        return self.get(f"{self.stem}.embed_tokens.weight")

    def unembedding(self) -> torch.Tensor:
        if self.spec.tied_embeddings or not self.store.has("lm_head.weight"):
            return self.embedding().T
        return self.get("lm_head.weight").T

    def unembedding_bias(self) -> torch.Tensor | None:
        return self.maybe("lm_head.bias")

    def final_norm(self) -> Norm:
        return self.norm(f"{self.stem}.final_layernorm", self.eps())

    def attention(self, layer: int) -> AttentionWeights:
        s, p = self.spec, f"{self.stem}.layers.{layer}"
        b_v = self.maybe(f"{p}.self_attn.v_proj.bias")
        return AttentionWeights(
            W_V=self.split_heads_in(self.get(f"{p}.self_attn.v_proj.weight"), s.n_kv_heads),
            W_O=self.split_heads_out(self.get(f"{p}.self_attn.dense.weight")),
            b_V=None if b_v is None else b_v.reshape(s.n_kv_heads, s.d_head),
            b_O=self.maybe(f"{p}.self_attn.dense.bias"),
            input_norm=self.norm(f"{p}.input_layernorm", self.eps()),
        )

    def qk(self, layer: int) -> QKWeights:
        p = f"{self.stem}.layers.{layer}"
        a = f"{p}.self_attn"
        W_Q, b_Q, W_K, b_K = self.query_key(a)
        return QKWeights(W_Q=W_Q, W_K=W_K, b_Q=b_Q, b_K=b_K, scale=self.head_scale(),
                         positions=self.rotary(layer),
                         input_norm=self.norm(f"{p}.input_layernorm", self.eps()),
                         q_norm=self.head_norm(f"{a}.q_layernorm", self.eps()),
                         k_norm=self.head_norm(f"{a}.k_layernorm", self.eps()))

    def mlp(self, layer: int) -> MLPBlock:
        p = f"{self.stem}.layers.{layer}"
        mlp = MLP(
            W_in=self.get(f"{p}.mlp.fc1.weight").T,
            b_in=self.maybe(f"{p}.mlp.fc1.bias"),
            W_gate=None,
            W_out=self.get(f"{p}.mlp.fc2.weight").T,
            b_out=self.maybe(f"{p}.mlp.fc2.bias"),
            act=self.cfg("hidden_act", default="gelu_new"),
        )
        return MLPBlock(self.norm(f"{p}.input_layernorm", self.eps()), mlp)
