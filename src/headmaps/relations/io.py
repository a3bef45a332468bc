"""Read user relation sets from JSON and CSV files.

Accepted formats:

* JSON, a list of ``[source, target]`` pairs (the reference implementation's format)::

      [["France", "Paris"], ["Japan", "Tokyo"]]

* JSON, an object with ``pairs`` and optional metadata (see :mod:`.schema`)::

      {"name": "my_capitals", "default_k": 10, "pairs": [["France", "Paris"]]}

* CSV (``.csv``, comma) or TSV (``.tsv``, tab): two columns, source then target. A first
  row reading ``source,target`` (any case) is taken as a header; blank lines and lines
  starting with ``#`` are skipped.

Surrounding whitespace is stripped and duplicate pairs dropped (with a warning); any other
problem raises :class:`~headmaps.relations.errors.RelationDataError` naming the file, the
line or item, and the problem.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from .errors import RelationDataError
from .schema import CUSTOM_CATEGORY, DEFAULT_K, Pair, RelationInfo, parse_document, validate_pairs

#: File suffixes :func:`read_relation_file` understands.
SUFFIXES = (".json", ".csv", ".tsv")
_HEADER = ("source", "target")


def read_relation_file(path: str | Path) -> tuple[RelationInfo, list[Pair]]:
    """Read a user relation file (JSON, CSV or TSV, chosen by suffix).

    Args:
        path: the file.

    Returns:
        The metadata (defaults where the file gives none; name = file stem) and the pairs.

    Raises:
        RelationDataError: the file is malformed or has an unsupported suffix.
        FileNotFoundError: the file does not exist.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        return read_json(path)
    if suffix in (".csv", ".tsv"):
        return read_csv(path, delimiter="\t" if suffix == ".tsv" else ",")
    raise RelationDataError(f"{path}: unsupported file type {path.suffix or '(none)'!r}; "
                            f"use one of {', '.join(SUFFIXES)}")


def read_json(path: str | Path, *, strict: bool = False) -> tuple[RelationInfo, list[Pair]]:
    """Read a JSON relation file: a list of pairs or an object with ``pairs``.

    Args:
        path: the file.
        strict: validate as built-in data (every metadata field required, no duplicates,
            no surrounding whitespace).

    Raises:
        RelationDataError: invalid JSON, wrong structure or a bad pair.
    """
    path = Path(path)
    text = _read_text(path)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise RelationDataError(f"{path}: line {err.lineno} column {err.colno}: invalid JSON "
                                f"({err.msg})") from None
    if isinstance(doc, list) and not strict:
        pairs = validate_pairs(doc, str(path), strict=False, unit="item")
        return _default_info(path, len(pairs)), pairs
    return parse_document(doc, str(path), strict=strict, default_name=path.stem)


def read_csv(path: str | Path, *, delimiter: str = ",",
             header: bool | None = None) -> tuple[RelationInfo, list[Pair]]:
    r"""Read a two-column CSV relation file.

    Args:
        path: the file.
        delimiter: column separator (``","``; ``"\t"`` for TSV).
        header: whether the first row is a header; ``None`` detects a ``source,target`` row.

    Raises:
        RelationDataError: a row without exactly two columns, an empty cell, or no pairs.
    """
    path = Path(path)
    text = _read_text(path)
    items: list[list[str]] = []
    lines: list[int] = []
    reader = csv.reader(text.splitlines(keepends=True), delimiter=delimiter, strict=True)
    first = True
    try:
        for row in reader:
            line = reader.line_num
            if not row or all(not cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
                continue
            if first:
                first = False
                is_header = (header if header is not None
                             else tuple(c.strip().lower() for c in row) == _HEADER)
                if is_header:
                    continue
            if len(row) != 2:
                raise RelationDataError(f"{path}: line {line}: expected 2 columns "
                                        f"(source{delimiter}target), got {len(row)}: "
                                        f"{delimiter.join(row)[:60]!r}")
            items.append(row)
            lines.append(line)
    except csv.Error as err:
        raise RelationDataError(f"{path}: line {reader.line_num}: {err}") from None
    if not items:
        raise RelationDataError(f"{path}: no pairs")
    pairs = validate_pairs(items, str(path), strict=False, unit="line", numbers=lines)
    return _default_info(path, len(pairs)), pairs


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise RelationDataError(f"{path}: is a directory, not a relation file") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise RelationDataError(f"{path}: byte {err.start}: not UTF-8 text") from None


def _default_info(path: Path, n_pairs: int) -> RelationInfo:
    return RelationInfo(name=path.stem, category=CUSTOM_CATEGORY, description="",
                        default_k=DEFAULT_K,
                        source_note=f"user file {path}", prompt_template=None, n_pairs=n_pairs)
