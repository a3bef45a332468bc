"""`headmaps track CKPT_A CKPT_B ...`: every head's scores over a series of checkpoints."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import HeadmapsError
from . import checks, common


def step_list(text: str) -> list[int]:
    """``--steps 0,100,200``: comma-separated non-negative integers."""
    try:
        out = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"steps are comma-separated integers, got {text!r}"
                                         ) from None
    if not out or min(out) < 0:
        raise argparse.ArgumentTypeError(f"steps are non-negative integers, got {text!r}")
    return out


def register(sub) -> None:
    """Add the ``track`` subcommand."""
    p = sub.add_parser(
        "track", help="follow every head over a series of checkpoints",
        description="Score every checkpoint of one architecture (relation scores and head "
                    "types, from parameters), each in its own job (local processes or Dask "
                    "tasks), and report the step at which each head first crosses its rule.",
    )
    p.add_argument("checkpoints", nargs="+", metavar="CKPT",
                   help="checkpoints, first to last: folders, hub ids or aliases")
    common.add_load_args(p)
    p.add_argument("--steps", type=step_list, default=None,
                   help="training step of each checkpoint, e.g. 0,100,200 (default: the number "
                        "ending each name, else 0, 1, ...)")
    common.add_relation_args(p, none=True, tau_help="relation threshold a head crosses")
    p.add_argument("--no-types", action="store_true", help="skip the head types")
    p.add_argument("--composition", action="store_true",
                   help="also track headmaps.composition (where installed)")
    p.add_argument("--seed", type=checks.nonnegative_int, default=0,
                   help="seed of the head types' token sample (default 0)")
    p.add_argument("--workers", type=checks.positive_int, default=None,
                   help="local worker processes (1: in this process; default min(n, cpus, 4))")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="a Dask scheduler (tcp://host:8786): every checkpoint is a Dask task "
                        "(needs headmaps[dask])")
    p.add_argument("--retries", type=checks.nonnegative_int, default=1,
                   help="reruns of a failed checkpoint (default 1)")
    p.add_argument("--allow-failed", action="store_true",
                   help="exit 0 even when a checkpoint failed after its retries (NaN scores)")
    common.add_projection_args(p)
    p.add_argument("--out", type=Path, default=None,
                   help="folder for track.parquet (+ track.json), summary.md and track.png")
    p.add_argument("--html", type=checks.html_file, default=None, metavar="FILE",
                   help="also write the timeline view: every head's first crossing and its "
                        "score over the steps, one self-contained page")
    p.add_argument("--top", type=checks.positive_int, default=5,
                   help="heads per relation or type in the summary and the figure")
    p.set_defaults(func=run)


def _client(address: str | None):
    """A Dask client for ``--scheduler``, or None."""
    if address is None:
        return None
    try:
        from distributed import Client
    except ImportError:
        raise HeadmapsError("--scheduler needs Dask: pip install 'headmaps[dask]'") from None
    try:
        return Client(address, timeout="20s")
    except (OSError, TimeoutError) as err:
        raise HeadmapsError(f"cannot reach the Dask scheduler {address}: {err}") from None


def run(args: argparse.Namespace) -> int:
    """Track the series, print the summary, write the outputs; non-zero when one failed."""
    from ..track import track

    text = args.relations.strip()
    relations = None if text == "none" else common.parse_relations(text)
    load = common.load_options(args)
    client = _client(args.scheduler)
    try:
        res = track(args.checkpoints, steps=args.steps, relations=relations,
                    types=not args.no_types, composition=args.composition, client=client,
                    workers=args.workers, retries=args.retries, progress=True, k=args.k,
                    tau=args.tau, min_pairs=args.min_pairs, seed=args.seed,
                    device=load["device"], dtype=load["dtype"], lazy=load["lazy"],
                    allow_pickle=load["allow_pickle"], projection=common.projection_of(args))
    finally:
        if client is not None:
            client.close()
    summary = res.summary_markdown(n=args.top)
    print(summary, end="")
    if args.out is not None:
        plotted = res.types or res.relations
        out = common.save_folder(args.out, res, summary, args,
                                 (lambda: res.figure(n=args.top)) if plotted else None,
                                 "track.png")
        print(common.written(out))
    if args.html is not None:
        from ..explorer.timeline import write_timeline_report

        write_timeline_report(args.html, res, show_paths=common.save_kwargs(args)["show_paths"])
        print(f"wrote {args.html}")
    if res.failed and not args.allow_failed:
        first = min(res.failed)
        print(f"headmaps track: error: {len(res.failed)} checkpoint(s) failed after "
              f"{args.retries} retries (first: {res.checkpoints[first]}: {res.failed[first]}); "
              "--allow-failed keeps them as NaN", file=sys.stderr)
        return 1
    return 0
