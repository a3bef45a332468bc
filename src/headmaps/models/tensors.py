"""Where an adapter reads tensors from: an in-memory state dict or a checkpoint on disk.

A tensor store maps checkpoint tensor names (as in the model's ``state_dict``, e.g.
``model.layers.0.self_attn.v_proj.weight``) to tensors. Adapters only ever call
``get``/``has``, so the same adapter serves eager and lazy loading.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from typing import Protocol

import torch


class TensorStore(Protocol):
    """Anything that returns checkpoint tensors by name."""

    def get(self, name: str) -> torch.Tensor:
        """The tensor called ``name``; raises ``KeyError`` naming it when absent."""
        ...

    def has(self, name: str) -> bool:
        """Whether a tensor called ``name`` exists."""
        ...


class MissingTensorError(KeyError):
    """A tensor an adapter needs is not in the checkpoint."""

    def __init__(self, name: str, architecture: str | None = None, where: str | None = None):
        self.name = name
        arch = f" for architecture {architecture!r}" if architecture else ""
        loc = f" in {where}" if where else ""
        super().__init__(f"tensor {name!r} needed{arch} was not found{loc}")

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


class StateDictStore:
    """Tensors of an in-memory ``nn.Module`` (or any name -> tensor mapping).

    Names are tried as given and, failing that, with a leading wrapper stem
    (``transformer.``, ``model.``, ``gpt_neox.``) removed or added, because some hub
    checkpoints were saved from the bare model and others from the LM-head wrapper.

    A module that accelerate dispatched with CPU or disk offload holds its offloaded
    weights on the ``meta`` device (they are loaded only while the module runs); such a
    tensor is read from the offload store of the module's accelerate hook instead, one
    tensor at a time, in the dtype the model runs in.
    """

    def __init__(self, tensors: Mapping[str, torch.Tensor] | torch.nn.Module):
        self._module = tensors if isinstance(tensors, torch.nn.Module) else None
        if isinstance(tensors, torch.nn.Module):
            tensors = dict(tensors.state_dict(keep_vars=False))
        self._tensors = dict(tensors)

    def resolve(self, name: str) -> str | None:
        """The stored name for ``name`` (see class docstring), or None."""
        return resolve_name(name, self._tensors)

    def has(self, name: str) -> bool:
        """Whether ``name`` (or a stem variant) is present."""
        return self.resolve(name) is not None

    def get(self, name: str) -> torch.Tensor:
        """The tensor called ``name``; ``MissingTensorError`` when absent."""
        stored = self.resolve(name)
        if stored is None:
            raise MissingTensorError(name)
        t = self._tensors[stored].detach()
        if t.device.type == "meta":
            return offloaded_tensor(self._module, stored, t)
        return t

    def names(self) -> list[str]:
        """All stored names."""
        return list(self._tensors)


def offloaded_tensor(module: torch.nn.Module | None, name: str, meta: torch.Tensor) -> torch.Tensor:
    """The real value of ``module``'s tensor ``name``, which sits on the ``meta`` device.

    accelerate's ``AlignDevicesHook`` on the owning submodule keeps a ``weights_map``
    (CPU tensors, or the offload folder / safetensors files for disk offload) from which
    it loads the weights for each forward pass; read the one tensor from there.

    Raises:
        HeadmapsError: no accelerate hook holds the tensor (a model built on ``meta`` and
            never loaded).
    """
    from ..errors import HeadmapsError

    owner, _, leaf = name.rpartition(".")
    hook = None
    if module is not None:
        try:
            hook = getattr(module.get_submodule(owner), "_hf_hook", None)
        except AttributeError:
            hook = None
    for h in getattr(hook, "hooks", None) or ([hook] if hook is not None else []):
        weights = getattr(h, "weights_map", None)
        if weights is None:
            continue
        try:
            t = weights[leaf]
        except KeyError:
            continue
        return t.detach().to(meta.dtype)
    raise HeadmapsError(f"tensor {name!r} is on the meta device and no accelerate offload hook "
                        "holds it; load the model's weights (or let headmaps load it with "
                        "device_map=...)")


_WRAPPER_STEMS = ("transformer.", "model.", "gpt_neox.", "model.decoder.")


def resolve_name(name: str, stored: Container[str]) -> str | None:
    """The name under which ``stored`` holds tensor ``name``, or None.

    ``name`` itself, else a stem variant (see :func:`_alternatives`): checkpoints saved
    from the bare model and from the LM-head wrapper name the same tensor differently.
    """
    if name in stored:
        return name
    return next((alt for alt in _alternatives(name) if alt in stored), None)


def _alternatives(name: str) -> list[str]:
    """Stem variants of a checkpoint tensor name (wrapper stem added or removed)."""
    out = []
    for p in _WRAPPER_STEMS:
        if name.startswith(p):
            out.append(name[len(p):])
    for p in _WRAPPER_STEMS:
        if not name.startswith(p):
            out.append(p + name)
    return out
