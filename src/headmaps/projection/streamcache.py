"""An on-disk cache of ``token_alone`` streams, so a model's stream is computed once.

A whole-vocabulary ``token_alone`` stream is a forward pass over the vocabulary; every
report, head card or QK summary of the same model in the same projection needs the same
rows. :class:`~headmaps.projection.Sources` stores the rows of each layer it computes
here and reads them back in later processes.

An entry is a folder ``<cache>/streams/<key>/`` (``$HEADMAPS_CACHE`` sets the cache root)
with one file per layer (``layer-007.pt``: the rows and the prefix's residual). The key
hashes what the rows depend on: the weights' fingerprint
(:func:`headmaps.projection.fingerprint.fingerprint`), the projection options, the stream's dtype,
the token ids and the format version. Files are written atomically (a temporary file,
then a rename).

Rows are stored at the precision the stream computed them in: a bfloat16-screened
stream's rows as bfloat16 (half the bytes; they only rank candidates, whose answers are
decided on float32 rows computed afresh), a float32 stream's as float32. Read back, they
are float32.

The folder is bounded: ``$HEADMAPS_STREAM_CACHE`` bytes in all (``0`` turns the cache
off), by default :func:`default_budget`: a quarter of the disk it may use (the free
space plus what the stream cache already holds), so a machine with room keeps a whole
vocabulary of a big-vocabulary model (Gemma 3 270M: 12 GB in float32) and a full disk
keeps little. When a new layer does not fit, the least recently used other entries are
removed, and a layer that still does not fit is not stored. :func:`entries` lists the
entries, :func:`clear` removes them.
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

from .fingerprint import fingerprint

logger = logging.getLogger(__name__)

#: ``$HEADMAPS_STREAM_CACHE``: the cache's size bound in bytes (``0``: off).
BUDGET_ENV = "HEADMAPS_STREAM_CACHE"
#: The default bound's share of the disk the cache may use (:func:`default_budget`).
DISK_SHARE = 0.25
FORMAT = 2


def stream_dir() -> Path:
    """The folder of cached streams, ``<cache>/streams``."""
    from ..models.cache import cache_root

    return cache_root() / "streams"


def _free_bytes(folder: Path) -> int:
    """Free bytes on the disk of ``folder`` (or of its nearest existing parent)."""
    for p in (folder, *folder.parents):
        if p.exists():
            return shutil.disk_usage(p).free
    return 0


def default_budget(held: int | None = None) -> int:
    """The default bound: :data:`DISK_SHARE` of the free disk plus what the cache holds.

    Args:
        held: bytes the stream cache holds now (None: measured).
    """
    root = stream_dir()
    if held is None:
        held = _size(root) if root.is_dir() else 0
    return int(DISK_SHARE * (_free_bytes(root) + held))


def budget_origin() -> str:
    """Where :func:`budget` takes the bound from, in words (for ``headmaps cache list``)."""
    if os.environ.get(BUDGET_ENV, "").strip():
        return f"${BUDGET_ENV}"
    return f"default: {DISK_SHARE:.0%} of the free disk plus what it holds"


def budget(held: int | None = None) -> int:
    """The size bound in bytes: ``$HEADMAPS_STREAM_CACHE``, else :func:`default_budget`.

    Raises:
        HeadmapsError: ``$HEADMAPS_STREAM_CACHE`` is not a number.
    """
    raw = os.environ.get(BUDGET_ENV, "")
    if not raw.strip():
        return default_budget(held)
    try:
        return max(0, int(float(raw)))
    except ValueError:
        from ..errors import HeadmapsError

        raise HeadmapsError(f"${BUDGET_ENV} must be a number of bytes, got {raw!r}") from None


def key(model: Any, options: dict[str, Any], dtype: torch.dtype, ids: torch.Tensor) -> str:
    """The entry key of a stream: weights, options, dtype and token ids hashed."""
    h = hashlib.sha256()
    h.update(json.dumps([FORMAT, fingerprint(model), options, str(dtype)], sort_keys=True,
                        default=str).encode())
    h.update(ids.detach().to("cpu", torch.int64).contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


def _layer_file(entry: str, layer: int) -> Path:
    return stream_dir() / entry / f"layer-{layer:03d}.pt"


def has(entry: str, layer: int) -> bool:
    """Whether ``entry`` holds ``layer``'s rows (without reading them)."""
    return _layer_file(entry, layer).is_file()


def load(entry: str, layer: int, device: torch.device | str = "cpu"
         ) -> tuple[torch.Tensor | None, torch.Tensor] | None:
    """The cached ``(prefix residual or None, rows)`` of ``layer``, or None (absent, unreadable)."""
    path = _layer_file(entry, layer)
    if not path.is_file():
        return None
    try:
        d = torch.load(path, map_location=device, weights_only=True)
        first, x = d.get("first"), d["rows"].float()
    except Exception as err:  # noqa: BLE001 - a broken file is a miss, and is removed
        logger.warning("stream cache file %s is unreadable (%s); recomputing", path, err)
        path.unlink(missing_ok=True)
        return None
    now = time.time()
    os.utime(path.parent, (now, now))  # recently used
    return first, x


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def store(entry: str, layer: int, first: torch.Tensor | None, x: torch.Tensor,
          dtype: torch.dtype = torch.float32) -> bool:
    """Write ``layer``'s rows into ``entry`` if they fit in the bound; whether they were.

    ``dtype``: the precision the rows are kept in (the stream's compute dtype); the
    prefix's residual is one row and stays float32.
    """
    rows = x.detach().to("cpu", dtype)
    need = rows.numel() * rows.element_size() + \
        (0 if first is None else first.numel() * 4) + 4096
    root = stream_dir()
    root.mkdir(parents=True, exist_ok=True)
    folders = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    used = sum(_size(p) for p in folders)
    limit = budget(used)
    if need > limit:
        return False
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
        torch.save({"rows": rows, "first": None if first is None else
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
