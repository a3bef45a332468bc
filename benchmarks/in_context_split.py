"""The in-context score on design and held-out relations, from a correlation run folder.

The split was fixed before any evaluation: 8 design relations drawn with seed 2026 from
the registry's relation names (sorted), the rest held out. The design relations chose
between the candidate estimators (the two-position attention of ``phi_ctx``, and ``phi``
times the static share of attention to the source); the held-out relations report it.
Prints, per template set of the run (``headmaps``, ``paper``), the median over each
group of relations of every correlation column.

Usage::

    python benchmarks/in_context_split.py --from out/ictx-smollm2 --out split.txt
"""

from __future__ import annotations

import argparse

import numpy as np
from _report import run_with_report

#: Seed and size of the design split (fixed before the first evaluation).
SPLIT_SEED, N_DESIGN = 2026, 8



def design_relations() -> set[str]:
    """The 8 design relations (the rest of the registry is held out)."""
    import headmaps as hm

    names = sorted(hm.relations.names())
    return set(np.random.default_rng(SPLIT_SEED).choice(names, N_DESIGN, replace=False).tolist())


def run(args) -> dict:
    import pandas as pd

    from headmaps.experiments.results import MEDIAN_COLUMNS, CorrelationResult

    res = CorrelationResult.load(args.from_)
    args.model = res.model_id
    design = design_relations()
    print(f"model {res.model_id}, projection {res.projection()}; design relations: "
          f"{', '.join(sorted(design))}")
    sets = res.per_set if len(res.per_set) else res.per_relation.assign(templates="run")
    rows = []
    for (which, group), frame in sets.assign(
            group=np.where(sets["relation"].isin(design), "design", "held-out")).groupby(
            ["templates", "group"], sort=False):
        rows.append({"templates": which, "relations": group, "n": len(frame),
                     **frame[MEDIAN_COLUMNS].median().round(3).to_dict()})
    print(pd.DataFrame(rows).to_string(index=False))
    if len(res.per_template):
        t = res.per_template.assign(
            relations=np.where(res.per_template["relation"].isin(design), "design", "held-out"))
        cols = ["corr_with_context", "corr_ctx_static", "corr_oracle", "ceiling_ctx"]
        print("\nPer template (median over relations), by whether the prompt ends with the "
              "source:")
        print(t.groupby(["ends_with_source", "relations", "template"], sort=False)[cols]
              .median().round(3).to_string())
    return {"from": str(args.from_), "design": sorted(design)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="from_", required=True, help="a correlation run folder")
    run_with_report(ap, argv, __file__, run, seeded=False)


if __name__ == "__main__":
    main()
