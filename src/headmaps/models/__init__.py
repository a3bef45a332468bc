"""Loading models into the `HeadModel` view (see :func:`load`).

:func:`load` takes a model (an alias, hub id, folder, ``.gguf`` file or an in-memory
transformers, TransformerLens or nnsight model) and returns a
:class:`~headmaps.models.headmodel.HeadModel`, whose ``origin`` says where it came from.
Underneath, an adapter per architecture family (:mod:`.adapters`) reads tensors by
checkpoint name from a tensor store (:mod:`.tensors`: an in-memory state dict;
:mod:`.lazy`: safetensors shards read one tensor at a time); a family's ``stem`` is the
part of the names in front of its tensors (``model`` in ``model.layers.0...``).
"""

from .adapters import ADAPTERS, supported_model_types
from .headmodel import HeadModel, parse_head
from .loader import ALIASES, DEFAULT_MODEL, from_transformers, load, load_gguf
from .weights import MLP, ArchSpec, AttentionWeights, MLPBlock, Norm, Positions, QKWeights

__all__ = ["ADAPTERS", "ALIASES", "DEFAULT_MODEL", "ArchSpec", "AttentionWeights", "HeadModel",
           "MLP", "MLPBlock", "Norm", "Positions", "QKWeights", "from_transformers", "load",
           "load_gguf", "parse_head", "supported_model_types"]
