"""Models researchers already hold in a notebook: TransformerLens and nnsight.

* A TransformerLens 3 ``HookedTransformer`` is read through its canonical weights
  (``W_E``, ``W_U``, ``b_U``, per-layer ``W_Q``/``W_K``/``W_V``/``W_O`` and biases, norms,
  the MLPs, the position embeddings or rotary tables), exactly as TransformerLens holds
  them after loading. Whatever TransformerLens did at load time is therefore respected:
  folded layer norms appear as gain-free norms (``LNPre``/``RMSPre``) with the gains
  inside ``W_Q``/``W_K``/``W_V``; centred writing weights and a centred unembedding are
  used as they are (they change no top-k); grouped-query attention is read from
  ``_W_K``/``_W_V``/``_b_K``/``_b_V``, one entry per key/value head, never expanded. Rotary
  frequencies are read off the layer's own ``rotary_sin``/``rotary_cos`` tables, so every
  scaling TransformerLens applied to them is kept.
* A TransformerLens 4 ``TransformerBridge`` (``TransformerBridge.boot_transformers``,
  with or without ``enable_compatibility_mode()``) is read through its components'
  TransformerLens-layout properties (``W_E``, ``W_pos``, ``W_U``, ``b_U``,
  ``blocks[i].attn.W_Q/W_K/W_V/W_O`` and biases, ``blocks[i].mlp.W_in/W_gate/W_out``) and
  the norm modules it runs (``ln1``, ``ln2``, ``ln_final``), as they are after TransformerLens's
  processing: folded norms (gain 1, bias 0), centred writing weights and unembedding, value
  biases folded into ``b_O``, and a final norm left unfolded where the bridge's adapter
  could not fold it. K/V stay grouped. What TransformerLens never changes (the rotary
  scheme, the attention scale and soft cap, q/k norms, Gemma's post-norms, the embedding
  multiplier, the MLP activation) comes from headmaps's own adapter of the transformers
  model the bridge wraps, as it runs inside the bridge.
* An nnsight ``LanguageModel`` wraps a transformers model and its tokenizer; both are
  taken as they are and loaded like any in-memory transformers model.

Neither package is imported here: objects are recognised by their class's module name,
so headmaps works without the ``[lens]`` and ``[nnsight]`` extras.
"""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace
from typing import Any

import torch

from ..errors import HeadmapsError, UnsupportedArchitectureError
from .adapters.base import Adapter
from .tensors import StateDictStore
from .weights import MLP, ArchSpec, AttentionWeights, MLPBlock, Norm, Positions, QKWeights

#: TransformerLens ``normalization_type`` -> (norm kind, has a gain, has a bias).
_LENS_NORMS = {
    "LN": ("layernorm", True, True),
    "LNPre": ("layernorm", False, False),
    "RMS": ("rmsnorm", True, False),
    "RMSPre": ("rmsnorm", False, False),
}


def _top_module(obj: Any) -> str:
    return type(obj).__module__.split(".")[0]


def is_transformer_bridge(obj: Any) -> bool:
    """Whether ``obj`` is a TransformerLens 4 ``TransformerBridge`` (or a subclass)."""
    return any(c.__name__ == "TransformerBridge"
               and c.__module__.startswith("transformer_lens.model_bridge")
               for c in type(obj).__mro__)


