"""Lazy checkpoints: read only the tensors MAPS needs, one layer at a time.

Static analysis needs ``E``, ``U``, the final norm, each layer's V/O weights and input
norm, and the first MLP: a small part of a checkpoint (21% of Llama-3.1-8B, 12% of
Llama-3.1-70B). :func:`load_lazy` builds a
:class:`~headmaps.models.headmodel.HeadModel` over a :class:`SafetensorsStore`, which
memory-maps the ``*.safetensors`` shards (found through ``model.safetensors.index.json``
when present) and reads a tensor only when an adapter asks for it by name. Nothing is
cached in the store: a tensor it returned is freed (and its file pages unmapped) as soon
as the caller drops it, so a scan that walks the layers holds about
``E + U + one layer's V/O`` at any time. Tensors keep the checkpoint's dtype.

``.bin`` pickle checkpoints can execute code when unpickled and cannot be read tensor by
tensor safely, so they are refused unless ``allow_pickle=True`` (then read with
``torch.load(mmap=True, weights_only=True)``).
"""

from __future__ import annotations

import json
import logging
import os
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import CorruptFileError, ModelNotFoundError
from .adapters import adapter_for
from .headmodel import HeadModel
from .hub import offline, parse_dtype
from .tensors import MissingTensorError, resolve_name

logger = logging.getLogger(__name__)

SAFE_INDEX = "model.safetensors.index.json"
PICKLE_INDEX = "pytorch_model.bin.index.json"

#: Files of a hub repository that a lazy load needs besides the weights.
META_PATTERNS: tuple[str, ...] = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "chat_template.jinja",
    "*.safetensors.index.json",
    PICKLE_INDEX,
)

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json",
                    "vocab.txt")

#: Fraction of available memory above which :func:`should_load_lazily` says "lazy".
LAZY_MEMORY_FRACTION = 0.5


class PickleCheckpointError(CorruptFileError):
    """A checkpoint holds only ``.bin`` pickle files and ``allow_pickle`` was not given."""


def _tensor_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _find_index(folder: Path, pattern: str, preferred: str) -> Path | None:
    """The index json of ``folder`` (``preferred`` if present, else the only match)."""
    if (folder / preferred).is_file():
        return folder / preferred
    found = sorted(folder.glob(pattern))
    if len(found) > 1:
        logger.warning("several index files in %s (%s); using %s", folder,
                       ", ".join(p.name for p in found), found[0].name)
    return found[0] if found else None


def _read_weight_map(index: Path) -> dict[str, str]:
    """``tensor name -> shard file name`` from an index json."""
    try:
        data = json.loads(index.read_text())
        weight_map = data["weight_map"]
        if not isinstance(weight_map, dict):
            raise TypeError("weight_map is not an object")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CorruptFileError(f"cannot read checkpoint index {index}: {err}") from err
    return {str(k): str(v) for k, v in weight_map.items()}


def _indexed_shards(folder: Path, index: Path) -> dict[str, Path]:
    """``tensor name -> shard path`` from an index json, every shard checked to exist."""
    weight_map = _read_weight_map(index)
    missing = sorted({f for f in weight_map.values() if not (folder / f).is_file()})
    if missing:
        raise ModelNotFoundError(
            f"checkpoint shard(s) {', '.join(missing)} listed in {index.name} are missing "
            f"from {folder} (an interrupted download? fetch them again)"
        )
    return {name: folder / f for name, f in weight_map.items()}


