"""Options for models bigger than one device: accelerate's device map, memory caps, offload.

The validation experiments run the model; a model that does not fit on one device is
spread by transformers/accelerate's big-model loading
(``from_pretrained(device_map=..., max_memory=..., offload_folder=...)``) over several
GPUs, the CPU and the disk. :class:`BigModelOptions` holds those three choices, checked
once with messages a user can act on; :func:`headmaps.load` passes them on. Only the
transformers model (the forward passes) is dispatched: the static side reads its
weights from the checkpoint or from accelerate's offload store, one layer at a time.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import HeadmapsError

#: The device-map strategies of accelerate/transformers that headmaps passes on.
DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")

#: Non-GPU keys of a memory budget (GPUs are integer indices).
_OTHER_DEVICES = ("cpu", "disk", "mps")

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(value: int | str) -> int:
    """``"70GiB"``, ``"150MB"``, ``"2.5GB"`` or a number of bytes -> bytes.

    Raises:
        HeadmapsError: not a size (the message gives the accepted units).
    """
    if isinstance(value, bool):
        raise HeadmapsError(f"memory size {value!r} is not a size")
    if isinstance(value, int):
        if value < 0:
            raise HeadmapsError(f"memory size {value} is negative")
        return value
    m = _SIZE.match(str(value))
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _UNITS:
        raise HeadmapsError(f"cannot read memory size {value!r}: write a number with a unit, "
                            "e.g. 70GiB, 150MB or 2.5GB (units: B, KB, MB, GB, TB, KiB, MiB, "
                            "GiB, TiB)")
    return int(float(m.group(1)) * _UNITS[unit])


def _device_key(key: int | str) -> int | str:
    """``0``/``"0"``/``"cuda:0"`` -> ``0``; ``"cpu"``, ``"disk"``, ``"mps"`` stay."""
    if isinstance(key, int) and not isinstance(key, bool) and key >= 0:
        return key
    text = str(key).strip().lower()
    if text in _OTHER_DEVICES:
        return text
    m = re.fullmatch(r"(?:cuda:)?(\d+)", text)
    if m:
        return int(m.group(1))
    raise HeadmapsError(f"unknown device {key!r} in max_memory: use a GPU index (0, 1, ... or "
                        "cuda:0), 'cpu', 'disk' or 'mps'")


def normalise_max_memory(max_memory: Mapping[Any, int | str]) -> dict[int | str, int]:
    """A per-device memory budget with checked keys and sizes in bytes.

    Args:
        max_memory: device -> size, e.g. ``{0: "70GiB", 1: "70GiB", "cpu": "100GiB"}``.

    Returns:
        ``{0: 75161927680, 1: ..., "cpu": ...}``, the dict transformers expects.

    Raises:
        HeadmapsError: an unknown device, a size that cannot be read, or an empty budget.
    """
    if not isinstance(max_memory, Mapping) or not max_memory:
        raise HeadmapsError("max_memory must be a non-empty mapping of device to size, e.g. "
                            "{'cpu': '2GiB'} (CLI: --max-memory cpu=2GiB)")
    out: dict[int | str, int] = {}
    for key, size in max_memory.items():
        dev = _device_key(key)
        if dev in out:
            raise HeadmapsError(f"device {key!r} appears twice in max_memory")
        out[dev] = parse_size(size)
    return out


def parse_max_memory(text: str) -> dict[int | str, int]:
    """``--max-memory``: ``"0=70GiB,1=70GiB,cpu=100GiB"`` -> ``{0: ..., 1: ..., "cpu": ...}``.

    Raises:
        HeadmapsError: not ``DEVICE=SIZE`` pairs separated by commas, or a bad device/size.
    """
    items: dict[str, str] = {}
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        dev, sep, size = part.partition("=")
        if not sep or not dev.strip() or not size.strip():
            raise HeadmapsError(f"cannot read --max-memory {text!r}: write DEVICE=SIZE pairs "
                                "separated by commas, e.g. 0=70GiB,1=70GiB,cpu=100GiB or "
                                "cpu=2GiB,disk=50GiB")
        if dev.strip() in items:
            raise HeadmapsError(f"device {dev.strip()!r} appears twice in --max-memory {text!r}")
        items[dev.strip()] = size.strip()
    return normalise_max_memory(items)


def require_accelerate() -> None:
    """Raise a clear error when the ``accelerate`` package is missing."""
    if importlib.util.find_spec("accelerate") is None:
        raise HeadmapsError("device_map/max_memory/offload_folder need the accelerate package: "
                            "pip install accelerate")


@dataclass(frozen=True)
class BigModelOptions:
    """How transformers spreads the model over devices (see the module docstring).

    Attributes:
        device_map: ``"auto"``, ``"balanced"``, ``"balanced_low_0"``, ``"sequential"``, or
            an explicit ``{module name: device}`` dict.
        max_memory: device -> bytes (GPU indices, ``"cpu"``, ``"disk"``, ``"mps"``), or
            None for what the devices have free.
        offload_folder: where modules placed on ``"disk"`` are written (checkpoints that
            are not safetensors need one; safetensors ones are read in place).
    """

    device_map: str | dict[str, Any] = "auto"
    max_memory: dict[int | str, int] | None = None
    offload_folder: str | None = None

    @classmethod
    def create(cls, device_map: str | dict[str, Any] | None = None,
               max_memory: Mapping[Any, int | str] | str | None = None,
               offload_folder: Any = None) -> BigModelOptions | None:
        """Checked options, or None when none is given.

        ``max_memory`` or ``offload_folder`` alone imply ``device_map="auto"``.
        ``max_memory`` may be a dict or the CLI's ``"cpu=2GiB,disk=50GiB"`` string.

        Raises:
            HeadmapsError: an unknown device-map strategy, an unreadable budget, or
                accelerate is not installed.
        """
        if device_map is None and max_memory is None and offload_folder is None:
            return None
        if device_map is None:
            device_map = "auto"
        if isinstance(device_map, str):
            if device_map not in DEVICE_MAPS:
                raise HeadmapsError(f"unknown device_map {device_map!r}; use one of "
                                    f"{', '.join(DEVICE_MAPS)} (or a dict module -> device)")
        elif not isinstance(device_map, Mapping) or not device_map:
            raise HeadmapsError(f"device_map must be one of {', '.join(DEVICE_MAPS)} or a "
                                f"non-empty dict module -> device, got {type(device_map).__name__}")
        if isinstance(max_memory, str):
            budget = parse_max_memory(max_memory)
        else:
            budget = normalise_max_memory(max_memory) if max_memory is not None else None
        require_accelerate()
        return cls(device_map if isinstance(device_map, str) else dict(device_map), budget,
                   None if offload_folder is None else str(offload_folder))

    def check_devices(self) -> None:
        """Raise when the budget names a GPU this machine does not have."""
        import torch

        gpus = [k for k in (self.max_memory or {}) if isinstance(k, int)]
        n = torch.cuda.device_count()
        missing = [g for g in gpus if g >= n]
        if missing:
            raise HeadmapsError(f"max_memory names GPU {', '.join(map(str, missing))} but this "
                                f"machine has {n} CUDA device(s); use cpu=/disk= budgets here")

    def from_pretrained_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``AutoModelForCausalLM.from_pretrained``."""
        self.check_devices()
        kw: dict[str, Any] = {"device_map": self.device_map}
        if self.max_memory is not None:
            kw["max_memory"] = dict(self.max_memory)
        if self.offload_folder is not None:
            kw["offload_folder"] = self.offload_folder
        return kw

    def describe(self) -> str:
        """One line for logs and result headers, e.g. ``device_map=auto, max_memory=cpu=150MB``."""
        parts = [f"device_map={self.device_map if isinstance(self.device_map, str) else 'dict'}"]
        if self.max_memory:
            parts.append("max_memory=" + ",".join(f"{k}={v / 1e6:.0f}MB"
                                                   for k, v in self.max_memory.items()))
        if self.offload_folder:
            parts.append(f"offload_folder={self.offload_folder}")
        return ", ".join(parts)