def is_hooked_transformer(obj: Any) -> bool:
    """Whether ``obj`` is a TransformerLens 3 ``HookedTransformer`` (no import of the package)."""
    return (_top_module(obj) == "transformer_lens" and hasattr(obj, "cfg")
            and hasattr(obj, "blocks") and not is_transformer_bridge(obj))


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
        super().__init__(SimpleNamespace(model_type=arch), store=None)

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

    def qk(self, layer: int) -> QKWeights:
        """The layer's QK weights, one ``W_K``/``b_K`` per key head (``_W_K`` under GQA)."""
        cfg = self.model.cfg
        block = self.model.blocks[layer]
        attn = block.attn
        for flag, what in (("clip_qkv", "clamped queries and keys (clip_qkv)"),
                           ("use_logn_attn", "log-n query scaling (use_logn_attn)")):
            if getattr(cfg, flag, None):
                raise UnsupportedArchitectureError(
                    f"the QK half of TransformerLens models with {what} is not supported")
        q_norm = getattr(attn, "q_norm", None)
        if q_norm is not None and not getattr(cfg, "use_qk_norm", False):
            raise UnsupportedArchitectureError(
                "TransformerLens q/k norms over all heads at once (OLMo 2/3) are not supported "
                "on the QK half")

        def stored(name: str) -> torch.Tensor | None:
            # GroupedQueryAttention keeps one key matrix per KV head as _W_K (W_K expands it)
            t = getattr(attn, f"_{name}", None)
            t = getattr(attn, name, None) if t is None else t
            return None if t is None else t.detach()

        def head_norm(module: Any) -> Norm | None:
            if module is None:
                return None
            w = getattr(module, "w", None)
            return Norm("rmsnorm", None if w is None else w.detach(), None,
                        float(getattr(module, "eps", cfg.eps)))

        cap = getattr(cfg, "attn_scores_soft_cap", -1.0)
        return QKWeights(
            W_Q=attn.W_Q.detach(), W_K=stored("W_K"), b_Q=stored("b_Q"), b_K=stored("b_K"),
            # TransformerLens divides q.k by attn_scale (sqrt(d_head), times layer + 1 when
            # scale_attn_by_inverse_layer_idx)
            scale=1.0 / float(attn.attn_scale), positions=self._positions(layer, attn),
            input_norm=self._norm(block.ln1), q_norm=head_norm(q_norm),
            k_norm=head_norm(getattr(attn, "k_norm", None)),
            softcap=float(cap) if cap is not None and cap > 0 else None,
        )

    def _positions(self, layer: int, attn: Any) -> Positions:
        """The positional scheme of ``layer`` as TransformerLens stores it."""
        cfg = self.model.cfg
        kind = cfg.positional_embedding_type
        window = cfg.window_size if getattr(attn, "attn_type", "global") == "local" else None
        if kind == "standard":
            return Positions("learned", embedding=self.model.W_pos.detach(),
                             sliding_window=window)
        if kind == "rotary":
            return _rotary_from_tables(attn.rotary_sin, attn.rotary_cos, int(cfg.rotary_dim),
                                       bool(cfg.rotary_adjacent_pairs), layer, window)
        raise UnsupportedArchitectureError(
            f"TransformerLens positional_embedding_type={kind!r} is not supported on the QK "
            "half (supported: standard, rotary)")

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


