"""On-disk cache of converted models (GGUF -> safetensors), so reloads take seconds.

Layout: ``$HEADMAPS_CACHE`` (default ``~/.cache/headmaps``) / ``models`` /
``<sha256 of the GGUF file>-<headmaps version>`` / (``config.json``,
``model.safetensors``, tokenizer files, ``complete.json``). Beside ``models/``:
``gguf/`` (GGUF files assembled from split packages), ``calibrations/`` (stored
calibrations), ``llm/`` (cached describer replies) and ``hashes.json`` (file hashes).

Safety under faults and concurrency:

* An entry counts only when its manifest ``complete.json`` exists and every file it lists
  has the recorded size and the recorded digest of its first and last MiB (a truncated or
  overwritten file is caught without reading gigabytes); anything else is rebuilt with a
  warning, never loaded.
* Entries are built in a temporary folder ``.<key>.*.tmp`` and renamed into place, under
  an exclusive lock on ``.<key>.lock``: two processes converting the same model at once
  build it once (the second waits and then reads the entry); a temporary folder of a run
  that was killed is removed by the next run that takes the lock, or by
  :func:`clean` (``headmaps cache clean``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import HeadmapsError
from ..io import check_writable, new_folder, write_text

logger = logging.getLogger(__name__)

MARKER = "complete.json"
#: Bytes read from each end of a file for its manifest digest.
DIGEST_SPAN = 1 << 20
#: Temporary files (not folders) older than this are stale for :func:`clean`.
STALE_FILE_SECONDS = 3600


def cache_root() -> Path:
    """The cache folder (``HEADMAPS_CACHE`` or ``~/.cache/headmaps``)."""
    root = os.environ.get("HEADMAPS_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "headmaps"


def check_cache_writable() -> Path:
    """The cache folder, or a one-line error when it cannot be written (before a conversion)."""
    try:
        return check_writable(cache_root(), "the headmaps cache")
    except HeadmapsError as err:
        raise HeadmapsError(f"{err} (or set HEADMAPS_CACHE to a writable folder)") from None


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, memoised by (path, size, mtime) in the cache folder.

    The memo is only a shortcut: when the cache cannot be written the hash is computed
    again next time.
    """
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
    try:
        write_text(memo_path, json.dumps(memo, indent=1))
    except OSError as err:
        logger.info("could not memoise the hash of %s in %s: %s", path.name, memo_path, err)
    return memo[key]


