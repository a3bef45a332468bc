"""Score descriptions on what the describer did not see: held-out source tokens.

A description of head ``L.H`` was written from its ``n_shown`` most salient source tokens
and their top targets. To score it, headmaps draws **held-out** source tokens that were
not shown: the next ``n_salient`` tokens by saliency (ranks ``n_shown..n_shown+n_salient``)
and ``n_random`` tokens drawn from the rest of the vocabulary with probability
proportional to the head's saliency (seeded). Their real top-``k`` targets come from the
same projection as the salient operations (:func:`headmaps.salient.salient_all` with a
``select`` function). The held-out tokens never include a token shown to the describer
(checked).

Per held-out token the description predicts targets, and a token is a **hit** when one
prediction is among the head's real top-``k`` targets (texts compared stripped and
casefolded). The score is the hit rate.

* ``offline`` (no LLM): a :class:`~headmaps.describe.PatternDescriber` description names
  its rule (:attr:`Description.rule`); the rule itself predicts. Tokens the rule does not
  apply to (a relation's rule on a token outside the relation, a numeric rule on a word)
  are excluded and counted. **Baseline**: the same rule on the held-out tokens of every
  other head of the layers scored, pooled (the shuffled-description baseline), so a rule
  that fits any head scores at its baseline.
* ``simulation`` (an LLM): the scoring LLM gets the description and one held-out token
  and proposes up to ``k`` targets as JSON; **baseline**: the description with another
  head's held-out tokens and targets (a seeded derangement of the scored heads).
  Requests go through :class:`~headmaps.describe.LLMDescriber` (its client settings,
  retries and on-disk cache), several at a time.

Descriptions in free words (the LLM describer's) can only be scored by simulation;
"Unclear" descriptions and input-only descriptions ("Inputs are years; no clear mapping
pattern") name no mapping and are not scored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .. import projection as P
from ..errors import HeadmapsError
from ..io import versions
from ..salient import SalientAll
from .base import Description
from .library import key
from .llm import AnswerError, LLMDescriber, LLMError
from .pattern import PatternDescriber
from .prompts import SIM_REPAIR, description_prompt, parse_targets, simulation_messages
from .results import DescriptionScore, DescriptionScores
from .sampling import (
    DEFAULT_K,
    DEFAULT_N_RANDOM,
    DEFAULT_N_SALIENT,
    derangement,
    head_rng,
    held_out_ids,
)

#: The scoring methods :func:`score_descriptions` takes.
METHODS = ("auto", "offline", "simulation")


def hit(predicted: Iterable[str], targets: Iterable[str]) -> bool:
    """Whether one predicted string is one of ``targets`` (stripped, casefolded)."""
    keys = {key(t) for t in targets if key(t)}
    return any(key(p) in keys for p in predicted)


def simulate(scorer: LLMDescriber, description: str, token: str,
             k: int) -> tuple[list[str] | None, int]:
    """The scorer's proposed targets for ``token`` (None if invalid after one repair request).

    Returns:
        ``(targets or None, answers asked for)``: 1, or 2 with the repair (cache hits
        included).
    """
    messages = simulation_messages(description, token, k)
    answer = scorer.complete(messages)
    try:
        return parse_targets(answer)[:k], 1
    except AnswerError as err:
        repair = [*messages, {"role": "assistant", "content": answer},
                  {"role": "user", "content": SIM_REPAIR.format(error=err)}]
        try:
            return parse_targets(scorer.complete(repair))[:k], 2
        except AnswerError:
            return None, 2


def _method_for(d: Description, method: str, scorer: LLMDescriber | None) -> tuple[str, str]:
    """(method, reason not scored) for one description."""
    if d.unclear:
        return "none", "error" if d.error else "unclear"
    if d.category == "input_category":
        return "none", "names no mapping (what the inputs share only)"
    if method in ("auto", "offline") and d.rule:
        return "offline", ""
    if method == "offline":
        return "none", "no rule: needs an LLM scorer (method='simulation')"
    if scorer is None:
        return "none", "no rule and no scorer: pass scorer= (an LLMDescriber) to simulate"
    return "simulation", ""


def score_descriptions(
    model: Any,
    descriptions: Iterable[Description],
    salient: SalientAll | None = None,
    *,
    method: str = "auto",
    scorer: LLMDescriber | None = None,
    describer: PatternDescriber | None = None,
    n_shown: int | None = None,
    n_salient: int = DEFAULT_N_SALIENT,
    n_random: int = DEFAULT_N_RANDOM,
    k: int | None = None,
    seed: int = 0,
    projection: P.ProjectionLike = None,
    skip_nonwords: bool | str | None = None,
    workers: int = 4,
    progress: bool = False,
    exclude: Mapping[tuple[int, int], Iterable[int]] | None = None,
) -> DescriptionScores:
    """Score each description on held-out source tokens of its head (module docstring).

    Args:
        model: the model the descriptions are of.
        descriptions: the descriptions (e.g. from :func:`~headmaps.describe.describe_all`);
            all heads passed take part in the baselines.
        salient: the salient operations the descriptions were written from: their tokens
            are the shown ones, and their projection, filter and ``n_tokens`` are reused.
            Without it, the shown tokens are the top ``n_shown`` by saliency under
            ``projection``/``skip_nonwords`` (as :func:`~headmaps.salient_all`).
        method: ``auto`` (offline for descriptions with a rule, simulation for the rest
            when a ``scorer`` is given), ``offline`` or ``simulation`` (every clear
            description through the scorer).
        scorer: the scoring LLM (an :class:`LLMDescriber`: endpoint, retries, cache).
        describer: the pattern describer whose rules are checked offline (default: one
            with the built-in relation library; pass the one that wrote the descriptions
            when it had other relations).
        n_shown: tokens shown to the describer (default ``salient``'s ``n_tokens``, or 15).
        n_salient: held-out tokens taken next in saliency order.
        n_random: held-out tokens drawn from the vocabulary, weighted by saliency.
        k: the head's real targets per held-out token (default ``salient``'s
            ``n_mappings``, or 5).
        seed: seed of the draws and of the derangement for the simulation baseline.
        projection: the projection without ``salient`` (as :func:`~headmaps.salient_all`).
        skip_nonwords: the non-word filter without ``salient``.
        workers: concurrent LLM requests.
        progress: show progress bars.
        exclude: ``(layer, head) -> token ids`` never to hold out either (a sample
            already used, for a fresh one).

    Returns:
        :class:`DescriptionScores`, one entry per description in order (several
        descriptions of one head are scored on the same sample).

    Raises:
        HeadmapsError: an unknown method, bad sample sizes, or ``method="simulation"``
            without a scorer; LLMError: the scorer's endpoint fails after its retries.
    """
    import time

    from ..salient import salient_all
    from ..salient.tokens import skip_label

    t0 = time.perf_counter()
    if method not in METHODS:
        raise HeadmapsError(f"unknown scoring method {method!r}; use one of {', '.join(METHODS)}")
    if method == "simulation" and scorer is None:
        raise HeadmapsError("method='simulation' needs a scorer (an LLMDescriber)")
    if n_salient < 0 or n_random < 0 or n_salient + n_random < 1:
        raise HeadmapsError(f"the held-out sample is empty: n_salient={n_salient}, "
                            f"n_random={n_random}")
    if k is not None and k < 1 or workers < 1:
        raise HeadmapsError(f"k and workers must be at least 1, got {k} and {workers}")
    descs = list(descriptions)
    if not descs:
        raise HeadmapsError("no descriptions to score")
    layers = sorted({d.layer for d in descs})
    if salient is not None:
        missing = [d.name for d in descs if d.layer not in salient.layers
                   or not 0 <= d.head < salient.n_heads]
        if missing:
            raise HeadmapsError(f"the salient operations do not cover head(s) "
                                f"{', '.join(missing[:5])}")
        n_shown = salient.token_ids.shape[2] if n_shown is None else n_shown
        k = salient.target_ids.shape[3] if k is None else k
        # the salient operations' projection, with how it was chosen
        proj: dict[str, Any] = {"projection": P.Projection.from_record(salient),
                                "skip_nonwords": salient.skip_nonwords}
        shown = {(layer, h): set(salient.token_ids[i, h].tolist())
                 for i, layer in enumerate(salient.layers) for h in range(salient.n_heads)}
    else:
        n_shown = 15 if n_shown is None else n_shown
        k = DEFAULT_K if k is None else k
        proj = {"projection": projection, "skip_nonwords": skip_nonwords or False}
        shown = {}
    pattern = describer or PatternDescriber()
    banned = {key_: set(ids) for key_, ids in shown.items()}
    for key_, ids in (exclude or {}).items():
        banned.setdefault(tuple(key_), set()).update(int(i) for i in ids)

    def select(layer: int, sal: np.ndarray) -> np.ndarray:
        rows = [held_out_ids(sal[h], banned.get((layer, h), ()), n_shown, n_salient, n_random,
                             head_rng(seed, layer, h)) for h in range(sal.shape[0])]
        n = min(len(r) for r in rows)
        return np.stack([r[:n] for r in rows])

    held = salient_all(model, layers, n_mappings=k, select=select, progress=progress, **proj)
    sample = {(o.layer, o.head): o for o in held}
    for (layer, h), ops in sample.items():  # the promise of the module, checked
        assert not banned.get((layer, h), set()) & set(ops.token_ids.tolist())

    results: list[DescriptionScore] = []
    for d in descs:
        m, reason = _method_for(d, method, scorer)
        ops = sample[d.layer, d.head]
        results.append(DescriptionScore(
            d.layer, d.head, d.text, d.rule, m, k=k, reason=reason,
            token_ids=[int(i) for i in ops.token_ids], tokens=list(ops.tokens),
            targets=[list(t) for t in ops.targets]))
    heads = sorted(sample)
    _score_offline(results, sample, heads, pattern, progress)
    calls0 = scorer.requests if scorer is not None else 0
    hits0 = scorer.cache_hits if scorer is not None else 0
    if scorer is not None:
        by_head = {(d.layer, d.head): d for d in descs}
        _score_simulation(results, by_head, sample, scorer, k, seed, workers, progress)
    return DescriptionScores(
        results, getattr(model, "model_id", ""), method, int(n_shown), n_salient, n_random,
        int(k), seed, scorer.name if scorer is not None else "", held.preset, dict(held.options),
        skip_label(proj.get("skip_nonwords")),
        (scorer.requests - calls0) if scorer is not None else 0,
        (scorer.cache_hits - hits0) if scorer is not None else 0,
        time.perf_counter() - t0, versions(), dict(held.calibration))


def _rule_hits(pattern: PatternDescriber, rule: str, tokens: Sequence[str],
               targets: Sequence[Sequence[str]]) -> list[int]:
    """1/0 per token, -1 where the rule does not apply."""
    out = []
    for s, ts in zip(tokens, targets):
        if not pattern.rule_applies(rule, s):
            out.append(-1)
        else:
            out.append(int(any(pattern.rule_hit(rule, s, t) for t in ts)))
    return out


def _rate(hits: Sequence[int]) -> tuple[float, int, int]:
    """(hit rate over applicable tokens or NaN, applicable, excluded)."""
    used = [h for h in hits if h >= 0]
    return (float(np.mean(used)) if used else math.nan), len(used), len(hits) - len(used)


def _score_offline(results: list[DescriptionScore], sample: dict, heads: list[tuple[int, int]],
                   pattern: PatternDescriber, progress: bool) -> None:
    todo = [r for r in results if r.method == "offline"]
    for r in tqdm(todo, desc="score (offline)", unit="head", disable=not progress):
        try:
            r.hits = _rule_hits(pattern, r.rule or "", r.tokens, r.targets)
        except KeyError as err:
            r.method, r.reason = "none", f"rule {err.args[0]!r} unknown to the describer"
            continue
        r.score, r.n, r.n_excluded = _rate(r.hits)
        r.predictions = [[] for _ in r.tokens]
        pooled: list[int] = []
        for other in heads:
            if other == (r.layer, r.head):
                continue
            o = sample[other]
            pooled += _rule_hits(pattern, r.rule or "", o.tokens, o.targets)
        r.baseline, r.baseline_n, _ = _rate(pooled)
        if r.n == 0:
            r.reason = "the rule applies to none of the held-out tokens"


def _score_simulation(results: list[DescriptionScore], by_head: dict, sample: dict,
                      scorer: LLMDescriber, k: int, seed: int, workers: int,
                      progress: bool) -> None:
    todo = [r for r in results if r.method == "simulation"]
    if not todo:
        return
    others = derangement(len(todo), np.random.default_rng([int(seed), 1]))
    jobs: list[tuple[int, str, int, str, list[str]]] = []  # (result idx, which, i, token, tgts)
    texts = {}
    for j, r in enumerate(todo):
        texts[j] = description_prompt(by_head[r.layer, r.head])
        for i, (tok, tgts) in enumerate(zip(r.tokens, r.targets)):
            jobs.append((j, "real", i, tok, tgts))
        if len(todo) > 1:
            o = todo[int(others[j])]
            for i, (tok, tgts) in enumerate(zip(o.tokens, o.targets)):
                jobs.append((j, "base", i, tok, tgts))
    def run(job):
        j, _which, _i, tok, _t = job
        return simulate(scorer, texts[j], tok, k)

    answers: list[tuple[list[str] | None, int]] = [(None, 0)] * len(jobs)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run, job) for job in jobs]
        for n, fut in enumerate(tqdm(futures, desc="score (simulation)", unit="call",
                                     disable=not progress)):
            try:
                answers[n] = fut.result()
            except LLMError:
                for f in futures:
                    f.cancel()
                raise
    real: dict[int, list[tuple[int, list[str] | None, list[str]]]] = {j: [] for j in texts}
    base: dict[int, list[int]] = {j: [] for j in texts}
    calls = dict.fromkeys(texts, 0)
    for (j, which, i, _tok, tgts), (ans, n_calls) in zip(jobs, answers):
        calls[j] += n_calls
        if which == "real":
            real[j].append((i, ans, tgts))
        else:
            base[j].append(-1 if ans is None else int(hit(ans, tgts)))
    for j, r in enumerate(todo):
        got = sorted(real[j], key=lambda x: x[0])
        r.predictions = [list(a) if a is not None else [] for _, a, _ in got]
        r.hits = [-1 if a is None else int(hit(a, t)) for _, a, t in got]
        r.score, r.n, r.n_excluded = _rate(r.hits)
        r.baseline, r.baseline_n, _ = _rate(base[j])
        r.llm_calls = calls[j]
        if r.n == 0:
            r.reason = "no valid answer from the scorer"