class BridgeAdapter(Adapter):
    """Reads a TransformerLens 4 ``TransformerBridge`` into the HeadModel view.

    The weights TransformerLens may process (embeddings, unembedding, Q/K/V/O, MLP
    weights and biases, and the norms that read the residual stream) are read from the
    bridge's components as they are now; the rest of the architecture (rotary scheme,
    attention scale, soft cap, q/k norms, post-norms, embedding multiplier, activation)
    from headmaps's adapter of the transformers model the bridge wraps (``original_model``),
    whose tensors the bridge runs as they are.

    Args:
        bridge: a ``TransformerBridge`` over a decoder-only transformers model.
    """

    family = "transformer_lens_bridge"

    def __init__(self, bridge: Any):
        from .adapters import adapter_for

        self.model = bridge
        hf = bridge.original_model
        config = getattr(hf, "config", None)
        if config is None or getattr(config, "is_encoder_decoder", False):
            raise UnsupportedArchitectureError(
                f"this TransformerBridge wraps {type(hf).__name__}, not a decoder-only "
                "transformers language model")
        # the bridge wraps each original module as `<name>._original_component`
        live = {k.replace("._original_component", ""): v for k, v in hf.state_dict().items()}
        self.hf = adapter_for(config, StateDictStore(live))
        super().__init__(config, store=StateDictStore(live))

    def build_spec(self) -> ArchSpec:
        """The wrapped model's spec, checked against the bridge's config."""
        spec, cfg = self.hf.spec, self.model.cfg
        n_kv = getattr(cfg, "n_key_value_heads", None) or cfg.n_heads
        ours = (cfg.n_layers, cfg.n_heads, n_kv, cfg.d_model)
        theirs = (spec.n_layers, spec.n_heads, spec.n_kv_heads, spec.d_model)
        if ours != theirs:
            raise UnsupportedArchitectureError(
                f"the TransformerBridge's sizes (layers, heads, kv heads, d_model) {ours} "
                f"differ from its transformers model's {theirs}")
        # W_U is its own tensor here (centred in compatibility mode): never assume E^T
        return dataclasses.replace(spec, family=self.family, tied_embeddings=False)

    def _norm(self, module: Any, where: str) -> Norm:
        """The norm a bridge ``NormalizationBridge`` computes (its weights as they are now)."""
        inner = getattr(module, "original_component", None)
        if inner is None or isinstance(inner, torch.nn.Identity):
            raise UnsupportedArchitectureError(f"the TransformerBridge has no norm at {where}")
        kind = "rmsnorm" if getattr(module, "uses_rms_norm", False) else "layernorm"
        cfg = self.model.cfg
        pre = type(module).__name__ in ("LayerNormPreBridge", "RMSNormPreBridge")
        w = None if pre else getattr(inner, "weight", None)
        b = None if pre or kind == "rmsnorm" else getattr(inner, "bias", None)
        native = (getattr(module, "use_native_layernorm_autograd", False)
                  or getattr(cfg, "layer_norm_folding", False))
        if native:
            # the wrapped module's own forward (with its own eps and gain convention)
            eps = getattr(inner, "eps", None)
            eps = getattr(inner, "variance_epsilon", None) if eps is None else eps
            eps = float(cfg.eps if eps is None else eps)
            offset = self.hf.final_norm().gain_offset  # Gemma's modules compute 1 + w
        else:
            eps = float(getattr(cfg, "eps", 1e-5))
            offset = 1.0 if getattr(module, "uses_weight_offset", False) else 0.0
        if w is not None:
            w = w.detach()
            if offset:
                w = w.to(torch.promote_types(w.dtype, torch.float32)) + offset
        return Norm(kind, w, None if b is None else b.detach(), eps, offset)

    def embedding(self) -> torch.Tensor:
        """``W_E`` ``(d_vocab, d_model)`` (without the embedding multiplier, see the spec)."""
        return self.model.W_E.detach()

    def unembedding(self) -> torch.Tensor:
        """``W_U`` ``(d_model, d_vocab)`` (centred when TransformerLens centred it)."""
        return self.model.W_U.detach()

    def unembedding_bias(self) -> torch.Tensor | None:
        """``b_U`` ``(d_vocab,)`` where the LM head has one."""
        b = getattr(self.model, "b_U", None)
        return None if b is None or not torch.count_nonzero(b) else b.detach()

    def final_norm(self) -> Norm:
        """``ln_final`` (with its gain where TransformerLens could not fold it)."""
        return self._norm(self.model.ln_final, "ln_final")

    def _attn(self, layer: int) -> Any:
        attn = getattr(self.model.blocks[layer], "attn", None)
        if attn is None:
            raise UnsupportedArchitectureError(f"block {layer} of the TransformerBridge has no "
                                               "attention")
        return attn

    @staticmethod
    def _t(t: Any) -> torch.Tensor | None:
        return t.detach() if isinstance(t, torch.Tensor) else None

    def attention(self, layer: int) -> AttentionWeights:
        """``W_V``/``b_V`` per value head, ``W_O`` per query head, from ``blocks[layer].attn``."""
        attn = self._attn(layer)
        base = self.hf.attention(layer)
        return dataclasses.replace(
            base, W_V=attn.W_V.detach(), W_O=attn.W_O.detach(), b_V=self._t(attn.b_V),
            b_O=self._t(attn.b_O), input_norm=self._norm(self.model.blocks[layer].ln1,
                                                         f"blocks.{layer}.ln1"))

    def qk(self, layer: int) -> QKWeights:
        """``W_Q``/``b_Q`` per query head, ``W_K``/``b_K`` per key head; positions as run."""
        attn = self._attn(layer)
        base = self.hf.qk(layer)
        pos = base.positions
        if pos.kind == "learned":
            # the bridge's W_pos (centred in compatibility mode; OPT's 2 offset rows dropped)
            w = self.model.W_pos.detach()
            pos = dataclasses.replace(pos, embedding=w,
                                      offset=pos.offset if len(w) == len(pos.embedding) else 0)
        return dataclasses.replace(
            base, W_Q=attn.W_Q.detach(), W_K=attn.W_K.detach(), b_Q=self._t(attn.b_Q),
            b_K=self._t(attn.b_K), positions=pos,
            input_norm=self._norm(self.model.blocks[layer].ln1, f"blocks.{layer}.ln1"))

    def mlp(self, layer: int) -> MLPBlock:
        """Block ``layer``'s MLP weights from ``blocks[layer].mlp``, with the norm before it."""
        block = self.model.blocks[layer]
        mlp = block.mlp
        try:
            W_in, W_out = mlp.W_in.detach(), mlp.W_out.detach()
        except AttributeError:
            raise UnsupportedArchitectureError(
                f"the MLP of block {layer} of the TransformerBridge ({type(mlp).__name__}) has "
                "no dense W_in/W_out (mixture of experts?)") from None
        base = self.hf.mlp(layer)
        ln = "ln2" if hasattr(block, "ln2") else "ln1"  # one shared norm in GPT-J-like blocks
        m = dataclasses.replace(base.mlp, W_in=W_in, b_in=self._t(getattr(mlp, "b_in", None)),
                                W_gate=self._t(getattr(mlp, "W_gate", None)), W_out=W_out,
                                b_out=self._t(getattr(mlp, "b_out", None)))
        return dataclasses.replace(base, pre_norm=self._norm(getattr(block, ln),
                                                             f"blocks.{layer}.{ln}"), mlp=m)


