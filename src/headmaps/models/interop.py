"""Models researchers already hold in a notebook: TransformerLens and nnsight.

* A TransformerLens ``HookedTransformer`` is read through its canonical weights
  (``W_E``, ``W_U``, ``b_U``, per-layer ``W_V``/``W_O``/``b_V``/``b_O``, norms, the first
  MLP), exactly as TransformerLens holds them after loading. Whatever TransformerLens did
  at load time is therefore respected: folded layer norms appear as gain-free norms
  (``LNPre``/``RMSPre``) with the gains inside ``W_V``; centred writing weights and a
  centred unembedding are used as they are (they change no top-k); grouped-query
  attention is read from ``_W_V``/``_b_V``, one entry per value head, never expanded.
* An nnsight ``LanguageModel`` wraps a transformers model and its tokenizer; both are
  taken as they are and loaded like any in-memory transformers model.

Neither package is imported here: objects are recognised by their class's module name,
so headmaps works without the ``[lens]`` and ``[nnsight]`` extras.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch

from ..errors import HeadmapsError, UnsupportedArchitectureError
from .adapters.base import Adapter
from .weights import MLP, ArchSpec, AttentionWeights, MLPBlock, Norm

#: TransformerLens ``normalization_type`` -> (norm kind, has a gain, has a bias).
_LENS_NORMS = {
    "LN": ("layernorm", True, True),
    "LNPre": ("layernorm", False, False),
    "RMS": ("rmsnorm", True, False),
    "RMSPre": ("rmsnorm", False, False),
}


def _top_module(obj: Any) -> str:
    return type(obj).__module__.split(".")[0]


def is_hooked_transformer(obj: Any) -> bool:
    """Whether ``obj`` is a TransformerLens ``HookedTransformer`` (no import of the package)."""
    return _top_module(obj) == "transformer_lens" and hasattr(obj, "cfg") and hasattr(obj, "blocks")


def is_nnsight_model(obj: Any) -> bool:
    """Whether ``obj`` is an nnsight model wrapping a transformers model."""
    return _top_module(obj) == "nnsight"


class LensAdapter(Adapter):
    """Reads a ``HookedTransformer``'s canonical weights into the HeadModel view.

    Args:
        model: a TransformerLens ``HookedTransformer``.
    """

    family = "transformer_lens"

    def __init__(self, model: Any):
        self.model = model
        cfg = model.cfg
        norm = cfg.normalization_type
        if norm not in _LENS_NORMS:
            raise UnsupportedArchitectureError(
                f"TransformerLens normalization_type={norm!r} is not supported; "
                f"supported: {', '.join(_LENS_NORMS)}")
        if getattr(cfg, "attn_only", False):
            raise UnsupportedArchitectureError("attention-only TransformerLens models have no MLP; "
                                               "the projection needs the first block's MLP")
        self.norm_kind = _LENS_NORMS[norm][0]
        self.parallel_attn_mlp = bool(getattr(cfg, "parallel_attn_mlp", False))
        arch = getattr(cfg, "original_architecture", None) or "hooked_transformer"
        super().__init__(SimpleNamespace(model_type=arch), tensors=None)

    def build_spec(self) -> ArchSpec:
        """Sizes from the ``HookedTransformerConfig``."""
        cfg = self.model.cfg
        n_kv = getattr(cfg, "n_key_value_heads", None) or cfg.n_heads
        return ArchSpec(
            architecture=self.architecture, family=self.family, n_layers=cfg.n_layers,
            n_heads=cfg.n_heads, n_kv_heads=n_kv, d_model=cfg.d_model, d_head=cfg.d_head,
            vocab_size=cfg.d_vocab,
            # TransformerLens keeps W_U as its own tensor (centred or not); never assume E^T
            tied_embeddings=False,
            # any embedding multiplier (Gemma) is already inside TransformerLens's W_E
            embedding_scale=1.0,
            parallel_attn_mlp=self.parallel_attn_mlp, norm_kind=self.norm_kind,
        )

    def _norm(self, module: Any) -> Norm:
        """A TransformerLens norm module (``LayerNorm``, ``LayerNormPre``, ``RMSNorm``...)."""
        eps = float(getattr(module, "eps", self.model.cfg.eps))
        w = getattr(module, "w", None)
        b = getattr(module, "b", None)
        return Norm(self.norm_kind, None if w is None else w.detach(),
                    None if b is None else b.detach(), eps)

    def embedding(self) -> torch.Tensor:
        """``W_E`` ``(d_vocab, d_model)``."""
        return self.model.W_E.detach()

    def unembedding(self) -> torch.Tensor:
        """``W_U`` ``(d_model, d_vocab)`` (centred when TransformerLens centred it)."""
        return self.model.W_U.detach()

    def unembedding_bias(self) -> torch.Tensor | None:
        """``b_U`` ``(d_vocab,)``."""
        b = getattr(self.model, "b_U", None)
        return None if b is None else b.detach()

    def final_norm(self) -> Norm:
        """``ln_final``."""
        return self._norm(self.model.ln_final)

    def attention(self, layer: int) -> AttentionWeights:
        """The layer's OV weights, one ``W_V``/``b_V`` per value head (``_W_V`` under GQA)."""
        block = self.model.blocks[layer]
        attn = block.attn
        # GroupedQueryAttention stores one value matrix per KV head as _W_V and exposes an
        # expanded W_V property; read the stored one so the query -> value mapping stays ours.
        W_V = getattr(attn, "_W_V", None)
        b_V = getattr(attn, "_b_V", None)
        if W_V is None:
            W_V, b_V = attn.W_V, attn.b_V
        post = getattr(block, "ln1_post", None)
        return AttentionWeights(
            W_V=W_V.detach(), W_O=attn.W_O.detach(),
            b_V=None if b_V is None else b_V.detach(),
            b_O=None if getattr(attn, "b_O", None) is None else attn.b_O.detach(),
            input_norm=self._norm(block.ln1),
            post_norm=None if post is None else self._norm(post),
        )

    def mlp(self, layer: int) -> MLPBlock:
        """Block ``layer``'s MLP with ``ln2`` before it (and ``ln2_post`` where there is one)."""
        block = self.model.blocks[layer]
        mlp = block.mlp
        if not hasattr(mlp, "W_in"):
            raise UnsupportedArchitectureError(
                f"TransformerLens MLP {type(mlp).__name__} (mixture of experts?) is not supported")
        act = self.model.cfg.act_fn
        if act.startswith("solu"):
            raise UnsupportedArchitectureError(f"TransformerLens act_fn={act!r} is not supported")

        def opt(name: str) -> torch.Tensor | None:
            t = getattr(mlp, name, None)
            return None if t is None else t.detach()

        b_in, W_gate = opt("b_in"), opt("W_gate")
        if W_gate is not None and b_in is not None:
            # TransformerLens adds a gated MLP's b_in after the gating (act(x W_gate) *
            # (x W_in) + b_in); its conversions of gated models (Llama, Mistral, Gemma...)
            # leave it zero, which is the case headmaps reads exactly.
            if torch.count_nonzero(b_in):
                raise UnsupportedArchitectureError(
                    "a TransformerLens gated MLP with a non-zero b_in (added after the gate) "
                    "is not supported")
            b_in = None
        post = getattr(block, "ln2_post", None)
        return MLPBlock(
            pre_norm=self._norm(block.ln2),
            mlp=MLP(W_in=mlp.W_in.detach(), b_in=b_in, W_gate=W_gate,
                    W_out=mlp.W_out.detach(), b_out=opt("b_out"), act=act),
            post_norm=None if post is None else self._norm(post),
        )


