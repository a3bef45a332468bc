"""Causal effect of relation heads: zero their output at the last position, measure accuracy.

Per relation (DESIGN §2): the relation's few-shot/natural prompt template filled with
each source; accuracy = how often the argmax next token is the first token of
``" target"``. The relation's heads are ranked by their static score ``phi_R`` (only
heads with a non-zero score); the top ``m`` are zeroed one more at a time (the curve),
``m`` by model size (30/50/100/150/250 for < 300/500/1000/1500/more heads). Baselines:
the same number of random other heads (several seeded draws), and control relations
(head overlap < 15 %, base accuracy within 0.2) with the relation's heads removed.

"Zeroing a head" sets its slice of the output projection's input to 0 at the last
position only, which removes exactly ``z_h W_O^h`` from the layer's output there.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .. import projection as P
from .. import relations as rel_lib
from ..models import HeadModel
from ..scoring import ScanResult, scan
from ..scoring.engine import normalise_relations
from .dynamic import PLACEHOLDER, pad_id, pad_right, subsample, word_ids
from .hooks import ablation_hooks, next_token_logits, next_token_logits_cached, prefix_cache
from .results import CAUSAL_COLUMNS, CURVE_COLUMNS, CausalResult

logger = logging.getLogger(__name__)

Head = tuple[int, int]


def heads_budget(n_heads_total: int) -> int:
    """The paper's number of heads to remove: 30/50/100/150/250 by model size."""
    for limit, m in ((300, 30), (500, 50), (1000, 100), (1500, 150)):
        if n_heads_total < limit:
            return m
    return 250


@dataclass
class Task:
    """Prompts of one relation for next-token accuracy.

    Attributes:
        name: relation name.
        template: the prompt template (one ``<X>``).
        ids: token ids of each prompt.
        targets: ``(N,)`` first token of each ``" target"``.
    """

    name: str
    template: str
    ids: list[list[int]]
    targets: torch.Tensor


def build_task(model: HeadModel, name: str, pairs: Sequence[tuple[str, str]], template: str,
               shots: Sequence[tuple[str, str]] = ()) -> Task:
    """Fill ``template`` with each source (plain text) and take each target's first token.

    Args:
        model: the model (its tokenizer).
        name: relation name.
        pairs: the evaluated (source, target) pairs.
        template: text with one ``<X>``, e.g. ``"The capital of <X> is"``.
        shots: demonstrations put before every prompt, one per line, each the template
            filled with a source and followed by ``" " + target``.
    """
    tok = model.require_tokenizer()
    demo = "".join(template.replace(PLACEHOLDER, s) + " " + t + "\n" for s, t in shots)
    ids = [list(tok(demo + template.replace(PLACEHOLDER, s))["input_ids"]) for s, _ in pairs]
    targets = torch.as_tensor([word_ids(tok, t)[0] for _, t in pairs], dtype=torch.long)
    return Task(name, template, ids, targets)


def accuracy(model: HeadModel, task: Task, heads: Sequence[Head] = (), batch_size: int = 64) -> float:
    """Fraction of prompts whose argmax next token is the target, with ``heads`` zeroed
    (full forward passes; :class:`Evaluator` is the fast equivalent)."""
    if not task.ids:
        return float("nan")
    pad = pad_id(model.require_tokenizer())
    correct = 0
    for b0 in range(0, len(task.ids), batch_size):
        ids, mask = pad_right(task.ids[b0:b0 + batch_size], pad)
        hooks = ablation_hooks(model, heads, mask) if heads else []
        logits = next_token_logits(model, ids, mask, hooks)
        pred = logits.argmax(-1).cpu()
        correct += int((pred == task.targets[b0:b0 + batch_size]).sum())
    return correct / len(task.ids)


