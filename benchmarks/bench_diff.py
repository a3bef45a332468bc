"""Demonstration of `headmaps diff`: fine-tune SmolLM2-135M on a made-up mapping, find the heads.

1. **Base**: the built-in SmolLM2-135M (Q4_1 GGUF), dequantised to float32 by transformers,
   saved as a plain checkpoint (``base/``), so that base and fine-tuned differ by the
   fine-tune only, not by quantisation noise.
2. **Task**: a fixed, made-up mapping between two word lists (``" apple -> stone"``),
   single tokens both sides, written as a user relation set (``made_up_mapping.json``,
   a JSON list of ``[source, target]``). The model cannot know it: base accuracy ~0.
3. **Fine-tune** (skipped when ``finetuned/`` exists): attention weights only (q, k, v, o
   of every layer; MLPs, norms and embeddings frozen) on sequences of four pairs
   ``" a -> b\\n c -> d\\n ..."``, cross-entropy on each target token, Adam.
4. **Diff** base -> fine-tuned with the mapping and a few built-in relations, and the
   base with itself (everything must lie within the noise floor).
5. **Causal check** in the fine-tuned model: next-token accuracy on the mapping (two
   demonstrations, then `` source ->``) with the top ``m`` heads of the diff's ranking
   zeroed at the last position, against ``m`` random other heads (5 draws).

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
from headmaps.io import atomic_path, command_line, markdown_table, run_header, write_json

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
BUILTIN = ["copying", "country_to_capital", "verb_to_past_tense", "antonyms", "name_copying"]
TEMPLATE = "<|endoftext|> <X> ->"


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
             first_layer: int, target_loss: float) -> dict:
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
        for p in layer.self_attn.parameters():
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
            "trainable": f"q_proj, k_proj, v_proj, o_proj of layers {first_layer}.."
                         f"{len(layers) - 1}",
            "n_trainable": int(sum(p.numel() for p in trainable)),
            "loss_first_25": float(np.mean(losses[:25])),
            "loss_last_10": float(np.mean(losses[-10:])),
            "seconds": time.perf_counter() - t0}


def causal_check(model: hm.HeadModel, pairs, ranked: list[str], ms: list[int], n_random: int,
                 seed: int) -> tuple[float, pd.DataFrame]:
    """Accuracy with nothing zeroed, and with the top ``m`` ranked heads zeroed at the last
    position against ``m`` random other heads (``n_random`` draws)."""
    task = build_task(model, "made_up_mapping", pairs, TEMPLATE)
    ev = Evaluator(model, task, batch_size=64)
    base = ev.accuracy()
    heads = [tuple(map(int, h.split("."))) for h in ranked]
    every = [(a, b) for a in range(model.n_layers) for b in range(model.n_heads)]
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


def main(argv: list[str] | None = None) -> None:
    """Run the demonstration (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=None,
                   help="checkpoint folder (default $HEADMAPS_CACHE/bench_diff)")
    p.add_argument("--out", type=Path, default=Path("docs/results/diff"))
    p.add_argument("--n-pairs", type=int, default=56)
    p.add_argument("--steps", type=int, default=250)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--target-loss", type=float, default=0.05,
                   help="stop once the mean loss of 10 steps is below this")
    p.add_argument("--first-layer", type=int, default=18,
                   help="fine-tune the attention of this layer and the ones above")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--m", default="1,3,5,10", help="heads zeroed in the causal check")
    p.add_argument("--n-random", type=int, default=5)
    p.add_argument("--quick", action="store_true",
                   help="a check of the pipeline: the mapping only, no salient operations or "
                        "positional profiles")
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
                             args.first_layer, args.target_loss)
        write_json(work / "train_log.json", train_log)
    elif (work / "train_log.json").is_file():
        train_log = {**json.loads((work / "train_log.json").read_text()), "reused": True}
    t = time.perf_counter()
    a, b = hm.load(base_dir), hm.load(ft_dir)
    a.model_id, b.model_id = "smollm2-135m-base", "smollm2-135m-finetuned"
    timings["load"] = time.perf_counter() - t
    relations = {"made_up_mapping": str(mapping), **{r: r for r in BUILTIN}}
    if args.quick:
        relations = {"made_up_mapping": str(mapping)}
    t = time.perf_counter()
    d = hm.diff(a, b, relations, seed=args.seed, salient=not args.quick, qk=not args.quick,
                progress=True)
    timings["diff"] = time.perf_counter() - t
    d.save(out / "finetune")
    (out / "finetune.md").write_text(d.summary_markdown())
    with atomic_path(out / "diff.png") as tmp:
        d.figure("made_up_mapping").savefig(tmp, format="png", dpi=130)
    t = time.perf_counter()
    same = hm.diff(a, a, relations, seed=args.seed, salient=False, qk=False)
    timings["self_diff"] = time.perf_counter() - t
    same.save(out / "itself")
    ranked = list(d.ranking("made_up_mapping")["head"])
    ms = [int(x) for x in args.m.split(",")]
    t = time.perf_counter()
    _, causal = causal_check(b, pairs, ranked, ms, args.n_random, args.seed)
    base_acc, _ = causal_check(a, pairs, [], [], 0, args.seed)
    timings["causal"] = time.perf_counter() - t
    causal.to_csv(out / "causal.csv", index=False)
    timings["total"] = time.perf_counter() - t_all

    top = d.ranking("made_up_mapping").head(10)
    hf = d.head_frame().set_index(["layer", "head"])
    top_tab = pd.DataFrame({
        "head": top["head"], "score base": top["a"], "score fine-tuned": top["b"],
        "change": top["change"], "floor": top["floor"],
        "W_VO change": [hf.loc[(r.layer, r.h), "wvo_change"] for r in top.itertuples()],
        "W_QK change": [hf.loc[(r.layer, r.h), "wqk_change"] for r in top.itertuples()],
        "OV write angle": [hf.loc[(r.layer, r.h), "ov_write_angle"] for r in top.itertuples()]})
    for col, name in (("salient_mapping_overlap", "salient maps overlap"),
                      ("profile_tv", "profile TV")):
        if col in hf.columns:
            top_tab[name] = [hf.loc[(r.layer, r.h), col] for r in top.itertuples()]
    rel_tab = pd.DataFrame([{"relation": r, "pairs": d.n_pairs[r], "k": d.k[r],
                             "changed (fine-tune)": d.n_changed()[r],
                             "gained": ", ".join(d.gained_lost(r)["gained"]) or "-",
                             "lost": ", ".join(d.gained_lost(r)["lost"]) or "-",
                             "changed (itself)": same.n_changed()[r],
                             "max floor (itself)": float(same.floor[same.relations.index(r)].max())}
                            for r in d.relations])
    w = d.heads["wvo_change"]
    wvo_rank = int((w > w[tuple(map(int, ranked[0].split(".")))]).sum()) + 1 if ranked else None
    header = run_header(command_line(__file__, argv), "smollm2-135m", args.seed,
                        {"pairs": len(pairs), "relations": {r: d.n_pairs[r] for r in d.relations},
                         "n_boot": d.n_boot, "alpha": d.alpha, "causal_prompts": len(pairs),
                         "m": ms, "n_random": args.n_random},
                        train=train_log, timings=timings, preset=d.preset,
                        diff_seconds=d.seconds, base_accuracy_base_model=float(base_acc),
                        equivalent_cli=("headmaps diff BASE FINETUNED --relations "
                                        f"{mapping.as_posix()},{','.join(BUILTIN)} --out OUT"),
                        top_head_rank_by_wvo_change=wvo_rank,
                        self_diff_changed=int(same.changed.sum() + same.supp_changed.sum()),
                        self_diff_max_wvo_change=float(same.heads["wvo_change"].max()))
    write_json(out / "bench_diff.json", header)
    print(f"accuracy of the base model on the mapping: {base_acc:.3f}")
    print("\nrelations:\n" + markdown_table(rel_tab, 3))
    print("\ntop heads for made_up_mapping:\n" + markdown_table(top_tab, 3))
    print("\ncausal check (fine-tuned model):\n" + markdown_table(causal, 3))
    print(f"\ntimings: {json.dumps({k: round(v, 1) for k, v in timings.items()})}")


if __name__ == "__main__":
    main()
