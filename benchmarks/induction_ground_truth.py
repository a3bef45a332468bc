"""A ground truth no one tuned: does `hm.track` place the induction phase change?

The recipe below was fixed before any result was looked at; it is not changed after.

**Model**: a 2-layer Llama built from a transformers ``LlamaConfig`` (d_model 64, 4 heads
of 16, MLP 128, rotary positions, untied embeddings), vocabulary: ``[UNK]``, ``[PAD]``,
``<s>`` and 64 words ``t00`` ... ``t63`` (a word-level tokenizer, so :func:`headmaps.load`
reads each checkpoint folder with its tokenizer).

**Data**: every sequence is ``<s>``, a random prefix of 0-8 words, a span of 8-20
distinct random words, the same span again, then random words up to 50 tokens. Next-token
loss on every position: the second copy of the span is predictable only by induction.

**Training**: AdamW (lr 1e-3, weight decay 0.01, betas 0.9/0.98), linear warm-up over 50
steps, batch 32, 1500 steps, seed ``--seed``; a checkpoint (``save_pretrained`` + tokenizer)
at step 0 and every 50 steps (31 checkpoints).

**Behaviour** (forward passes, the metric of
:func:`headmaps.experiments.behaviour.repeat_scores` with the ``<s>`` the model was trained
with in front): 16 sequences of 20 distinct random words repeated once; a head's induction
score is its mean attention from each token of the second copy to the token after that
token's first occurrence. The *behavioural induction head* is the head with the highest
score at the last checkpoint.

**Parameters only** (:func:`headmaps.track`, ``types=True``, no relations): each head's
static induction score and previous-token score (:func:`headmaps.head_types`). The
*static induction head* is the head with the highest static induction score at the last
checkpoint; its *previous-token partner* is the layer-0 head with the highest static
previous-token score at the last checkpoint.

**Emergence step** (one rule for every curve, fixed in advance): the first checkpoint at
which the curve has come at least half of the way from its value at step 0 to its value
at the last checkpoint. Target of the issue: the static induction head's emergence step
within 2 checkpoints (100 steps) of the behavioural one.

**Second rule, fixed on 2026-12-06 before seeds 2-4 were run.** (Its commit
precedes the run headers of seeds 2-4.) The first rule
missed the target on seeds 0 and 1 (docs/results/track.md); it stays, and its results are
reported as they are. The second rule is an *onset* rule, applied alike to every curve
(behavioural, static induction, static previous-token), on the same scores as before: the
emergence step is the first checkpoint from which the curve stays, up to and including the
last checkpoint, at or above its step-0 value plus **10 %** of its rise from step 0 to the
last checkpoint (at or below, for a falling curve). Why: the static scores are attention
probabilities formed from QK logits of random tokens (the previous-token mass, and the
induction score is that mass times the match z-score), so after the circuit has formed they
keep growing with the weights' norms while the behaviour saturates; the last value, and with
it any half-way point, then depends on how long training went on after the formation,
whereas the departure from the step-0 level does not. 10 % is the smallest fraction that
stays well above the step-0 level of the induction curves (their step-0 values are at most
about 4 % of their rise); "stays above to the end" keeps a single early fluctuation from
counting as the onset. (The other option, a scale-free rank score of the induction QK
circuit, was not taken: it needs the per-token logits that
:func:`headmaps.headtypes.static.induction_match` forms but does not return, so the
benchmark would have to copy that function, and it would no longer test the scores that
``hm.track`` gives users.) Nothing else changes: the same heads, checkpoints and target
(static induction head within 2 checkpoints of the behavioural one). Seeds 2, 3 and 4 are
the fresh seeds on which it is evaluated; seeds 0 and 1 were seen before it was fixed.

Run::

    python benchmarks/induction_ground_truth.py --seed 0 \
        --figure docs/results/track/induction-seed0.png --out docs/results/track/induction-seed0.txt
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import run_with_report  # noqa: E402

N_WORDS, SEQ_LEN, BATCH, STEPS, EVERY, WARMUP = 64, 50, 32, 1500, 50, 50
SPAN = (8, 20)
EVAL_SPAN, EVAL_SEQS = 20, 16
WORDS = [f"t{i:02d}" for i in range(N_WORDS)]
SPECIAL = ["[UNK]", "[PAD]", "<s>"]


def tokenizer():
    """A word-level tokenizer over :data:`SPECIAL` + :data:`WORDS` (``<s>`` is the BOS)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIAL + WORDS)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]",
                                   bos_token="<s>")


