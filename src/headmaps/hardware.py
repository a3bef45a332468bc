"""What the machine can do: CPU capability flags, native bfloat16, the CPU and GPU by name.

Read by the stream's precision rule (:mod:`headmaps.projection.precision`) and recorded in
every benchmark's run header (:func:`machine`), so each measured number says which CPU
(model and flags) or GPU produced it.
"""

from __future__ import annotations

import os
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
    from pathlib import Path

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass  # not Linux: platform's answer below
    return platform.processor() or platform.machine() or "unknown CPU"


def machine() -> dict[str, Any]:
    """The hardware a measurement ran on, as every recorded number must say.

    Returns:
        ``cpu`` (model name), ``cpu_flags`` (the capability flags the precision rule
        reads, and AVX2/AVX-512), ``kernels`` (the level torch's CPU kernels run at, and
        the oneDNN cap where one is set: a machine run as an older one says so),
        ``threads`` (torch's), ``cpu_bfloat16`` (whether the CPU computes bfloat16
        natively, in words) and ``gpu`` (the CUDA card, or None).
    """
    caps = cpu_capabilities()
    flags = {f: bool(caps.get(f)) for f in ("avx2", "avx512_f", *CPU_BF16_FLAGS) if f in caps}
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    why = native_bfloat16("cpu")[1]
    kernels, cap = torch.backends.cpu.get_cpu_capability(), onednn_cap()
    if cap is not None:
        kernels += f", oneDNN capped at {cap}"
    return {"cpu": cpu_model(), "cpu_flags": flags, "kernels": kernels,
            "threads": torch.get_num_threads(), "cpu_bfloat16": why, "gpu": gpu}
