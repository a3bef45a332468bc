"""Llama family: Llama 2/3, Mistral, Qwen 2/2.5/3, SmolLM and other pre-norm RMSNorm models.

Separate ``q/k/v/o_proj`` linears; grouped-query attention; gated SiLU MLP; RMSNorm.
Qwen 2 adds a bias to ``q/k/v``; Qwen 3 adds per-head q/k norms (``q_norm``/``k_norm``,
RMSNorm over ``d_head`` before the rotary embedding). Rotate-half rotary positions.
"""

from __future__ import annotations

from .base import MLP, Adapter, AttentionWeights, HookModules, MLPBlock, Norm, QKWeights


class LlamaAdapter(Adapter):
    """Adapter for Llama-style decoder-only models."""

    model_types = ("llama", "mistral", "qwen2", "qwen3", "mixtral_dense", "olmo2")
    family = "llama"
    hook_modules = HookModules("layers", "self_attn", "o_proj")
    norm_kind = "rmsnorm"
    stem = "model"

    def eps(self) -> float:
        """Norm epsilon from the config."""
        return self.cfg("rms_norm_eps", default=1e-6)

    def embedding(self):
        return self.get(f"{self.stem}.embed_tokens.weight")

    def unembedding(self):
        if self.spec.tied_embeddings or not self.store.has("lm_head.weight"):
            return self.embedding().T
        return self.get("lm_head.weight").T

    def final_norm(self) -> Norm:
        return self.norm(f"{self.stem}.norm", self.eps())

    def attention(self, layer: int) -> AttentionWeights:
        s, p = self.spec, f"{self.stem}.layers.{layer}"
        b_v = self.maybe(f"{p}.self_attn.v_proj.bias")
        return AttentionWeights(
            W_V=self.split_heads_in(self.get(f"{p}.self_attn.v_proj.weight"), s.n_kv_heads),
            W_O=self.split_heads_out(self.get(f"{p}.self_attn.o_proj.weight")),
            b_V=None if b_v is None else b_v.reshape(s.n_kv_heads, s.d_head),
            b_O=self.maybe(f"{p}.self_attn.o_proj.bias"),
            input_norm=self.norm(f"{p}.input_layernorm", self.eps()),
        )

    def qk(self, layer: int) -> QKWeights:
        p = f"{self.stem}.layers.{layer}.self_attn"
        W_Q, b_Q, W_K, b_K = self.query_key(p)
        return QKWeights(
            W_Q=W_Q, W_K=W_K, b_Q=b_Q, b_K=b_K, scale=self.head_scale(),
            positions=self.rotary(layer),
            input_norm=self.norm(f"{self.stem}.layers.{layer}.input_layernorm", self.eps()),
            q_norm=self.head_norm(f"{p}.q_norm", self.eps()),
            k_norm=self.head_norm(f"{p}.k_norm", self.eps()),
        )

    def mlp(self, layer: int) -> MLPBlock:
        p = f"{self.stem}.layers.{layer}"
        mlp = MLP(
            W_in=self.get(f"{p}.mlp.up_proj.weight").T,
            b_in=self.maybe(f"{p}.mlp.up_proj.bias"),
            W_gate=self.get(f"{p}.mlp.gate_proj.weight").T,
            W_out=self.get(f"{p}.mlp.down_proj.weight").T,
            b_out=self.maybe(f"{p}.mlp.down_proj.bias"),
            act=self.cfg("hidden_act", default="silu"),
        )
        return MLPBlock(self.norm(f"{p}.post_attention_layernorm", self.eps()), mlp)
