"""Atomic file writing and the self-describing result format (table + JSON header).

Every result is written as a tidy table (``.parquet`` or ``.csv``) plus a JSON header
beside it (same stem, ``.json``) holding the model, preset, options and versions. Files
are written to a temporary name and renamed, so an interrupted run never leaves a
half-written file.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import re
import secrets
import shlex
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from .errors import CorruptFileError, HeadmapsError, MissingFileError

TABLE_SUFFIXES = (".parquet", ".csv")
T = TypeVar("T")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary file is created with mode ``0o666`` and the process umask applies as
    for any new file (``tempfile.mkstemp`` would make it ``0o600``); the umask is never
    changed, so this is safe with threads.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_file(path.parent, f".{path.name}.", ".tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _new_file(folder: Path, prefix: str, suffix: str) -> Path:
    """Create an empty file with a fresh random name in ``folder`` (``O_EXCL``, 0o666 & ~umask)."""
    for _ in range(100):
        tmp = folder / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"no free temporary name in {folder}")


#: An absolute POSIX path (``/a/b``, at least two parts), a home path (``~/a``) or a
#: Windows path (``C:\a``), up to whitespace, a quote, a comma or a bracket.
_ABS_PATH = re.compile(r"""(?<![\w.~/])(?:~|[A-Za-z]:)?[/\\]"""
                       r"""(?:[^\s'"`,;()\[\]{}<>/\\]+[/\\])+[^\s'"`,;()\[\]{}<>/\\]*""")


def _last_part(match: re.Match[str]) -> str:
    parts = [p for p in re.split(r"[/\\]", match.group(0)) if p]
    return parts[-1] if parts else match.group(0)


def shareable(value: Any) -> Any:
    """``value`` with every absolute local path replaced by its last part.

    Strings are rewritten, dicts, lists and tuples are walked; anything else is
    returned as it is.

    >>> shareable("/home/me/.cache/headmaps/smollm2.gguf")
    'smollm2.gguf'
    >>> shareable("HuggingFaceTB/SmolLM2-135M")
    'HuggingFaceTB/SmolLM2-135M'
    """
    if isinstance(value, str):
        return _ABS_PATH.sub(_last_part, value)
    if isinstance(value, dict):
        return {k: shareable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(shareable(v) for v in value)
    return value


def saved_model_info(value: Any) -> dict[str, Any]:
    """A saved result's ``model_info`` (:meth:`HeadModel.info` at run time) as a new dict.

    Where the model was loaded from is under ``"origin"``; files written before that key
    was named so hold it as ``"source"``, which is read as ``"origin"``.

    >>> saved_model_info({"model": "m", "source": "gguf: m.gguf"})
    {'model': 'm', 'origin': 'gguf: m.gguf'}
    """
    info = dict(value or {})
    if "source" in info and "origin" not in info:
        info["origin"] = info.pop("source")
    return info


def header_for_file(header: dict[str, Any], show_paths: bool = False) -> dict[str, Any]:
    """A result's JSON header as written: local paths reduced to names (:func:`shareable`).

    Args:
        header: the header.
        show_paths: keep absolute local paths as they are (``headmaps --show-paths``).
    """
    return header if show_paths else shareable(header)


def check_page_path(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a Path when it ends in .html (or .htm), else a one-line error.

    Args:
        path: where a page is to be written.
        what: the page, for the message (``"the diff view"``).

    Raises:
        HeadmapsError: the suffix is not .html or .htm.
    """
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise HeadmapsError(f"{what} is an HTML file: give a path ending in .html, got {path}")
    return path


def check_writable(path: str | os.PathLike, what: str = "output") -> Path:
    """Fail now, with one line, when ``path`` (a file or folder to be written) cannot be written.

    The nearest existing folder at or above ``path`` must accept a new file (checked by
    creating and removing one, which also catches read-only mounts and ``/proc``), and no
    existing part of the path may be a file where a folder is needed. Nothing is left
    behind.

    Args:
        path: where a command will write.
        what: how the message names it (``"--out"``, ``"the cache"``...).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        HeadmapsError: the path cannot be written; the message names it and the fix.
    """
    path = Path(path).expanduser()
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        if probe == path:
            probe = path.parent  # an existing file to be replaced: its folder must be writable
        else:
            raise HeadmapsError(f"cannot write {what} {path}: {probe} is a file, not a folder; "
                                "choose another path")
    try:
        os.close(os.open(tmp := _probe_name(probe), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(tmp)
    except OSError as err:
        raise HeadmapsError(f"cannot write {what} {path}: {probe} is not writable "
                            f"({err.strerror or err}); choose a writable folder") from None
    return path


def _probe_name(folder: Path) -> Path:
    return folder / f".headmaps-write-check-{os.getpid()}-{secrets.token_hex(4)}"


@contextlib.contextmanager
def staged_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Write a command's files into a temporary folder; move them to ``path`` on success only.

    A command that writes several files writes all of them or none: the files go into a
    fresh hidden folder beside ``path``; when the block ends without an error, a new
    ``path`` is that folder renamed (atomic), and an existing ``path`` receives each file by
    an atomic rename (files of earlier runs that this run does not write stay as they
    were). On an error or an interrupt the temporary folder is removed and ``path`` is
    untouched.
    """
    import shutil

    path = Path(path)
    check_writable(path, "the output folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = new_folder(path.parent, f".{path.name}-staging-", "")
    try:
        yield tmp
        if not path.exists():
            os.replace(tmp, path)
        else:
            for src in sorted(tmp.rglob("*")):
                dst = path / src.relative_to(tmp)
                if src.is_dir():
                    dst.mkdir(parents=True, exist_ok=True)
                else:
                    os.replace(src, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def new_folder(parent: Path, prefix: str, suffix: str) -> Path:
    """Create a new empty folder with a fresh random name (mode 0o777 & ~umask, as ``mkdir``)."""
    for _ in range(100):
        tmp = parent / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            os.mkdir(tmp, 0o777)
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"no free temporary name in {parent}")


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically."""
    write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


#: Formats :func:`write_figure` writes, by suffix.
FIGURE_SUFFIXES = (".png", ".svg", ".pdf")


def figure_path(path: str | os.PathLike) -> Path:
    """``path`` as a Path, or a one-line :class:`HeadmapsError` unless it is .png, .svg or .pdf."""
    path = Path(path)
    if path.suffix.lower() not in FIGURE_SUFFIXES:
        raise HeadmapsError(f"cannot plot to {path}: use a {', '.join(FIGURE_SUFFIXES)} file")
    return path


def write_figure(fig: Any, path: str | os.PathLike, dpi: int = 200) -> Path:
    """Write a matplotlib figure atomically; the format follows the suffix (.png, .svg, .pdf).

    The one way headmaps writes a figure: results build figures (``figure()``), never files.
    Text stays text in SVG and PDF (TrueType fonts), so a paper can restyle it.

    Raises:
        HeadmapsError: ``path`` is not a .png, .svg or .pdf file.
    """
    import matplotlib as mpl

    path = figure_path(path)
    suffix = path.suffix.lower()
    with mpl.rc_context({"svg.fonttype": "none", "pdf.fonttype": 42}), atomic_path(path) as tmp:
        fig.savefig(tmp, format=suffix[1:], dpi=dpi, bbox_inches="tight",
                    metadata={"Creator": "headmaps"} if suffix != ".svg" else None)
    return path


def header_path(table: str | os.PathLike) -> Path:
    """The JSON header beside a table file: ``scores.parquet`` -> ``scores.json``."""
    return Path(table).with_suffix(".json")


def table_path(path: str | os.PathLike, default_name: str) -> Path:
    """Resolve where a table goes: a folder gets ``default_name``; a file must be .parquet/.csv."""
    p = Path(path)
    if p.suffix.lower() not in TABLE_SUFFIXES:
        if p.suffix:
            raise HeadmapsError(f"cannot save to {p}: use a .parquet or .csv file, or a folder")
        p = p / default_name
    return p


def save_table(frame: pd.DataFrame, header: dict[str, Any], path: str | os.PathLike, *,
               show_paths: bool = False) -> Path:
    """Write ``frame`` (parquet or csv by suffix) and its JSON header, both atomically.

    The header goes through :func:`header_for_file`: no local paths unless ``show_paths``.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False)
    write_json(header_path(path), header_for_file(header, show_paths))
    return path


def load_table(path: str | os.PathLike, default_name: str, kind: str | None = None,
               what: str = "result") -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a table written by :func:`save_table` and its header.

    Args:
        path: the table file, or a folder holding ``default_name``.
        default_name: the table's file name inside a folder.
        kind: the header's expected ``"kind"``; a header of another kind raises
            :class:`HeadmapsError` saying ``path`` is not a headmaps ``what``.
        what: what the result is called in that error.

    Returns:
        ``(frame, header)``.
    """
    given, path = path, table_path(path, default_name)
    if not path.is_file():
        raise MissingFileError(f"no result file at {path}")
    try:
        frame = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
        header = json.loads(header_path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MissingFileError(f"{path} has no JSON header {header_path(path)} beside it") from None
    except (ValueError, OSError) as err:
        raise CorruptFileError(f"cannot read result {path}: {err}") from err
    if kind is not None and header.get("kind") != kind:
        raise HeadmapsError(f"{given} is not a headmaps {what} (kind={header.get('kind')!r})")
    return frame, header


def reads_result(what: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorate a results loader: a file it cannot make sense of is a :class:`CorruptFileError`.

    A table or header with missing keys, wrong types or impossible indices (a file
    edited by hand, truncated, or written by something else) raises ``KeyError``,
    ``TypeError``, ``ValueError`` or ``IndexError`` deep in the loader; this turns them into
    one message naming the file (the first path argument) and ``what`` it should be.
    """
    def wrap(load: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(load)
        def checked(*args: Any, **kwargs: Any) -> T:
            try:
                return load(*args, **kwargs)
            except HeadmapsError:
                raise
            except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
                path = next((a for a in (*args, *kwargs.values())
                             if isinstance(a, (str, os.PathLike))), "the file")
                raise CorruptFileError(f"{path} is not a readable headmaps {what} "
                                       f"({type(err).__name__}: {err})") from None
        return checked
    return wrap


def versions() -> dict[str, str]:
    """Versions of headmaps and the libraries that shape results."""
    import numpy
    import torch
    import transformers

    from ._version import __version__

    return {"headmaps": __version__, "torch": torch.__version__,
            "transformers": transformers.__version__, "numpy": numpy.__version__}


#: Keys of a run header (:func:`run_header`): what a documented table needs to be rerun.
RUN_HEADER_KEYS = ("command", "model_id", "seed", "sample", "versions", "date")


def command_line(script: str | os.PathLike, argv: Sequence[str] | None = None) -> str:
    """The shell command that runs ``script`` with ``argv`` (default ``sys.argv[1:]``).

    The script's path is relative to the working directory when it lies below it, so
    ``python benchmarks/bench_scan.py --ref-layers 0,29`` reads as it was typed.
    """
    path = Path(script).resolve()
    with contextlib.suppress(ValueError):
        path = path.relative_to(Path.cwd())
    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join(["python", str(path), *args])


def run_header(command: str | Sequence[str], model_id: str, seed: int | None,
               sample: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The provenance of one run, for a JSON header beside what it wrote.

    Args:
        command: the command (or commands) that made the output.
        model_id: the model it ran on.
        seed: the seed of its random choices (None when nothing is random).
        sample: what it ran over (relations, pairs per relation, templates, prompts,
            heads, ...), as the output's reader needs to know it.
        **extra: anything else to record (options, timings, notes).

    Returns:
        A dict with :data:`RUN_HEADER_KEYS` (``versions`` from :func:`versions`, ``date``
        the current UTC time in ISO 8601, ``machine`` the CPU, its precision flags and the
        GPU: :func:`headmaps.hardware.machine`) and ``extra``.
    """
    from .hardware import machine

    return {"command": command if isinstance(command, str) else list(command),
            "model_id": model_id, "seed": seed, "sample": sample, "versions": versions(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(), **extra}


def markdown_table(frame: pd.DataFrame, digits: int = 2) -> str:
    """A GitHub markdown table of ``frame`` (floats rounded)."""
    def fmt(v) -> str:
        if isinstance(v, float):
            if math.isnan(v):
                return "nan"
            return f"{v:.{digits}f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"
        return str(v)

    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |"
              for row in frame.itertuples(index=False)]
    return "\n".join(lines)
