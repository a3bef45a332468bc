"""What the machine can do: CPU capability flags, native bfloat16, the CPU and GPU by name.

Read by the stream's precision rule (:mod:`headmaps.projection.precision`) and recorded in
every benchmark's run header (:func:`machine`), so each measured number says which CPU
(model and flags) or GPU produced it.
"""

from __future__ import annotations

from typing import Any

import torch

#: The CPU capability flags that mean bfloat16 products run in hardware.
CPU_BF16_FLAGS: tuple[str, ...] = ("amx_bf16", "avx512_bf16")
#: CUDA compute capability from which bfloat16 products run in hardware (Ampere).
CUDA_BF16_CAPABILITY = (8, 0)


def cpu_capabilities() -> dict[str, Any]:
    """The CPU's capability flags as torch reads them (``{}`` where torch cannot say)."""
    get = getattr(torch.cpu, "get_capabilities", None)
    if get is None:
        return {}
    return dict(get())


def native_bfloat16(device: torch.device | str = "cpu") -> tuple[bool, str]:
    """Whether ``device`` computes bfloat16 products in hardware, and why (in words)."""
    dev = torch.device(device)
    if dev.type == "cpu":
        caps = cpu_capabilities()
        if not caps:
            return False, "this torch cannot read the CPU's capabilities"
        have = [f for f in CPU_BF16_FLAGS if caps.get(f)]
        if have:
            return True, f"native bfloat16 on this CPU ({', '.join(have)})"
        return False, f"no native bfloat16 on this CPU (no {' or '.join(CPU_BF16_FLAGS)})"
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
        reads, and AVX2/AVX-512), ``threads`` (torch's), ``cpu_bfloat16`` (whether the
        CPU computes bfloat16 natively, in words) and ``gpu`` (the CUDA card, or None).
    """
    caps = cpu_capabilities()
    flags = {f: bool(caps.get(f)) for f in ("avx2", "avx512_f", *CPU_BF16_FLAGS) if f in caps}
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    why = native_bfloat16("cpu")[1]
    return {"cpu": cpu_model(), "cpu_flags": flags, "threads": torch.get_num_threads(),
            "cpu_bfloat16": why, "gpu": gpu}
