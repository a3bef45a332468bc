"""`hm.head_types(model)`: every head's type scores and labels from parameters alone.

How each type's score is built from the ingredients of :mod:`headmaps.headtypes.static`,
the copying/successor relation scores (approach A) and the positional profile of
:mod:`headmaps.attention`, and the rule behind each label:

================  ==========================================  ======================================
type              static score                                label when (grounds)
================  ==========================================  ======================================
previous_token    expected attention on Δ = 1 of the sampled  score >= 0.5: most attention on the
                  positional profile (random query/key        previous token
                  tokens, exact logits)
copying           mean of the copying relation score and      copying relation score >= τ = 0.15
                  ``(1 + eig) / 2``                           (MAPS)
copy_suppression  mean of the copying suppression score and   suppression score >= τ = 0.15
                  ``(1 - eig) / 2``                           (MAPS)
successor         the ``successor`` relation score            score >= τ = 0.15 (MAPS)
induction         ``max_g prev(g) * kcomp(h, g) *             eig >= 0.5 and K-composition with a
                  (1 + eig(h)) / 2`` over the 16 heads ``g``  previous-token head >= 2x the median
                  of highest ``prev`` in earlier layers       composition of all head pairs (Elhage
                                                              et al. compare against such a
                                                              baseline)
duplicate_token   ``self_pref * (1 - max(eig, 0))``           self_pref >= 2 (a token's key stands
                                                              two standard deviations above the
                                                              others for its own query) and
                                                              eig < 0.5
================  ==========================================  ======================================

``eig`` is the eigenvalue copying score; without a tokenizer (or when a relation has too
few single-token pairs) the relation ingredients are missing, recorded in ``skipped``:
copying then uses ``eig`` alone (label ``eig >= 0.5``), copy suppression ``-eig`` (label
``eig <= -0.5``) and successor is NaN.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch

from .. import projection as P
from ..errors import HeadmapsError
from ..io import versions
from ..models import HeadModel
from ..projection.calibration import resolve as resolve_projection
from ..scoring.results import DEFAULT_TAU, ScanResult
from . import static as S
from .results import HeadTypes

logger = logging.getLogger(__name__)

#: Label rules, in words (stored with every result).
THRESHOLDS = {
    "previous_token": "expected attention on distance 1 >= 0.5",
    "induction": "eigen copying >= 0.5 and K-composition with a previous-token head >= 2x the "
                 "median composition",
    "duplicate_token": "self-preference z >= 2 and eigen copying < 0.5",
    "copying": f"copying relation score >= {DEFAULT_TAU}",
    "copy_suppression": f"copying suppression score >= {DEFAULT_TAU}",
    "successor": f"successor relation score >= {DEFAULT_TAU}",
}


def _relations(model: HeadModel, preset: Any, skipped: dict[str, str],
               scan_result: ScanResult | None,
               relations: bool) -> dict[str, np.ndarray]:
    """Copying (scores, suppression) and successor relation scores.

    Missing ones go to ``skipped``.
    """
    from ..scoring.engine import scan

    reason = ("not asked for (relations=False)" if not relations and scan_result is None
              else "the model has no tokenizer" if model.tokenizer is None and scan_result is None
              else "")
    if reason:
        for name in ("copying_relation", "copying_suppression", "successor_relation"):
            skipped[name] = reason
        return {}
    res = scan_result if scan_result is not None else scan(model, ["copying", "successor"],
                                                           preset=preset)
    if (res.n_layers, res.n_heads) != (model.n_layers, model.n_heads):
        raise HeadmapsError(f"the scan result has {res.n_layers}x{res.n_heads} heads, the model "
                            f"{model.n_layers}x{model.n_heads}: it is not this model's")
    out: dict[str, np.ndarray] = {}
    if "copying" in res.relations:
        out["copying_relation"] = res["copying"].scores
        out["copying_suppression"] = res["copying"].suppression
    else:
        skipped["copying_relation"] = skipped["copying_suppression"] = res.skipped.get("copying",
                                                                                       "not scored")
    if "successor" in res.relations:
        out["successor_relation"] = res["successor"].scores
    else:
        skipped["successor_relation"] = res.skipped.get("successor", "not scored")
    return out


def candidate_sources(prev: np.ndarray, n: int) -> list[tuple[int, int]]:
    """The ``n`` heads with the highest previous-token mass, as ``(layer, head)``."""
    flat = np.argsort(-prev, axis=None, kind="stable")[:n]
    return [(int(a), int(b)) for a, b in zip(*np.unravel_index(flat, prev.shape))]


def combine(c: dict[str, np.ndarray], sources: list[tuple[int, int]],
            tau: float = DEFAULT_TAU) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Type scores and labels from the ingredients (see the module table); pure.

    Args:
        c: components: ``eigen_copying``, ``prev_mass``, ``self_preference`` ``(L, H)``,
            ``k_composition`` ``(L, H, n_sources)`` (NaN where not earlier), and optionally
            ``copying_relation``, ``copying_suppression``, ``successor_relation``.
        sources: the earlier heads ``(layer, head)`` of the composition's last axis.
        tau: the relation threshold.

    Returns:
        ``(scores, labels)``: type -> ``(L, H)``.
    """
    eig, prev = c["eigen_copying"], c["prev_mass"]
    selfp, kc = c["self_preference"], c["k_composition"]
    L, H = eig.shape
    scores: dict[str, np.ndarray] = {}
    labels: dict[str, np.ndarray] = {}
    scores["previous_token"] = prev
    labels["previous_token"] = prev >= 0.5
    kc0 = np.nan_to_num(kc, nan=0.0)
    src_prev = np.array([prev[m, g] for m, g in sources], dtype=np.float32).reshape(-1)
    src_label = np.array([labels["previous_token"][m, g] for m, g in sources],
                         dtype=bool).reshape(-1)
    best = (kc0 * src_prev[None, None, :]).max(-1) if len(sources) else np.zeros((L, H))
    scores["induction"] = best * (1 + eig) / 2
    base = np.nanmedian(kc) if np.isfinite(kc).any() else 0.0
    strong = (kc0 >= 2 * base) & src_label[None, None, :]
    labels["induction"] = (eig >= 0.5) & strong.any(-1)
    scores["duplicate_token"] = selfp * (1 - np.maximum(eig, 0))
    labels["duplicate_token"] = (selfp >= 2) & (eig < 0.5)
    if "copying_relation" in c:
        scores["copying"] = (c["copying_relation"] + (1 + eig) / 2) / 2
        labels["copying"] = c["copying_relation"] >= tau
        scores["copy_suppression"] = (c["copying_suppression"] + (1 - eig) / 2) / 2
        labels["copy_suppression"] = c["copying_suppression"] >= tau
    else:
        scores["copying"], labels["copying"] = eig.copy(), eig >= 0.5
        scores["copy_suppression"], labels["copy_suppression"] = -eig, eig <= -0.5
    if "successor_relation" in c:
        scores["successor"] = c["successor_relation"]
        labels["successor"] = c["successor_relation"] >= tau
    else:
        scores["successor"] = np.full((L, H), np.nan, dtype=np.float32)
        labels["successor"] = np.zeros((L, H), dtype=bool)
    order = ("previous_token", "induction", "duplicate_token", "copying", "copy_suppression",
             "successor")
    return ({t: scores[t].astype(np.float32) for t in order}, {t: labels[t] for t in order})