def _rotary_from_tables(sin: torch.Tensor, cos: torch.Tensor, rotary_dim: int,
                        interleaved: bool, layer: int, window: int | None) -> Positions:
    """Rotary frequencies read off a TransformerLens layer's ``(n_ctx, rotary_dim)`` tables.

    TransformerLens fills ``sin[p] = a * sin(p * f)`` and ``cos[p] = a * cos(p * f)`` with
    each frequency ``f`` repeated over its pair of dims (``(i, i + r/2)``, or ``(2i, 2i+1)``
    with ``rotary_adjacent_pairs``) and ``a`` the YaRN attention factor (1 otherwise); so
    ``a = cos[0]``, and ``f`` is the angle at position 1, refined at positions 2, 4, 8...
    (each step unwraps the angle with the previous estimate, so the error shrinks as
    ``1/p`` whatever the tables' dtype). Reading the tables keeps every scaling
    TransformerLens applied (NTK-by-parts, YaRN, linear).

    Raises:
        UnsupportedArchitectureError: the tables are not of that form.
    """
    half = slice(0, None, 2) if interleaved else slice(0, rotary_dim // 2)
    s, c = sin.detach().double()[:, half], cos.detach().double()[:, half]
    n = len(s)
    scaling = float(c[0, 0]) if n else 0.0
    bad = UnsupportedArchitectureError(
        f"the rotary tables of TransformerLens layer {layer} are not a*sin(p*f), a*cos(p*f) "
        "pairs; its rotary scheme is not supported")
    if n < 2 or scaling <= 0:
        raise bad
    f = torch.atan2(s[1], c[1])
    rows = [2 ** k for k in range(1, (n - 1).bit_length())] + [n - 1]
    for p in rows:
        a = torch.atan2(s[p], c[p])
        f = (a + 2 * math.pi * torch.round((p * f - a) / (2 * math.pi))) / p
    # TL computes the angles in float32 or wider, then rounds sin/cos to the model's dtype
    # (its weight processing may round float64 tables through float32 too)
    ang = torch.arange(n, dtype=torch.float64)[:, None] * f
    eps32 = torch.finfo(torch.float32).eps
    tol = scaling * (4 * max(torch.finfo(sin.dtype).eps, eps32) + 4 * eps32 * ang.abs())
    if ((scaling * ang.sin() - s).abs() > tol).any() or ((scaling * ang.cos() - c).abs()
                                                           > tol).any():
        raise bad
    return Positions("rotary", inv_freq=f.float(), rotary_dim=rotary_dim,
                     interleaved=interleaved, attention_scaling=scaling,
                     rope_type="transformer_lens", sliding_window=window)


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
                     origin=f"TransformerLens {name}",
                     model_id=name, device=device, dtype=dtype)


def from_transformer_bridge(bridge: Any, *, tokenizer: Any = None,
                            device: str | torch.device | None = None,
                            dtype: torch.dtype | None = None) -> Any:
    """A :class:`~headmaps.HeadModel` over a TransformerLens 4 ``TransformerBridge``.

    Args:
        bridge: the bridge, booted (``TransformerBridge.boot_transformers``) with or without
            ``enable_compatibility_mode()``; weights are read, never copied or changed.
        tokenizer: overrides the bridge's tokenizer.
        device: where tensors are returned (default CPU).
        dtype: dtype of returned tensors (default: the bridge's).

    Returns:
        The HeadModel (no ``hf_model``: the bridge replaced the wrapped model's modules, so
        the validation experiments do not run on it).
    """
    from .headmodel import HeadModel

    adapter = BridgeAdapter(bridge)
    name = getattr(bridge.cfg, "model_name", "") or "TransformerBridge"
    mode = ", compatibility mode" if getattr(bridge, "compatibility_mode", False) else ""
    return HeadModel(adapter, tokenizer or getattr(bridge, "tokenizer", None),
                     origin=f"TransformerLens bridge {name}{mode}", model_id=name,
                     device=device, dtype=dtype)


def unwrap_nnsight(model: Any,
                   tokenizer: Any = None) -> tuple[torch.nn.Module, Any, str, str | None]:
    """The transformers model an nnsight model wraps, for :func:`headmaps.models.from_transformers`.

    Args:
        model: an nnsight ``LanguageModel`` (or any nnsight transformers wrapper).
        tokenizer: overrides the wrapper's tokenizer.

    Returns:
        ``(hf_model, tokenizer, origin, model_id)``: the wrapped model, the tokenizer to use,
        an origin label and the hub id (None when the wrapper does not say).

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
