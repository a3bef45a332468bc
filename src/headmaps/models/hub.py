"""What both loaders (:mod:`.loader`, :mod:`.lazy`) ask before reading a model.

Whether the Hugging Face hub can be reached (so an offline machine looks only in the
local cache instead of retrying for minutes), and the dtype names users may give.
Nothing here imports the loaders, so they can both import it.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

import torch

from ..errors import HeadmapsError

_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "float64": torch.float64,
}


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub (``$HF_ENDPOINT``) answers a TCP connect."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = urlparse(endpoint).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def offline() -> bool:
    """True when ``HF_HUB_OFFLINE=1`` or the hub cannot be reached: use the local cache only."""
    return os.environ.get("HF_HUB_OFFLINE") == "1" or not hub_reachable()


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """``"bf16"``/``"bfloat16"``/... or a torch dtype -> torch dtype (None stays None).

    Raises:
        HeadmapsError: an unknown name (the message lists the known ones).
    """
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise HeadmapsError(f"unknown dtype {dtype!r}; use one of "
                            f"{', '.join(sorted(_DTYPES))}") from None
