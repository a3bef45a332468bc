"""The through-the-model source (``token_alone``): its cost against ``norms``, and bfloat16.

    PYTHONPATH=src python benchmarks/bench_projection.py --model smollm2-135m \
        [--rows 8192] [--out FILE.md]

Measured in one run, on the same token rows (``--rows`` valid tokens drawn with
``--seed``; ``0`` = the whole vocabulary) and every layer:

* time of the ``norms`` sources, of ``token_alone`` after the model's document-start
  token (:func:`headmaps.projection.document_prefix`) in the order it was first written
  (:func:`~headmaps.projection.token_alone_reference`, "before"), fused in float32 and
  fused with bfloat16 operands ("after"); each is the best of ``--repeats`` rounds, one
  call of each per round, and the ratios are what the script reports;
* what a bfloat16 stream changes against the float32 one, per layer and head: the
  stream's relative error, the overlap of the 15 most salient tokens (saliency
  ``||x W_VO|| / ||x||`` over the rows), whether their top-5 OV targets keep their
  order, and the overlap of the 10 preferred key tokens of the QK half;

The relation scan needs no whole-vocabulary stream: its source rows are always float32.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from _report import run_with_report

import headmaps as hm
from headmaps import projection as P
from headmaps.models import qk as Q
from headmaps.projection.stream import _alone_start as alone_start
from headmaps.salient.tokens import valid_mask


def interleaved(runs: dict, repeats: int) -> tuple[dict, dict]:
    """Each run's smallest wall time over ``repeats`` rounds (one call of each per round,
    so a change of load during the benchmark hits every run alike) and its last result."""
    best = {k: float("inf") for k in runs}
    out: dict = {}
    for _ in range(repeats):
        for name, fn in runs.items():
            t = time.perf_counter()
            out[name] = fn()
            best[name] = min(best[name], time.perf_counter() - t)
    return best, out


def every_layer(m, ids, opts, dtype=None):
    """The source rows of every layer, ``[(n, d)] * n_layers``."""
    src = P.Sources(m, ids, opts, dtype=dtype, keep_bytes=0)
    return [src.at(layer).clone() for layer in range(m.n_layers)]


def every_layer_reference(m, ids, opts):
    """As :func:`every_layer`, advancing with the order ``token_alone`` was first written in."""
    first, x = alone_start(m, ids, opts)
    out = [x]
    for layer in range(m.n_layers - 1):
        first, x = P.token_alone_reference(m, x, range(layer, layer + 1), first=first)
        out.append(x)
    return out


def overlap(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over rows of ``|a_i ∩ b_i| / k`` for ``(rows, k)`` index tensors."""
    return float(np.mean([len(set(x.tolist()) & set(y.tolist())) / a.shape[1]
                          for x, y in zip(a, b)]))


def _head_output(W_V, W_O, b_v, b_o):
    """``x -> (x W_V + b_v) W_O + b_o`` for one head."""
    def out(x):
        y = x @ W_V
        z = (y + b_v if b_v is not None else y) @ W_O
        return z + b_o if b_o is not None else z
    return out


def compare_streams(m, opts, xs32, xs16, n_top=15, n_map=5, n_keys=10):
    """Per layer: stream error, saliency top-15 overlap, OV targets kept, QK key overlap."""
    rows = []
    U = P.output_basis(m, opts)
    for layer in range(m.n_layers):
        a, qk = m.attention(layer), m.qk(layer)
        x32, x16 = (P.layer_sources(x, a, opts) for x in (xs32[layer], xs16[layer]))
        err = ((x16 - x32).norm(dim=1) / x32.norm(dim=1)).median().item()
        kv = m.spec.kv_index()
        b_v, b_o = P.layer_biases(a, opts)
        sal_o, tgt_same, key_o = [], [], []
        K32, K16 = (Q.keys(qk, Q.layer_input(qk, x, opts)) for x in (xs32[layer], xs16[layer]))
        for h in range(m.n_heads):
            bv = b_v[kv[h]] if b_v is not None else None
            out = _head_output(a.W_V[kv[h]].float(), a.W_O[h].float(), bv, b_o)
            s32 = out(x32).norm(dim=1) / x32.norm(dim=1)
            s16 = out(x16).norm(dim=1) / x16.norm(dim=1)
            t32, t16 = s32.topk(n_top).indices, s16.topk(n_top).indices
            sal_o.append(overlap(t32[None], t16[None]))
            # the OV targets of the float32 stream's salient tokens, both streams
            g32 = (out(x32[t32]) @ U).topk(n_map).indices
            g16 = (out(x16[t32]) @ U).topk(n_map).indices
            tgt_same.append(float((g32 == g16).all(1).float().mean()))
            q = Q.queries(qk, Q.layer_input(qk, xs32[layer], opts), torch.tensor([h]))[0]
            qm = q.mean(0)
            k32, k16 = (K[kv[h]] @ qm for K in (K32, K16))
            key_o.append(overlap(k32.topk(n_keys).indices[None], k16.topk(n_keys).indices[None]))
        rows.append((layer, err, min(sal_o), float(np.mean(sal_o)), min(tgt_same),
                     float(np.mean(tgt_same)), min(key_o), float(np.mean(key_o))))
    return rows


