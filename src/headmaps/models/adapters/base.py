"""The adapter interface: one subclass per architecture family.

An adapter reads a Hugging Face config and a :class:`TensorStore` and returns the
canonical pieces of :mod:`headmaps.models.weights`. Adapters never touch modules, so
they work on an in-memory model and on a checkpoint that is never instantiated.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, NamedTuple

import torch

from ...errors import MissingComponentError, UnsupportedArchitectureError
from ..tensors import MissingTensorError, TensorStore
from ..weights import (
    MLP,
    ArchSpec,
    AttentionWeights,
    MLPBlock,
    Norm,
    NormKind,
    Positions,
    QKWeights,
)


def text_config(config: Any) -> Any:
    """The language-model part of a (possibly multimodal) Hugging Face config."""
    get = getattr(config, "get_text_config", None)
    return get() if callable(get) else config


class HookModules(NamedTuple):
    """Where the validation experiments hook a transformers model of a family.

    Attributes:
        blocks: name of the ``ModuleList`` of blocks (``layers``, ``h``).
        attention: the attention module inside a block (``self_attn``, ``attn``).
        out_proj: the output projection inside the attention module (``o_proj``, ...);
            its input is every query head's output ``z``, head ``h`` in columns
            ``h*d_head:(h+1)*d_head``.
    """

    blocks: str
    attention: str
    out_proj: str


class Adapter:
    """Base class: subclasses set the class attributes and implement the readers.

    Class attributes: ``model_types``, ``family``, ``norm_kind``, ``parallel_attn_mlp``
    and ``hook_modules``; each family also names its ``stem``, the part of the checkpoint
    names in front of the model's tensors (``model`` in ``model.layers.0.self_attn...``).

    The adapter is the whole architecture contract of a family: the config names it
    reads, the checkpoint tensors it turns into canonical weights, and (as names only:
    adapters never touch modules) where the experiments hook the running model.

    Args:
        config: the model's Hugging Face config (``PretrainedConfig``).
        store: the checkpoint tensors by name (:class:`~headmaps.models.tensors.TensorStore`).
    """

    model_types: ClassVar[tuple[str, ...]] = ()
    family: ClassVar[str] = ""
    norm_kind: ClassVar[NormKind] = "layernorm"
    parallel_attn_mlp: ClassVar[bool] = False
    hook_modules: ClassVar[HookModules | None] = None

    def __init__(self, config: Any, store: TensorStore):
        self.config = text_config(config)
        self.store = store
        self.spec = self.build_spec()

    # ---- helpers -------------------------------------------------------------------
    def cfg(self, *names: str, default: Any = None) -> Any:
        """The first config attribute among ``names`` that is set."""
        for n in names:
            v = getattr(self.config, n, None)
            if v is not None:
                return v
        return default

    def get(self, name: str) -> torch.Tensor:
        """Read a tensor; a missing one names the tensor and the architecture."""
        try:
            return self.store.get(name)
        except KeyError:
            raise MissingTensorError(name, self.architecture) from None

    def maybe(self, name: str) -> torch.Tensor | None:
        """Read a tensor if present (optional biases), else None."""
        return self.get(name) if self.store.has(name) else None

    def norm(self, stem: str, eps: float, gain_offset: float = 0.0) -> Norm:
        """A norm stored as ``{stem}.weight`` (+ ``{stem}.bias`` for LayerNorm)."""
        w = self.maybe(f"{stem}.weight")
        if w is not None and gain_offset:
            # at least float32, as Gemma computes 1 + w; never narrower than the checkpoint
            w = w.to(torch.promote_types(w.dtype, torch.float32)) + gain_offset
        b = self.maybe(f"{stem}.bias") if self.norm_kind == "layernorm" else None
        return Norm(self.norm_kind, w, b, float(eps), gain_offset)

    def first_name(self, *names: str) -> str:
        """The first of ``names`` the checkpoint holds, else the first (so errors name it).

        Checkpoints of one architecture differ in naming (hub files vs. renamed
        transformers modules, e.g. NeoX's ``embed_out`` vs. ``lm_head``).
        """
        return next((n for n in names if self.store.has(n)), names[0])

    @property
    def architecture(self) -> str:
        """The config's ``model_type``."""
        return getattr(self.config, "model_type", self.family)

    def split_heads_in(self, w: torch.Tensor, n: int) -> torch.Tensor:
        """``nn.Linear`` weight ``(n*d_head, d_model)`` -> per-head ``(n, d_model, d_head)``."""
        d_head = self.spec.d_head
        return w.reshape(n, d_head, w.shape[-1]).transpose(1, 2)

    def split_heads_out(self, w: torch.Tensor) -> torch.Tensor:
        """``nn.Linear`` weight ``(d_model, n_heads*d_head)`` -> ``(n_heads, d_head, d_model)``."""
        n, d_head = self.spec.n_heads, self.spec.d_head
        return w.reshape(w.shape[0], n, d_head).permute(1, 2, 0)

    # ---- what subclasses provide -----------------------------------------------------
    def build_spec(self) -> ArchSpec:
        """Sizes and wiring from the config (standard config names; override as needed)."""
        c = self
        d_model = c.cfg("hidden_size", "n_embd", "d_model")
        n_heads = c.cfg("num_attention_heads", "n_head")
        n_kv = c.cfg("num_key_value_heads", "n_head_kv", default=n_heads)
        d_head = c.cfg("head_dim", default=d_model // n_heads)
        return ArchSpec(
            architecture=self.architecture,
            family=self.family,
            n_layers=c.cfg("num_hidden_layers", "n_layer", "num_layers"),
            n_heads=n_heads,
            n_kv_heads=n_kv,
            d_model=d_model,
            d_head=d_head,
            vocab_size=c.cfg("vocab_size"),
            tied_embeddings=bool(c.cfg("tie_word_embeddings", default=True)),
            embedding_scale=self.embedding_scale(d_model),
            parallel_attn_mlp=self.parallel_attn_mlp,
            norm_kind=self.norm_kind,
        )

    def embedding_scale(self, d_model: int) -> float:
        """Factor applied to embeddings by the model (1 unless overridden)."""
        return 1.0

    def embedding(self) -> torch.Tensor:
        """Input embedding ``E``, ``(vocab_size, d_model)``, unscaled."""
        raise NotImplementedError

    def unembedding(self) -> torch.Tensor:
        """Unembedding ``U``, ``(d_model, vocab_size)``."""
        raise NotImplementedError

    def unembedding_bias(self) -> torch.Tensor | None:
        """Bias of the LM head ``(vocab_size,)`` (Phi-1/2, GPT-J), else None."""
        return None

    def final_norm(self) -> Norm:
        """The norm before the unembedding."""
        raise NotImplementedError

    def attention(self, layer: int) -> AttentionWeights:
        """The OV weights, biases and norms of ``layer``."""
        raise NotImplementedError

    def mlp(self, layer: int) -> MLPBlock:
        """Block ``layer``'s MLP with the norms around it, as a function of its input."""
        raise NotImplementedError

    def qk(self, layer: int) -> QKWeights:
        """The QK weights, biases, norms, scale and positional scheme of ``layer``."""
        raise MissingComponentError(f"the {self.family or type(self).__name__} adapter does not "
                                    "read the QK half (W_Q, W_K, positions) of its models")

    # ---- QK helpers shared by the adapters ----------------------------------------------
    def heads_in(self, w: torch.Tensor, b: torch.Tensor | None,
                 n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``nn.Linear`` weight/bias of ``n`` heads -> ``(n, d_model, d_head)``, ``(n, d_head)``."""
        return self.split_heads_in(w, n), None if b is None else b.reshape(n, self.spec.d_head)

    def query_key(self, attn: str) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor,
                                            torch.Tensor | None]:
        """``W_Q, b_Q, W_K, b_K`` from separate ``{attn}.q_proj`` / ``{attn}.k_proj`` linears.

        Shapes ``(n_heads, d_model, d_head)``, ``(n_heads, d_head)``, ``(n_kv_heads, d_model,
        d_head)``, ``(n_kv_heads, d_head)``; a bias is None when the checkpoint has none.
        """
        W_Q, b_Q = self.heads_in(self.get(f"{attn}.q_proj.weight"),
                                 self.maybe(f"{attn}.q_proj.bias"), self.spec.n_heads)
        W_K, b_K = self.heads_in(self.get(f"{attn}.k_proj.weight"),
                                 self.maybe(f"{attn}.k_proj.bias"), self.spec.n_kv_heads)
        return W_Q, b_Q, W_K, b_K

    def layer_type(self, layer: int) -> str | None:
        """The config's ``layer_types[layer]`` (``sliding_attention``/``full_attention``), or None.

        None when the config has no ``layer_types``.
        """
        types = getattr(self.config, "layer_types", None)
        return types[layer] if types and layer < len(types) else None

    def sliding_window(self, layer: int) -> int | None:
        """Window of a sliding-window layer, else None (Mistral: every layer has one)."""
        window = self.cfg("sliding_window")
        lt = self.layer_type(layer)
        if lt is not None:
            return window if lt == "sliding_attention" else None
        return window

    def rotary(self, layer: int, *, rotary_dim: int | None = None, interleaved: bool = False,
               theta: float | None = None) -> Positions:
        """Rotary frequencies of ``layer`` as transformers computes them for the config.

        Per-layer-type parameters (Gemma 3: local and global layers), partial rotary
        (``partial_rotary_factor``) and every scaled ``rope_type`` transformers knows
        (through its own ``ROPE_INIT_FUNCTIONS``) are honoured. Dynamic variants give the
        frequencies for sequences within the original context length.
        """
        from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

        params = getattr(self.config, "rope_parameters", None) or {}
        lt = self.layer_type(layer)
        if lt is not None and isinstance(params.get(lt), dict):
            params = params[lt]
        else:
            lt = None
        rope_type = params.get("rope_type", "default") or "default"
        d_head = self.spec.d_head
        if rotary_dim is None:
            frac = params.get("partial_rotary_factor") or self.cfg("partial_rotary_factor",
                                                                   default=1.0)
            rotary_dim = int(d_head * frac)
        scaling = 1.0
        if rope_type == "default":
            base = theta or params.get("rope_theta") or self.cfg("rope_theta", default=10000.0)
            exps = torch.arange(0, rotary_dim, 2, dtype=torch.int64).float() / rotary_dim
            inv_freq = 1.0 / (float(base) ** exps)
        else:
            fn = ROPE_INIT_FUNCTIONS.get(rope_type)
            if fn is None:
                raise UnsupportedArchitectureError(
                    f"rope_type {rope_type!r} of {self.architecture!r} is unknown to this "
                    "transformers")
            kwargs = {"layer_type": lt} if lt is not None else {}
            inv_freq, scaling = fn(self.config, None, **kwargs)
        return Positions("rotary", inv_freq=inv_freq.float(), rotary_dim=rotary_dim,
                         interleaved=interleaved,
                         attention_scaling=float(scaling), rope_type=rope_type,
                         sliding_window=self.sliding_window(layer))

    def head_scale(self) -> float:
        """``1/sqrt(d_head)``, the usual factor on ``q . k``."""
        return self.spec.d_head ** -0.5

    def head_norm(self, stem: str, eps: float) -> Norm | None:
        """A per-head q/k norm stored at ``stem`` (over ``d_head``), or None if absent."""
        return self.norm(stem, eps) if self.store.has(f"{stem}.weight") else None


def sqrt_scale(d_model: int) -> float:
    """Gemma's embedding multiplier (the model rounds it to its dtype; we keep float)."""
    return math.sqrt(d_model)


__all__ = ["Adapter", "HookModules", "MLP", "MLPBlock", "Norm", "AttentionWeights", "Positions",
           "QKWeights", "text_config",
           "sqrt_scale"]
