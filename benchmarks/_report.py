"""What the benchmark scripts share: keep what they print, and save it with a run header.

A benchmark given ``--out FILE`` writes its printed report to ``FILE`` and a JSON header
beside it (``FILE`` with the suffix ``.json``: :func:`headmaps.io.header_path`) holding
the command, model, seed, sample, versions and date (:func:`headmaps.io.run_header`);
both writes are atomic.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from headmaps.io import command_line, header_path, run_header, write_json, write_text


class _Tee(io.TextIOBase):
    """A text stream that writes to the real stdout and keeps a copy."""

    def __init__(self, real: Any) -> None:
        self.real, self.copy = real, io.StringIO()

    def write(self, s: str) -> int:
        self.real.write(s)
        return self.copy.write(s)

    def flush(self) -> None:
        self.real.flush()


@contextlib.contextmanager
def recorded() -> Iterator[io.StringIO]:
    """Print as usual inside the block; the yielded buffer holds a copy of the output."""
    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        yield tee.copy


def save_report(out: str | Path, text: str, header: dict[str, Any]) -> Path:
    """Write ``text`` to ``out`` and ``header`` as JSON beside it; return the header's path."""
    write_text(out, text)
    write_json(header_path(out), header)
    return header_path(out)


def run_with_report(ap: Any, argv: Sequence[str] | None, script: str,
                    run: Callable[[Any], dict], seeded: bool = True) -> Any:
    """Add ``--out`` to the parser ``ap``, parse ``argv`` and call ``run(args)``.

    ``run`` prints the report and returns the sample it ran over; with ``--out`` the
    printed report and its run header (``args.model``, ``args.seed`` when ``seeded``)
    are saved. Returns the parsed arguments.
    """
    ap.add_argument("--out", default=None,
                    help="also write the report here, with a JSON run header beside it")
    args = ap.parse_args(argv)
    with recorded() as log:
        sample = run(args)
    if args.out:
        seed = args.seed if seeded else None
        header = run_header(command_line(script, argv), args.model, seed, sample)
        print(f"wrote {args.out} and {save_report(args.out, log.getvalue(), header)}")
    return args