def run(args) -> dict:
    torch.manual_seed(args.seed)
    m = hm.load(args.model)
    valid = valid_mask(m.tokenizer, m.vocab_size).nonzero().reshape(-1)
    g = torch.Generator().manual_seed(args.seed)
    ids = valid if not args.rows else valid[torch.randperm(len(valid), generator=g)[:args.rows]]
    ids = ids.sort().values
    through = P.concrete(m, P.PRESETS["through"])
    prefix, why = P.document_prefix(m.tokenizer)
    print(f"model {m.model_id}: {m.n_layers} layers, vocabulary {m.vocab_size}, rows {len(ids)}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}")
    print(f"through = token_alone after {prefix!r} ({why})\n")
    runs = {"norms": lambda: every_layer(m, ids, P.PRESETS["norms"]),
            "before": lambda: every_layer_reference(m, ids, through),
            "float32": lambda: every_layer(m, ids, through, "float32"),
            "bfloat16": lambda: every_layer(m, ids, through, "bfloat16")}
    best, out = interleaved(runs, args.repeats)
    t_norms, t_ref, t32, t16 = (best[k] for k in ("norms", "before", "float32", "bfloat16"))
    xs_ref, xs32, xs16 = out["before"], out["float32"], out["bfloat16"]
    exact = max(((a - b).norm() / b.norm()).item() for a, b in zip(xs32, xs_ref))
    print("| source rows of every layer | seconds | x norms |")
    print("| --- | --- | --- |")
    for name, t in (("norms", t_norms), ("through, before (head by head, float32)", t_ref),
                    ("through, fused float32", t32), ("through, fused bfloat16", t16)):
        print(f"| {name} | {t:.2f} | {t / t_norms:.1f} |")
    print(f"\nfused float32 / before: {t_ref / t32:.2f}x faster (largest relative error "
          f"{exact:.1e}); bfloat16 / float32: {t32 / t16:.2f}x faster")
    print(f"whole vocabulary ({m.vocab_size} rows), scaled from {len(ids)} rows: before "
          f"{t_ref * m.vocab_size / len(ids):.0f} s, fused float32 "
          f"{t32 * m.vocab_size / len(ids):.0f} s, bfloat16 {t16 * m.vocab_size / len(ids):.0f} s")

    rows = compare_streams(m, through, xs32, xs16)
    print("\nbfloat16 stream against float32, per layer (min / mean over heads):\n")
    print("| layer | stream rel. error (median row) | salient top-15 overlap | "
          "OV top-5 targets identical | QK top-10 keys overlap |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r[0]} | {r[1]:.4f} | {r[2]:.2f} / {r[3]:.3f} | {r[4]:.2f} / {r[5]:.3f} | "
              f"{r[6]:.2f} / {r[7]:.3f} |")
    sample = {"rows": int(len(ids)), "prefix": prefix, "repeats": args.repeats,
              "seconds": {"norms": t_norms, "before": t_ref, "float32": t32, "bfloat16": t16}}
    return sample


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--rows", type=int, default=8192,
                    help="valid token rows, drawn with --seed (0: the whole vocabulary)")
    ap.add_argument("--repeats", type=int, default=1, help="runs per timing (best kept)")
    ap.add_argument("--seed", type=int, default=0)
    run_with_report(ap, argv, __file__, run)


if __name__ == "__main__":
    main()
