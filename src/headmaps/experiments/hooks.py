"""Forward hooks on the transformers model behind a :class:`~headmaps.models.HeadModel`.

Every hook is registered through :func:`hooked`, a context manager that removes it
again however the block is left. Where the hooks go differs by architecture family;
each adapter names the modules (:attr:`~headmaps.models.adapters.Adapter.hook_modules`).

Two places are hooked, both as *forward pre-hooks* (they see a module's input):

* the attention module of each block: its ``hidden_states`` input is the normed
  residual stream ``LN_1(resid)`` that the value projection reads;
* the attention output projection (``o_proj``/``c_proj``/``dense``/``out_proj``): its
  input is ``z``, the concatenation of every query head's output ``(batch, pos,
  n_heads * d_head)``, head ``h`` in columns ``h*d_head:(h+1)*d_head``.

A model dispatched by accelerate (``hm.load(..., device_map="auto")``) runs each block on
its own device, and offloaded blocks keep their weights on ``meta`` between passes.
The hooks need no change for that: torch runs forward pre-hooks before accelerate's
hook moves the inputs and loads the weights, so a hook sees the tensors on the device
of the block before. What changes is where tensors go: inputs are placed on the device
that runs the input embedding (:func:`input_device`), every captured tensor is moved to
the HeadModel's device (where the static weights and the scoring live), and the final
hidden state to the device that runs the LM head.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import HeadmapsError, MissingComponentError
from ..models import HeadModel


@dataclass
class LayerModules:
    """The hooked modules of one block."""

    attention: nn.Module
    out_proj: nn.Module
    block: nn.Module


def hf_model_of(model: HeadModel) -> nn.Module:
    """The transformers model behind ``model``, or a clear error."""
    if model.hf_model is None:
        raise MissingComponentError(
            f"model {model.model_id!r} was loaded without a transformers model (a lazy "
            "checkpoint, or a TransformerLens model: load its transformers model instead); "
            "the validation experiments run the model: load it with hm.load(..., lazy=False), "
            "or with device_map='auto' (and max_memory=...) when it does not fit on one device"
        )
    return model.hf_model


def module_device(module: nn.Module) -> torch.device:
    """The device ``module`` computes on.

    accelerate's execution device when the module is dispatched (its weights may sit on
    ``meta`` or another device between passes), else the device of its first weight
    that is not on ``meta``, else the CPU.
    """
    hook = getattr(module, "_hf_hook", None)
    for h in getattr(hook, "hooks", None) or ([hook] if hook is not None else []):
        dev = getattr(h, "execution_device", None)
        if dev is not None:
            return torch.device(dev if not isinstance(dev, int) else f"cuda:{dev}")
    for t in (*module.parameters(), *module.buffers()):
        if t.device.type != "meta":
            return t.device
    return torch.device("cpu")


def input_device(hf: nn.Module) -> torch.device:
    """Where a transformers model wants its ``input_ids``: the input embedding's device."""
    emb = hf.get_input_embeddings() if hasattr(hf, "get_input_embeddings") else None
    return module_device(emb if emb is not None else hf)


def layer_modules(model: HeadModel) -> list[LayerModules]:
    """Attention and output-projection modules of every block, in layer order.

    Raises:
        HeadmapsError: the adapter names no hook modules, or they are not where it says.
    """
    where = model.adapter.hook_modules
    if where is None:
        raise HeadmapsError(f"the {type(model.adapter).__name__} of architecture family "
                            f"{model.spec.family!r} names no hook modules (hook_modules)")
    blocks_name, attn_name, out_name = where
    hf = hf_model_of(model)
    for name, module in hf.named_modules():
        if (name.rsplit(".", 1)[-1] == blocks_name and isinstance(module, nn.ModuleList)
                and len(module) == model.n_layers):
            out = []
            for block in module:
                attn = getattr(block, attn_name)
                out.append(LayerModules(attn, getattr(attn, out_name), block))
            return out
    raise HeadmapsError(f"cannot find {model.n_layers} blocks named {blocks_name!r} in "
                        f"{type(hf).__name__}")


Hook = tuple[nn.Module, str, Callable[..., Any]]


@contextlib.contextmanager
def hooked(hooks: Sequence[Hook]) -> Iterator[None]:
    """Register hooks for the duration of a ``with`` block; always removes them.

    Args:
        hooks: ``(module, kind, fn)`` with kind ``"pre"`` (``fn(module, args, kwargs)``,
            may return ``(args, kwargs)`` to replace the input) or ``"forward"``
            (``fn(module, args, output)``, may return a replacement output).
    """
    handles = []
    try:
        for module, kind, fn in hooks:
            if kind == "pre":
                handles.append(module.register_forward_pre_hook(fn, with_kwargs=True))
            elif kind == "forward":
                handles.append(module.register_forward_hook(fn))
            else:
                raise ValueError(f"unknown hook kind {kind!r}; use 'pre' or 'forward'")
        yield
    finally:
        for h in handles:
            h.remove()


