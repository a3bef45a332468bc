"""Atomic file writing and the self-describing result format (table + JSON header).

Every result is written as a tidy table (``.parquet`` or ``.csv``) plus a JSON header
beside it (same stem, ``.json``) holding the model, preset, options and versions. Files
are written to a temporary name and renamed, so an interrupted run never leaves a
half-written file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import CorruptFileError, HeadmapsError

TABLE_SUFFIXES = (".parquet", ".csv")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results should read like any file
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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


def save_table(frame: pd.DataFrame, header: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``frame`` (parquet or csv by suffix) and its JSON header, both atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False)
    write_json(header_path(path), header)
    return path


def load_table(path: str | os.PathLike, default_name: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a table written by :func:`save_table` and its header."""
    path = table_path(path, default_name)
    if not path.is_file():
        raise FileNotFoundError(f"no result file at {path}")
    try:
        frame = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
        header = json.loads(header_path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} has no JSON header {header_path(path)} beside it") from None
    except (ValueError, OSError) as err:
        raise CorruptFileError(f"cannot read result {path}: {err}") from err
    return frame, header


def versions() -> dict[str, str]:
    """Versions of headmaps and the libraries that shape results."""
    import numpy
    import torch
    import transformers

    from ._version import __version__

    return {"headmaps": __version__, "torch": torch.__version__,
            "transformers": transformers.__version__, "numpy": numpy.__version__}
