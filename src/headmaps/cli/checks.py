"""Checks the CLI makes before any work: option ranges at parse time, output paths up front.

Each ``*_type`` function is an argparse ``type=``: it turns the text into a value or
raises :class:`argparse.ArgumentTypeError` with the allowed range, which the parser prints
as one line. :func:`preflight` runs after parsing and before the command loads a model:
every output path the command will write must be writable.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from pathlib import Path

from ..errors import HeadmapsError, MissingFileError
from ..io import check_page_path, check_writable
from ..relations.registry import TEMPLATE_SETS


def _number(text: str, kind: type) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def int_at_least(low: int) -> Callable[[str], int]:
    """An integer option ``>= low``."""
    def parse(text: str) -> int:
        value = int(_number(text, int))
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {value}")
        return value
    return parse


#: counts, k, sizes: at least 1
positive_int = int_at_least(1)
#: seeds, "0 means all" options: at least 0
nonnegative_int = int_at_least(0)


def unit_interval(text: str) -> float:
    """A threshold in ``[0, 1]`` (tau, fractions that may be 0 or 1)."""
    value = float(_number(text, float))
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value:g}")
    return value


def fraction(text: str) -> float:
    """A fraction in ``(0, 1)`` (a significance level, a share that cannot be 0 or 1)."""
    value = float(_number(text, float))
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {value:g}")
    return value


def positive_float(text: str) -> float:
    """A positive number (seconds, ...)."""
    value = float(_number(text, float))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {value:g}")
    return value


def memory_spec(text: str) -> str:
    """``--max-memory DEVICE=SIZE,...``: checked now, passed on as written."""
    from ..errors import HeadmapsError
    from ..models.bigmodel import parse_max_memory

    try:
        parse_max_memory(text)
    except HeadmapsError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


#: Arguments that name a file or folder a command reads, and how the error message calls them.
INPUT_ARGS = {"scan": "--scan", "from_": "--from", "extras": "--extras", "salient": "--salient",
              "descriptions": "--descriptions", "templates": "--templates",
              "template_file": "--template-file", "description_scores": "--description-scores"}

#: Words an input argument takes that name no file (``--templates both``).
NAMED_INPUTS = {"templates": TEMPLATE_SETS}

#: Arguments that name something a command writes, and how the error message calls them.
OUTPUT_ARGS = {"out": "--out", "output": "-o/--output", "offload_folder": "--offload-folder",
               "html": "--html"}


def html_file(text: str) -> Path:
    """``--html FILE``: a path ending in .html (checked before any model is loaded)."""
    try:
        return check_page_path(text, "the page")
    except HeadmapsError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def preflight(args: argparse.Namespace) -> None:
    """Check every input path in ``args`` exists and every output path is writable, up front.

    Runs before any model is loaded or anything computed.

    The cache and the calibration store are checked where they are first written (the
    model cache before a conversion starts, the store before a calibration runs), since a
    read-only cache that already holds what a run needs is fine.

    Raises:
        HeadmapsError: one line naming the path and the fix.
    """
    for dest, flag in INPUT_ARGS.items():
        value = getattr(args, dest, None)
        if value in NAMED_INPUTS.get(dest, ()):
            continue
        if isinstance(value, (str, os.PathLike)) and not Path(value).exists():
            raise MissingFileError(f"{flag} {value}: no such file or folder")
    for dest, flag in OUTPUT_ARGS.items():
        value = getattr(args, dest, None)
        if value is not None and str(value) != "-":
            check_writable(Path(value), flag)
