"""Demonstration of `headmaps diff`: fine-tune SmolLM2-135M on a made-up mapping, find the heads.

1. **Base**: the built-in SmolLM2-135M (Q4_1 GGUF), dequantised to float32 by transformers,
   saved as a plain checkpoint (``base/``), so that base and fine-tuned differ by the
   fine-tune only, not by quantisation noise.
2. **Task**: a fixed, made-up mapping between two word lists (``apple -> stone``), single
   tokens both sides, written as a user relation set (``made_up_mapping.json``, a JSON
   list of ``[source, target]``). Prompts ``<|endoftext|> apple ->``, target `` stone``.
   The base model cannot know it: its accuracy is 0.
3. **Fine-tune** (skipped when ``finetuned/`` exists): by default ``W_V`` and ``W_O`` of
   the last layer only (``--first-layer``, ``--train``; everything else frozen), Adam,
   cross-entropy on the target, up to ``--steps`` steps (stops once learnt). The frozen
   layers below give the same residual stream at every step, so it is computed once.
4. **Diff** base -> fine-tuned with the mapping and a few built-in relations, with the
   prefix-then-token projection (preset ``alone`` after ``<|endoftext|>``: what a head
   reads at a token after a document start, the fine-tune's input exactly); the same
   with the default ``norms`` preset; and the base against itself loaded a second time
   (every change must lie within the noise floor).
5. **Causal check** in the fine-tuned model: next-token accuracy on the mapping with the
   top ``m`` heads of the diff's ranking zeroed at the last position, against ``m`` random
   other heads (5 draws), drawn from all heads and from the other fine-tuned heads.

Run: ``OMP_NUM_THREADS=2 python benchmarks/bench_diff.py`` (checkpoints go to
``$HEADMAPS_CACHE/bench_diff``, default ``~/.cache/headmaps/bench_diff``; results to
``docs/results/diff/``). Prints the tables of ``docs/results/diff.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import headmaps as hm
from headmaps.experiments.causal import Evaluator, build_task
from headmaps.io import (
    atomic_path,
    command_line,
    markdown_table,
    run_header,
    write_json,
    write_text,
)

#: Two word lists (concrete nouns); pairs are drawn as a seeded bijection between them.
SOURCES = ("apple pear lemon grape peach cherry plum onion carrot potato garlic pepper bean corn "
           "rice bread cheese butter honey sugar salt milk coffee tea soup cake pie egg meat fish "
           "chicken beef pork lamb duck goose horse sheep goat cow pig dog cat mouse rabbit fox "
           "wolf bear deer lion tiger monkey snake frog bird eagle owl crow shark whale").split()
TARGETS = ("stone cloud river chair window pencil bottle candle mirror ladder hammer basket "
           "blanket button carpet castle desk engine feather garden helmet island jacket kettle "
           "lamp magnet needle orbit pillow rocket saddle tunnel umbrella valley wallet anchor "
           "bridge circle diamond forest glove harbor iron jungle kite lantern marble nest ocean "
           "planet quilt ribbon shadow tower violin wheel yard").split()
BUILTIN = ["copying", "country_to_capital", "verb_to_past_tense"]
#: The document-start token put before every prompt (and before each source in the projection).
PREFIX = "<|endoftext|>"
TEMPLATE = PREFIX + " <X> ->"


def cache_dir() -> Path:
    """Where the checkpoints go (not the repository): ``$HEADMAPS_CACHE/bench_diff``."""
    root = os.environ.get("HEADMAPS_CACHE") or Path.home() / ".cache" / "headmaps"
    return Path(root) / "bench_diff"


def made_up_pairs(tok, n: int, seed: int) -> list[tuple[str, str]]:
    """``n`` pairs: single-token sources mapped to a seeded shuffle of single-token targets."""
    def one(w: str) -> bool:
        return len(tok.encode(" " + w, add_special_tokens=False)) == 1

    src = [w for w in SOURCES if one(w)][:n]
    tgt = [w for w in TARGETS if one(w)][:n]
    if min(len(src), len(tgt)) < n:
        raise SystemExit(f"only {len(src)} / {len(tgt)} single-token words, need {n}")
    perm = np.random.default_rng(seed).permutation(n)
    return [(s, tgt[i]) for s, i in zip(src, perm)]


def save_base(folder: Path) -> float:
    """Write the dequantised float32 SmolLM2 as a plain checkpoint; returns seconds."""
    t = time.perf_counter()
    m = hm.load("smollm2-135m")
    tmp = _fresh_tmp(folder)
    m.hf_model.float().save_pretrained(tmp)
    m.tokenizer.save_pretrained(tmp)
    tmp.rename(folder)  # a checkpoint appears whole or not at all
    return time.perf_counter() - t


def _fresh_tmp(folder: Path) -> Path:
    """An empty ``<folder>.tmp`` beside ``folder`` (a leftover of an interrupted run removed)."""
    import shutil

    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    return tmp


def prompts(tok, pairs) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n, 3)`` prompt ids ``<|endoftext|> source ->`` and ``(n,)`` target ids."""
    ids = [tok(TEMPLATE.replace("<X>", s))["input_ids"] for s, _ in pairs]
    if len({len(x) for x in ids}) != 1:
        raise SystemExit(f"prompts differ in length: {sorted({len(x) for x in ids})}")
    targets = [tok.encode(" " + t, add_special_tokens=False)[0] for _, t in pairs]
    return torch.as_tensor(ids), torch.as_tensor(targets)