class Evaluator:
    """Next-token accuracy of one task under many ablations, the prompts' prefixes run once.

    Zeroing heads at the last position cannot change any earlier position (attention is
    causal), so the prompts' key/value caches without their last token are computed once
    (prompts grouped by length, no padding) and every ablation runs the last token only.

    Args:
        model: the model.
        task: the prompts.
        batch_size: prompts per group pass.
    """

    def __init__(self, model: HeadModel, task: Task, batch_size: int = 64):
        self.model, self.task = model, task
        by_len: dict[int, list[int]] = {}
        for i, ids in enumerate(task.ids):
            by_len.setdefault(len(ids), []).append(i)
        self.groups = []
        for n, idx in sorted(by_len.items()):
            for b0 in range(0, len(idx), batch_size):
                bi = idx[b0:b0 + batch_size]
                ids = torch.as_tensor([task.ids[i] for i in bi], dtype=torch.long)
                cache = prefix_cache(model, ids[:, :-1]) if n > 1 else None
                self.groups.append((ids, cache, task.targets[bi]))

    def predictions(self, heads: Sequence[Head] = ()) -> torch.Tensor:
        """Argmax next token of every prompt (in group order) with ``heads`` zeroed."""
        preds = []
        for ids, cache, _ in self.groups:
            if cache is None:
                mask = torch.ones_like(ids)
                logits = next_token_logits(self.model, ids, mask,
                                           ablation_hooks(self.model, heads, mask) if heads else [])
            else:
                mask = torch.ones(len(ids), 1, dtype=torch.long)
                hooks = ablation_hooks(self.model, heads, mask) if heads else []
                logits = next_token_logits_cached(self.model, cache, ids[:, -1:], hooks)
            preds.append(logits.argmax(-1).cpu())
        return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)

    def accuracy(self, heads: Sequence[Head] = ()) -> float:
        """Fraction of prompts whose argmax next token is the target."""
        if not self.task.ids:
            return float("nan")
        targets = torch.cat([t for _, _, t in self.groups])
        return float((self.predictions(heads) == targets).float().mean())


