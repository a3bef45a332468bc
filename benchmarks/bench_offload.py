"""Cost of disk offload for the validation experiments, and its exactness, in one run.

Loads SmolLM2-135M twice: plainly, and with a CPU memory budget far below its size so that
accelerate puts most blocks on the disk (``hm.load(..., max_memory={"cpu": ...},
offload_folder=...)``). Runs the same dynamic scores on both, checks that they are
identical, and prints the time of each and their ratio (the two runs share the machine's
load, so only the ratio means something).

Usage::

    python benchmarks/bench_offload.py [--cpu-budget 150MB] [--max-pairs 16]
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time

import numpy as np

import headmaps as hm
from headmaps.experiments.dynamic import dynamic_scores

ARRAYS = ("with_context", "without_context", "supp_with_context", "supp_without_context")


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print its lines."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--cpu-budget", default="150MB")
    p.add_argument("--relations", default="country_to_capital,name_copying")
    p.add_argument("--max-pairs", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=16)
    args = p.parse_args(argv)
    rels = args.relations.split(",")
    templates = hm.relations.templates()[:2]
    plain = hm.load(args.model)
    with tempfile.TemporaryDirectory() as off:
        big = hm.load(args.model, max_memory={"cpu": args.cpu_budget}, offload_folder=off)
        placed = collections.Counter(big.hf_model.hf_device_map.values())
        print(f"{args.model} with cpu budget {args.cpu_budget}: modules placed {dict(placed)}")
        kw = dict(max_pairs=args.max_pairs, batch_size=args.batch_size)
        plain.hf_model  # noqa: B018 - build both models before timing
        t0 = time.perf_counter()
        a = dynamic_scores(plain, rels, templates, **kw)
        t1 = time.perf_counter()
        b = dynamic_scores(big, rels, templates, **kw)
        t2 = time.perf_counter()
    n = sum(a.n_pairs.values()) * len(templates)
    same = all(np.array_equal(getattr(a, k), getattr(b, k)) for k in ARRAYS)
    print(f"{n} prompts: plain {t1 - t0:.1f} s, offloaded {t2 - t1:.1f} s, "
          f"ratio {(t2 - t1) / (t1 - t0):.2f}; dynamic scores identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
