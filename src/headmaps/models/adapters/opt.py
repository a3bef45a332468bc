"""OPT: ``q/k/v/out_proj`` with biases, pre-norm LayerNorms, learned positions.

Each layer normalises attention input with ``self_attn_layer_norm`` and MLP input with
``final_layer_norm`` (a per-layer norm despite its name); ``decoder.final_layer_norm``
comes before the LM head, which is tied to ``embed_tokens``.

Where ``word_embed_proj_dim != hidden_size``, token embeddings live in a smaller space
and ``project_in``/``project_out`` map to and from the residual stream. The adapter
folds them in exactly: ``E = embed_tokens @ project_in^T`` (residual space) and
``U = project_out^T @ embed_tokens^T``, so ``U`` is no longer ``E^T``. Post-norm OPT
(``do_layer_norm_before=False``, OPT-350m) has no norm before its attention and is
refused: the canonical view assumes pre-norm blocks.
"""

from __future__ import annotations

import dataclasses

import torch

from ...errors import UnsupportedArchitectureError
from ..weights import ArchSpec
from .base import MLP, Adapter, AttentionWeights, HookModules, MLPBlock, Norm, Positions, QKWeights

_LN_EPS = 1e-5  # OPT builds nn.LayerNorm with its default epsilon
_POSITION_OFFSET = 2  # OPTLearnedPositionalEmbedding's row of position 0


class OPTAdapter(Adapter):
    """Adapter for pre-norm OPT models (OPT-125m, 1.3b, 2.7b, ...; not OPT-350m)."""

    model_types = ("opt",)
    family = "opt"
    hook_modules = HookModules("layers", "self_attn", "out_proj")
    norm_kind = "layernorm"
    stem = "model.decoder"

    def build_spec(self) -> ArchSpec:
        if not self.cfg("do_layer_norm_before", default=True):
            raise UnsupportedArchitectureError(
                "OPT with do_layer_norm_before=False (post-norm, e.g. facebook/opt-350m) is not "
                "supported: its attention reads the residual stream without a norm"
            )
        if getattr(self.config, "_remove_final_layer_norm", False):
            raise UnsupportedArchitectureError(
                "OPT with _remove_final_layer_norm=True is not supported: there is no norm "
                "before the unembedding"
            )
        spec = super().build_spec()
        if self._projected():
            spec = dataclasses.replace(spec, tied_embeddings=False)
        return spec

    def _projected(self) -> bool:
        proj = self.cfg("word_embed_proj_dim")
        return proj is not None and proj != self.cfg("hidden_size")

    def _raw_embedding(self) -> torch.Tensor:
        return self.get(f"{self.stem}.embed_tokens.weight")

    def embedding(self) -> torch.Tensor:
        e = self._raw_embedding()
        if self._projected():
            e = e @ self.get(f"{self.stem}.project_in.weight").T
        return e

    def unembedding(self) -> torch.Tensor:
        head = "lm_head.weight"
        if self.spec.tied_embeddings or not self.store.has(head):
            w = self._raw_embedding()
        else:
            w = self.get(head)
        if self._projected():
            return self.get(f"{self.stem}.project_out.weight").T @ w.T
        return w.T

    def final_norm(self) -> Norm:
        return self.norm(f"{self.stem}.final_layer_norm", _LN_EPS)

    def attention(self, layer: int) -> AttentionWeights:
        s, p = self.spec, f"{self.stem}.layers.{layer}"
        b_v = self.maybe(f"{p}.self_attn.v_proj.bias")
        return AttentionWeights(
            W_V=self.split_heads_in(self.get(f"{p}.self_attn.v_proj.weight"), s.n_kv_heads),
            W_O=self.split_heads_out(self.get(f"{p}.self_attn.out_proj.weight")),
            b_V=None if b_v is None else b_v.reshape(s.n_kv_heads, s.d_head),
            b_O=self.maybe(f"{p}.self_attn.out_proj.bias"),
            input_norm=self.norm(f"{p}.self_attn_layer_norm", _LN_EPS),
        )

    def qk(self, layer: int) -> QKWeights:
        p = f"{self.stem}.layers.{layer}"
        a = f"{p}.self_attn"
        W_Q, b_Q, W_K, b_K = self.query_key(a)
        pos = Positions("learned", embedding=self.get(f"{self.stem}.embed_positions.weight"),
                        offset=_POSITION_OFFSET)
        return QKWeights(W_Q=W_Q, W_K=W_K, b_Q=b_Q, b_K=b_K, scale=self.head_scale(), positions=pos,
                         input_norm=self.norm(f"{p}.self_attn_layer_norm", _LN_EPS))

    def mlp(self, layer: int) -> MLPBlock:
        p = f"{self.stem}.layers.{layer}"
        mlp = MLP(
            W_in=self.get(f"{p}.fc1.weight").T,
            b_in=self.maybe(f"{p}.fc1.bias"),
            W_gate=None,
            W_out=self.get(f"{p}.fc2.weight").T,
            b_out=self.maybe(f"{p}.fc2.bias"),
            act=self.cfg("activation_function", default="relu"),
        )
        return MLPBlock(self.norm(f"{p}.final_layer_norm", _LN_EPS), mlp)