class _NamedStore:
    """Shared name resolution, counters and errors of the on-disk stores.

    Subclasses fill ``self._where`` (stored tensor name -> shard path) and implement
    ``_read(stored_name, shard)``.

    Attributes:
        bytes_read: total bytes of tensors returned by :meth:`get` so far.
        tensors_read: number of :meth:`get` calls so far.
        trace: when set to a list, every :meth:`get` appends ``(name, nbytes)``
            (for tests and benchmarks; None by default so nothing grows).
        architecture: named in :class:`MissingTensorError` messages.
    """

    def __init__(self, where: dict[str, Path], location: str, architecture: str | None = None):
        self._where = where
        self.location = location
        self.architecture = architecture
        self.bytes_read = 0
        self.tensors_read = 0
        self.trace: list[tuple[str, int]] | None = None

    def resolve(self, name: str) -> str | None:
        """The stored name for ``name`` (as given or with a wrapper stem added/removed)."""
        return resolve_name(name, self._where)

    def has(self, name: str) -> bool:
        """Whether ``name`` (or a stem variant) is in the checkpoint; reads no data."""
        return self.resolve(name) is not None

    def names(self) -> list[str]:
        """All stored tensor names."""
        return list(self._where)

    def shard_of(self, name: str) -> Path:
        """The file holding ``name``; ``MissingTensorError`` when absent."""
        stored = self.resolve(name)
        if stored is None:
            raise MissingTensorError(name, self.architecture, self.location)
        return self._where[stored]

    def get(self, name: str) -> torch.Tensor:
        """Read the tensor called ``name`` from disk, in the checkpoint's dtype.

        Nothing is kept: the caller owns the only reference.

        Raises:
            MissingTensorError: no tensor of that name (or a stem variant).
            ModelNotFoundError: its shard file disappeared.
            CorruptFileError: the shard cannot be parsed.
        """
        stored = self.resolve(name)
        if stored is None:
            raise MissingTensorError(name, self.architecture, self.location)
        shard = self._where[stored]
        if not shard.is_file():
            raise ModelNotFoundError(f"checkpoint shard {shard.name} (holding {stored!r}) is "
                                     f"missing from {shard.parent}")
        t = self._read(stored, shard)
        n = _tensor_bytes(t)
        self.bytes_read += n
        self.tensors_read += 1
        if self.trace is not None:
            self.trace.append((stored, n))
        return t

    def reset_counters(self) -> None:
        """Zero :attr:`bytes_read` and :attr:`tensors_read` (and clear :attr:`trace`)."""
        self.bytes_read = 0
        self.tensors_read = 0
        if self.trace is not None:
            self.trace.clear()

    def _read(self, stored: str, shard: Path) -> torch.Tensor:
        raise NotImplementedError


class SafetensorsStore(_NamedStore):
    """A :class:`~headmaps.models.tensors.TensorStore` over ``*.safetensors`` files.

    Construction reads only the index json (or the headers of the files when there is
    no index). Each :meth:`get` opens the tensor's shard with ``safetensors.safe_open``,
    which memory-maps it, and returns the tensor backed by the mapping; no handle and
    no tensor is kept, so dropping the tensor unmaps its pages.

    Args:
        path: a checkpoint folder, one ``.safetensors`` file, or a list of them.
        architecture: the model type, named in missing-tensor errors.

    Raises:
        ModelNotFoundError: no safetensors files, or a shard listed in the index is
            missing.
        CorruptFileError: an unreadable index or safetensors header.
    """

    def __init__(self, path: str | os.PathLike | Sequence[str | os.PathLike],
                 architecture: str | None = None):
        where: dict[str, Path] = {}
        if isinstance(path, (str, os.PathLike)) and Path(path).is_dir():
            folder = Path(path)
            index = _find_index(folder, "*.safetensors.index.json", SAFE_INDEX)
            if index is not None:
                where = _indexed_shards(folder, index)
                files = sorted(set(where.values()))
            else:
                files = sorted(folder.glob("*.safetensors"))
                if not files:
                    raise ModelNotFoundError(f"no *.safetensors files in {folder}")
            location = str(folder)
        else:
            files = [Path(path)] if isinstance(path,
                                               (str, os.PathLike)) else [Path(p) for p in path]
            for f in files:
                if not f.is_file():
                    raise ModelNotFoundError(f"checkpoint shard {f.name} not found at {f}")
            location = str(files[0]) if len(files) == 1 else f"{len(files)} safetensors files"
        if not where:
            for f in files:
                for name in self._keys(f):
                    where.setdefault(name, f)
        self.files: list[Path] = files
        super().__init__(where, location, architecture)

    @staticmethod
    def _keys(file: Path) -> list[str]:
        from safetensors import safe_open

        try:
            with safe_open(str(file), framework="pt") as f:
                return list(f.keys())
        except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
            raise CorruptFileError(f"cannot read safetensors file {file}: {err}") from err

    def _read(self, stored: str, shard: Path) -> torch.Tensor:
        from safetensors import safe_open

        try:
            with safe_open(str(shard), framework="pt") as f:
                return f.get_tensor(stored)
        except Exception as err:  # noqa: BLE001
            raise CorruptFileError(f"cannot read tensor {stored!r} from {shard}: {err}") from err


