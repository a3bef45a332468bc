"""`headmaps cache list|clean`: what the headmaps cache holds, and removing leftovers."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    """Add the ``cache`` subcommand."""
    p = sub.add_parser(
        "cache", help="list the headmaps cache, or clean leftovers of interrupted runs",
        description="The cache ($HEADMAPS_CACHE, default ~/.cache/headmaps) holds converted "
                    "models, assembled GGUF files, calibrations and describer replies. "
                    "`list` shows each item with its status and size; `clean` removes what "
                    "interrupted runs left and broken entries (--all: everything).")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    verbs.add_parser("list", help="show what the cache holds").set_defaults(func=run_list)
    c = verbs.add_parser("clean", help="remove leftovers of interrupted runs and broken entries")
    c.add_argument("--all", action="store_true",
                   help="remove everything (models are converted again on next use)")
    c.set_defaults(func=run_clean)


def _mb(n: int) -> str:
    return f"{n / 2**20:,.1f} MB"


def run_list(args: argparse.Namespace) -> int:
    """Print every cache item."""
    from ..models.cache import cache_root, list_cache

    items = list_cache()
    print(f"cache: {cache_root()} ({_mb(sum(i.size for i in items))} in {len(items)} items)")
    for i in items:
        print(f"  {i.kind:<12} {i.status:<10} {_mb(i.size):>12}  {i.path.name}")
    from ..projection import streamcache

    held = sum(i.size for i in items if i.kind == "stream")
    print(f"streams: {_mb(held)} of a {_mb(streamcache.budget(held))} bound "
          f"({streamcache.budget_origin()})")
    stale = [i for i in items if i.removable]
    if stale:
        print(f"{len(stale)} removable ({_mb(sum(i.size for i in stale))}): "
              "`headmaps cache clean` removes them")
    return 0


def run_clean(args: argparse.Namespace) -> int:
    """Remove leftovers (or everything)."""
    from ..models.cache import cache_root, clean

    removed = clean(everything=args.all)
    print(f"removed {len(removed)} items ({_mb(sum(i.size for i in removed))}) from "
          f"{cache_root()}")
    for i in removed:
        print(f"  {i.kind:<12} {i.status:<10} {i.path.name}")
    return 0