def quick_digest(path: Path) -> str:
    """SHA-256 of a file's size and its first and last :data:`DIGEST_SPAN` bytes."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        h.update(f.read(DIGEST_SPAN))
        if size > DIGEST_SPAN:
            f.seek(max(DIGEST_SPAN, size - DIGEST_SPAN))
            h.update(f.read(DIGEST_SPAN))
    return h.hexdigest()


def entry_is_complete(entry: Path) -> bool:
    """Whether ``entry`` holds a finished build whose files match its manifest (size, digest)."""
    try:
        manifest = json.loads((entry / MARKER).read_text())
        digests = manifest.get("digests", {})
        for name, size in manifest["files"].items():
            if (entry / name).stat().st_size != size:
                return False
            if name in digests and quick_digest(entry / name) != digests[name]:
                return False
        return True
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


@contextlib.contextmanager
def locked(lock_file: Path, what: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_file`` (created if needed) inside the block.

    The lock ends with the process, so a killed holder never blocks the next run.
    """
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.warning("waiting for another process building %s", what)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _is_locked(lock_file: Path) -> bool:
    """Whether some live process holds the lock (a non-blocking try)."""
    if not lock_file.exists():
        return False
    fd = os.open(lock_file, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _remove_stale_builds(folder: Path, key: str) -> None:
    """Remove temporary build folders of ``key`` (call with the key's lock held)."""
    for tmp in folder.glob(f".{key}.*.tmp"):
        logger.warning("removing %s, left by an interrupted build", tmp.name)
        shutil.rmtree(tmp, ignore_errors=True)


def get_or_build(key: str, build: Callable[[Path], None]) -> Path:
    """The cache entry for ``key``, building it with ``build(tmp_dir)`` when absent or broken.

    ``build`` writes the entry's files into the folder it is given; the folder is then
    sealed with a manifest and renamed into place atomically, under the key's lock.
    """
    folder = cache_root() / "models"
    entry = folder / key
    if entry_is_complete(entry):
        return entry
    check_cache_writable()
    folder.mkdir(parents=True, exist_ok=True)
    with locked(folder / f".{key}.lock", key):
        if entry_is_complete(entry):  # another process built it while we waited
            return entry
        _remove_stale_builds(folder, key)
        if entry.exists():
            logger.warning("cache entry %s is incomplete or corrupt; rebuilding", entry.name)
            shutil.rmtree(entry, ignore_errors=True)
        tmp = new_folder(folder, f".{key}.", ".tmp")
        try:
            build(tmp)
            files = {p.name: p.stat().st_size for p in tmp.iterdir() if p.is_file()}
            digests = {name: quick_digest(tmp / name) for name in files}
            (tmp / MARKER).write_text(json.dumps({"files": files, "digests": digests}, indent=1))
            os.replace(tmp, entry)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return entry


def assemble_file(name: str, assemble: Callable[[Path], Path]) -> Path:
    """A file under ``gguf/`` made by ``assemble(tmp_path)``, built once, atomically, locked.

    For split-package models whose ``assemble`` writes the whole file: a run killed while
    writing leaves only a temporary file, which the next run replaces.
    """
    folder = cache_root() / "gguf"
    target = folder / name
    if target.is_file():
        return target
    check_cache_writable()
    folder.mkdir(parents=True, exist_ok=True)
    with locked(folder / f".{name}.lock", name):
        if target.is_file():
            return target
        tmp = folder / f".{name}.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        try:
            os.replace(assemble(tmp), target)
        finally:
            tmp.unlink(missing_ok=True)
    return target


def invalidate(entry: Path) -> None:
    """Remove a cache entry (after it failed to load)."""
    shutil.rmtree(entry, ignore_errors=True)


# ---- listing and cleaning -------------------------------------------------------------

@dataclass
class CacheItem:
    """One thing in the cache: a model entry, an assembled GGUF, a store, or a leftover.

    Attributes:
        path: where it is.
        kind: ``model``, ``gguf``, ``calibration``, ``llm``, ``hashes`` or ``other``.
        status: ``complete``, ``incomplete`` (a model entry that fails its manifest, or a
            calibration file that does not parse),
            ``building`` (a temporary build a live process holds), ``stale`` (left by an
            interrupted run) or ``ok``.
        size: bytes on disk.
    """

    path: Path
    kind: str
    status: str
    size: int

    @property
    def removable(self) -> bool:
        """Whether :func:`clean` removes it without ``everything``."""
        return self.status in ("incomplete", "stale")


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _build_status(folder: Path, tmp: Path) -> str:
    """``building`` when a live process holds the lock of ``tmp``'s key, else ``stale``."""
    key = tmp.name[1:].rsplit(".", 2)[0]
    if tmp.is_dir():
        return "building" if _is_locked(folder / f".{key}.lock") else "stale"
    age = time.time() - tmp.stat().st_mtime
    return "stale" if age > STALE_FILE_SECONDS else "building"


def _calibration_status(path: Path) -> str:
    """``ok`` for a readable calibration file, ``stale`` for a leftover, ``incomplete`` else."""
    if path.name.endswith(".tmp"):
        return _build_status(path.parent, path)
    try:
        json.loads(path.read_text(encoding="utf-8"))["choice"]  # noqa: B018 - parse check
        return "ok"
    except (OSError, ValueError, KeyError, TypeError):
        return "incomplete"


def list_cache() -> list[CacheItem]:
    """Everything in the cache folder, with its kind, status and size (nothing is changed)."""
    root = cache_root()
    items: list[CacheItem] = []
    if not root.is_dir():
        return items
    for top in sorted(root.iterdir()):
        if top.name.endswith(".lock"):
            continue
        if top.is_file():
            kind = "hashes" if top.name == "hashes.json" else "other"
            status = _build_status(root, top) if top.name.endswith(".tmp") else "ok"
            items.append(CacheItem(top, kind, status, _size(top)))
            continue
        if top.name in ("models", "gguf"):
            for p in sorted(top.iterdir()):
                if p.name.endswith(".lock"):
                    continue
                if p.name.endswith(".tmp"):
                    status = _build_status(top, p)
                elif top.name == "models":
                    status = "complete" if entry_is_complete(p) else "incomplete"
                else:
                    status = "ok"
                items.append(CacheItem(p, "model" if top.name == "models" else "gguf", status,
                                       _size(p)))
            continue
        if top.name == "calibrations":
            for p in sorted(top.iterdir()):
                items.append(CacheItem(p, "calibration", _calibration_status(p), _size(p)))
            continue
        if top.name == "streams":  # one entry per stream (headmaps.projection.streamcache)
            for p in sorted(top.iterdir()):
                layers = len(list(p.glob("layer-*.pt"))) if p.is_dir() else 0
                items.append(CacheItem(p, "stream", f"{layers} layers", _size(p)))
            continue
        kind = "llm" if top.name == "llm" else "other"
        items.append(CacheItem(top, kind, "ok", _size(top)))
    return items


def clean(everything: bool = False) -> list[CacheItem]:
    """Remove leftovers of interrupted runs and broken entries (or, with ``everything``, all).

    A build a live process is making is never removed.

    Returns:
        What was removed.
    """
    removed = []
    for item in list_cache():
        if item.status == "building" or not (everything or item.removable):
            continue
        if item.path.is_dir():
            shutil.rmtree(item.path, ignore_errors=True)
        else:
            item.path.unlink(missing_ok=True)
        removed.append(item)
    return removed
