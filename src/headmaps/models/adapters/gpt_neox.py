"""GPT-NeoX (Pythia): per-head fused ``query_key_value``, parallel attention and MLP.

``query_key_value`` is an ``nn.Linear`` with ``3 * d_model`` outputs laid out head by
head: for head ``h`` the rows ``[h*3*d_head, (h+1)*3*d_head)`` hold that head's
``q``, ``k`` and ``v`` blocks, in that order (transformers reshapes to
``(n_heads, 3 * d_head)`` and chunks into three). With ``use_parallel_residual`` the MLP
reads the block input through ``post_attention_layernorm``; without it, it reads the
residual after attention through the same norm. The LM head is ``embed_out`` in hub
checkpoints and ``lm_head`` in transformers 5 modules; it is untied in Pythia. Queries and
keys use partial rotary embeddings (``rotary_pct``, rotate-half).
"""

from __future__ import annotations

import dataclasses

import torch

from ..weights import ArchSpec
from .base import MLP, Adapter, AttentionWeights, HookModules, MLPBlock, Norm, QKWeights


class GPTNeoXAdapter(Adapter):
    """Adapter for GPT-NeoX models (Pythia, GPT-NeoX-20B)."""

    model_types = ("gpt_neox",)
    family = "gpt_neox"
    hook_modules = HookModules("layers", "attention", "dense")
    norm_kind = "layernorm"
    stem = "gpt_neox"

    def build_spec(self) -> ArchSpec:
        spec = super().build_spec()
        parallel = bool(self.cfg("use_parallel_residual", default=True))
        return dataclasses.replace(spec, parallel_attn_mlp=parallel)

    def eps(self) -> float:
        """LayerNorm epsilon from the config."""
        return self.cfg("layer_norm_eps", default=1e-5)

    def embedding(self) -> torch.Tensor:
        return self.get(f"{self.stem}.embed_in.weight")

    def unembedding(self) -> torch.Tensor:
        name = self.first_name("embed_out.weight", "lm_head.weight")
        if self.spec.tied_embeddings or not self.store.has(name):
            return self.embedding().T
        return self.get(name).T

    def final_norm(self) -> Norm:
        return self.norm(f"{self.stem}.final_layer_norm", self.eps())

    def attention(self, layer: int) -> AttentionWeights:
        s, p = self.spec, f"{self.stem}.layers.{layer}"
        w = self.get(f"{p}.attention.query_key_value.weight")  # (3 * d_model, d_model)
        w_v = w.reshape(s.n_heads, 3, s.d_head, w.shape[-1])[:, 2]  # (n_heads, d_head, d_model)
        b = self.maybe(f"{p}.attention.query_key_value.bias")
        return AttentionWeights(
            W_V=w_v.transpose(1, 2),
            W_O=self.split_heads_out(self.get(f"{p}.attention.dense.weight")),
            b_V=None if b is None else b.reshape(s.n_heads, 3, s.d_head)[:, 2],
            b_O=self.maybe(f"{p}.attention.dense.bias"),
            input_norm=self.norm(f"{p}.input_layernorm", self.eps()),
        )

    def qk(self, layer: int) -> QKWeights:
        s, p = self.spec, f"{self.stem}.layers.{layer}"
        w = self.get(f"{p}.attention.query_key_value.weight")
        # (H, 3, d_model, d_head)
        w = w.reshape(s.n_heads, 3, s.d_head, w.shape[-1]).transpose(2, 3)
        b = self.maybe(f"{p}.attention.query_key_value.bias")
        b = None if b is None else b.reshape(s.n_heads, 3, s.d_head)
        return QKWeights(W_Q=w[:, 0], W_K=w[:, 1], b_Q=None if b is None else b[:, 0],
                         b_K=None if b is None else b[:, 1], scale=self.head_scale(),
                         positions=self.rotary(layer),
                         input_norm=self.norm(f"{p}.input_layernorm", self.eps()))

    def mlp(self, layer: int) -> MLPBlock:
        p = f"{self.stem}.layers.{layer}"
        mlp = MLP(
            W_in=self.get(f"{p}.mlp.dense_h_to_4h.weight").T,
            b_in=self.maybe(f"{p}.mlp.dense_h_to_4h.bias"),
            W_gate=None,
            W_out=self.get(f"{p}.mlp.dense_4h_to_h.weight").T,
            b_out=self.maybe(f"{p}.mlp.dense_4h_to_h.bias"),
            act=self.cfg("hidden_act", default="gelu"),
        )
        return MLPBlock(self.norm(f"{p}.post_attention_layernorm", self.eps()), mlp)