def ranked_heads(scores: np.ndarray, m: int) -> list[Head]:
    """The top ``m`` heads by score among those with a non-zero score, best first.

    Args:
        scores: ``(n_layers, n_heads)``.
        m: how many at most.
    """
    flat = scores.ravel()
    order = np.argsort(-flat, kind="stable")
    order = [int(i) for i in order if flat[i] > 0][:m]
    H = scores.shape[1]
    return [(i // H, i % H) for i in order]


def overlap(a: Sequence[Head], b: Sequence[Head]) -> float:
    """Fraction of ``a``'s heads that are also in ``b`` (0 when ``a`` is empty)."""
    return len(set(a) & set(b)) / len(a) if a else 0.0


def causal(
    model: HeadModel,
    relations: Any = "all",
    k: int | dict[str, int] | None = None,
    preset: str | P.ProjectionOptions | None = None,
    *,
    m: int | None = None,
    n_random: int = 5,
    shots: int = 0,
    random_points: int = 5,
    max_pairs: int | None = None,
    min_pairs: int = rel_lib.MIN_PAIRS,
    max_controls: int | None = 3,
    control_overlap: float = 0.15,
    control_acc_window: float = 0.2,
    prompt_templates: dict[str, str] | None = None,
    static: ScanResult | None = None,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = False,
    **options: Any,
) -> CausalResult:
    """Zero the top relation heads and compare with random heads and control relations.

    Args:
        model: a HeadModel with its transformers model.
        relations: as for :func:`headmaps.scan`; each needs a prompt template (built-in
            relations have one; give others in ``prompt_templates``).
        k: top-k of the static scores.
        preset: projection preset of the static scores.
        m: heads to remove at most (default :func:`heads_budget`).
        n_random: draws of random heads (seeded).
        shots: demonstrations (pairs of the relation not evaluated) put before each
            prompt, which makes the template few-shot; 0 for the bare template.
        random_points: random heads are evaluated at this many evenly spaced points of
            the curve (the last is the full count).
        max_pairs: prompts per relation at most (seeded subset of the relation's pairs).
        min_pairs: a relation needs this many single-token pairs for its static score.
        max_controls: control relations per relation at most (seeded choice), None for all.
        control_overlap: a control shares less than this fraction of the removed heads.
        control_acc_window: a control's base accuracy is within this of the relation's.
        prompt_templates: relation -> template with ``<X>`` (overrides the library's).
        static: reuse static scores (a :class:`ScanResult` with these relations).
        batch_size: prompts per forward pass.
        seed: seed of subsets and random draws.
        progress: show progress bars.
        **options: projection option overrides of the static scores.

    Returns:
        :class:`CausalResult`.
    """
    opts = P.resolve_options(preset, **options)
    if static is None:
        static = scan(model, relations, k=k, preset=opts, min_pairs=min_pairs)
    L, H = model.n_layers, model.n_heads
    m = m if m is not None else heads_budget(L * H)
    prompt_templates = dict(prompt_templates or {})
    specs = dict(normalise_relations(relations))
    tasks: dict[str, Task] = {}
    for name in static.relations:
        spec = specs.get(name, name)
        template = prompt_templates.get(name)
        if template is None and isinstance(spec, str):
            template = getattr(rel_lib.info(spec), "prompt_template", None)
        if not template:
            logger.warning("causal: %s has no prompt template (give one in prompt_templates); "
                           "skipped", name)
            continue
        every = (rel_lib.load(spec) if isinstance(spec, str) else [tuple(p) for p in spec])
        demos = subsample(every, shots, seed + 1) if shots else []
        pairs = subsample([p for p in every if p not in demos], max_pairs, seed)
        if not pairs:
            continue
        tasks[name] = build_task(model, name, pairs, template, demos)
    names = list(tasks)
    rng = np.random.default_rng(seed)
    all_heads = [(layer, h) for layer in range(L) for h in range(H)]
    bar = tqdm(names, desc="causal: prefixes + base accuracy", unit="relation", disable=not progress)
    evals = {n: Evaluator(model, tasks[n], batch_size) for n in bar}
    base = {n: evals[n].accuracy() for n in names}
    top = {n: ranked_heads(static.scores[static.relations.index(n)], m) for n in names}

    rows, curves, controls = [], [], {}
    for name in tqdm(names, desc="causal: ablations", unit="relation", disable=not progress):
        heads = top[name]
        n = len(heads)
        acc = evals[name].accuracy
        curve = [base[name]] + [acc(heads[:j]) for j in range(1, n + 1)]
        others = [h for h in all_heads if h not in set(heads)]
        points = sorted({int(round(x)) for x in np.linspace(0, n, random_points + 1)[1:]} - {0})
        draws = [[others[i] for i in rng.permutation(len(others))[:n]] for _ in range(n_random)]
        rand = {j: [acc(d[:j]) for d in draws] for j in points}
        for j in range(n + 1):
            r = rand.get(j)
            curves.append([name, j, curve[j], float(np.mean(r)) if r else np.nan,
                           float(np.std(r)) if r else np.nan])
        cands = [c for c in names if c != name and overlap(heads, top[c]) < control_overlap
                 and abs(base[c] - base[name]) <= control_acc_window]
        if max_controls is not None and len(cands) > max_controls:
            cands = [cands[i] for i in sorted(rng.choice(len(cands), max_controls, replace=False))]
        controls[name] = cands
        c_before = [base[c] for c in cands]
        c_after = [evals[c].accuracy(heads) for c in cands] if n else c_before
        r_final = rand.get(n, [base[name]])
        rows.append([name, n, base[name], curve[-1], float(np.mean(r_final)), float(np.std(r_final)),
                     len(cands), float(np.mean(c_before)) if cands else np.nan,
                     float(np.mean(c_after)) if cands else np.nan])
    return CausalResult(
        table=pd.DataFrame(rows, columns=CAUSAL_COLUMNS), curves=pd.DataFrame(curves, columns=CURVE_COLUMNS),
        heads={n: [f"{a}.{b}" for a, b in top[n]] for n in names}, controls=controls,
        model_id=model.model_id, preset=P.preset_name(preset, opts), options=opts.to_dict(),
        meta={"m": m, "n_random": n_random, "random_points": random_points, "seed": seed,
              "n_prompts": {n: len(tasks[n].ids) for n in names},
              "templates": {n: tasks[n].template for n in names}, "shots": shots, "k": static.k,
              "skipped": static.skipped, "max_controls": max_controls})
