"""`headmaps validate MODEL --experiment correlation|causal|multitoken`: the paper's checks."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import CorruptFileError, MissingFileError
from ..io import check_writable, staged_folder
from ..relations import TEMPLATE_SETS
from . import checks, common

#: Pairs per relation when --max-pairs is not given: keeps a run to minutes on a laptop CPU.
DEFAULT_MAX_PAIRS = {"correlation": 16, "multitoken": 16, "causal": 40}


def register(sub) -> None:
    """Add the ``validate`` subcommand."""
    p = sub.add_parser(
        "validate", help="correlation with inference, causal ablation, multi-token checks",
        description="Run one of the paper's validation experiments and write CSV tables, plots "
                    "and summary.md under --out.")
    common.add_model_args(p)
    common.add_big_model_args(p)
    p.add_argument("--experiment", required=True, choices=["correlation", "causal", "multitoken"])
    p.add_argument("--relations", default="all",
                   help="'all', or comma-separated built-in names / paths to JSON or CSV sets")
    p.add_argument("--templates", default=None, metavar="SET|FILE",
                   help="templates: a named set, 'headmaps' (the library's six, the default), "
                        "'paper' (the MAPS paper's four, as published) or 'both' (the tables "
                        "then report each set); or a file with one <X> per template (JSON "
                        "list, {'templates': [...]}, or one per line)")
    p.add_argument("--k", type=checks.positive_int, default=None,
                   help="top-k (default: per relation, 1 for copying and 10 otherwise; 3 and 25 "
                        "for vocabularies over 100k)")
    p.add_argument("--max-pairs", type=checks.nonnegative_int, default=None,
                   help="pairs per relation, a seeded subset (default: "
                        + ", ".join(f"{k} {v}" for k, v in DEFAULT_MAX_PAIRS.items())
                        + "; 0 for all)")
    p.add_argument("--first-target-token", action="store_true",
                   help="multitoken: also use multi-token targets, scored on their first token")
    p.add_argument("--batch-size", type=checks.positive_int, default=32,
                   help="prompts per forward pass")
    p.add_argument("--seed", type=checks.nonnegative_int, default=0,
                   help="seed of pair subsets and random heads")
    p.add_argument("--out", default=None,
                   help="output folder (default: validate-<model>-<experiment>)")
    common.add_projection_args(p)
    p.set_defaults(func=run)


def read_templates(path: str) -> list[str]:
    """Templates from a JSON list, a JSON object with ``templates``, or a text file."""
    if not Path(path).is_file():
        raise MissingFileError(f"--templates: no file at {path}")
    text = Path(path).read_text(encoding="utf-8")
    items: Any = None
    if path.endswith(".json"):
        try:
            doc = json.loads(text)
        except ValueError as err:
            raise CorruptFileError(f"{path}: not valid JSON: {err}") from None
        items = doc.get("templates") if isinstance(doc, dict) else doc
    else:
        items = [line.strip() for line in text.splitlines() if line.strip()]
    if not isinstance(items, list) or not items or not all(
            isinstance(t, str) and t.count("<X>") == 1 for t in items):
        raise CorruptFileError(f"{path}: every template must be a string holding <X> exactly once")
    return list(items)


def run(args: argparse.Namespace) -> int:
    """Run the experiment; save its run folder (tables, figure, summary.md, run.json)."""
    from .. import experiments as ex

    model = common.load_model(args)
    max_pairs = args.max_pairs if args.max_pairs is not None else DEFAULT_MAX_PAIRS[args.experiment]
    out = Path(args.out or f"validate-{model.model_id.replace('/', '_')}-{args.experiment}")
    check_writable(out, "--out")
    kw = dict(k=args.k, max_pairs=max_pairs or None, batch_size=args.batch_size, seed=args.seed,
              progress=True, projection=common.projection(args, model))
    rels = common.parse_relations(args.relations)
    if args.experiment != "causal":
        kw["templates"] = (args.templates if args.templates in TEMPLATE_SETS else
                           read_templates(args.templates) if args.templates else None)
    if args.experiment == "multitoken":
        kw["first_target_token"] = args.first_target_token
    run_experiment = {"correlation": ex.correlation, "multitoken": ex.multitoken,
                      "causal": ex.causal}[args.experiment]
    res = run_experiment(model, rels, **kw)
    with staged_folder(out) as tmp:  # every file or none
        res.save(tmp, command=common.command_line(args), **common.save_kwargs(args))
    print(f"{model.model_id}: {args.experiment} (static scores: projection {res.projection()})")
    print(res.to_frame().to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"wrote {out}/")
    return 0