def build_model(seed: int):
    """The 2-layer Llama of the recipe, seeded."""
    import transformers

    config = transformers.LlamaConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, vocab_size=len(SPECIAL) + N_WORDS, max_position_embeddings=128,
        tie_word_embeddings=False, bos_token_id=2, pad_token_id=1, eos_token_id=None)
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    return transformers.AutoModelForCausalLM.from_config(config)


def batch(g: torch.Generator) -> torch.Tensor:
    """``(BATCH, SEQ_LEN)`` training sequences (see the module docstring)."""
    first = len(SPECIAL)
    rows = []
    for _ in range(BATCH):
        pre = int(torch.randint(0, 9, (1,), generator=g))
        n = int(torch.randint(SPAN[0], SPAN[1] + 1, (1,), generator=g))
        span = torch.randperm(N_WORDS, generator=g)[:n] + first
        fill = SEQ_LEN - 1 - pre - 2 * n
        parts = [torch.tensor([2]), torch.randint(first, first + N_WORDS, (pre,), generator=g),
                 span, span, torch.randint(first, first + N_WORDS, (fill,), generator=g)]
        rows.append(torch.cat(parts))
    return torch.stack(rows)


def train(seed: int, work: Path) -> list[Path]:
    """Train with the recipe; returns the checkpoint folders, step 0 first."""
    torch.manual_seed(seed)
    model, tok = build_model(seed), tokenizer()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / WARMUP))
    g = torch.Generator().manual_seed(1000 + seed)
    paths = []
    t0 = time.perf_counter()
    for step in range(STEPS + 1):
        if step % EVERY == 0:
            path = work / f"step-{step:05d}"
            model.save_pretrained(path)
            tok.save_pretrained(path)
            paths.append(path)
        if step == STEPS:
            break
        x = batch(g)
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0:
            print(f"  step {step:5d}  loss {loss.item():.3f}  ({time.perf_counter() - t0:.0f} s)")
    return paths


def behaviour(paths: list[Path]) -> np.ndarray:
    """``(n_checkpoints, n_layers, n_heads)`` induction scores by forward passes."""
    import headmaps as hm
    from headmaps.experiments.behaviour import attention_patterns

    g = torch.Generator().manual_seed(12345)
    first = len(SPECIAL)
    spans = torch.stack([torch.randperm(N_WORDS, generator=g)[:EVAL_SPAN] + first
                         for _ in range(EVAL_SEQS)])
    ids = torch.cat([torch.full((EVAL_SEQS, 1), 2), spans, spans], 1)
    n, j = EVAL_SPAN, torch.arange(EVAL_SPAN - 1)
    out = []
    for p in paths:
        A = attention_patterns(hm.load(str(p)), ids)  # position 0 is <s>: shift by one
        out.append(A[..., 1 + n + j, 1 + j + 1].mean(dim=(1, 3)).numpy())
    return np.stack(out)


def emergence(curve: np.ndarray) -> int:
    """The rule fixed in advance: first index where the curve is half way from start to end."""
    start, end = float(curve[0]), float(curve[-1])
    half = start + 0.5 * (end - start)
    hit = curve >= half if end >= start else curve <= half
    return int(np.argmax(hit))


#: The second rule's fraction of the rise (fixed before seeds 2-4 were run).
ONSET = 0.10


