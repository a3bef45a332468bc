"""The stream's precision, chosen from the hardware: bfloat16 only where it is native.

The whole-vocabulary ``token_alone`` stream is the one big computation of a report (a
forward pass of every vocabulary token through the blocks). It can be screened in
bfloat16 (:data:`~headmaps.projection.Sources.screened`: rank on bfloat16 rows, decide
on float32 rows of the candidates), which halves the bytes moved and, on hardware with
bfloat16 arithmetic, doubles the products' rate. Without that arithmetic a bfloat16
product is emulated: on an AVX2 CPU it runs 30x+ slower than float32. So the rule is:

* ``"auto"`` (the default): bfloat16 where the device computes it natively, else float32.

  - a CPU: native when ``torch.cpu.get_capabilities()`` reports ``avx512_bf16`` or
    ``amx_bf16`` (Intel Cooper Lake / Sapphire Rapids and later, AMD Zen 4 and later);
    an older torch that cannot say counts as not native;
  - a CUDA GPU: native from compute capability 8.0 (Ampere) on;
  - anything else (MPS, XPU, ...): not known to be native, so float32.
* ``"float32"`` or ``"bfloat16"``: as asked (bfloat16 on a device without it is allowed,
  and its reason says it will be slow).

:func:`choose` returns the dtype and the reason; :func:`~headmaps.projection.concrete`
writes both into the :class:`~headmaps.projection.ProjectionOptions` every result records
(``stream_dtype``, ``stream_reason``).
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import HeadmapsError

#: What ``stream_dtype`` accepts.
STREAM_DTYPE_CHOICES: tuple[str, ...] = ("auto", "float32", "bfloat16")
#: The stream's compute dtypes by name.
STREAM_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}
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


def check_choice(asked: str) -> str:
    """``asked`` if it is one of :data:`STREAM_DTYPE_CHOICES`; else a one-line error."""
    if asked not in STREAM_DTYPE_CHOICES:
        raise HeadmapsError(f"unknown stream dtype {asked!r}; use one of "
                            f"{', '.join(STREAM_DTYPE_CHOICES)}")
    return asked


def choose(asked: str, device: torch.device | str = "cpu") -> tuple[str, str]:
    """The stream's dtype on ``device`` for what was asked, and the reason recorded.

    Args:
        asked: ``"auto"``, ``"float32"`` or ``"bfloat16"``.
        device: where the stream runs (the model's embedding device).

    Returns:
        ``(dtype name, reason)``, e.g. ``("float32", "auto: no native bfloat16 on this
        CPU (no amx_bf16 or avx512_bf16)")``.

    Raises:
        HeadmapsError: an unknown choice.
    """
    check_choice(asked)
    if asked == "float32":
        return "float32", "asked"
    native, why = native_bfloat16(device)
    if asked == "bfloat16":
        return "bfloat16", "asked" if native else f"asked ({why}: emulated, slow)"
    return ("bfloat16" if native else "float32"), f"auto: {why}"


def describe(dtype: str, reason: str) -> str:
    """How the stream's precision is printed: ``bfloat16 screen (auto: native ...)``."""
    what = "bfloat16 screen, float32 decisions" if dtype == "bfloat16" else "float32"
    return f"{what} ({reason})" if reason else what


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
        reads, and AVX2/AVX-512), ``threads`` (torch's), ``stream_dtype_auto`` (what
        ``"auto"`` picks on the CPU here, with its reason) and ``gpu`` (the CUDA card,
        or None).
    """
    caps = cpu_capabilities()
    flags = {f: bool(caps.get(f)) for f in ("avx2", "avx512_f", *CPU_BF16_FLAGS) if f in caps}
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu_model(), "cpu_flags": flags, "threads": torch.get_num_threads(),
            "stream_dtype_auto": " - ".join(choose("auto", "cpu")), "gpu": gpu}
