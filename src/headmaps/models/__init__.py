"""Loading models into the `HeadModel` view (see :func:`load`)."""

from .adapters import ADAPTERS, supported_model_types
from .headmodel import HeadModel, parse_head
from .loader import ALIASES, DEFAULT_MODEL, from_transformers, load, load_gguf
from .weights import MLP, ArchSpec, AttentionWeights, MLPBlock, Norm, Positions, QKWeights

__all__ = ["ADAPTERS", "ALIASES", "DEFAULT_MODEL", "ArchSpec", "AttentionWeights", "HeadModel",
           "MLP", "MLPBlock", "Norm", "Positions", "QKWeights", "from_transformers", "load",
           "load_gguf", "parse_head", "supported_model_types"]
