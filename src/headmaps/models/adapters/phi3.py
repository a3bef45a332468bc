"""Phi-3 (and Phi-4, same layout): Llama-style blocks with fused projections.

``qkv_proj`` stacks the ``q`` (``n_heads * d_head`` rows), ``k`` and ``v``
(``n_kv_heads * d_head`` rows each) weights in that order; ``gate_up_proj`` stacks the
gate rows, then the up rows. Norms are RMSNorm as in Llama.
"""

from __future__ import annotations

from .base import MLP, AttentionWeights, MLPBlock, QKWeights
from .llama import LlamaAdapter


class Phi3Adapter(LlamaAdapter):
    """Adapter for Phi-3 / Phi-3.5 / Phi-4 dense models."""

    model_types = ("phi3",)
    family = "phi3"

    def eps(self) -> float:
        """Norm epsilon from the config."""
        return self.cfg("rms_norm_eps", default=1e-5)

    def attention(self, layer: int) -> AttentionWeights:
        s, p = self.spec, f"{self.stem}.layers.{layer}"
        v_start = (s.n_heads + s.n_kv_heads) * s.d_head
        w_v = self.get(f"{p}.self_attn.qkv_proj.weight")[v_start:]
        b = self.maybe(f"{p}.self_attn.qkv_proj.bias")
        return AttentionWeights(
            W_V=self.split_heads_in(w_v, s.n_kv_heads),
            W_O=self.split_heads_out(self.get(f"{p}.self_attn.o_proj.weight")),
            b_V=None if b is None else b[v_start:].reshape(s.n_kv_heads, s.d_head),
            b_O=self.maybe(f"{p}.self_attn.o_proj.bias"),
            input_norm=self.norm(f"{p}.input_layernorm", self.eps()),
        )

    def qk(self, layer: int) -> QKWeights:
        s, p = self.spec, f"{self.stem}.layers.{layer}"
        nq, nk = s.n_heads * s.d_head, s.n_kv_heads * s.d_head
        w = self.get(f"{p}.self_attn.qkv_proj.weight")
        b = self.maybe(f"{p}.self_attn.qkv_proj.bias")
        W_Q, b_Q = self.heads_in(w[:nq], None if b is None else b[:nq], s.n_heads)
        W_K, b_K = self.heads_in(w[nq:nq + nk], None if b is None else b[nq:nq + nk], s.n_kv_heads)
        return QKWeights(W_Q=W_Q, W_K=W_K, b_Q=b_Q, b_K=b_K, scale=self.head_scale(),
                         positions=self.rotary(layer),
                         input_norm=self.norm(f"{p}.input_layernorm", self.eps()))

    def mlp(self, layer: int) -> MLPBlock:
        p = f"{self.stem}.layers.{layer}"
        gate_up = self.get(f"{p}.mlp.gate_up_proj.weight")  # (2 * d_mlp, d_model)
        d_mlp = gate_up.shape[0] // 2
        mlp = MLP(
            W_in=gate_up[d_mlp:].T,
            b_in=None,
            W_gate=gate_up[:d_mlp].T,
            W_out=self.get(f"{p}.mlp.down_proj.weight").T,
            b_out=None,
            act=self.cfg("hidden_act", default="silu"),
        )
        return MLPBlock(self.norm(f"{p}.post_attention_layernorm", self.eps()), mlp)
