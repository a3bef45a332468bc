"""`HeadModel`: the one view of a language model that every headmaps feature uses."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import torch

from ..errors import HeadmapsError, MissingComponentError, OutOfRangeError
from .adapters import Adapter
from .weights import ArchSpec, AttentionWeights, MLPBlock, Norm, QKWeights


class HeadModel:
    """Per-head access to the weights MAPS needs, whatever the architecture or origin.

    Build one with :func:`headmaps.load`. Tensors come back on ``device`` in the
    checkpoint's dtype unless ``dtype`` was given; they are raw (no norm folded in).

    Attributes:
        spec: sizes and wiring (:class:`ArchSpec`).
        tokenizer: the model's Hugging Face tokenizer, or None.
        hf_model: the transformers model (needed by the validation experiments only).
            Built on first access when the HeadModel was read from a checkpoint that can
            also be loaded as a whole; None for lazy checkpoints.
        origin: a human-readable description of where the weights came from.
        model_id: a short id for results (alias, hub id or file name).
    """

    def __init__(
        self,
        adapter: Adapter,
        tokenizer: Any = None,
        *,
        hf_model: Any = None,
        hf_model_loader: Any = None,
        origin: str = "",
        model_id: str = "",
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
    ):
        self.adapter = adapter
        self.spec: ArchSpec = adapter.spec
        self.tokenizer = tokenizer
        self._hf_model = hf_model
        self._hf_model_loader = hf_model_loader
        self.origin = origin
        self.model_id = model_id or origin
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dtype = dtype
        self._E: torch.Tensor | None = None
        self._U: torch.Tensor | None = None
        self.load_seconds: float | None = None

    @property
    def hf_model(self) -> Any:
        """The transformers model, loaded on first access when a loader was given."""
        if self._hf_model is None and self._hf_model_loader is not None:
            self._hf_model = self._hf_model_loader()
        return self._hf_model

    # ---- sizes ---------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        """Number of transformer blocks."""
        return self.spec.n_layers

    @property
    def n_heads(self) -> int:
        """Query heads per layer."""
        return self.spec.n_heads

    @property
    def n_kv_heads(self) -> int:
        """Key/value heads per layer (``< n_heads`` for grouped-query attention)."""
        return self.spec.n_kv_heads

    @property
    def d_model(self) -> int:
        """Width of the residual stream."""
        return self.spec.d_model

    @property
    def d_head(self) -> int:
        """Width of one head."""
        return self.spec.d_head

    @property
    def vocab_size(self) -> int:
        """Rows of ``E`` (may exceed the tokenizer's vocabulary: padded rows)."""
        return self.spec.vocab_size

    @property
    def architecture(self) -> str:
        """Hugging Face ``model_type``."""
        return self.spec.architecture

    @property
    def tied_embeddings(self) -> bool:
        """Whether ``U = E^T``."""
        return self.spec.tied_embeddings

    @property
    def embedding_scale(self) -> float:
        """Factor the model multiplies embeddings by (Gemma: sqrt(d_model), else 1)."""
        return self.spec.embedding_scale

    @property
    def parallel_attn_mlp(self) -> bool:
        """Attention and MLP read the same residual stream (GPT-J, GPT-NeoX, Phi)."""
        return self.spec.parallel_attn_mlp

    # ---- tensors -------------------------------------------------------------------
    def _to(self, t: torch.Tensor | None) -> torch.Tensor | None:
        if t is None:
            return None
        return t.to(device=self.device, dtype=self.dtype or t.dtype)

    @property
    def E(self) -> torch.Tensor:
        """Input embedding ``(vocab_size, d_model)``, without the embedding scale."""
        if self._E is None:
            self._E = self._to(self.adapter.embedding())
        return self._E

    @property
    def U(self) -> torch.Tensor:
        """Unembedding ``(d_model, vocab_size)`` (``E^T`` when tied; no final norm)."""
        if self._U is None:
            self._U = self.E.T if self.tied_embeddings else self._to(self.adapter.unembedding())
        return self._U

    @property
    def unembedding_bias(self) -> torch.Tensor | None:
        """Bias of the LM head ``(vocab_size,)`` or None."""
        return self._to(self.adapter.unembedding_bias())

    @property
    def final_norm(self) -> Norm:
        """The norm applied before ``U``."""
        return self._norm_to(self.adapter.final_norm())

    def attention(self, layer: int) -> AttentionWeights:
        """All OV weights, biases and norms of ``layer`` (see :class:`AttentionWeights`)."""
        self.check_layer(layer)
        a = self.adapter.attention(layer)
        return AttentionWeights(
            W_V=self._to(a.W_V),
            W_O=self._to(a.W_O),
            b_V=self._to(a.b_V),
            b_O=self._to(a.b_O),
            input_norm=self._norm_to(a.input_norm),
            post_norm=self._norm_to(a.post_norm) if a.post_norm is not None else None,
        )

    def qk(self, layer: int) -> QKWeights:
        """The QK weights, biases, norms, scale and positional scheme of ``layer``.

        Read on demand, one layer at a time (also on the lazy path); see
        :class:`~headmaps.models.weights.QKWeights`.
        """
        self.check_layer(layer)
        q = self.adapter.qk(layer)
        pos = dataclasses.replace(q.positions, embedding=self._to(q.positions.embedding))
        return dataclasses.replace(
            q, W_Q=self._to(q.W_Q), W_K=self._to(q.W_K), b_Q=self._to(q.b_Q), b_K=self._to(q.b_K),
            input_norm=self._norm_to(q.input_norm), positions=pos,
            q_norm=self._norm_to(q.q_norm) if q.q_norm is not None else None,
            k_norm=self._norm_to(q.k_norm) if q.k_norm is not None else None,
        )

    def first_mlp(self) -> MLPBlock:
        """Block 0's MLP with its norms: ``x -> post_norm(MLP_0(pre_norm(x)))``."""
        return self.mlp(0)

    def mlp(self, layer: int) -> MLPBlock:
        """Block ``layer``'s MLP with its norms, ``(..., d_model) -> (..., d_model)``.

        ``x -> post_norm(MLP_l(pre_norm(x)))``: what the MLP adds to the residual stream
        when its input is ``x``. Read on demand (also on the lazy path).
        """
        self.check_layer(layer)
        b = self.adapter.mlp(layer)
        m = b.mlp
        m.W_in, m.b_in, m.W_gate = self._to(m.W_in), self._to(m.b_in), self._to(m.W_gate)
        m.W_out, m.b_out = self._to(m.W_out), self._to(m.b_out)
        return MLPBlock(
            self._norm_to(b.pre_norm), m, self._norm_to(b.post_norm) if b.post_norm else None
        )

    def _norm_to(self, n: Norm) -> Norm:
        return Norm(n.kind, self._to(n.weight), self._to(n.bias), n.eps, n.gain_offset)

    def kv_head(self, head: int) -> int:
        """The value head read by query head ``head``."""
        return self.spec.kv_head(head)

    def ov(self, layer: int, head: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw OV weights of one head.

        Returns:
            ``W_V`` of shape ``(d_model, d_head)`` (of the value head this query head
            reads) and ``W_O`` of shape ``(d_head, d_model)``.
        """
        self.check_head(layer, head)
        a = self.attention(layer)
        return a.W_V[self.kv_head(head)], a.W_O[head]

    def zero_ov_heads(self) -> list[tuple[int, int]]:
        """Heads whose OV product ``W_V W_O`` is zero (pruned, ablated), as ``(layer, head)``.

        ``||W_V W_O||_F^2 = tr((W_V^T W_V)(W_O W_O^T))`` from ``d_head x d_head`` products,
        never the ``d x d`` matrix; zero means below ``1e-12`` of ``||W_V||_F^2 ||W_O||_F^2``
        (or both factors exactly zero). Such a head maps every source to a row of ties and
        scores 0 for every relation (the tie rule of :mod:`headmaps.scoring.kernel`).
        """
        dead = []
        for layer in range(self.n_layers):
            a = self.attention(layer)
            W_V = a.W_V.double()[[self.kv_head(h) for h in range(self.n_heads)]]  # (H, d, dh)
            W_O = a.W_O.double()  # (H, dh, d)
            vv = W_V.transpose(1, 2) @ W_V
            oo = W_O @ W_O.transpose(1, 2)
            prod = (vv * oo.transpose(1, 2)).sum((1, 2))  # tr(vv @ oo) per head
            scale = vv.diagonal(0, 1, 2).sum(1) * oo.diagonal(0, 1, 2).sum(1)
            for head in (prod <= 1e-12 * scale).nonzero().flatten().tolist():
                dead.append((layer, head))
        return dead

    def check_layer(self, layer: int) -> None:
        """Raise :class:`OutOfRangeError` (an ``IndexError``) giving the valid range."""
        if not 0 <= layer < self.n_layers:
            raise OutOfRangeError(f"layer {layer} out of range: this model has layers "
                                  f"0..{self.n_layers - 1}")

    def check_head(self, layer: int, head: int) -> None:
        """Raise :class:`OutOfRangeError` (an ``IndexError``) for a layer or head out of range."""
        self.check_layer(layer)
        if not 0 <= head < self.n_heads:
            raise OutOfRangeError(f"head {head} out of range: this model has heads "
                                  f"0..{self.n_heads - 1}")

    def require_tokenizer(self) -> Any:
        """The tokenizer, or a clear error when the model was loaded without one."""
        if self.tokenizer is None:
            raise MissingComponentError(
                f"model {self.model_id!r} has no tokenizer; pass one: hm.load(model, tokenizer=...)"
            )
        return self.tokenizer

    def info(self) -> dict[str, Any]:
        """A summary dict (architecture, sizes, origin, load time)."""
        s = self.spec
        return {
            "model": self.model_id,
            "architecture": s.architecture,
            "family": s.family,
            "n_layers": s.n_layers,
            "n_heads": s.n_heads,
            "n_kv_heads": s.n_kv_heads,
            "kv_group_size": s.group_size,
            "d_model": s.d_model,
            "d_head": s.d_head,
            "vocab_size": s.vocab_size,
            "tied_embeddings": s.tied_embeddings,
            "embedding_scale": s.embedding_scale,
            "parallel_attn_mlp": s.parallel_attn_mlp,
            "origin": self.origin,
            "load_seconds": self.load_seconds,
        }

    def __repr__(self) -> str:
        s = self.spec
        return (
            f"HeadModel({self.model_id!r}, {s.architecture}, layers={s.n_layers}, "
            f"heads={s.n_heads}, kv_heads={s.n_kv_heads}, d_model={s.d_model}, "
            f"vocab={s.vocab_size})"
        )


_HEAD = re.compile(r"^\s*(\d+)\.(\d+)\s*$")


def parse_head(text: str, model: Any = None) -> tuple[int, int]:
    """``"23.4"`` -> ``(23, 4)``, checked against ``model`` when given.

    ``model`` is anything with ``n_layers``, ``n_heads`` and ``model_id``.

    Raises:
        HeadmapsError: not written ``LAYER.HEAD``.
        OutOfRangeError: out of the model's range (the message gives the valid ranges).
    """
    m = _HEAD.match(str(text))
    if not m:
        raise HeadmapsError(f"a head is written LAYER.HEAD, e.g. 23.4; got {text!r}")
    layer, head = int(m.group(1)), int(m.group(2))
    if model is not None and not (0 <= layer < model.n_layers and 0 <= head < model.n_heads):
        raise OutOfRangeError(f"head {layer}.{head} is out of range: {model.model_id} has layers "
                              f"0..{model.n_layers - 1} and heads 0..{model.n_heads - 1}")
    return layer, head
