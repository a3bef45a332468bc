"""On-disk cache of converted models (GGUF -> safetensors), so reloads take seconds.

Layout: ``$HEADMAPS_CACHE`` (default ``~/.cache/headmaps``) / ``models`` /
``<sha256 of the source file>-<headmaps version>`` / (``config.json``,
``model.safetensors``, tokenizer files, ``complete.json``). An entry counts only when
``complete.json`` exists and every file it lists has the recorded size; entries are
built in a temporary folder and renamed into place, so an interrupted build leaves
nothing that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..io import write_text

logger = logging.getLogger(__name__)

MARKER = "complete.json"


def cache_root() -> Path:
    """The cache folder (``HEADMAPS_CACHE`` or ``~/.cache/headmaps``)."""
    root = os.environ.get("HEADMAPS_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "headmaps"


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, memoised by (path, size, mtime) in the cache folder."""
    st = path.stat()
    memo_path = cache_root() / "hashes.json"
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    if key in memo:
        return memo[key]
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    memo[key] = h.hexdigest()
    write_text(memo_path, json.dumps(memo, indent=1))
    return memo[key]


def entry_is_complete(entry: Path) -> bool:
    """Whether ``entry`` holds a finished build whose files all have their recorded sizes."""
    try:
        manifest = json.loads((entry / MARKER).read_text())
        return all((entry / name).stat().st_size == size
                   for name, size in manifest["files"].items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def get_or_build(key: str, build: Callable[[Path], None]) -> Path:
    """The cache entry for ``key``, building it with ``build(tmp_dir)`` when absent or broken.

    ``build`` writes the entry's files into the folder it is given; the folder is then
    sealed with a manifest and renamed into place atomically.
    """
    entry = cache_root() / "models" / key
    if entry_is_complete(entry):
        return entry
    if entry.exists():
        logger.warning("cache entry %s is incomplete or corrupt; rebuilding", entry)
        shutil.rmtree(entry, ignore_errors=True)
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{key}.", suffix=".tmp"))
    try:
        build(tmp)
        files = {p.name: p.stat().st_size for p in tmp.iterdir() if p.is_file()}
        (tmp / MARKER).write_text(json.dumps({"files": files}, indent=1))
        try:
            os.replace(tmp, entry)
        except OSError:  # another process finished first
            if not entry_is_complete(entry):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return entry


def invalidate(entry: Path) -> None:
    """Remove a cache entry (after it failed to load)."""
    shutil.rmtree(entry, ignore_errors=True)