def emergence_onset(curve: np.ndarray, fraction: float = ONSET) -> int:
    """The second rule: first index from which the curve stays past ``fraction`` of its rise.

    :func:`headmaps.track.onset_index` (``TrackResult.onset``), exposed after the rule
    was fixed here; a curve whose first and last values are equal starts at once, as the
    rule was first written.
    """
    from headmaps.track import onset_index

    i = onset_index(curve, fraction)
    return 0 if i is None else i


def run(args: argparse.Namespace) -> dict:
    """Train, measure both sides, print the comparison; returns the run's sample."""
    import headmaps as hm

    if args.work is None:
        with tempfile.TemporaryDirectory() as tmp:
            args.work = tmp
            return run(args)
    work = Path(args.work)
    torch.set_num_threads(args.threads)
    print(f"# Induction ground truth, seed {args.seed}")
    t = time.perf_counter()
    paths = train(args.seed, work)
    print(f"trained {STEPS} steps, {len(paths)} checkpoints in {time.perf_counter() - t:.0f} s")
    steps = np.array([int(p.name.split("-")[1]) for p in paths])
    t = time.perf_counter()
    beh = behaviour(paths)
    print(f"behaviour (forward passes) in {time.perf_counter() - t:.0f} s")
    t = time.perf_counter()
    res = hm.track([str(p) for p in paths], relations=None, types=True, workers=1)
    print(f"hm.track (parameters only) in {time.perf_counter() - t:.0f} s")
    res.save(work / "track")
    ind = res.type_scores[:, res.types.index("induction")]
    prev = res.type_scores[:, res.types.index("previous_token")]
    b_head = np.unravel_index(np.argmax(beh[-1]), beh[-1].shape)
    s_head = np.unravel_index(np.argmax(ind[-1]), ind[-1].shape)
    p_head = (0, int(np.argmax(prev[-1, 0])))
    curves = {"behavioural induction": beh[:, b_head[0], b_head[1]],
              "static induction": ind[:, s_head[0], s_head[1]],
              "static previous-token (partner)": prev[:, p_head[0], p_head[1]]}
    heads = {"behavioural induction": b_head, "static induction": s_head,
             "static previous-token (partner)": p_head}
    em = {k: emergence(v) for k, v in curves.items()}
    em2 = {k: emergence_onset(v) for k, v in curves.items()}
    print("\n| curve | head | step 0 | last | emergence step (checkpoint): first rule, half-way "
          f"| second rule, onset {ONSET:.0%} |")
    print("|---|---|---|---|---|---|")
    for k, v in curves.items():
        h = heads[k]
        print(f"| {k} | {h[0]}.{h[1]} | {v[0]:.3f} | {v[-1]:.3f} | {steps[em[k]]} "
              f"({em[k]}) | {steps[em2[k]]} ({em2[k]}) |")
    print(f"\nstatic induction head {s_head[0]}.{s_head[1]} "
          f"{'is' if tuple(s_head) == tuple(b_head) else 'is NOT'} the behavioural one "
          f"({b_head[0]}.{b_head[1]})")
    gaps = {}
    for name, e in (("first rule (half-way)", em), (f"second rule (onset {ONSET:.0%})", em2)):
        gap = e["static induction"] - e["behavioural induction"]
        gaps[name] = int(gap)
        print(f"{name}: emergence gap {gap:+d} checkpoints ({gap * EVERY:+d} steps): "
              f"target |gap| <= 2 {'met' if abs(gap) <= 2 else 'MISSED'}")
    print("\nevery head (a check added after the first fresh run, not a rule: behavioural and "
          "static induction at the last checkpoint, and each curve's emergence step, first "
          "rule / second rule)")
    print("| head | behavioural, last | static, last | behavioural emergence | static emergence |")
    print("|---|---|---|---|---|")
    per_head = {}
    for layer in range(beh.shape[1]):
        for h in range(beh.shape[2]):
            bc, sc = beh[:, layer, h], ind[:, layer, h]
            e = [int(steps[f(c)]) for c in (bc, sc) for f in (emergence, emergence_onset)]
            per_head[f"{layer}.{h}"] = {"behaviour_last": float(bc[-1]),
                                        "static_last": float(sc[-1]),
                                        "behaviour_emergence": e[:2], "static_emergence": e[2:]}
            print(f"| {layer}.{h} | {bc[-1]:.3f} | {sc[-1]:.3f} | {e[0]} / {e[1]} | "
                  f"{e[2]} / {e[3]} |")
    print("\ncurves (step: " + ", ".join(curves) + "):")
    for i, st in enumerate(steps):
        print(f"  {st:5d}  " + "  ".join(f"{v[i]:.4f}" for v in curves.values()))
    labels = res.first_crossing(type="induction")
    print("induction labels (the head-type rule), first crossing: "
          + (", ".join(f"{h} at {s}" for h, s in zip(labels["head"], labels["step"])) or "none"))
    if args.figure:
        write_figure(args.figure, steps, curves, heads, em, args.seed, em2)
        print(f"wrote {args.figure}")
    data = {"steps": steps.tolist(), **{k: v.tolist() for k, v in curves.items()},
            "emergence": {k: int(steps[v]) for k, v in em.items()},
            "emergence_onset": {k: int(steps[v]) for k, v in em2.items()}}
    (work / "curves.json").write_text(json.dumps(data, indent=1))
    return {"recipe": {"steps": STEPS, "every": EVERY, "batch": BATCH, "seq_len": SEQ_LEN,
                       "span": SPAN, "words": N_WORDS, "lr": 1e-3},
            "checkpoints": len(paths), "heads": {k: f"{h[0]}.{h[1]}" for k, h in heads.items()},
            "emergence_step": {k: int(steps[v]) for k, v in em.items()},
            "gap_checkpoints": gaps["first rule (half-way)"],
            "second_rule": {"rule": f"onset: first checkpoint from which the curve stays past "
                                    f"step 0 + {ONSET:g} x (last - step 0)",
                            "emergence_step": {k: int(steps[v]) for k, v in em2.items()},
                            "gap_checkpoints": gaps[f"second rule (onset {ONSET:.0%})"]},
            "every_head": per_head,
            "steps": steps.tolist(),
            "curves": {k: [round(float(x), 6) for x in v] for k, v in curves.items()}}


