"""GPT-2: fused ``c_attn`` Conv1D, LayerNorm ``ln_1``/``ln_2``/``ln_f``, tied ``wte``.

GPT-2's ``Conv1D`` stores weights as ``(in_features, out_features)``, the transpose of
``nn.Linear``; ``c_attn`` holds ``[q | k | v]`` side by side along the output axis,
each ``n_heads * d_head`` wide and split into heads in order. Positions are learned
absolute embeddings (``wpe``) added before block 0; scores are divided by ``sqrt(d_head)``
(``scale_attn_weights``) and by ``layer + 1`` with ``scale_attn_by_inverse_layer_idx``.
"""

from __future__ import annotations

import torch

from .base import MLP, Adapter, AttentionWeights, HookModules, MLPBlock, Norm, Positions, QKWeights


class GPT2Adapter(Adapter):
    """Adapter for GPT-2 (and checkpoints saved in its layout)."""

    model_types = ("gpt2",)
    family = "gpt2"
    hook_modules = HookModules("h", "attn", "c_proj")
    norm_kind = "layernorm"
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

    def final_norm(self) -> Norm:
        return self.norm(f"{self.stem}.ln_f", self.eps())

    def attention(self, layer: int) -> AttentionWeights:
        s, p = self.spec, f"{self.stem}.h.{layer}.attn"
        width = s.n_heads * s.d_head
        w_qkv = self.get(f"{p}.c_attn.weight")  # (d_model, 3 * width)
        b_qkv = self.maybe(f"{p}.c_attn.bias")
        w_v = w_qkv[:, 2 * width:].reshape(s.d_model, s.n_heads, s.d_head).permute(1, 0, 2)
        return AttentionWeights(
            W_V=w_v,
            W_O=self.get(f"{p}.c_proj.weight").reshape(s.n_heads, s.d_head, s.d_model),
            b_V=None if b_qkv is None else b_qkv[2 * width:].reshape(s.n_heads, s.d_head),
            b_O=self.maybe(f"{p}.c_proj.bias"),
            input_norm=self.norm(f"{self.stem}.h.{layer}.ln_1", self.eps()),
        )

    def qk(self, layer: int) -> QKWeights:
        s, p = self.spec, f"{self.stem}.h.{layer}.attn"
        width = s.n_heads * s.d_head
        w = self.get(f"{p}.c_attn.weight")  # (d_model, 3 * width)
        b = self.maybe(f"{p}.c_attn.bias")

        def part(i: int):
            wi = w[:, i * width:(i + 1) * width].reshape(s.d_model, s.n_heads,
                                                         s.d_head).permute(1, 0, 2)
            return wi, None if b is None else b[i * width:(i + 1) * width].reshape(s.n_heads,
                                                                                   s.d_head)

        (W_Q, b_Q), (W_K, b_K) = part(0), part(1)
        scale = self.head_scale() if self.cfg("scale_attn_weights", default=True) else 1.0
        if self.cfg("scale_attn_by_inverse_layer_idx", default=False):
            scale /= layer + 1
        pos = Positions("learned", embedding=self.get(f"{self.stem}.wpe.weight"))
        return QKWeights(W_Q=W_Q, W_K=W_K, b_Q=b_Q, b_K=b_K, scale=scale, positions=pos,
                         input_norm=self.norm(f"{self.stem}.h.{layer}.ln_1", self.eps()))

    def mlp(self, layer: int) -> MLPBlock:
        p = f"{self.stem}.h.{layer}"
        mlp = MLP(
            W_in=self.get(f"{p}.mlp.c_fc.weight"),
            b_in=self.maybe(f"{p}.mlp.c_fc.bias"),
            W_gate=None,
            W_out=self.get(f"{p}.mlp.c_proj.weight"),
            b_out=self.maybe(f"{p}.mlp.c_proj.bias"),
            act=self.cfg("activation_function", default="gelu_new"),
        )
        return MLPBlock(self.norm(f"{p}.ln_2", self.eps()), mlp)
