"""The `headmaps` command: a thin layer over the Python API.

Each subcommand lives in its own module exposing ``register(subparsers)``, which adds
its parser and sets ``func`` to a function taking the parsed args and returning an exit
code. Tests call :func:`main` in-process: ``main(["info", "smollm2-135m"])``.

Projection: the flags ``--preset``, ``--source``, ``--fold-norms``, ``--biases``,
``--scale-embeddings``, ``--prefix``, ``--no-calibration`` and ``--stream-dtype`` become one
:class:`~headmaps.projection.Projection` through :func:`headmaps.projection_for`
(:func:`.common.projection`; :func:`.common.projection_of` where the call loads the model
itself), passed as ``projection=``; a command continuing a saved scan keeps its projection.
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
    cache,
    calibrate,
    circuits,
    describe,
    diff,
    head,
    info,
    plot,
    relations,
    report,
    scan,
    track,
    types,
    validate,
)

#: Subcommand modules, in the order ``--help`` lists them.
COMMANDS = [info, scan, head, describe, analyse, report, plot, validate, calibrate, relations,
            types, circuits, diff, track, cache]


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (exit code 2).

    The line names the command, the problem and where the help is:
    ``headmaps scan: error: argument --tau: must be in [0, 1], got 2 (see headmaps scan -h)``.
    """

    def error(self, message: str):  # noqa: D102 - argparse's hook
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        """Parse as argparse does; keep the arguments as ``argv`` (the command results record)."""
        argv = list(sys.argv[1:] if args is None else args)
        parsed = super().parse_args(argv, namespace)
        parsed.argv = argv
        return parsed


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = OneLineParser(
        prog="headmaps",
        description="What does every attention head do? MAPS from the parameters alone.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser.add_argument("--version", action="version", version=f"headmaps {__version__}")
    parser.add_argument("--show-paths", dest="show_local_paths", action="store_true",
                        help="keep absolute local paths in the JSON headers of results "
                             "(by default only file names)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 bad input or a failure, 130 interrupted).

    Every failure is one line on stderr, its traceback only under ``-v``: a
    :class:`~headmaps.errors.HeadmapsError` (bad input: the message says what to
    change), an ``OSError`` (a disk or permission fault, named with its path), an
    interrupt, or anything else (a bug: the line says so and asks for ``-v``). Output
    paths are checked before any work (:func:`~headmaps.cli.checks.preflight`).
    """
    from .checks import preflight

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version, or a usage error already printed
        return done.code if isinstance(done.code, int) else 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        preflight(args)
        return int(args.func(args) or 0)
    except HeadmapsError as err:
        failure, message, code = err, str(err), 2
    except KeyboardInterrupt as err:
        failure, message, code = err, "interrupted; files being written were not kept", 130
    except OSError as err:
        where = f" ({err.filename})" if getattr(err, "filename", None) else ""
        failure, message, code = err, f"{err.strerror or err}{where}", 2
    except Exception as err:  # noqa: BLE001 - the last line of defence of a command-line tool
        failure, code = err, 1
        message = (f"internal error: {type(err).__name__}: {err} (a bug in headmaps; rerun with "
                   "-v for the traceback and report it)")
    if args.verbose:
        traceback.print_exception(failure, file=sys.stderr)
    print(f"headmaps: error: {' '.join(message.split())}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
