"""Architecture adapters, chosen from one dict keyed by Hugging Face ``model_type``."""

from __future__ import annotations

from typing import Any

from ...errors import UnsupportedArchitectureError
from ..tensors import TensorStore
from .base import Adapter, HookModules, text_config
from .gemma import GemmaAdapter
from .gpt2 import GPT2Adapter
from .gpt_neox import GPTNeoXAdapter
from .gptj import GPTJAdapter
from .llama import LlamaAdapter
from .opt import OPTAdapter
from .phi import PhiAdapter
from .phi3 import Phi3Adapter

_ADAPTER_CLASSES: list[type[Adapter]] = [
    LlamaAdapter, GemmaAdapter, GPT2Adapter, GPTNeoXAdapter, GPTJAdapter, OPTAdapter,
    PhiAdapter, Phi3Adapter,
]

ADAPTERS: dict[str, type[Adapter]] = {
    mt: cls for cls in _ADAPTER_CLASSES for mt in cls.model_types
}


def supported_model_types() -> list[str]:
    """Sorted ``model_type`` values headmaps can read."""
    return sorted(ADAPTERS)


def adapter_for(config: Any, store: TensorStore) -> Adapter:
    """Build the adapter for ``config.model_type``; unknown types list the supported ones."""
    model_type = getattr(text_config(config), "model_type", None) or getattr(
        config, "model_type", None
    )
    cls = ADAPTERS.get(model_type)
    if cls is None:
        raise UnsupportedArchitectureError(
            f"unsupported architecture model_type={model_type!r}; headmaps supports: "
            + ", ".join(supported_model_types())
        )
    return cls(config, store)


__all__ = ["ADAPTERS", "Adapter", "HookModules", "UnsupportedArchitectureError", "adapter_for",
           "supported_model_types"]
