"""`hm.diff(a, b)`: what changed in every head between two checkpoints of one architecture.

Heads are matched by position: head ``L.H`` of ``a`` is compared with head ``L.H`` of
``b`` (fine-tuning, further training and quantisation keep the heads where they are; a
model whose heads were permuted would need a matching this does not attempt). Parts:

* **relations** (approach A on both models, the same projection, the same pairs and
  k): per head and relation, the change of the relation and suppression scores with a
  noise floor from a paired bootstrap over the pairs (:mod:`.noise`);
* **weights** (exact, no sample, so no noise floor): the relative change of
  ``W_VO = W_V W_O`` and of the content part ``W_QK = W_Q W_K^T`` in Frobenius norm, and
  the largest principal angle between the two heads' OV subspaces (what the circuit
  reads, the column space of ``W_VO``; what it writes, its row space), all through the
  rank-``d_head`` factors (:mod:`.weights`);
* **salient** (optional): overlap (Jaccard) of the salient source tokens and of the
  mappings ``source -> target``, compared by token string; deterministic over the
  whole vocabulary, no noise floor;
* **qk** (optional): the total-variation distance between the two positional
  profiles' softmax weights (mean query on mean key, deterministic, no noise floor) and
  both preferred distances;
* **types** (optional): both models' head-type scores and labels
  (:func:`headmaps.head_types`); the previous-token score comes from a sample of random
  tokens (the same seed on both sides), for which no noise floor is computed here.

Per model, the salient operations and the QK profiles are stepped together over one
shared vocabulary stream (:func:`headmaps.steps.run_steps`), as the parts of a report are.

Vocabularies: equal, or mapped by token string. Relation pairs are kept when they are
single tokens in both models (their count is ``n_pairs``); each model's ranks are over
its own vocabulary; the number of token strings the two share is reported.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import projection as P
from .. import relations as rel_lib
from ..errors import HeadmapsError
from ..io import versions
from ..models import HeadModel
from ..scoring.engine import scan
from ..scoring.results import DEFAULT_TAU, ScanResult
from ..steps import run_steps
from . import noise
from . import weights as W
from .results import NO_FLOOR, HeadDiff

logger = logging.getLogger(__name__)


class ShapeMismatchError(HeadmapsError, ValueError):
    """Two models whose heads cannot be matched by position (different sizes)."""


def check_shapes(a: HeadModel, b: HeadModel) -> None:
    """Raise :class:`ShapeMismatchError` unless layers, heads and ``d_model`` agree."""
    bad = [f"{name} {x} vs {y}" for name, x, y in (
        ("n_layers", a.n_layers, b.n_layers), ("n_heads", a.n_heads, b.n_heads),
        ("d_model", a.d_model, b.d_model)) if x != y]
    if bad:
        raise ShapeMismatchError(f"cannot diff {a.model_id} and {b.model_id}: heads are matched "
                                 f"by position and the shapes differ ({', '.join(bad)})")


def vocabulary_map(a: HeadModel, b: HeadModel) -> dict[str, Any]:
    """How the two vocabularies relate: ``equal``, sizes, and the token strings shared.

    Returns:
        ``{"equal": bool, "size_a": int, "size_b": int, "shared": int | None,
        "by": "token string" | "id (no tokenizer)"}``; ``shared`` is None without
        tokenizers (then the vocabularies count as equal when their sizes are).
    """
    out: dict[str, Any] = {"size_a": a.vocab_size, "size_b": b.vocab_size}
    if a.tokenizer is None or b.tokenizer is None:
        return {**out, "equal": a.vocab_size == b.vocab_size, "shared": None,
                "by": "id (no tokenizer)"}
    va, vb = a.tokenizer.get_vocab(), b.tokenizer.get_vocab()
    shared = va.keys() & vb.keys()
    equal = va == vb and a.vocab_size == b.vocab_size
    return {**out, "equal": bool(equal), "shared": len(shared), "by": "token string"}


def _shared_relations(a: HeadModel, b: HeadModel, relations: Any, k: Any, min_pairs: int,
                      equal_vocab: bool) -> tuple[dict[str, list], dict[str, int], dict[str, str]]:
    """The pairs each relation keeps on both models, its k (from ``a``), and what was skipped."""
    specs, ks, skipped = {}, {}, {}
    for name, spec in rel_lib.normalise(relations):
        pa = rel_lib.prepare(a, spec, min_pairs=min_pairs)
        if not pa.valid:
            skipped[name] = f"{a.model_id}: {rel_lib.skip_reason(pa)}"
            continue
        pairs = list(pa.kept)
        if not equal_vocab:  # same pair, and each side the same token string in both models
            pb = rel_lib.prepare(b, spec, min_pairs=min_pairs)
            tok_a, tok_b = a.tokenizer.convert_ids_to_tokens, b.tokenizer.convert_ids_to_tokens
            strings_b = {tuple(p): (s, t) for p, s, t in zip(
                pb.kept, tok_b(pb.source_ids.tolist()), tok_b(pb.target_ids.tolist()))}
            pairs = [p for p, s, t in zip(pa.kept, tok_a(pa.source_ids.tolist()),
                                          tok_a(pa.target_ids.tolist()))
                     if strings_b.get(tuple(p)) == (s, t)]
            if len(pairs) < min_pairs:
                skipped[name] = (f"only {len(pairs)} pairs are single tokens in both models "
                                 f"(need {min_pairs})")
                continue
        specs[name] = pairs
        ks[name] = rel_lib.choose_k(a, name, spec, k, pa)
    return specs, ks, skipped


def _weights(a: HeadModel, b: HeadModel, progress: bool) -> dict[str, np.ndarray]:
    """Per head: relative change of W_VO and W_QK, and the largest OV subspace angles."""
    L, H = a.n_layers, a.n_heads
    out = {name: np.zeros((L, H), np.float32) for name in
           ("wvo_change", "wqk_change", "ov_read_angle", "ov_write_angle")}
    kv_a, kv_b = a.spec.kv_index(), b.spec.kv_index()
    with torch.no_grad():
        for layer in tqdm(range(L), desc="diff weights", unit="layer", disable=not progress):
            at_a, at_b = a.attention(layer), b.attention(layer)
            va, oa = at_a.W_V.index_select(0, kv_a).double(), at_a.W_O.double()
            vb, ob = at_b.W_V.index_select(0, kv_b).double(), at_b.W_O.double()
            out["wvo_change"][layer] = W.relative_change(va, oa, vb, ob).numpy()
            qa, qb = a.qk(layer), b.qk(layer)
            ka = qa.W_K.index_select(0, kv_a).double().transpose(1, 2)
            kb = qb.W_K.index_select(0, kv_b).double().transpose(1, 2)
            out["wqk_change"][layer] = W.relative_change(qa.W_Q.double(), ka, qb.W_Q.double(),
                                                         kb).numpy()
            for h in range(H):
                read_a, write_a = W.subspaces(va[h], oa[h])
                read_b, write_b = W.subspaces(vb[h], ob[h])
                out["ov_read_angle"][layer, h] = W.max_principal_angle(read_a, read_b)
                out["ov_write_angle"][layer, h] = W.max_principal_angle(write_a, write_b)
    return out


def _jaccard(x: set, y: set) -> float:
    return float(len(x & y) / len(x | y)) if x | y else 1.0


def _vocabulary_parts(m: HeadModel, opts: P.ProjectionOptions, salient: bool, qk: bool,
                      n_tokens: int, n_mappings: int, max_distance: int, progress: bool,
                      seconds: dict[str, float]) -> dict[str, Any]:
    """One model's whole-vocabulary parts, stepped together over its one shared stream.

    Returns:
        ``{"salient": SalientAll, "qk": AttentionSummary}`` for the parts asked for (the
        summary holds the positional profiles only); their wall times go to ``seconds``.
    """
    from ..attention.compute import summary_steps
    from ..salient.compute import salient_steps

    proj = P.projection_for(m, opts)
    shared = proj.vocabulary(m) if salient or qk else None
    steps: dict[str, Any] = {}
    if salient:
        steps["salient"] = salient_steps(m, n_tokens=n_tokens, n_mappings=n_mappings,
                                         projection=proj, sources=shared)
    if qk:
        steps["qk"] = summary_steps(m, n_keys=1, n_queries=1, n_pairs=1,
                                    max_distance=max_distance, projection=proj, sources=shared)
    return run_steps(steps, m.n_layers, progress, seconds)


def _salient(sa: Any, sb: Any) -> dict[str, np.ndarray]:
    """Per head: Jaccard overlap of salient source tokens and of mappings, by token string."""
    L, H = len(sa.layers), sa.n_heads
    src, maps = np.zeros((L, H), np.float32), np.zeros((L, H), np.float32)
    for layer in range(L):
        for h in range(H):
            oa, ob = sa[layer, h], sb[layer, h]
            src[layer, h] = _jaccard(set(oa.tokens), set(ob.tokens))
            ma = {(s, t) for s, ts in oa.mappings for t in ts}
            mb = {(s, t) for s, ts in ob.mappings for t in ts}
            maps[layer, h] = _jaccard(ma, mb)
    return {"salient_source_overlap": src, "salient_mapping_overlap": maps}


def _softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    z = np.where(np.isfinite(x), x - np.nanmax(np.where(np.isfinite(x), x, np.nan), -1,
                                                keepdims=True), -np.inf)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _qk(pa: np.ndarray, pb: np.ndarray) -> tuple[dict[str, np.ndarray],
                                                  tuple[np.ndarray, np.ndarray]]:
    """Per head: TV distance of the positional profiles' weights and both preferred distances.

    Args:
        pa: ``a``'s positional profiles ``(n_layers, n_heads, max_distance + 1)``.
        pb: ``b``'s, of the same shape.

    Returns:
        ``(figures, (weights_a, weights_b))``: the figures and both sides' profile weights
        ``(n_layers, n_heads, max_distance + 1)``.
    """
    wa, wb = _softmax(pa), _softmax(pb)
    pref = lambda p: np.argmax(np.where(np.isfinite(p), p, -np.inf), -1)  # noqa: E731
    return {"profile_tv": (0.5 * np.abs(wb - wa).sum(-1)).astype(np.float32),
            "prev_mass_a": wa[..., 1].astype(np.float32),
            "prev_mass_b": wb[..., 1].astype(np.float32),
            "preferred_distance_a": pref(pa).astype(np.float32),
            "preferred_distance_b": pref(pb).astype(np.float32)}, (
        wa.astype(np.float32), wb.astype(np.float32))


def _types(a: HeadModel, b: HeadModel, opts: P.ProjectionOptions,
           scans: Sequence[ScanResult | None],
           seed: int) -> tuple[dict[str, np.ndarray], list[str]]:
    """Both models' head-type scores and labels: ``type_<t>_a``/``_b``, ``is_<t>_a``/``_b``."""
    from ..headtypes import head_types, reusable_scan

    out: dict[str, np.ndarray] = {}
    kinds: list[str] = []
    for side, m, s in (("a", a, scans[0]), ("b", b, scans[1])):
        ht = head_types(m, projection=opts, scan=reusable_scan(s), seed=seed)
        kinds = list(ht.scores)
        for t in kinds:
            out[f"type_{t}_{side}"] = ht.scores[t].astype(np.float32)
            out[f"is_{t}_{side}"] = ht.labels[t].astype(np.float32)
    return out, kinds


