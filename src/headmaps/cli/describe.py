"""`headmaps describe MODEL --out DIR`: describe every head; coverage table and plot."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import HeadmapsError, OutOfRangeError
from . import common


def parse_layers(text: str | None, n_layers: int) -> list[int]:
    """``"10-29"``, ``"3"``, ``"0,2,5-7"`` or None (all) -> sorted layers, checked.

    Raises:
        HeadmapsError: bad syntax; OutOfRangeError: a layer out of ``0..n_layers-1``.
    """
    if text is None or text.strip() in ("", "all"):
        return list(range(n_layers))
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                a, b = (int(x) for x in part.split("-", 1))
            else:
                a = b = int(part)
        except ValueError:
            raise HeadmapsError(f"layers are written like 10-29 or 0,2,5-7; got {text!r}") from None
        if a > b:
            raise HeadmapsError(f"empty layer range {part!r}")
        for x in (a, b):
            if not 0 <= x < n_layers:
                raise OutOfRangeError(f"layer {x} is out of range: this model has layers "
                                      f"0..{n_layers - 1}")
        out.update(range(a, b + 1))
    return sorted(out)


def register(sub) -> None:
    """Add the ``describe`` subcommand."""
    p = sub.add_parser("describe", help="describe every head; coverage per layer",
                       description="Compute the salient operations of every head of the chosen "
                                   "layers, describe each, and write descriptions.jsonl, "
                                   "salient.parquet, coverage.csv and coverage.png to --out.")
    common.add_model_args(p)
    p.add_argument("--layers", default=None, help="layers, e.g. 10-29 or 0,2,5-7 (default all)")
    p.add_argument("--out", required=True, help="output folder")
    common.add_salient_args(p)
    common.add_describer_args(p, allow_none=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Describe heads and write the files."""
    from ..describe import coverage, describe_all, plot_coverage, save_descriptions
    from ..io import atomic_path, staged_folder
    from ..salient import salient_all

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise HeadmapsError(f"--out {out} exists and is not a folder")
    describer = common.make_describer(args)
    model = common.load_model(args)
    layers = parse_layers(args.layers, model.n_layers)
    skip = False if args.skip_nonwords == "none" else args.skip_nonwords
    res = salient_all(model, layers, n_tokens=args.tokens, n_mappings=args.mappings,
                      skip_nonwords=skip, progress=True, **common.projection_kwargs(args),
               **common.calibration_kwargs(args))
    descs = describe_all(res, describer, progress=True)
    cov = coverage(descs)
    with staged_folder(out) as tmp:  # every file or none
        res.save(tmp / "salient.parquet")
        save_descriptions(descs, tmp / "descriptions.jsonl")
        with atomic_path(tmp / "coverage.csv") as part:
            cov.to_csv(part, index=False)
        plot_coverage(cov, tmp / "coverage.png",
                      title=f"{model.model_id}: heads with a clear description ({describer.name})")
    print(f"{model.model_id}: {len(res)} heads described (projection "
          f"{common.projection_label(res)}, describer {describer.name})")
    print(cov.to_string(index=False))
    print(f"wrote {out}/descriptions.jsonl, coverage.csv, coverage.png, salient.parquet")
    return 0
