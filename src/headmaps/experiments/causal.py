"""Causal effect of relation heads: zero their output at the last position, measure accuracy.

Per relation, as in the paper: the relation's few-shot/natural prompt template filled with
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
from .options import RunOptions, take
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


def accuracy(model: HeadModel, task: Task, heads: Sequence[Head] = (),
             batch_size: int = 64) -> float:
    """Fraction of prompts whose argmax next token is the target, with ``heads`` zeroed.

    Full forward passes; :class:`Evaluator` is the fast equivalent.
    """
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


@dataclass(frozen=True)
class AblationOptions:
    """How the causal experiment removes heads and what it compares with.

    Attributes:
        m: heads to remove at most (default :func:`heads_budget`).
        n_random: draws of random heads (seeded).
        random_points: random heads are evaluated at this many evenly spaced points of
            the curve (the last is the full count).
        shots: demonstrations (pairs of the relation not evaluated) put before each
            prompt, which makes the template few-shot; 0 for the bare template.
        max_controls: control relations per relation at most (seeded choice), None for all.
        control_overlap: a control shares less than this fraction of the removed heads.
        control_acc_window: a control's base accuracy is within this of the relation's.
    """

    m: int | None = None
    n_random: int = 5
    random_points: int = 5
    shots: int = 0
    max_controls: int | None = 3
    control_overlap: float = 0.15
    control_acc_window: float = 0.2


def causal(
    model: HeadModel,
    relations: Any = "all",
    *,
    run: RunOptions | None = None,
    ablation: AblationOptions | None = None,
    prompt_templates: dict[str, str] | None = None,
    static: ScanResult | None = None,
    **kwargs: Any,
) -> CausalResult:
    """Zero the top relation heads and compare with random heads and control relations.

    Args:
        model: a HeadModel with its transformers model.
        relations: as for :func:`headmaps.scan`; each needs a prompt template (built-in
            relations have one; give others in ``prompt_templates``).
        run: k and projection of the static scores, max_pairs (prompts per relation),
            min_pairs, batch_size (default 64), seed, progress (:class:`RunOptions`).
        ablation: how many heads, random draws and controls (:class:`AblationOptions`).
        prompt_templates: relation -> template with ``<X>`` (overrides the library's).
        static: reuse static scores (a :class:`ScanResult` with these relations).
        **kwargs: fields of :class:`AblationOptions` (``m=3``) or :class:`RunOptions`
            (``k=5``, ``projection="norms"``).

    Returns:
        :class:`CausalResult`.
    """
    abl = take(AblationOptions, ablation, kwargs)
    run = RunOptions.from_kwargs(run, kwargs, batch_size=64)
    proj = P.projection_for(model, run.projection)
    if static is None:
        static = scan(model, relations, k=run.k, projection=proj, min_pairs=run.min_pairs)
    L, H = model.n_layers, model.n_heads
    m = abl.m if abl.m is not None else heads_budget(L * H)
    tasks = build_tasks(model, static.relations, relations, prompt_templates or {}, abl.shots, run)
    names = list(tasks)
    bar = tqdm(names, desc="causal: prefixes + base accuracy", unit="relation",
               disable=not run.progress)
    evals = {n: Evaluator(model, tasks[n], run.batch_size) for n in bar}
    base = {n: evals[n].accuracy() for n in names}
    top = {n: ranked_heads(static.scores[static.relations.index(n)], m) for n in names}
    rng = np.random.default_rng(run.seed)
    all_heads = [(layer, h) for layer in range(L) for h in range(H)]
    rows, curves, controls = [], [], {}
    for name in tqdm(names, desc="causal: ablations", unit="relation", disable=not run.progress):
        curve = ablation_curve(evals[name], base[name], top[name], all_heads, abl, rng)
        curves += [[name, j, *point] for j, point in enumerate(curve)]
        cands = [c for c in names if c != name and overlap(top[name], top[c]) < abl.control_overlap
                 and abs(base[c] - base[name]) <= abl.control_acc_window]
        if abl.max_controls is not None and len(cands) > abl.max_controls:
            keep = rng.choice(len(cands), abl.max_controls, replace=False)
            cands = [cands[i] for i in sorted(keep)]
        controls[name] = cands
        c_before = [base[c] for c in cands]
        c_after = [evals[c].accuracy(top[name]) for c in cands] if top[name] else c_before
        final = curve[-1]
        rows.append([name, len(top[name]), base[name], final[0],
                     base[name] if np.isnan(final[1]) else final[1],
                     0.0 if np.isnan(final[2]) else final[2],
                     len(cands), float(np.mean(c_before)) if cands else np.nan,
                     float(np.mean(c_after)) if cands else np.nan])
    return CausalResult(
        per_relation=pd.DataFrame(rows, columns=CAUSAL_COLUMNS),
        curves=pd.DataFrame(curves, columns=CURVE_COLUMNS),
        heads={n: [f"{a}.{b}" for a, b in top[n]] for n in names}, controls=controls,
        model_id=model.model_id, preset=proj.name, options=proj.options.to_dict(),
        meta={"m": m, "n_random": abl.n_random, "random_points": abl.random_points,
              "seed": run.seed,
              "n_prompts": {n: len(tasks[n].ids) for n in names},
              "templates": {n: tasks[n].template for n in names}, "shots": abl.shots, "k": static.k,
              "skipped": static.skipped, "max_controls": abl.max_controls,
              "calibration": dict(proj.calibration)})


def build_tasks(model: HeadModel, names: Sequence[str], relations: Any,
                prompt_templates: dict[str, str],
                shots: int, run: RunOptions) -> dict[str, Task]:
    """The prompts of every relation in ``names`` that has a prompt template.

    Args:
        model: the model (its tokenizer).
        names: the relations scored statically.
        relations: the ``relations`` argument of :func:`causal` (names or pair sets).
        prompt_templates: relation -> template, overriding the library's.
        shots: demonstrations before each prompt (pairs kept out of the evaluation).
        run: ``max_pairs`` and ``seed`` of the seeded subsets.
    """
    specs = dict(normalise_relations(relations))
    tasks: dict[str, Task] = {}
    for name in names:
        spec = specs.get(name, name)
        template = prompt_templates.get(name)
        if template is None and isinstance(spec, str):
            template = getattr(rel_lib.info(spec), "prompt_template", None)
        if not template:
            logger.warning("causal: %s has no prompt template (give one in prompt_templates); "
                           "skipped", name)
            continue
        every = (rel_lib.load(spec) if isinstance(spec, str) else [tuple(p) for p in spec])
        demos = subsample(every, shots, run.seed + 1) if shots else []
        pairs = subsample([p for p in every if p not in demos], run.max_pairs, run.seed)
        if pairs:
            tasks[name] = build_task(model, name, pairs, template, demos)
    return tasks


def ablation_curve(ev: Evaluator, base: float, heads: list[Head], all_heads: list[Head],
                   abl: AblationOptions,
                   rng: np.random.Generator) -> list[tuple[float, float, float]]:
    """Accuracy with the top ``j`` relation heads zeroed, and with ``j`` random other heads.

    Args:
        ev: the relation's evaluator.
        base: its accuracy with nothing removed.
        heads: its relation heads, best first.
        all_heads: every head of the model.
        abl: ``n_random`` and ``random_points``.
        rng: the run's random generator (draws follow one another across relations).

    Returns:
        For ``j = 0 .. len(heads)``: ``(acc_relation, acc_random_mean, acc_random_std)``;
        the random columns are NaN where random heads were not evaluated (see
        ``abl.random_points``) and, at ``j = 0``, both are the base accuracy's.
    """
    n = len(heads)
    curve = [base] + [ev.accuracy(heads[:j]) for j in range(1, n + 1)]
    taken = set(heads)
    others = [h for h in all_heads if h not in taken]
    points = sorted({int(round(x)) for x in np.linspace(0, n, abl.random_points + 1)[1:]} - {0})
    draws = [[others[i] for i in rng.permutation(len(others))[:n]] for _ in range(abl.n_random)]
    rand = {j: [ev.accuracy(d[:j]) for d in draws] for j in points}
    out = []
    for j in range(n + 1):
        r = rand.get(j)
        out.append((curve[j], float(np.mean(r)) if r else np.nan,
                    float(np.std(r)) if r else np.nan))
    return out
