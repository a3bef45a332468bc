"""Canonical, architecture-independent pieces of a transformer that MAPS needs.

Every adapter turns a checkpoint's tensors into these few dataclasses, with
TransformerLens-style names and shapes. They hold tensors only; no module of the
original model is kept, so the same objects come from an in-memory model or from a
checkpoint read lazily from disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from ..errors import UnsupportedArchitectureError

NormKind = Literal["layernorm", "rmsnorm"]


@dataclass
class Norm:
    """A LayerNorm or RMSNorm as tensors.

    Attributes:
        kind: ``"layernorm"`` (centre, scale) or ``"rmsnorm"`` (scale only).
        weight: effective multiplicative gain, shape ``(d_model,)``, or None for no gain.
            Gemma stores ``w`` and multiplies by ``1 + w``; adapters store ``1 + w`` here so
            that every consumer can treat the gain the same way.
        bias: additive bias, shape ``(d_model,)``, or None.
        eps: the epsilon inside the square root.
        gain_offset: 1.0 when the checkpoint stores ``gain - 1`` (Gemma), else 0.0;
            informational only, ``weight`` already includes it.
    """

    kind: NormKind
    weight: torch.Tensor | None
    bias: torch.Tensor | None
    eps: float
    gain_offset: float = 0.0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the norm to ``x`` of shape ``(..., d_model)``; computed in float32 or wider."""
        dtype = torch.promote_types(x.dtype, torch.float32)
        x = x.to(dtype)
        weight = None if self.weight is None else self.weight.to(dtype)
        bias = None if self.bias is None else self.bias.to(dtype)
        if self.kind == "layernorm":
            return F.layer_norm(x, x.shape[-1:], weight, bias, self.eps)
        # The arithmetic of Hugging Face's RMS norms (pow, mean, rsqrt), so that a folded
        # projection of a float32 model reads what its inference computes bit for bit; the
        # gain and bias are applied in place (no temporary for each: faster on a CPU).
        y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        if weight is not None:
            y.mul_(weight)
        if bias is not None:
            y.add_(bias)
        return y


_ACTIVATIONS = {
    "gelu": lambda x: F.gelu(x),
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_fast": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_python": lambda x: F.gelu(x),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
}


def activation(name: str):
    """Return the elementwise activation called ``name`` in Hugging Face configs."""
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise UnsupportedArchitectureError(
            f"unsupported activation {name!r}; supported: {', '.join(sorted(_ACTIVATIONS))}"
        ) from None


@dataclass
class MLP:
    """A (possibly gated) two-layer MLP.

    Attributes:
        W_in: ``(d_model, d_mlp)``.
        b_in: ``(d_mlp,)`` or None.
        W_gate: ``(d_model, d_mlp)`` for gated MLPs (``act(x W_gate) * (x W_in)``), else None.
        W_out: ``(d_mlp, d_model)``.
        b_out: ``(d_model,)`` or None.
        act: activation name as in Hugging Face configs.
    """

    W_in: torch.Tensor
    b_in: torch.Tensor | None
    W_gate: torch.Tensor | None
    W_out: torch.Tensor
    b_out: torch.Tensor | None
    act: str

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Apply to ``x`` of shape ``(..., d_model)``; returns ``(..., d_model)``."""
        dtype = torch.promote_types(x.dtype, torch.float32)
        x = x.to(dtype)
        f = activation(self.act)
        h = x @ self.W_in.to(dtype)
        if self.b_in is not None:
            h = h + self.b_in.to(dtype)
        h = f(x @ self.W_gate.to(dtype)) * h if self.W_gate is not None else f(h)
        y = h @ self.W_out.to(dtype)
        if self.b_out is not None:
            y = y + self.b_out.to(dtype)
        return y


@dataclass
class MLPBlock:
    """The first block's MLP with the norms around it, as a function of embeddings.

    ``block(x) = post_norm(mlp(pre_norm(x)))``: the MLP's contribution to the residual
    stream when its input is ``x`` (the residual itself is not added).

    Attributes:
        pre_norm: the norm applied before the MLP (``ln_2``; for parallel blocks the
            block's input norm, or NeoX's separate MLP norm).
        mlp: the MLP.
        post_norm: Gemma 2/3's post-feedforward norm, else None.
    """

    pre_norm: Norm
    mlp: MLP
    post_norm: Norm | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., d_model) -> (..., d_model)``."""
        y = self.mlp(self.pre_norm(x))
        return self.post_norm(y) if self.post_norm is not None else y


@dataclass
class AttentionWeights:
    """What MAPS needs of one layer's attention, all raw (no norm folded in).

    Attributes:
        W_V: value weights ``(n_kv_heads, d_model, d_head)``.
        W_O: output weights ``(n_heads, d_head, d_model)``.
        b_V: value bias ``(n_kv_heads, d_head)`` or None.
        b_O: output bias of the whole layer ``(d_model,)`` or None (it cannot be split
            between heads).
        input_norm: the norm applied to the residual stream before attention.
        post_norm: Gemma 2/3's norm applied to the attention output, else None.
    """

    W_V: torch.Tensor
    W_O: torch.Tensor
    b_V: torch.Tensor | None
    b_O: torch.Tensor | None
    input_norm: Norm
    post_norm: Norm | None = None


