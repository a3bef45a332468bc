"""The `headmaps` command: a thin layer over the Python API.

Each subcommand lives in its own module exposing ``register(subparsers)``, which adds
its parser and sets ``func`` to a function taking the parsed args and returning an exit
code. Tests call :func:`main` in-process: ``main(["info", "smollm2-135m"])``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Sequence

from .._version import __version__
from ..errors import HeadmapsError
from . import (
    analyse,
    calibrate,
    describe,
    diff,
    head,
    info,
    plot,
    relations,
    report,
    scan,
    types,
    validate,
)

#: Subcommand modules, in the order ``--help`` lists them.
COMMANDS = [info, scan, head, describe, analyse, report, plot, validate, calibrate, relations,
            types, diff]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="headmaps",
        description="What does every attention head do? MAPS from the parameters alone.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser.add_argument("--version", action="version", version=f"headmaps {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 bad input).

    Only a :class:`~headmaps.errors.HeadmapsError` (bad input: the message says what to
    change) becomes a one-line error, with its traceback too under ``-v``. Any other
    exception is a bug and propagates with its traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except HeadmapsError as err:
        if args.verbose:
            traceback.print_exc(file=sys.stderr)
        print(f"headmaps: error: {err}", file=sys.stderr)
        return 2

if __name__ == "__main__":
    sys.exit(main())