def write_figure(path: str, steps: np.ndarray, curves: dict, heads: dict, em: dict,
                 seed: int, em2: dict | None = None) -> None:
    """Curves normalised to [0, 1] (start to end); emergence steps: first rule dotted,
    second rule (onset) dash-dotted."""
    from matplotlib.figure import Figure

    from headmaps.io import write_figure as write

    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.add_subplot()
    for (k, v), c in zip(curves.items(), ("k", "tab:red", "tab:blue")):
        span = float(v[-1] - v[0]) or 1.0
        h = heads[k]
        ax.plot(steps, (v - v[0]) / span, color=c, marker="o", ms=3,
                label=f"{k} ({h[0]}.{h[1]}): {v[0]:.2f} -> {v[-1]:.2f}")
        ax.axvline(steps[em[k]], color=c, ls=":", lw=1)
        if em2 is not None:
            ax.axvline(steps[em2[k]], color=c, ls="-.", lw=1)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    if em2 is not None:
        ax.axhline(ONSET, color="grey", lw=0.8, ls="-.")
    ax.set_xlabel("training step")
    ax.set_ylabel("score, from step 0 (0) to last (1)")
    ax.set_title(f"Induction phase change, seed {seed}: behaviour vs parameters")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    write(fig, path, dpi=150)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=None,
                    help="folder for the checkpoints (default: a temporary one, removed)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--figure", default=None, help="write the curves here (.png/.svg)")
    ap.add_argument("--model", default="induction-toy-llama-2l", help=argparse.SUPPRESS)
    run_with_report(ap, argv, __file__, run)


if __name__ == "__main__":
    main()
