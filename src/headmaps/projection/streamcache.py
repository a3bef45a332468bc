"""An on-disk cache of ``token_alone`` streams, so a model's stream is computed once.

A whole-vocabulary ``token_alone`` stream is a forward pass over the vocabulary; every
report, head card or QK summary of the same model in the same projection needs the same
rows. :class:`~headmaps.projection.Sources` stores the rows of each layer it computes
here and reads them back in later processes.

An entry is a folder ``<cache>/streams/<key>/`` (``$HEADMAPS_CACHE`` sets the cache root)
with one file per layer (``layer-007.pt``: the rows and the prefix's residual). The key
hashes what the rows depend on: the weights' fingerprint
(:func:`headmaps.calibration.fingerprint`), the projection options, the stream's dtype,
the token ids and the format version. Files are written atomically (a temporary file,
then a rename). The folder is bounded: ``$HEADMAPS_STREAM_CACHE`` bytes in all (default
:data:`DEFAULT_BUDGET`; ``0`` turns the cache off); when a new layer does not fit, the
least recently used other entries are removed, and a layer that still does not fit is
not stored. :func:`entries` lists the entries, :func:`clear` removes them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

#: ``$HEADMAPS_STREAM_CACHE``: the cache's size bound in bytes (``0``: off).
BUDGET_ENV = "HEADMAPS_STREAM_CACHE"
#: Default bound: a whole-vocabulary float32 stream of SmolLM2-135M is 3.4 GB.
DEFAULT_BUDGET = 8 << 30
FORMAT = 1


def stream_dir() -> Path:
    """The folder of cached streams, ``<cache>/streams``."""
    from ..models.cache import cache_root

    return cache_root() / "streams"


def budget() -> int:
    """The size bound in bytes (``$HEADMAPS_STREAM_CACHE``, else :data:`DEFAULT_BUDGET`)."""
    raw = os.environ.get(BUDGET_ENV, "")
    try:
        return max(0, int(float(raw))) if raw.strip() else DEFAULT_BUDGET
    except ValueError:
        from ..errors import HeadmapsError

        raise HeadmapsError(f"${BUDGET_ENV} must be a number of bytes, got {raw!r}") from None


def key(model: Any, options: dict[str, Any], dtype: torch.dtype, ids: torch.Tensor) -> str:
    """The entry key of a stream: weights, options, dtype and token ids hashed."""
    from .calibration import fingerprint

    h = hashlib.sha256()
    h.update(json.dumps([FORMAT, fingerprint(model), options, str(dtype)], sort_keys=True,
                        default=str).encode())
    h.update(ids.detach().to("cpu", torch.int64).contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


def _layer_file(entry: str, layer: int) -> Path:
    return stream_dir() / entry / f"layer-{layer:03d}.pt"


def load(entry: str, layer: int, device: torch.device | str = "cpu"
         ) -> tuple[torch.Tensor | None, torch.Tensor] | None:
    """The cached ``(prefix residual or None, rows)`` of ``layer``, or None (absent, unreadable)."""
    path = _layer_file(entry, layer)
    if not path.is_file():
        return None
    try:
        d = torch.load(path, map_location=device, weights_only=True)
        first, x = d.get("first"), d["rows"]
    except Exception as err:  # noqa: BLE001 - a broken file is a miss, and is removed
        logger.warning("stream cache file %s is unreadable (%s); recomputing", path, err)
        path.unlink(missing_ok=True)
        return None
    now = time.time()
    os.utime(path.parent, (now, now))  # recently used
    return first, x


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def store(entry: str, layer: int, first: torch.Tensor | None, x: torch.Tensor) -> bool:
    """Write ``layer``'s rows into ``entry`` if they fit in the bound; whether they were."""
    limit = budget()
    need = x.numel() * x.element_size() + (0 if first is None else first.numel() * 4) + 4096
    if need > limit:
        return False
    root = stream_dir()
    root.mkdir(parents=True, exist_ok=True)
    folders = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    used = sum(_size(p) for p in folders)
    for old in folders:  # least recently used first, never the entry being written
        if used + need <= limit:
            break
        if old.name != entry:
            used -= _size(old)
            shutil.rmtree(old, ignore_errors=True)
    if used + need > limit:
        return False
    path = _layer_file(entry, layer)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".layer", suffix=".tmp")
    os.close(fd)
    try:
        torch.save({"rows": x.detach().cpu(), "first": None if first is None else
                    first.detach().cpu()}, tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return True


@dataclass
class Entry:
    """One cached stream: its key, layers stored, bytes, last use (seconds since the epoch)."""

    key: str
    layers: list[int]
    bytes: int
    last_used: float


def entries() -> list[Entry]:
    """The cached streams, most recently used first."""
    root = stream_dir()
    if not root.is_dir():
        return []
    out = [Entry(p.name, sorted(int(f.stem.split("-")[1]) for f in p.glob("layer-*.pt")),
                 _size(p), p.stat().st_mtime) for p in root.iterdir() if p.is_dir()]
    return sorted(out, key=lambda e: -e.last_used)


def clear() -> int:
    """Remove every cached stream; the bytes freed."""
    freed = sum(e.bytes for e in entries())
    shutil.rmtree(stream_dir(), ignore_errors=True)
    return freed