def finetune(base: Path, out: Path, pairs, steps: int, lr: float, batch: int, seed: int,
             first_layer: int, target_loss: float, parts: str = "qkvo") -> dict:
    """Fine-tune the attention of layers ``first_layer..`` of ``base`` on the mapping.

    The frozen layers below compute the same residual stream at every step, so it is
    computed once (the input of ``first_layer`` for every prompt) and the trained layers
    run from it; only the last position's logits are computed. Stops early once the mean
    loss of the last 10 steps is below ``target_loss`` (the mapping is learnt). Saves ``out``.

    Returns:
        The training log (losses, trainable parameters, seconds).
    """
    from torch import nn
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    ids, targets = prompts(tok, pairs)
    t0 = time.perf_counter()
    with torch.no_grad():
        h0 = model(input_ids=ids, output_hidden_states=True).hidden_states[first_layer]
    layers = model.model.layers
    trainable = []
    model.requires_grad_(False)
    for layer in layers[first_layer:]:
        for name, p in layer.self_attn.named_parameters():
            if name.split("_")[0] in parts:  # q_proj, k_proj, v_proj, o_proj
                p.requires_grad_(True)
                trainable.append(p)
    model.model.layers = nn.ModuleList(list(layers)[first_layer:])
    model.train()
    opt = torch.optim.Adam(trainable, lr=lr)
    g = np.random.default_rng(seed)
    losses = []
    try:
        for step in range(steps):
            idx = torch.as_tensor(g.choice(len(ids), min(batch, len(ids)), replace=False))
            h = model.model(inputs_embeds=h0[idx]).last_hidden_state[:, -1]
            loss = nn.functional.cross_entropy(model.lm_head(h), targets[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            done = len(losses) >= 10 and np.mean(losses[-10:]) < target_loss
            if step % 25 == 0 or step == steps - 1 or done:
                print(f"step {step:4d} loss {np.mean(losses[-25:]):.3f} "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
            if done:
                break
    finally:
        model.model.layers = layers
    model.eval()
    tmp = _fresh_tmp(out)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(out)
    return {"steps": len(losses), "max_steps": steps, "target_loss": target_loss, "lr": lr,
            "batch": batch, "first_layer": first_layer,
            "trainable": f"{', '.join(c + '_proj' for c in parts)} of layers {first_layer}.."
                         f"{len(layers) - 1}",
            "n_trainable": int(sum(p.numel() for p in trainable)),
            "loss_first_25": float(np.mean(losses[:25])),
            "loss_last_10": float(np.mean(losses[-10:])),
            "seconds": time.perf_counter() - t0}


def causal_check(model: hm.HeadModel, pairs, ranked: list[str], ms: list[int], n_random: int,
                 seed: int, pool: list[str] | None = None) -> tuple[float, pd.DataFrame]:
    """Accuracy with nothing zeroed, and with the top ``m`` ranked heads zeroed at the last
    position against ``m`` random other heads (``n_random`` draws) from ``pool`` (default
    every head of the model)."""
    task = build_task(model, "made_up_mapping", pairs, TEMPLATE)
    ev = Evaluator(model, task, batch_size=64)
    base = ev.accuracy()
    heads = [tuple(map(int, h.split("."))) for h in ranked]
    every = ([(a, b) for a in range(model.n_layers) for b in range(model.n_heads)] if pool is None
             else [tuple(map(int, h.split("."))) for h in pool])
    g = np.random.default_rng(seed)
    rows = []
    for m in ms:
        if m > len(heads):
            continue
        top = heads[:m]
        others = [h for h in every if h not in set(heads[:m])]
        rand = [ev.accuracy([others[i] for i in g.choice(len(others), m, replace=False)])
                for _ in range(n_random)]
        rows.append({"m": m, "heads": ", ".join(ranked[:m]), "accuracy": base,
                     "top_m_zeroed": ev.accuracy(top), "random_m_zeroed": float(np.mean(rand)),
                     "random_std": float(np.std(rand))})
    return base, pd.DataFrame(rows)


def _relation_table(d, same, plain) -> pd.DataFrame:
    """Per relation: changes beyond the floor, gained/lost, and the two control diffs."""
    rows = []
    for r in d.relations:
        gl = d.gained_lost(r)
        rows.append({"relation": r, "pairs": d.n_pairs[r], "k": d.k[r],
                     "changed": d.n_changed()[r], "gained": ", ".join(gl["gained"]) or "-",
                     "lost": ", ".join(gl["lost"]) or "-",
                     "changed, base vs itself": same.n_changed()[r],
                     "max floor, base vs itself": float(same.floor[same.relations.index(r)].max()),
                     "changed, norms preset": plain.n_changed().get(r, 0)})
    return pd.DataFrame(rows)


def _top_table(d, relation: str, n: int = 8) -> pd.DataFrame:
    """The ``n`` heads furthest beyond the floor, with their weight-space figures."""
    top = d.ranking(relation).head(n)
    hf = d.head_frame().set_index(["layer", "head"])
    tab = pd.DataFrame({"head": top["head"], "score base": top["a"], "score fine-tuned": top["b"],
                        "change": top["change"], "floor": top["floor"]})
    for col, name in (("wvo_change", "W_VO change"), ("wqk_change", "W_QK change"),
                      ("ov_read_angle", "OV read angle"), ("ov_write_angle", "OV write angle"),
                      ("salient_mapping_overlap", "salient maps overlap"),
                      ("profile_tv", "profile TV")):
        if col in hf.columns:
            tab[name] = [hf.loc[(r.layer, r.h), col] for r in top.itertuples()]
    return tab.reset_index(drop=True)


def main(argv: list[str] | None = None) -> None:
    """Run the demonstration (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=None,
                   help="checkpoint folder (default $HEADMAPS_CACHE/bench_diff)")
    p.add_argument("--out", type=Path, default=Path("docs/results/diff"))
    p.add_argument("--n-pairs", type=int, default=56)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--target-loss", type=float, default=0.01,
                   help="stop once the mean loss of 10 steps is below this")
    p.add_argument("--first-layer", type=int, default=29,
                   help="fine-tune the attention of this layer and the ones above")
    p.add_argument("--train", default="vo", choices=["vo", "qkvo"],
                   help="which attention weights are fine-tuned (default W_V and W_O)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--m", default="1,2,3", help="heads zeroed in the causal check")
    p.add_argument("--n-random", type=int, default=5)
    p.add_argument("--salient-qk", action="store_true",
                   help="also compare salient operations and positional profiles (norms preset; "
                        "~10 more minutes here)")
    args = p.parse_args(argv)
    work = args.work or cache_dir()
    work.mkdir(parents=True, exist_ok=True)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    timings: dict[str, float] = {}
    base_dir, ft_dir = work / "base", work / "finetuned"
    if not (base_dir / "config.json").is_file():
        timings["save_base"] = save_base(base_dir)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_dir)
    pairs = made_up_pairs(tok, args.n_pairs, args.seed)
    mapping = out / "made_up_mapping.json"
    write_json(mapping, [list(x) for x in pairs])
    train_log: dict = {"skipped": "checkpoint exists"}
    if not (ft_dir / "config.json").is_file():
        train_log = finetune(base_dir, ft_dir, pairs, args.steps, args.lr, args.batch, args.seed,
                             args.first_layer, args.target_loss, args.train)
        write_json(work / "train_log.json", train_log)
    elif (work / "train_log.json").is_file():
        train_log = {**json.loads((work / "train_log.json").read_text()), "reused": True}
    t = time.perf_counter()
    a, b, a2 = hm.load(base_dir), hm.load(ft_dir), hm.load(base_dir)
    a.model_id, b.model_id = "smollm2-135m-base", "smollm2-135m-finetuned"
    a2.model_id = "smollm2-135m-base (loaded again)"
    for m, folder in ((a, base_dir), (b, ft_dir), (a2, base_dir)):  # no local paths in results
        m.origin = f"transformers: $HEADMAPS_CACHE/bench_diff/{folder.name}"
    timings["load"] = time.perf_counter() - t
    relations = {"made_up_mapping": str(mapping), **{r: r for r in BUILTIN}}
    # the prefix-then-token source: what a head reads at a token after a document start,
    # here exactly the fine-tune's input (docs/results/smollm2-135m.md: best agreement)
    projection = {"preset": "alone", "prefix": PREFIX}
    t = time.perf_counter()
    d = hm.diff(a, b, relations, seed=args.seed, salient=False, qk=False, **projection)
    timings["diff"] = time.perf_counter() - t
    d.save(out / "finetune")
    write_text(out / "finetune.md", d.summary_markdown())
    with atomic_path(out / "diff.png") as tmp:
        d.figure("made_up_mapping").savefig(tmp, format="png", dpi=130)
    t = time.perf_counter()
    same = hm.diff(a, a2, relations, seed=args.seed, salient=False, qk=False, **projection)
    timings["self_diff"] = time.perf_counter() - t
    same.save(out / "itself")
    t = time.perf_counter()
    plain = hm.diff(a, b, relations, seed=args.seed, projection="norms", salient=args.salient_qk,
                    qk=args.salient_qk)
    timings["diff_norms"] = time.perf_counter() - t
    plain.save(out / "finetune-norms")
    ranked = list(d.ranking("made_up_mapping")["head"])
    gained = d.gained_lost("made_up_mapping")["gained"]
    ms = [int(x) for x in args.m.split(",")]
    t = time.perf_counter()
    trained = [f"{layer}.{h}" for layer in range(args.first_layer, b.n_layers)
               for h in range(b.n_heads)]
    acc_ft, causal = causal_check(b, pairs, ranked, ms, args.n_random, args.seed)
    _, causal_in_layer = causal_check(b, pairs, ranked, ms, args.n_random, args.seed,
                                      pool=trained)
    acc_base, _ = causal_check(a, pairs, [], [], 0, args.seed)
    timings["causal"] = time.perf_counter() - t
    causal["random pool"] = "all other heads"
    causal_in_layer["random pool"] = "other fine-tuned heads"
    causal = pd.concat([causal, causal_in_layer], ignore_index=True)
    causal.to_csv(out / "causal.csv", index=False)
    timings["total"] = time.perf_counter() - t_all

    rel_tab = _relation_table(d, same, plain)
    top_tab = _top_table(d, "made_up_mapping")
    w = d.heads["wvo_change"]
    header = run_header(command_line(__file__, argv), "smollm2-135m", args.seed,
                        {"pairs": len(pairs), "relations": {r: d.n_pairs[r] for r in d.relations},
                         "n_boot": d.n_boot, "alpha": d.alpha, "causal_prompts": len(pairs),
                         "m": ms, "n_random": args.n_random},
                        train=train_log, timings=timings, projection=d.options,
                        diff_seconds=d.seconds, accuracy_base=acc_base, accuracy_finetuned=acc_ft,
                        gained=gained, ranked=ranked[:10],
                        heads_with_changed_weights=int((w > 0).sum()),
                        self_diff_changed=int(same.changed.sum() + same.supp_changed.sum()),
                        self_diff_max_wvo_change=float(same.heads["wvo_change"].max()),
                        self_diff_max_ov_angle=float(np.nanmax(same.heads["ov_write_angle"])),
                        norms_diff_changed=plain.n_changed(),
                        equivalent_cli=("headmaps diff BASE FINETUNED --relations "
                                        f"{mapping.as_posix()},{','.join(BUILTIN)} --preset alone "
                                        f"--prefix '{PREFIX}' --no-salient --no-qk --out OUT"))
    write_json(out / "bench_diff.json", header)
    print(f"accuracy on the mapping: base {acc_base:.3f}, fine-tuned {acc_ft:.3f}")
    print(f"heads with changed weights: {int((w > 0).sum())}; gained made_up_mapping: {gained}")
    print("\nrelations:\n" + markdown_table(rel_tab, 3))
    print("\ntop heads for made_up_mapping:\n" + markdown_table(top_tab, 3))
    print("\ncausal check (fine-tuned model):\n" + markdown_table(causal, 3))
    print(f"\ntimings: {json.dumps({k: round(v, 1) for k, v in timings.items()})}")


if __name__ == "__main__":
    main()