def _hidden_states(args: tuple, kwargs: dict) -> torch.Tensor:
    """The ``hidden_states`` input of an attention module, positional or keyword."""
    if "hidden_states" in kwargs:
        return kwargs["hidden_states"]
    return args[0]


def _rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[b, index[b]]`` for ``x`` of shape ``(B, T, ...)`` and ``index`` ``(B,)``."""
    return x[torch.arange(x.shape[0], device=x.device), index.to(x.device)]


@dataclass
class Captured:
    """Activations captured in one forward pass.

    Attributes:
        z: ``(n_layers, batch, n_heads, d_head)``: every query head's output at the last
            (non-padding) position (the input of the output projection).
        attn_in: ``(n_layers, batch, d_model)``: the attention module's input (normed
            residual stream) at each prompt's source position, or None.
        hidden: ``(batch, d_model)``: the base model's final hidden state (after the
            final norm) at the last position.
        to_source: ``(n_layers, batch, n_heads)``: every head's attention weight from the
            last position to the source position, or None (not asked).
    """

    z: torch.Tensor
    attn_in: torch.Tensor | None
    hidden: torch.Tensor
    to_source: torch.Tensor | None = None


def last_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last non-padding token of each row, for left or right padding.

    Args:
        attention_mask: ``(B, T)`` of 0/1.

    Returns:
        ``(B,)`` long tensor.
    """
    T = attention_mask.shape[1]
    pos = torch.arange(T, device=attention_mask.device).expand_as(attention_mask)
    return torch.where(attention_mask.bool(), pos, -1).max(dim=1).values


def forward_base(model: HeadModel, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 hooks: Sequence[Hook] = ()) -> torch.Tensor:
    """Run the base model (no LM head) with ``hooks``; returns the last hidden states.

    Args:
        model: the model.
        input_ids: ``(B, T)``.
        attention_mask: ``(B, T)``.
        hooks: extra hooks for the duration of the pass (see :func:`hooked`).

    Returns:
        ``(B, d_model)`` final hidden state (after the final norm) at the last
        non-padding position.
    """
    hf = hf_model_of(model)
    dev = input_device(hf)
    with torch.no_grad(), hooked(hooks):
        out = hf.base_model(input_ids=input_ids.to(dev), attention_mask=attention_mask.to(dev),
                            use_cache=False)
    return _rows(out.last_hidden_state, last_positions(attention_mask))


@contextlib.contextmanager
def eager_attention(hf: nn.Module) -> Iterator[None]:
    """Run ``hf`` with its eager attention kernel inside the block.

    Only the eager kernel returns the attention probabilities (fused kernels never form
    them); transformers reads the choice from the config at every call, so switching it
    is enough, and it is switched back however the block is left.
    """
    configs = [m.config for m in hf.modules()
               if hasattr(m, "config") and hasattr(m.config, "_attn_implementation")]
    old = [c._attn_implementation for c in configs]
    try:
        for c in configs:
            c._attn_implementation = "eager"
        yield
    finally:
        for c, o in zip(configs, old):
            c._attn_implementation = o


def capture(model: HeadModel, input_ids: torch.Tensor, attention_mask: torch.Tensor,
            source_pos: torch.Tensor | None = None, *, to_source: bool = False) -> Captured:
    """One forward pass capturing every head's ``z`` at the last position.

    Args:
        model: the model (with its transformers model).
        input_ids: ``(B, T)`` token ids, padded on either side.
        attention_mask: ``(B, T)``, 1 for real tokens.
        source_pos: ``(B,)`` position whose attention input to capture (the source
            token), or None.
        to_source: also capture each head's attention weight from the last position to
            ``source_pos`` (the pass then runs the eager attention kernel).

    Returns:
        :class:`Captured`.

    Raises:
        HeadmapsError: ``to_source`` without ``source_pos``, or an attention module that
            returns no weights.
    """
    if to_source and source_pos is None:
        raise HeadmapsError("attention to the source needs the source positions")
    mods = layer_modules(model)
    last = last_positions(attention_mask)
    H, dh = model.n_heads, model.d_head
    zs: list[torch.Tensor | None] = [None] * len(mods)
    xs: list[torch.Tensor | None] = [None] * len(mods)

    dev = model.device  # blocks may run on several devices: gather everything here

    def z_hook(i: int):
        def fn(_m, args, _kwargs):
            z = _rows(args[0], last)
            zs[i] = z.reshape(z.shape[0], H, dh).detach().to(dev)
        return fn

    def x_hook(i: int):
        def fn(_m, args, kwargs):
            xs[i] = _rows(_hidden_states(args, kwargs), source_pos).detach().to(dev)
        return fn

    ws: list[torch.Tensor | None] = [None] * len(mods)

    def w_hook(i: int):
        def fn(_m, _args, output):
            w = output[1] if isinstance(output, tuple) and len(output) > 1 else None
            if w is None:
                raise HeadmapsError("the attention module returned no weights; attention to "
                                    "the source needs its eager kernel")
            b = torch.arange(w.shape[0], device=w.device)
            ws[i] = w[b, :, last.to(w.device), source_pos.to(w.device)].detach().float().to(dev)
        return fn

    hooks: list[Hook] = [(m.out_proj, "pre", z_hook(i)) for i, m in enumerate(mods)]
    if source_pos is not None:
        hooks += [(m.attention, "pre", x_hook(i)) for i, m in enumerate(mods)]
    if to_source:
        hooks += [(m.attention, "forward", w_hook(i)) for i, m in enumerate(mods)]
        with eager_attention(hf_model_of(model)):
            hidden = forward_base(model, input_ids, attention_mask, hooks).to(dev)
    else:
        hidden = forward_base(model, input_ids, attention_mask, hooks).to(dev)
    return Captured(torch.stack(zs), torch.stack(xs) if source_pos is not None else None, hidden,
                    torch.stack(ws) if to_source else None)


