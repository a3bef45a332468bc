"""`headmaps report MODEL -o report.html`: the self-contained HTML explorer of every head."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import add_model_args, load_model


def register(sub) -> None:
    """Add the ``report`` subcommand."""
    p = sub.add_parser(
        "report", help="write the HTML explorer of every head (offline, one file)",
        description="Write one self-contained HTML page (no network requests) with the model card, "
                    "a layers x heads heatmap per relation, a sortable table of every head, a "
                    "panel per head (salient operations, description, scores) and summaries. Scans "
                    "every relation unless --scan gives a saved scan.")
    add_model_args(p)
    p.add_argument("-o", "--output", type=Path, default=Path("report.html"),
                   help="HTML file (default report.html)")
    p.add_argument("--scan", type=Path, default=None,
                   help="a saved scan (folder with scores.parquet, or the file) instead of "
                        "scanning now")
    p.add_argument("--describe", choices=["pattern", "llm", "none"], default="pattern",
                   help="describe every head: offline pattern matcher, an LLM, or not (default "
                        "pattern)")
    p.add_argument("--no-salient", action="store_true",
                   help="no salient operations or descriptions; with --scan the model is not even "
                        "loaded")
    p.add_argument("--salient", type=Path, default=None, metavar="PATH",
                   help="saved salient operations (SalientAll.save) instead of computing them")
    p.add_argument("--descriptions", type=Path, default=None, metavar="PATH",
                   help="saved descriptions (descriptions.jsonl) instead of describing now")
    p.add_argument("--extras", type=Path, default=None, metavar="JSON",
                   help="extra per-head data in the report schema ({'L.H': {...}}), merged last")
    p.add_argument("--title", default=None, help="page title (default: headmaps · MODEL)")
    p.add_argument("--show-paths", action="store_true",
                   help="keep absolute local paths (model file, cache folder) in the page; "
                        "by default it shows file names only, so it can be shared")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint for --describe llm")
    p.add_argument("--llm-model", default="gpt-4o",
                   help="chat model for --describe llm (default gpt-4o)")
    p.add_argument("--api-key", default=None, help="API key (default: $OPENAI_API_KEY)")
    p.add_argument("--llm-timeout", type=float, default=60.0,
                   help="seconds per LLM request (default 60)")
    p.set_defaults(func=run)


def _llm_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"model": args.llm_model, "base_url": args.base_url, "api_key": args.api_key,
            "timeout": args.llm_timeout}


def run(args: argparse.Namespace) -> int:
    """Build the report."""
    from ..report import build
    from ..report import extras as ex
    from ..scoring import ScanResult

    scan = ScanResult.load(args.scan) if args.scan is not None else None
    want_salient = not args.no_salient
    model = None
    if scan is None or (want_salient and args.salient is None):
        model = load_model(args)
    if scan is None:
        from ..scoring import scan as run_scan

        scan = run_scan(model, "all", progress=True)
    extras: dict[str, Any] = {}
    if want_salient:
        if args.salient is not None:
            from ..salient import SalientAll

            salient = SalientAll.load(args.salient)
            ex.extras_from_salient(salient, extras)
            if args.describe != "none" and args.descriptions is None:
                from ..describe import describe_all, get_describer

                options = _llm_options(args) if args.describe == "llm" else {}
                ex.extras_from_descriptions(
                    describe_all(salient, get_describer(args.describe, **options), progress=True),
                    extras)
        else:
            describe = "none" if args.descriptions is not None else args.describe
            extras = ex.collect_extras(model, scan, describe, progress=True,
                                       llm_options=_llm_options(args))
    if args.descriptions is not None:
        from ..describe import load_descriptions

        ex.extras_from_descriptions(load_descriptions(args.descriptions), extras)
    for key, value in (ex.load_extras(args.extras) if args.extras is not None else {}).items():
        extras.setdefault(key, {}).update(value)
    path = build.write_report(args.output, scan, extras or None, title=args.title,
                              show_paths=args.show_paths)
    size = path.stat().st_size
    print(f"wrote {path} ({size / 1e6:.1f} MB): {scan.n_layers} layers x {scan.n_heads} heads, "
          f"{len(scan.relations)} relations, {len(extras)} heads with salient operations or "
          "descriptions")
    return 0