class PickleStore(_NamedStore):
    """A tensor store over ``pytorch_model*.bin`` files (only with ``allow_pickle``).

    Each :meth:`get` memory-maps the tensor's shard with
    ``torch.load(mmap=True, weights_only=True)`` and returns that one tensor; the rest of
    the shard is never read into memory. Slower than safetensors (the pickle is parsed
    again per tensor); convert the checkpoint to safetensors for repeated use.

    Args:
        folder: the checkpoint folder.
        architecture: the model type, named in missing-tensor errors.
    """

    def __init__(self, folder: str | os.PathLike, architecture: str | None = None):
        folder = Path(folder)
        index = _find_index(folder, "*.bin.index.json", PICKLE_INDEX)
        if index is not None:
            where = _indexed_shards(folder, index)
        else:
            files = _pickle_files(folder)
            if not files:
                raise ModelNotFoundError(f"no pytorch_model*.bin files in {folder}")
            where = {}
            for f in files:
                for name in self._load(f):
                    where.setdefault(name, f)
        self.files: list[Path] = sorted(set(where.values()))
        super().__init__(where, str(folder), architecture)

    @staticmethod
    def _load(file: Path) -> dict[str, torch.Tensor]:
        try:
            state = torch.load(file, map_location="cpu", mmap=True, weights_only=True)
        except Exception as err:  # noqa: BLE001 - torch raises many kinds
            raise CorruptFileError(
                f"cannot read pickle checkpoint {file} (weights_only, mmap): {err}. Old "
                "(non-zip) pickles cannot be memory-mapped; convert the checkpoint to "
                "safetensors"
            ) from err
        if not isinstance(state, dict):
            raise CorruptFileError(f"{file} does not hold a state dict (got "
                                   f"{type(state).__name__})")
        return state

    def _read(self, stored: str, shard: Path) -> torch.Tensor:
        state = self._load(shard)
        t = state.get(stored)
        if t is None:
            raise MissingTensorError(stored, self.architecture, str(shard))
        return t


def _pickle_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("pytorch_model*.bin") if p.is_file())


def open_checkpoint(folder: str | os.PathLike, *, allow_pickle: bool = False,
                    architecture: str | None = None) -> SafetensorsStore | PickleStore:
    """The lazy tensor store for a checkpoint folder.

    Safetensors are preferred; ``.bin`` pickles are read only with ``allow_pickle``.

    Raises:
        PickleCheckpointError: only pickles are present and ``allow_pickle`` is False.
        ModelNotFoundError: no weights at all, or a shard is missing.
    """
    folder = Path(folder)
    if any(folder.glob("*.safetensors")) or any(folder.glob("*.safetensors.index.json")):
        return SafetensorsStore(folder, architecture=architecture)
    if _pickle_files(folder) or (folder / PICKLE_INDEX).is_file():
        if not allow_pickle:
            raise PickleCheckpointError(
                f"{folder} holds only .bin pickle checkpoint files. Unpickling can run "
                "arbitrary code and pickles cannot be read tensor by tensor, so headmaps "
                "refuses them by default. Convert the checkpoint to safetensors (e.g. "
                "`model.save_pretrained(dir, safe_serialization=True)`, or the hub's "
                "'convert to safetensors' space), or, if you trust the file, pass "
                "allow_pickle=True (CLI: --allow-pickle) to read it with "
                "torch.load(weights_only=True, mmap=True)"
            )
        logger.warning("reading pickle checkpoint %s (allow_pickle=True)", folder)
        return PickleStore(folder, architecture=architecture)
    raise ModelNotFoundError(
        f"no weights in {folder}: expected *.safetensors files (with {SAFE_INDEX} when sharded)"
    )