def diff(
    a: HeadModel,
    b: HeadModel,
    relations: Any = "all",
    *,
    k: int | dict[str, int] | None = None,
    projection: P.ProjectionLike = None,
    tau: float = DEFAULT_TAU,
    min_pairs: int = rel_lib.MIN_PAIRS,
    n_boot: int = noise.DEFAULT_N_BOOT,
    alpha: float = noise.DEFAULT_ALPHA,
    seed: int = 0,
    salient: bool = True,
    qk: bool = True,
    types: bool = False,
    n_tokens: int = 15,
    n_mappings: int = 5,
    max_distance: int = 64,
    progress: bool = False,
) -> HeadDiff:
    """Compare every head of two checkpoints of one architecture, head ``L.H`` with ``L.H``.

    Args:
        a: the first model (the base).
        b: the second model (fine-tuned, a later checkpoint, quantised...), of ``a``'s shape.
        relations: the relations to score on both (as :func:`headmaps.scan`: ``"all"``,
            names, paths to JSON/CSV sets, lists of pairs, a dict); None for none.
        k: top-k for all relations, a dict per relation, or None for the defaults (chosen
            on ``a`` and used for both).
        projection: ``a``'s projection (a :class:`~headmaps.projection.Projection`, a
            preset name, options, or None: ``a``'s stored calibration if it has one, else
            the default preset; resolved on ``a`` by
            :func:`~headmaps.projection.projection_for`). Both models use its options.
        tau: the "implements" threshold; a head gains (loses) a relation when its score
            crosses ``tau`` upwards (downwards) by a change beyond the noise floor.
        min_pairs: a relation needs this many pairs that are single tokens in both models.
        n_boot: bootstrap draws of the noise floor (see :mod:`headmaps.diff.noise`).
        alpha: the floor is the ``1 - alpha`` quantile of the redrawn change's distance
            from the observed one.
        seed: seed of the bootstrap draws (and of the head types' token sample).
        salient: compare the salient operations (two vocabulary passes per model).
        qk: compare the positional profiles (one QK pass over the vocabulary per model).
        types: compare the head types (:func:`headmaps.head_types` on both; costly).
        n_tokens: salient source tokens per head.
        n_mappings: targets per salient source token.
        max_distance: distances of the positional profile.
        progress: show progress bars.

    Returns:
        :class:`HeadDiff`.

    Raises:
        ShapeMismatchError: layers, heads or ``d_model`` differ (checked first).
        HeadmapsError: no relation can be scored on both (when relations were asked for).
    """
    check_shapes(a, b)
    if n_boot < 1:
        raise HeadmapsError(f"n_boot must be at least 1, got {n_boot}")
    if not 0 < alpha < 1:
        raise HeadmapsError(f"alpha must be between 0 and 1, got {alpha}")
    t0 = time.perf_counter()
    vocab = vocabulary_map(a, b)
    proj = P.projection_for(a, projection)
    opts = proj.options
    L, H = a.n_layers, a.n_heads
    seconds: dict[str, float] = {}
    names: list[str] = []
    specs: dict[str, list] = {}
    ks: dict[str, int] = {}
    skipped: dict[str, str] = {}
    if relations is not None:
        a.require_tokenizer()
        b.require_tokenizer()
        specs, ks, skipped = _shared_relations(a, b, relations, k, min_pairs, vocab["equal"])
        if not specs:
            why = "; ".join(f"{r}: {w}" for r, w in skipped.items()) or "no relations given"
            raise HeadmapsError(f"no relation can be scored on both {a.model_id} and "
                                f"{b.model_id} ({why})")
    R = len(specs)
    shape = (R, L, H)
    arr = {n: np.zeros(shape, np.float32) for n in ("scores_a", "scores_b", "supp_a", "supp_b",
                                                    "floor", "supp_floor")}
    scans: list[ScanResult] = []
    if specs:
        t = time.perf_counter()
        hits: list[dict[str, tuple[np.ndarray, np.ndarray]]] = [{}, {}]
        for side, m in enumerate((a, b)):
            scans.append(scan(m, specs, k=ks, projection=opts, tau=tau, min_pairs=1,
                              progress=progress, pair_hits=hits[side]))
        names = scans[0].relations
        for i, name in enumerate(names):
            (ha, sa), (hb, sb) = hits[0][name], hits[1][name]
            if ha.shape != hb.shape:
                raise HeadmapsError(f"relation {name!r} kept {ha.shape[-1]} pairs on "
                                    f"{a.model_id} and {hb.shape[-1]} on {b.model_id}")
            counts = noise.resample_counts(ha.shape[-1], n_boot, seed + i)
            _, arr["floor"][i] = noise.paired_floor(ha, hb, counts, alpha)
            _, arr["supp_floor"][i] = noise.paired_floor(sa, sb, counts, alpha)
        arr["scores_a"], arr["scores_b"] = scans[0].scores, scans[1].scores
        arr["supp_a"], arr["supp_b"] = scans[0].suppression, scans[1].suppression
        seconds["relations"] = time.perf_counter() - t
    t = time.perf_counter()
    heads = _weights(a, b, progress)
    seconds["weights"] = time.perf_counter() - t
    no_floor = {"weights": NO_FLOOR["weights"]}
    sides: dict[str, Any] = {}  # both models' salient operations and profiles, for the view
    pa, pb = (_vocabulary_parts(m, opts, salient, qk, n_tokens, n_mappings, max_distance,
                                progress, seconds) for m in (a, b))
    if salient:
        sides["salient_a"], sides["salient_b"] = pa["salient"], pb["salient"]
        heads.update(_salient(pa["salient"], pb["salient"]))
        no_floor["salient"] = NO_FLOOR["salient"]
    if qk:
        figures, (sides["profile_a"], sides["profile_b"]) = _qk(pa["qk"].profile,
                                                                pb["qk"].profile)
        heads.update(figures)
        no_floor["qk"] = NO_FLOOR["qk"]
    kinds: list[str] = []
    if types:
        t = time.perf_counter()
        extra, kinds = _types(a, b, opts, scans or [None, None], seed)
        heads.update(extra)
        seconds["types"] = time.perf_counter() - t
        no_floor["types"] = NO_FLOOR["types"]
    seconds["total"] = time.perf_counter() - t0
    return HeadDiff(
        model_a=a.model_id, model_b=b.model_id, n_layers=L, n_heads=H, relations=list(names),
        **arr, heads=heads, n_pairs={n: len(specs[n]) for n in names},
        k={n: ks[n] for n in names}, skipped=skipped, vocab=vocab, types=kinds, tau=tau,
        alpha=alpha, n_boot=n_boot, seed=seed, **proj.header(), no_floor=no_floor,
        params={"n_tokens": n_tokens, "n_mappings": n_mappings, "max_distance": max_distance,
                "min_pairs": min_pairs},
        model_info_a=a.info(), model_info_b=b.info(), versions=versions(), seconds=seconds,
        **sides,
    )