def _sources(model: HeadModel, ids: torch.Tensor, opts: P.ProjectionOptions,
             given: Any) -> Any:
    """The sample's source rows: from ``given`` if it can serve them, else a new Sources.

    ``given``: a :class:`~headmaps.projection.Sources` or subset view in ``opts``, or None.
    """
    if given is not None and given.opts == opts:
        if len(given.ids) == len(ids) and torch.equal(given.ids.cpu(), ids.cpu()):
            return given
        if isinstance(given, P.Sources):
            return given.subset(ids)
    return P.Sources(model, ids, opts)


def head_types(
    model: HeadModel,
    *,
    preset: str | P.ProjectionOptions | None = None,
    n_tokens: int | None = S.DEFAULT_N_TOKENS,
    max_distance: int = 64,
    n_samples: int = 256,
    n_sources: int = 16,
    seed: int = 0,
    relations: bool = True,
    scan: ScanResult | None = None,
    calibration: bool | None = None,
    sources: Any = None,
    **options: Any,
) -> HeadTypes:
    """Label every head with the circuit types from its parameters (no forward pass).

    Args:
        model: the model (lazy checkpoints too).
        preset: projection preset (default :data:`headmaps.projection.DEFAULT_PRESET`).
        n_tokens: size of the token subset for the eigenvalue copying and self-preference
            scores (the first ordinary token ids; None: the whole vocabulary).
        max_distance: distances of the positional profile.
        n_samples: random queries of the sampled positional profile.
        n_sources: K-composition is measured against this many earlier heads, those with
            the highest previous-token mass (induction needs a previous-token head).
        seed: seed of that sample.
        relations: score the copying and successor relations (approach A, the costly part:
            every head's ``W_O U`` over the vocabulary); False uses the eigenvalue score alone.
        scan: reuse these relation scores (a scan of this model holding ``copying`` and
            ``successor``) instead of scoring them again.
        calibration: with no preset or option given, use the model's stored calibration
            (None: yes unless ``$HEADMAPS_NO_CALIBRATION`` is set; see
            :mod:`headmaps.projection.calibration`).
        sources: a :class:`~headmaps.projection.Sources` (or one of its subset views)
            in the same projection to take the token sample's rows from (a stream
            shared with other parts); default: a new one.
        **options: projection option overrides.

    Returns:
        :class:`HeadTypes`.
    """
    if n_tokens is not None and n_tokens < 2:
        raise HeadmapsError(f"n_tokens must be at least 2 (or None for all), got {n_tokens}")
    t0 = time.perf_counter()
    opts, preset_label, _ = resolve_projection(model, preset, options, calibration)
    ids = S.token_subset(model, n_tokens)
    src = _sources(model, ids, opts, sources)
    skipped: dict[str, str] = {}
    comp: dict[str, np.ndarray] = {"eigen_copying": S.eigen_copying(model, src)}
    comp.update(_relations(model, opts, skipped, scan, relations))
    comp["prev_mass"] = S.previous_token_mass(model, src, max_distance, n_samples, seed)
    comp["self_preference"] = S.self_preference(model, src)
    L, H = model.n_layers, model.n_heads
    sources = candidate_sources(comp["prev_mass"], n_sources)
    kc = S.k_composition(model, sources)
    scores, labels = combine({**comp, "k_composition": kc}, sources=sources)
    kc0 = np.nan_to_num(kc, nan=-np.inf)
    comp["k_composition"] = np.where(np.isfinite(kc0.max(-1)), kc0.max(-1),
                                     np.nan).astype(np.float32)
    thresholds = dict(THRESHOLDS)
    if "copying_relation" not in comp:
        thresholds["copying"] = "eigen copying >= 0.5"
        thresholds["copy_suppression"] = "eigen copying <= -0.5"
    return HeadTypes(
        model_id=model.model_id, n_layers=L, n_heads=H, scores=scores, labels=labels,
        components=comp,
        thresholds=thresholds, skipped=skipped, preset=preset_label,
        options=opts.to_dict(),
        params={"n_tokens": int(len(ids)), "max_distance": max_distance, "n_samples": n_samples,
                "n_sources": n_sources, "k_sources": [f"{m}.{g}" for m, g in sources],
                "seed": seed},
        seconds=time.perf_counter() - t0, model_info=model.info(), versions=versions(),
    )