# ---- size of a checkpoint and the "would it fit" decision ---------------------------

def _safetensors_data_bytes(file: Path) -> int:
    """Bytes of tensor data in one safetensors file, from its header alone."""
    with file.open("rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise CorruptFileError(f"{file} is too short to be a safetensors file")
        (n,) = struct.unpack("<Q", head)
        if n > 100 * 2**20:
            raise CorruptFileError(f"{file}: implausible safetensors header length {n}")
        try:
            header = json.loads(f.read(n))
        except ValueError as err:
            raise CorruptFileError(f"{file}: unreadable safetensors header: {err}") from err
    return sum(v["data_offsets"][1] - v["data_offsets"][0]
               for k, v in header.items() if k != "__metadata__")


def checkpoint_bytes(folder: str | os.PathLike) -> int:
    """Total bytes of the weights in a checkpoint folder (0 when it holds none).

    Uses the index's ``metadata.total_size`` when present, else the safetensors headers,
    else the sizes of ``.bin`` files.
    """
    folder = Path(folder)
    index = _find_index(folder, "*.safetensors.index.json", SAFE_INDEX)
    if index is not None:
        try:
            total = json.loads(index.read_text()).get("metadata", {}).get("total_size")
            if total:
                return int(total)
        except (OSError, ValueError, TypeError, AttributeError):
            pass
    files = sorted(folder.glob("*.safetensors"))
    if files:
        return sum(_safetensors_data_bytes(f) for f in files)
    return sum(p.stat().st_size for p in _pickle_files(folder))


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (psutil, else /proc/meminfo), or None."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def should_load_lazily(path: str | os.PathLike, fraction: float = LAZY_MEMORY_FRACTION,
                       available: int | None = None) -> bool:
    """Whether loading ``path`` eagerly would take more than ``fraction`` of free memory.

    Args:
        path: a local checkpoint folder (anything else answers False).
        fraction: the share of available memory an eager load may take.
        available: available bytes (default: :func:`available_memory`).

    Returns:
        True when the checkpoint's weights exceed ``fraction * available``; False when
        they fit, when ``path`` is not a folder with weights, or when the available
        memory is unknown.
    """
    folder = Path(path)
    if not folder.is_dir():
        return False
    try:
        size = checkpoint_bytes(folder)
    except CorruptFileError:
        return False
    avail = available if available is not None else available_memory()
    if not size or not avail:
        return False
    lazy = size > fraction * avail
    if lazy:
        logger.info("checkpoint %s holds %.1f GB of weights, more than %.0f%% of the %.1f GB "
                    "available: loading lazily", folder, size / 1e9, fraction * 100, avail / 1e9)
    return lazy


# ---- hub -----------------------------------------------------------------------------

def download_lazy(repo_id: str, *, revision: str | None = None, allow_pickle: bool = False,
                  local_files_only: bool = False) -> Path:
    """Fetch only what a lazy load needs from the hub; returns the snapshot folder.

    First the config, tokenizer files and index jsons; then exactly the shards the
    safetensors index lists (or ``*.safetensors`` without an index), so extra copies
    such as ``consolidated.safetensors`` or ``.bin`` files are never downloaded. Pickle
    shards are fetched only with ``allow_pickle`` and when there are no safetensors.

    Raises:
        ModelNotFoundError: the repository or its files cannot be fetched.
    """
    from huggingface_hub import snapshot_download

    def fetch(patterns: list[str]) -> Path:
        try:
            return Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns,
                                          local_files_only=local_files_only))
        except Exception as err:  # noqa: BLE001 - hub errors come in many kinds
            hint = (" (offline: only the local Hugging Face cache is searched)"
                    if local_files_only else "")
            raise ModelNotFoundError(
                f"could not fetch {repo_id!r} from the Hugging Face hub{hint}: "
                f"{type(err).__name__}: {err}"
            ) from err

    folder = fetch(list(META_PATTERNS))
    if not (folder / "config.json").is_file():
        raise ModelNotFoundError(f"{repo_id!r} has no config.json")
    index = _find_index(folder, "*.safetensors.index.json", SAFE_INDEX)
    if index is not None:
        shards = sorted(set(_read_weight_map(index).values()))
        logger.info("fetching %d safetensors shard(s) of %s", len(shards), repo_id)
        return fetch(shards)
    folder = fetch(["*.safetensors"])
    if any(folder.glob("*.safetensors")) or not allow_pickle:
        return folder
    if (folder / PICKLE_INDEX).is_file():
        return fetch(sorted(set(_read_weight_map(folder / PICKLE_INDEX).values())))
    return fetch(["pytorch_model*.bin"])


