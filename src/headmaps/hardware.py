"""What the machine can do: CPU capability flags, native bfloat16, the CPU and GPU by name.

Read by the stream's precision rule (:mod:`headmaps.projection.precision`) and recorded in
every benchmark's run header (:func:`machine`), so each measured number says which CPU
(model and flags) or GPU produced it.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Any

import torch

#: The CPU capability flags that mean bfloat16 products run in hardware.
CPU_BF16_FLAGS: tuple[str, ...] = ("amx_bf16", "avx512_bf16")
#: CUDA compute capability from which bfloat16 products run in hardware (Ampere).
CUDA_BF16_CAPABILITY = (8, 0)
#: oneDNN's instruction-set levels (``ONEDNN_MAX_CPU_ISA``), lowest first, up to the first
#: with bfloat16 products; a cap below it makes torch's CPU bfloat16 products emulated
#: whatever the CPU has.
ONEDNN_ISA_ORDER: tuple[str, ...] = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2",
                                     "AVX512_CORE", "AVX512_CORE_VNNI", "AVX512_CORE_BF16")


def cpu_capabilities() -> dict[str, Any]:
    """The CPU's capability flags as torch reads them (``{}`` where torch cannot say)."""
    get = getattr(torch.cpu, "get_capabilities", None)
    if get is None:
        return {}
    return dict(get())


def onednn_cap() -> str | None:
    """The oneDNN instruction-set cap in force, upper-cased, or None.

    Read from ``ONEDNN_MAX_CPU_ISA`` (or its older name ``DNNL_MAX_CPU_ISA``); None where
    neither is set or the cap is ``ALL``/``DEFAULT``.
    """
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        cap = os.environ.get(name, "").strip().upper()
        if cap and cap not in ("ALL", "DEFAULT"):
            return cap
    return None


def _below_bfloat16(cap: str) -> bool:
    """Whether a oneDNN cap stops short of bfloat16 products (unknown names: not below)."""
    return cap in ONEDNN_ISA_ORDER[:-1]


def native_bfloat16(device: torch.device | str = "cpu") -> tuple[bool, str]:
    """Whether ``device`` computes bfloat16 products in hardware, and why (in words).

    A CPU computes them natively when torch reports ``avx512_bf16`` or ``amx_bf16`` and
    torch's CPU products can use them: torch runs bfloat16 matrix products through oneDNN,
    so a torch without oneDNN, or a oneDNN capped below ``AVX512_CORE_BF16`` by
    ``ONEDNN_MAX_CPU_ISA``, emulates them (30x+ slower than float32 on an AVX2 CPU).
    """
    dev = torch.device(device)
    if dev.type == "cpu":
        caps = cpu_capabilities()
        if not caps:
            return False, "this torch cannot read the CPU's capabilities"
        have = [f for f in CPU_BF16_FLAGS if caps.get(f)]
        if not have:
            return False, f"no native bfloat16 on this CPU (no {' or '.join(CPU_BF16_FLAGS)})"
        if not torch.backends.mkldnn.is_available():
            return False, ("no native bfloat16 products: this torch has no oneDNN "
                           f"({have[0]} unused)")
        cap = onednn_cap()
        if cap is not None and _below_bfloat16(cap):
            return False, (f"no native bfloat16 products: oneDNN capped at {cap} "
                           f"(ONEDNN_MAX_CPU_ISA; the CPU has {', '.join(have)})")
        return True, f"native bfloat16 on this CPU ({', '.join(have)})"
    if dev.type == "cuda":
        cap = tuple(torch.cuda.get_device_capability(dev))
        name = torch.cuda.get_device_name(dev)
        sm = f"sm_{cap[0]}{cap[1]}"
        if cap >= CUDA_BF16_CAPABILITY:
            return True, f"native bfloat16 on {name} ({sm})"
        return False, f"no native bfloat16 on {name} ({sm}, before sm_80)"
    return False, f"bfloat16 is not known to be native on {dev.type}"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` says)."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass  # not Linux: platform's answer below
    return platform.processor() or platform.machine() or "unknown CPU"


_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def _size_bytes(text: str) -> int | None:
    """``"32768K"`` (a sysfs cache size) in bytes, or None where it is not a size."""
    text = text.strip().upper().removesuffix("B")
    unit = text[-1:] if text[-1:] in _SIZE_UNITS else ""
    number = text[:len(text) - len(unit)]
    return int(number) * _SIZE_UNITS[unit] if number.isdigit() and int(number) > 0 else None


def _sysfs_cache(root: Path) -> tuple[int, int] | None:
    """``(level, bytes)`` of CPU 0's highest-level data or unified cache under ``root``."""
    best: tuple[int, int] | None = None
    for index in sorted(root.glob("index*")):
        try:
            kind = (index / "type").read_text().strip()
            level = int((index / "level").read_text())
            size = _size_bytes((index / "size").read_text())
        except (OSError, ValueError):
            continue  # an entry this kernel does not fill in: the others still say
        if kind in ("Data", "Unified") and size and (best is None or level > best[0]):
            best = (level, size)
    return best


def _sysctl_cache() -> tuple[int, int] | None:
    """``(level, bytes)`` of the last-level cache as macOS's ``sysctl`` reports it."""
    import subprocess

    for level, name in ((3, "hw.l3cachesize"), (2, "hw.perflevel0.l2cachesize"),
                        (2, "hw.l2cachesize")):
        try:
            out = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True,
                                 timeout=5, check=False).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        size = _size_bytes(out)
        if size:
            return level, size
    return None


@functools.lru_cache(maxsize=1)
def last_level_cache() -> tuple[int | None, str]:
    """The CPU's last-level cache as one core reaches it: ``(bytes or None, in words)``.

    Read from sysfs on Linux (CPU 0's highest-level data or unified cache), from
    ``sysctl`` on macOS; None elsewhere or where neither says. On a many-core CPU this is
    the cache shared by one core's cluster (one L3 of an AMD CCD), not the socket's sum.

    Returns:
        ``(bytes, "L3 32 MiB")``, or ``(None, "cache size unknown")``.
    """
    found = _sysfs_cache(Path("/sys/devices/system/cpu/cpu0/cache"))
    if found is None and sys.platform == "darwin":
        found = _sysctl_cache()
    if found is None:
        return None, "cache size unknown"
    level, size = found
    return size, f"L{level} {size / (1 << 20):g} MiB"


def machine() -> dict[str, Any]:
    """The hardware a measurement ran on, as every recorded number must say.

    Returns:
        ``cpu`` (model name), ``cpu_flags`` (the capability flags the precision rule
        reads, and AVX2/AVX-512), ``kernels`` (the level torch's CPU kernels run at, and
        the oneDNN cap where one is set: a machine run as an older one says so),
        ``threads`` (torch's), ``cache`` (the last-level cache, which sets the stream's
        chunk: :mod:`headmaps.projection.chunking`), ``cpu_bfloat16`` (whether the CPU
        computes bfloat16 natively, in words) and ``gpu`` (the CUDA card, or None).
    """
    caps = cpu_capabilities()
    flags = {f: bool(caps.get(f)) for f in ("avx2", "avx512_f", *CPU_BF16_FLAGS) if f in caps}
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    why = native_bfloat16("cpu")[1]
    kernels, cap = torch.backends.cpu.get_cpu_capability(), onednn_cap()
    if cap is not None:
        kernels += f", oneDNN capped at {cap}"
    return {"cpu": cpu_model(), "cpu_flags": flags, "kernels": kernels,
            "threads": torch.get_num_threads(), "cache": last_level_cache()[1],
            "cpu_bfloat16": why, "gpu": gpu}