def from_transformer_lens(model: Any, *, tokenizer: Any = None,
                          device: str | torch.device | None = None,
                          dtype: torch.dtype | None = None) -> Any:
    """A :class:`~headmaps.HeadModel` over a TransformerLens ``HookedTransformer``.

    Args:
        model: the ``HookedTransformer`` (weights are read, never copied or changed).
        tokenizer: overrides the model's tokenizer.
        device: where tensors are returned (default CPU).
        dtype: dtype of returned tensors (default: the model's).

    Returns:
        The HeadModel; its tokenizer is the model's (None when it has none).
    """
    from .headmodel import HeadModel

    adapter = LensAdapter(model)
    name = getattr(model.cfg, "model_name", "") or "HookedTransformer"
    return HeadModel(adapter, tokenizer or getattr(model, "tokenizer", None),
                     source=f"TransformerLens {name}",
                     model_id=name, device=device, dtype=dtype)


def unwrap_nnsight(model: Any,
                   tokenizer: Any = None) -> tuple[torch.nn.Module, Any, str, str | None]:
    """The transformers model an nnsight model wraps, for :func:`headmaps.models.from_transformers`.

    Args:
        model: an nnsight ``LanguageModel`` (or any nnsight transformers wrapper).
        tokenizer: overrides the wrapper's tokenizer.

    Returns:
        ``(hf_model, tokenizer, source, model_id)``: the wrapped model, the tokenizer to use,
        a source label and the hub id (None when the wrapper does not say).

    Raises:
        HeadmapsError: the wrapper holds no transformers model (not dispatched).
    """
    state = vars(model)  # nnsight's Envoy answers attribute look-ups itself: read the fields
    inner = state.get("_module", state.get("_model"))
    if not isinstance(inner, torch.nn.Module) or getattr(inner, "config", None) is None:
        raise HeadmapsError(f"{type(model).__name__} does not wrap a transformers model "
                            "(dispatch it first, e.g. LanguageModel(name, dispatch=True))")
    repo = state.get("repo_id") or ""
    return (inner, tokenizer or state.get("tokenizer"), f"nnsight {type(model).__name__}",
            repo or None)
