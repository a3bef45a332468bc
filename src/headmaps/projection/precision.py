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

What the device can do is read by :mod:`headmaps.hardware`; :func:`choose` returns the
dtype and the reason; :func:`~headmaps.projection.concrete`
writes both into the :class:`~headmaps.projection.ProjectionOptions` every result records
(``stream_dtype``, ``stream_reason``).
"""

from __future__ import annotations

import torch

from ..errors import HeadmapsError
from ..hardware import native_bfloat16

#: What ``stream_dtype`` accepts.
STREAM_DTYPE_CHOICES: tuple[str, ...] = ("auto", "float32", "bfloat16")
#: The stream's compute dtypes by name.
STREAM_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}


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