# ---- the loader ----------------------------------------------------------------------

def load_lazy(
    path_or_id: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    revision: str | None = None,
    allow_pickle: bool = False,
    tokenizer: Any = None,
    hf_model_loader: Callable[[], Any] | None = None,
) -> HeadModel:
    """A :class:`HeadModel` that reads the checkpoint tensor by tensor, never the model.

    Args:
        path_or_id: a local checkpoint folder or a Hugging Face model id.
        device: where tensors go when read (default CPU).
        dtype: convert tensors to this dtype when read (default: the checkpoint's).
        revision: hub revision for model ids.
        allow_pickle: read ``.bin`` pickle checkpoints (see :class:`PickleStore`).
        tokenizer: a tokenizer to use instead of the checkpoint's.
        hf_model_loader: builds the transformers model when ``hf_model`` is first read
            (the validation experiments' forward passes); default none, ``hf_model`` is
            None.

    Returns:
        A HeadModel whose adapter reads through a
        :class:`SafetensorsStore` (or :class:`PickleStore`).

    Raises:
        ModelNotFoundError: no such folder/id, no config.json, or a missing shard.
        PickleCheckpointError: only ``.bin`` files and ``allow_pickle`` is False.
        UnsupportedArchitectureError: no adapter for the config's ``model_type``.
    """
    from transformers import AutoConfig, AutoTokenizer

    dtype = parse_dtype(dtype)
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        folder, model_id = path, path.name
    else:
        folder, model_id = download_lazy(str(path_or_id), revision=revision,
                                         allow_pickle=allow_pickle,
                                         local_files_only=offline()), str(path_or_id)
    if not (folder / "config.json").is_file():
        raise ModelNotFoundError(f"no config.json in {folder}; a lazy load needs the model's "
                                 "config")
    try:
        config = AutoConfig.from_pretrained(folder)
    except Exception as err:  # noqa: BLE001 - transformers raises many kinds
        raise CorruptFileError(f"cannot read {folder / 'config.json'}: {err}") from err
    model_type = getattr(config, "model_type", None)
    store = open_checkpoint(folder, allow_pickle=allow_pickle, architecture=model_type)
    adapter = adapter_for(config, store)
    if tokenizer is None:
        if not any((folder / f).is_file() for f in _TOKENIZER_FILES):
            logger.warning("no tokenizer files in %s; relation scoring will need one "
                           "(hm.load(..., tokenizer=...))", folder)
        else:
            try:
                tokenizer = AutoTokenizer.from_pretrained(folder)
            except Exception as err:  # noqa: BLE001 - transformers raises many kinds
                logger.warning("no tokenizer in %s (%s); relation scoring will need one", folder,
                               err)
    kind = "safetensors" if isinstance(store, SafetensorsStore) else "pickle"
    return HeadModel(adapter, tokenizer, hf_model=None, hf_model_loader=hf_model_loader,
                     origin=f"lazy {kind}: {folder} ({len(store.files)} file(s))",
                     model_id=model_id, device=device, dtype=dtype)


__all__ = ["PickleCheckpointError", "PickleStore", "SafetensorsStore", "available_memory",
           "checkpoint_bytes", "download_lazy", "load_lazy", "open_checkpoint",
           "should_load_lazily"]
