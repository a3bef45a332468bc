"""`hm.composition(model)`: Q-, K- and V-composition of every pair of heads, both methods.

The token sample is ``n_tokens`` ids drawn with ``seed`` from the first
:data:`~headmaps.headtypes.static.DEFAULT_N_TOKENS` ordinary ids (BPE vocabularies number
tokens by merge order, so these are frequent tokens), sorted; a vocabulary smaller than
``n_tokens`` is taken whole. Their rows entering every layer come from one
:class:`~headmaps.projection.Sources` in the run's projection (the default ``through``
projection: each token run through the earlier blocks after the document prefix), and
go through the layer's input norm: the projection options choose the representation,
the norms are the model's own. Layers are read in increasing order, so the stream
advances once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import projection as P
from ..errors import HeadmapsError
from ..headtypes.static import DEFAULT_N_TOKENS, InductionMatch, token_subset
from ..io import versions
from ..models import HeadModel
from . import compute as C
from .results import CompositionResult

#: Default size of the token sample.
N_TOKENS = 2048


def sample_tokens(model: HeadModel, n_tokens: int = N_TOKENS, seed: int = 0) -> torch.Tensor:
    """``n_tokens`` ids drawn with ``seed`` from the frequent ordinary ids, sorted ``(n,)``."""
    pool = token_subset(model, max(DEFAULT_N_TOKENS, n_tokens))
    if len(pool) <= n_tokens:
        return pool
    g = torch.Generator().manual_seed(seed)
    return pool[torch.randperm(len(pool), generator=g)[:n_tokens]].sort().values


def _check_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    kinds = tuple(dict.fromkeys(C.canonical_kind(k) for k in kinds))
    bad = [k for k in kinds if k not in C.KINDS]
    if bad or not kinds:
        raise HeadmapsError(f"unknown composition kind(s) {', '.join(bad) or '(none)'}; "
                            f"use some of {', '.join(C.KINDS)}")
    return kinds


def _induction_steppers(model: HeadModel, ids: torch.Tensor, opts: P.ProjectionOptions) -> dict:
    """Method -> (stepper, rows of a layer) of the induction circuit over every head.

    ``projection`` reads the sample's rows in the run's projection; ``raw`` the same
    tokens' embeddings with the same norms (``source="embedding"``).
    """
    every = [(layer, g) for layer in range(model.n_layers) for g in range(model.n_heads)]
    embedded = P.Sources(model, ids, replace(opts, source="embedding", prefix=""))
    return {"projection": (InductionMatch(model, every, opts), lambda layer, base: base),
            "raw": (InductionMatch(model, every, embedded.opts),
                    lambda layer, base: embedded.at(layer))}


def composition(model: HeadModel, *, kinds: Sequence[str] = C.PATH_KINDS,
                n_tokens: int = N_TOKENS, seed: int = 0, progress: bool = False,
                projection: P.ProjectionLike = None) -> CompositionResult:
    """Q-, K- and V-composition of every earlier head with every later head.

    Both methods of :mod:`headmaps.composition.compute`: ``raw`` (Elhage et al.'s
    weight-matrix scores) and ``projection`` (the same products measured on the
    projection's token representations).

    Args:
        model: the model (lazy checkpoints too: only weights are read).
        kinds: some of ``"Q"``, ``"K"``, ``"V"`` (the default: all three) and
            ``"induction"`` (the induction circuit, :data:`~.compute.INDUCTION`; about as
            costly again as the three).
        n_tokens: size of the token sample (at least 2).
        seed: seed of the sample.
        progress: show a progress bar over layers.
        projection: a :class:`~headmaps.projection.Projection`, a preset name, options or
            None (the stored calibration, else ``through``), resolved by
            :func:`~headmaps.projection.projection_for`.

    Returns:
        :class:`CompositionResult`; ``scores[method][kind]`` is ``(L, H, L, H)``, entry
        ``[l_h, h, l_g, g]`` the composition of ``g`` into ``h`` (NaN unless ``l_g < l_h``).
    """
    kinds = _check_kinds(kinds)
    if n_tokens < 2:
        raise HeadmapsError(f"n_tokens must be at least 2, got {n_tokens}")
    t0 = time.perf_counter()
    proj = P.projection_for(model, projection)
    opts = proj.options
    ids = sample_tokens(model, n_tokens, seed)
    src = P.Sources(model, ids, opts)
    L, H = model.n_layers, model.n_heads
    scores = {m: {k: np.full((L, H, L, H), np.nan, dtype=np.float32) for k in kinds}
              for m in C.METHODS}
    paths = [k for k in kinds if k in C.PATH_KINDS]
    match = _induction_steppers(model, ids, opts) if C.INDUCTION in kinds else {}
    written: dict[str, list[C.Writer]] = {m: [] for m in C.METHODS}
    with torch.no_grad():
        for layer in tqdm(range(L), desc="composition", unit="layer", disable=not progress):
            base = src.at(layer)
            for m, (stepper, rows_of) in match.items():
                scores[m][C.INDUCTION][layer] = stepper.step(layer, rows_of(layer, base)).reshape(
                    H, L, H)
            if not paths:
                continue
            rows = model.attention(layer).input_norm(base).float()
            readers = {"projection": C.reader(model, layer, rows, base),
                       "raw": C.reader(model, layer)}
            for m in C.METHODS:
                if written[m]:
                    w = C.Writer(*(torch.cat([getattr(x, f) for x in written[m]])
                                   for f in ("layer", "head", "left", "W_O", "norm")))
                    got = C.pair_scores(w, readers[m], paths, raw=m == "raw")
                    for k, s in got.items():
                        scores[m][k][layer][:, w.layer.numpy(), w.head.numpy()] = \
                            s.float().numpy()
            written["projection"].append(C.writers(model, [layer], {layer: rows}, opts))
            written["raw"].append(C.writers(model, [layer]))
    return CompositionResult(
        model_id=model.model_id, n_layers=L, n_heads=H, kinds=kinds, scores=scores,
        **proj.header(),
        params={"n_tokens": int(len(ids)), "seed": seed,
                "token_ids": [int(i) for i in ids[:16]]},
        seconds=time.perf_counter() - t0, model_info=model.info(), versions=versions())
