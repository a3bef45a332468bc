"""Time `hm.track` over a series of checkpoints: sequential, local processes, Dask.

The series: ``--n`` checkpoints of one seeded random Llama (``--d-model``, ``--layers``,
8 heads, a word-level vocabulary of ``--vocab`` words), each a perturbation of the
previous one, saved as Hugging Face folders. Every mode tracks the same folders with the
same plan (head types, no relations) in the same run:

* one checkpoint scored in this process (load + score: "one scan");
* ``workers=1``: every checkpoint in this process, one after the other;
* ``workers=2``: two spawned local processes;
* a Dask ``LocalCluster`` (2 worker processes, 1 thread each).

Targets of the issue: Dask <= 0.65 x sequential; sequential over n checkpoints <= n x one.
The numbers depend on the CPU (the run header records it) and on what else runs on it.

Run::

    python benchmarks/bench_track.py --out docs/results/track/bench-track.txt
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import run_with_report  # noqa: E402


def write_series(folder: Path, n: int, d_model: int, layers: int, vocab: int,
                 seed: int) -> list[str]:
    """``n`` checkpoints of one random Llama, each the previous one plus a little noise."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {w: i for i, w in enumerate(["[UNK]", "[PAD]", "<s>"]
                                        + [f"w{i:05d}" for i in range(vocab - 3)])}
    tk = Tokenizer(models.WordLevel(words, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]",
                                  bos_token="<s>")
    config = transformers.LlamaConfig(hidden_size=d_model, intermediate_size=2 * d_model,
                                      num_hidden_layers=layers, num_attention_heads=8,
                                      num_key_value_heads=8, vocab_size=vocab,
                                      max_position_embeddings=256, tie_word_embeddings=False,
                                      bos_token_id=2, pad_token_id=1, eos_token_id=None)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config)
    paths = []
    for i in range(n):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.01 * torch.randn_like(p))
        path = folder / f"step-{100 * i}"
        model.save_pretrained(path)
        tok.save_pretrained(path)
        paths.append(str(path))
    return paths


def run(args: argparse.Namespace) -> dict:
    """Time every mode on the same folders; print times and ratios."""
    import headmaps as hm
    from headmaps.track import plan_series, score_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        paths = write_series(Path(tmp), args.n, args.d_model, args.layers, args.vocab, args.seed)
        kw = dict(relations=None, types=True, seed=args.seed)
        t = time.perf_counter()
        first = hm.load(paths[0])
        score_checkpoint(paths[0], plan_series(first, None, types=True, seed=args.seed), 0)
        one = time.perf_counter() - t
        times: dict[str, float] = {}
        results = {}
        for name, extra in (("sequential (workers=1)", {"workers": 1}),
                            ("local processes (workers=2)", {"workers": 2})):
            t = time.perf_counter()
            results[name] = hm.track(paths, **kw, **extra)
            times[name] = time.perf_counter() - t
        from distributed import Client, LocalCluster

        t = time.perf_counter()
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            start = time.perf_counter() - t
            t = time.perf_counter()
            results["dask LocalCluster (2 x 1 thread)"] = hm.track(paths, client=client, **kw)
            times["dask LocalCluster (2 x 1 thread)"] = time.perf_counter() - t
    seq = times["sequential (workers=1)"]
    base = results["sequential (workers=1)"].type_scores
    print(f"# hm.track over {args.n} checkpoints (Llama d_model {args.d_model}, {args.layers} "
          f"layers x 8 heads, vocabulary {args.vocab}; head types, no relations)\n")
    print(f"torch threads in this process: {torch.get_num_threads()}\n")
    print("| mode | seconds | / sequential | max abs diff of type scores vs sequential |")
    print("|---|---|---|---|")
    print(f"| one checkpoint in this process (load + score) | {one:.1f} | - | - |")
    for name, s in times.items():
        diff = float(np.nanmax(np.abs(results[name].type_scores - base)))
        print(f"| {name} | {s:.1f} | {s / seq:.2f} | {diff:.1e} |")
    print(f"\nDask cluster start (not in its time): {start:.1f} s")
    dask = times["dask LocalCluster (2 x 1 thread)"]
    print(f"Dask / sequential = {dask / seq:.2f} (target <= 0.65: "
          f"{'met' if dask / seq <= 0.65 else 'MISSED'}); sequential / (n x one) = "
          f"{seq / (args.n * one):.2f} (target <= 1: {'met' if seq <= args.n * one else 'MISSED'})")
    return {"checkpoints": args.n, "d_model": args.d_model, "layers": args.layers,
            "vocab": args.vocab, "seconds": {"one": one, **times, "dask_start": start}}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=8, help="checkpoints")
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="random-llama-series", help=argparse.SUPPRESS)
    run_with_report(ap, argv, __file__, run)


if __name__ == "__main__":
    main()
