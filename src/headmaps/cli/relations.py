"""`headmaps relations list|show|coverage`: the relation library and its tokenisation report."""

from __future__ import annotations

import argparse
import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..io import write_text
from ..relations import MIN_PAIRS
from . import checks
from .common import add_model_args, load_model

_FORMATS = ("text", "markdown", "csv", "json")


def register(sub) -> None:
    """Add the ``relations`` subcommand with ``list``, ``show`` and ``coverage``."""
    p = sub.add_parser("relations", help="list, show and check the relation datasets",
                       description="The built-in relation datasets (and user files): list them, "
                                   "show one, and report how many pairs are single tokens for a "
                                   "model.")
    rsub = p.add_subparsers(dest="relations_command", metavar="ACTION")
    rsub.required = True

    p_list = rsub.add_parser("list", help="name, category and size of every built-in relation",
                             description="Name, category, number of pairs, default k and "
                                         "description of every built-in relation.")
    _add_format(p_list)
    p_list.set_defaults(func=run_list)

    p_show = rsub.add_parser("show", help="metadata and pairs of one relation",
                             description="Metadata and pairs of a built-in relation or a user "
                                         ".json/.csv file; with --model, which pairs survive "
                                         "tokenisation.")
    p_show.add_argument("name", help="built-in relation name or path to a .json/.csv/.tsv file")
    p_show.add_argument("--model", default=None,
                        help="also tokenise for this model (alias, hub id, folder, .gguf)")
    p_show.add_argument("--limit", type=checks.nonnegative_int, default=20,
                        help="pairs to print (default 20; 0 = all)")
    _add_tokenise_args(p_show)
    p_show.set_defaults(func=run_show)

    p_cov = rsub.add_parser("coverage", help="single-token pairs of every relation for a model",
                            description="How many pairs of every relation (built-in or --extra) "
                                        "survive tokenisation on MODEL; which relations are valid.")
    add_model_args(p_cov)
    p_cov.add_argument("--extra", nargs="*", default=[], metavar="FILE",
                       help="user relation files to include")
    p_cov.add_argument("-o", "--out", default=None,
                       help="also write the table to this file (.csv or .json)")
    _add_tokenise_args(p_cov)
    _add_format(p_cov)
    p_cov.set_defaults(func=run_coverage)


def _add_format(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=_FORMATS, default="text", help="table format (default text)")


def _add_tokenise_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--min-pairs", type=checks.positive_int, default=MIN_PAIRS,
                   help=f"kept pairs for a relation to be valid (default {MIN_PAIRS})")
    p.add_argument("--space", choices=("always", "prefer", "never"), default="always",
                   help="leading-space rule (default always, as in the paper)")


def run_list(args: argparse.Namespace) -> int:
    """Print the built-in relations."""
    from .. import relations as R

    rows = []
    for name in R.names():
        info = R.info(name)
        rows.append({"relation": name, "category": info.category, "pairs": info.n_pairs,
                     "k": info.default_k, "description": info.description})
    print(format_table(rows, args.format))
    return 0