@dataclass(frozen=True)
class ArchSpec:
    """Shape and wiring facts of an architecture, read from its config.

    Attributes:
        architecture: Hugging Face ``model_type`` (e.g. ``"llama"``).
        family: adapter family name (e.g. ``"llama"`` for Mistral and Qwen too).
        n_layers, n_heads, n_kv_heads, d_model, d_head, vocab_size: the usual sizes.
        tied_embeddings: whether ``U`` is ``E`` transposed.
        embedding_scale: factor the model multiplies embeddings by (Gemma: sqrt(d_model)).
        parallel_attn_mlp: attention and MLP read the same residual (GPT-J, NeoX, Phi).
        norm_kind: the kind of every norm on the residual path.
    """

    architecture: str
    family: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_model: int
    d_head: int
    vocab_size: int
    tied_embeddings: bool
    embedding_scale: float = 1.0
    parallel_attn_mlp: bool = False
    norm_kind: NormKind = "layernorm"

    def __post_init__(self) -> None:
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"n_heads={self.n_heads} is not a multiple of n_kv_heads={self.n_kv_heads}"
            )

    @property
    def group_size(self) -> int:
        """Query heads that share one value head (1 without grouped-query attention)."""
        return self.n_heads // self.n_kv_heads

    def kv_head(self, head: int) -> int:
        """The value head that query head ``head`` reads (grouped/multi-query attention).

        This is the only place in headmaps where the mapping is written: query heads
        ``g*group_size .. (g+1)*group_size - 1`` read value head ``g``.
        """
        return head // self.group_size

    def kv_index(self) -> torch.Tensor:
        """``(n_heads,)`` long tensor: :meth:`kv_head` of every query head."""
        return torch.tensor([self.kv_head(h) for h in range(self.n_heads)], dtype=torch.long)


PositionKind = Literal["rotary", "learned", "none"]


@dataclass
class Positions:
    """How a layer's attention sees token positions.

    Attributes:
        kind: ``"rotary"`` (RoPE on queries and keys), ``"learned"`` (absolute position
            embeddings added to the residual stream before block 0: GPT-2, OPT) or
            ``"none"``.
        inv_freq: rotary: ``(rotary_dim // 2,)`` float32 angular frequencies, computed
            the way transformers does for the config (scaled variants included).
        rotary_dim: rotary: how many leading dims of each head rotate (partial rotary).
        interleaved: rotary: pairs are ``(2i, 2i+1)`` (GPT-J) instead of ``(i, i + rotary_dim/2)``
            (rotate-half: Llama, NeoX, Phi, Gemma).
        attention_scaling: rotary: factor on ``cos``/``sin`` (YaRN, LongRoPE; 1 otherwise),
            so a score carries it squared.
        rope_type: rotary: the config's ``rope_type`` (``default``, ``linear``, ``llama3``...).
        embedding: learned: ``(n_positions, d_model)`` position embeddings.
        offset: learned: row of position 0 (OPT: 2).
        sliding_window: keys further than this many tokens back are masked (local
            layers of Mistral, Gemma 2/3), else None.
    """

    kind: PositionKind
    inv_freq: torch.Tensor | None = None
    rotary_dim: int = 0
    interleaved: bool = False
    attention_scaling: float = 1.0
    rope_type: str = ""
    embedding: torch.Tensor | None = None
    offset: int = 0
    sliding_window: int | None = None

    def describe(self) -> str:
        """One line, e.g. ``rotary (llama3, 64 of 64 dims, rotate-half, theta ~ 1e+04)``."""
        if self.kind == "rotary":
            assert self.inv_freq is not None
            theta = (float(self.inv_freq[1]) ** (-self.rotary_dim / 2.0)
                     if len(self.inv_freq) > 1 else 0.0)
            pairs = "interleaved" if self.interleaved else "rotate-half"
            s = (f"rotary ({self.rope_type or 'default'}, {self.rotary_dim} dims, {pairs}, "
                 f"theta ~ {theta:.3g})")
        elif self.kind == "learned":
            n = 0 if self.embedding is None else self.embedding.shape[0] - self.offset
            s = f"learned absolute ({n} positions, offset {self.offset})"
        else:
            s = "none"
        return s + (f", sliding window {self.sliding_window}" if self.sliding_window else "")


@dataclass
class QKWeights:
    """What the QK half of one layer needs, all raw (no norm folded in).

    The attention logit of query position ``i`` on key position ``j`` for head ``h``
    is ``softcap(scale * <rot_i(qn(x_i W_Q[h] + b_Q[h])), rot_j(kn(x_j W_K[kv] + b_K[kv]))>)``
    with ``x = input_norm(residual)``, ``qn``/``kn`` the optional per-head norms,
    ``rot`` the rotary embedding and ``kv = ArchSpec.kv_head(h)``.

    Attributes:
        W_Q: query weights ``(n_heads, d_model, d_head)``.
        W_K: key weights ``(n_kv_heads, d_model, d_head)``.
        b_Q: ``(n_heads, d_head)`` or None.
        b_K: ``(n_kv_heads, d_head)`` or None.
        q_norm, k_norm: per-head norms over ``d_head`` applied to queries and keys before
            the rotary embedding (Qwen 3, Gemma 3, Phi with ``qk_layernorm``), else None.
        scale: factor on ``q . k`` (``1/sqrt(d_head)``; Gemma: ``query_pre_attn_scalar**-0.5``;
            GPT-2 with ``scale_attn_by_inverse_layer_idx``: also ``1/(layer+1)``).
        softcap: Gemma 2's ``attn_logit_softcapping`` (``c * tanh(s / c)``), else None.
        positions: the positional scheme (:class:`Positions`).
        input_norm: the norm applied to the residual stream before attention.
    """

    W_Q: torch.Tensor
    W_K: torch.Tensor
    b_Q: torch.Tensor | None
    b_K: torch.Tensor | None
    scale: float
    positions: Positions
    input_norm: Norm
    q_norm: Norm | None = None
    k_norm: Norm | None = None
    softcap: float | None = None
