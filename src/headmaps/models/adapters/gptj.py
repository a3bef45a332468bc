"""GPT-J: separate bias-free ``q/k/v_proj`` and ``out_proj``, one shared ``ln_1``.

Attention and MLP run in parallel on the same normalised input ``ln_1(x)``; the LM head
is an untied ``nn.Linear`` with a bias. Rotary embeddings act on the first ``rotary_dim``
dims of each head, on interleaved pairs ``(2i, 2i+1)``, with base 10000.
"""

from __future__ import annotations

import torch

from .base import MLP, Adapter, AttentionWeights, HookModules, MLPBlock, Norm, QKWeights


class GPTJAdapter(Adapter):
    """Adapter for GPT-J models."""

    model_types = ("gptj",)
    family = "gptj"
    hook_modules = HookModules("h", "attn", "out_proj")
    norm_kind = "layernorm"
    parallel_attn_mlp = True
    stem = "transformer"

    def eps(self) -> float:
        """LayerNorm epsilon from the config."""
        return self.cfg("layer_norm_epsilon", default=1e-5)

    def embedding(self) -> torch.Tensor:
        return self.get(f"{self.stem}.wte.weight")

    def unembedding(self) -> torch.Tensor:
        if self.spec.tied_embeddings or not self.store.has("lm_head.weight"):
            return self.embedding().T
        return self.get("lm_head.weight").T

    def unembedding_bias(self) -> torch.Tensor | None:
        return self.maybe("lm_head.bias")

    def final_norm(self) -> Norm:
        return self.norm(f"{self.stem}.ln_f", self.eps())

    def attention(self, layer: int) -> AttentionWeights:
        s, p = self.spec, f"{self.stem}.h.{layer}"
        b_v = self.maybe(f"{p}.attn.v_proj.bias")
        return AttentionWeights(
            W_V=self.split_heads_in(self.get(f"{p}.attn.v_proj.weight"), s.n_kv_heads),
            W_O=self.split_heads_out(self.get(f"{p}.attn.out_proj.weight")),
            b_V=None if b_v is None else b_v.reshape(s.n_kv_heads, s.d_head),
            b_O=self.maybe(f"{p}.attn.out_proj.bias"),
            input_norm=self.norm(f"{p}.ln_1", self.eps()),
        )

    def qk(self, layer: int) -> QKWeights:
        p = f"{self.stem}.h.{layer}"
        W_Q, b_Q, W_K, b_K = self.query_key(f"{p}.attn")
        rot = self.cfg("rotary_dim") or self.spec.d_head
        return QKWeights(W_Q=W_Q, W_K=W_K, b_Q=b_Q, b_K=b_K, scale=self.head_scale(),
                         positions=self.rotary(layer, rotary_dim=rot, interleaved=True,
                                               theta=10000.0),
                         input_norm=self.norm(f"{p}.ln_1", self.eps()))

    def mlp(self, layer: int) -> MLPBlock:
        p = f"{self.stem}.h.{layer}"
        mlp = MLP(
            W_in=self.get(f"{p}.mlp.fc_in.weight").T,
            b_in=self.maybe(f"{p}.mlp.fc_in.bias"),
            W_gate=None,
            W_out=self.get(f"{p}.mlp.fc_out.weight").T,
            b_out=self.maybe(f"{p}.mlp.fc_out.bias"),
            act=self.cfg("activation_function", default="gelu_new"),
        )
        return MLPBlock(self.norm(f"{p}.ln_1", self.eps()), mlp)