def run_show(args: argparse.Namespace) -> int:
    """Print one relation's metadata and pairs (and its tokenisation with --model)."""
    from .. import relations as R

    info, pairs = R.resolve(args.name)
    fields = {"relation": info.name, "category": info.category, "description": info.description,
              "pairs": info.n_pairs, "default k": info.default_k, "source": info.source_note,
              "prompt template": info.prompt_template}
    for key, value in info.extra.items():
        if key != "excluded" and isinstance(value, str):
            fields[key] = value
    if isinstance(info.extra.get("excluded"), dict):
        fields["excluded"] = ", ".join(info.extra["excluded"])
    width = max(map(len, fields))
    for key, value in fields.items():
        if value not in (None, ""):
            shown = repr(value) if key == "prompt template" else value
            print(f"{key:<{width}}  {shown}")

    status: dict[tuple[str, str], str] = {}
    if args.model:
        model = load_model(argparse.Namespace(model=args.model, device=None, dtype=None))
        prep = R.prepare(model, pairs, min_pairs=args.min_pairs, space=args.space, name=info.name)
        status = {pair: "kept" for pair in prep.kept}
        status.update({(s, t): reason for s, t, reason in prep.dropped})
        counts = ", ".join(f"{n} {r}" for r, n in prep.drop_counts().items()) or "none dropped"
        print(f"{'model':<{width}}  {model.model_id}")
        print(f"{'single-token':<{width}}  {prep.n_pairs} of {prep.n_total} pairs ({counts}); "
              f"{'valid' if prep.valid else 'NOT valid'} (min {args.min_pairs})")
    shown = pairs if args.limit <= 0 else pairs[: args.limit]
    print()
    src_w = max((len(s) for s, _ in shown), default=0)
    tgt_w = max((len(t) for _, t in shown), default=0) if status else 0
    for source, target in shown:
        mark = f"  [{status[(source, target)]}]" if status else ""
        print(f"  {source:<{src_w}}  ->  {target:<{tgt_w}}{mark}".rstrip())
    if len(shown) < len(pairs):
        print(f"  ... {len(pairs) - len(shown)} more (--limit 0 shows all)")
    return 0


def run_coverage(args: argparse.Namespace) -> int:
    """Print the coverage table for a model."""
    from .. import relations as R

    model = load_model(args)
    rows = coverage_rows(model, [*R.names(), *args.extra], min_pairs=args.min_pairs,
                         space=args.space)
    print(format_table(rows, args.format))
    n_valid = sum(r["valid"] for r in rows)
    if args.format == "text":
        print(f"\n{n_valid} of {len(rows)} relations valid on {model.model_id} "
              f"(>= {args.min_pairs} single-token pairs, space rule '{args.space}')")
    if args.out:
        out = Path(args.out)
        fmt = "json" if out.suffix.lower() == ".json" else "csv"
        write_text(out, format_table(rows, fmt) + "\n")
    return 0


def coverage_rows(model: Any, relations: Sequence[str], *, min_pairs: int = MIN_PAIRS,
                  space: str = "always") -> list[dict]:
    """One row per relation: category, pairs, kept, drop counts, identical, valid."""
    from .. import relations as R

    rows = []
    for name in relations:
        info, pairs = R.resolve(name)
        prep = R.prepare(model, pairs, min_pairs=min_pairs, space=space, name=info.name)
        s = prep.summary()
        rows.append({"relation": info.name, "category": info.category, "pairs": s["pairs"],
                     "kept": s["kept"],
                     "source_multi": s["source_multi"], "target_multi": s["target_multi"],
                     "identical": s["identical"], "valid": s["valid"]})
    return rows


def format_table(rows: list[dict], fmt: str = "text") -> str:
    """Render rows (dicts with the same keys) as text, markdown, csv or json."""
    if fmt == "json":
        return json.dumps(rows, indent=2, ensure_ascii=False)
    if not rows:
        return ""
    keys = list(rows[0])
    cells = [[_cell(r[k]) for k in keys] for r in rows]
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(keys)
        writer.writerows([[r[k] for k in keys] for r in rows])
        return buf.getvalue().rstrip("\n")
    numeric = [all(isinstance(r[k], int | float) and not isinstance(r[k], bool) for r in rows)
               for k in keys]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]

    def line(values: list[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return ("| " + " | ".join(parts) + " |") if fmt == "markdown" else "  ".join(parts).rstrip()

    out = [line(keys)]
    if fmt == "markdown":
        out.append("| " + " | ".join(("-" * (w - 1) + ":") if num else "-" * w
                                     for w, num in zip(widths, numeric)) + " |")
    else:
        out.append("  ".join("-" * w for w in widths))
    out += [line(c) for c in cells]
    return "\n".join(out)


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