def ablation_hooks(model: HeadModel, heads: Sequence[tuple[int, int]],
                   attention_mask: torch.Tensor) -> list[Hook]:
    """Hooks that zero the last-position output of ``heads`` (before ``W_O``).

    Zeroing head ``h``'s slice of the output projection's input removes exactly
    ``z_h W_O^h`` from the layer's output at that position (biases stay).

    Args:
        model: the model.
        heads: ``(layer, head)`` pairs to ablate.
        attention_mask: ``(B, T)`` of the batch the hooks will see.
    """
    mods = layer_modules(model)
    last = last_positions(attention_mask)
    dh = model.d_head
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        model.check_head(layer, head)
        by_layer.setdefault(int(layer), []).append(int(head))

    def make(hs: list[int]):
        cols = torch.cat([torch.arange(h * dh, (h + 1) * dh) for h in hs])

        def fn(_m, args, kwargs):
            z = args[0].clone()
            b = torch.arange(z.shape[0], device=z.device)
            c = cols.to(z.device)
            z[b[:, None], last.to(z.device)[:, None], c[None, :]] = 0
            return (z, *args[1:]), kwargs
        return fn

    return [(mods[layer].out_proj, "pre", make(hs)) for layer, hs in by_layer.items()]


def next_token_logits(model: HeadModel, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      hooks: Sequence[Hook] = ()) -> torch.Tensor:
    """Logits of the next token after each prompt, ``(B, vocab)`` (LM head on the last position).

    Final logit soft-capping (Gemma) is monotonic and left out: argmax is unchanged.
    """
    hidden = forward_base(model, input_ids, attention_mask, hooks)
    head = hf_model_of(model).get_output_embeddings()
    with torch.no_grad():
        return head(hidden.to(module_device(head)))


def _cache_kwarg(base: nn.Module) -> str:
    """``cache`` (transformers >= 5.x) or ``past_key_values`` (older), as ``forward`` names it."""
    import inspect

    params = inspect.signature(base.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def prefix_cache(model: HeadModel, prefix_ids: torch.Tensor) -> Any:
    """Run unpadded prompts without their last token and return the key/value cache.

    Args:
        model: the model.
        prefix_ids: ``(B, T - 1)`` token ids (every row the same length, no padding).
    """
    hf = hf_model_of(model)
    base = hf.base_model
    with torch.no_grad():
        out = base(input_ids=prefix_ids.to(input_device(hf)), use_cache=True)
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def next_token_logits_cached(model: HeadModel, cache: Any, last_ids: torch.Tensor,
                             hooks: Sequence[Hook] = ()) -> torch.Tensor:
    """Next-token logits ``(B, vocab)`` from a prefix cache and the prompts' last tokens.

    The cache is copied, so it can be reused for the next set of hooks. Hooks see a
    sequence of length 1: the last position is position 0 (build ablation hooks with an
    all-ones ``(B, 1)`` mask).

    Args:
        model: the model.
        cache: from :func:`prefix_cache`.
        last_ids: ``(B, 1)`` last token of each prompt.
        hooks: hooks for this pass.
    """
    import copy

    hf = hf_model_of(model)
    base = hf.base_model
    kwargs = {_cache_kwarg(base): copy.deepcopy(cache)}
    head = hf.get_output_embeddings()
    with torch.no_grad(), hooked(hooks):
        out = base(input_ids=last_ids.to(input_device(hf)), use_cache=True, **kwargs)
        return head(out.last_hidden_state[:, -1].to(module_device(head)))
