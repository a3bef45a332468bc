"""`hm.head_types(model)`: every head's type scores and labels from parameters alone.

How each type's score is built from the ingredients of :mod:`headmaps.headtypes.static`,
the copying/successor relation scores (approach A) and the sampled positional profile:

================  ==========================================================================
type              static score
================  ==========================================================================
previous_token    expected attention on Δ = 1 of the sampled positional profile (random
                  query/key tokens, exact logits): ``prev``
induction         ``max_g prev(g) * match(h, g)`` over the 16 heads ``g`` of highest ``prev``
                  in earlier layers; ``match`` the induction QK z-score
                  (:func:`~headmaps.headtypes.static.induction_match`)
duplicate_token   ``self_pref * (1 - local_mass)``: the token's own key standing out for its
                  query, times the attention the head leaves beyond the recent window
                  (``local_mass``: the sampled profile's weight on Δ <= 4), where an earlier
                  copy of the token lies
copying           mean of the copying relation score and ``(1 + eig) / 2``
copy_suppression  mean of the copying suppression score and ``(1 - eig) / 2``
successor         the ``successor`` relation score
================  ==========================================================================

The labels come from the one rules table, :data:`headmaps.headtypes.rules.RULES` (a robust
outlier of the model's own score distribution, at least half the model's top score, and
the type's own floor or gate), with evidence for every head.

``eig`` is the eigenvalue copying score; without a tokenizer (or when a relation has too
few single-token pairs) the relation ingredients are missing, recorded in ``skipped``:
copying then uses ``eig`` alone, copy suppression ``-eig`` and successor is NaN.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch

from .. import projection as P
from ..attention.results import LOCAL_DISTANCE
from ..errors import HeadmapsError
from ..io import versions
from ..models import HeadModel
from ..scoring.results import ScanResult
from . import rules as R
from . import static as S
from .results import HeadTypes

logger = logging.getLogger(__name__)

#: The label rules, in words (the one table is :data:`headmaps.headtypes.rules.RULES`).
THRESHOLDS = {t: r.text() for t, r in R.RULES.items()}


#: The relations whose scores the copying and successor labels read.
TYPE_RELATIONS = ("copying", "successor")


def reusable_scan(scan: ScanResult | None) -> ScanResult | None:
    """``scan`` when :func:`head_types` can take its copying and successor scores, else None.

    The one rule of every caller that has a scan at hand (a report, a diff, a series): a
    scan that recorded its projection and holds both relations is reused, so they are
    not scored twice.
    """
    if scan is None or not scan.options or not set(TYPE_RELATIONS) <= set(scan.relations):
        return None
    return scan


def _relations(model: HeadModel, projection: P.Projection, skipped: dict[str, str],
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
    res = scan_result if scan_result is not None else scan(model, list(TYPE_RELATIONS),
                                                           projection=projection)
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


def candidate_partners(prev: np.ndarray, n: int) -> list[tuple[int, int]]:
    """The ``n`` heads with the highest previous-token mass, as ``(layer, head)``."""
    flat = np.argsort(-prev, axis=None, kind="stable")[:n]
    return [(int(a), int(b)) for a, b in zip(*np.unravel_index(flat, prev.shape))]


def combine(c: dict[str, np.ndarray], partners: list[tuple[int, int]],
            z0: float = R.Z0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Type scores and labels from the ingredients (see the module table); pure.

    Args:
        c: components: ``eigen_copying``, ``prev_mass``, ``self_preference`` ``(L, H)``,
            ``k_composition`` ``(L, H, n_partners)`` (NaN where not earlier), and optionally
            ``copying_relation``, ``copying_suppression``, ``successor_relation``.
        partners: the earlier heads ``(layer, head)`` of the composition's last axis.
        z0: the robust-z bound of the labels (:data:`headmaps.headtypes.rules.Z0`).

    Returns:
        ``(scores, labels)``: type -> ``(L, H)``; the evidence: :func:`scores_of` and
        :func:`headmaps.headtypes.rules.apply`.
    """
    scores = scores_of(c, partners)
    labels, _ = R.apply(scores, c, z0)
    return scores, labels


def scores_of(c: dict[str, np.ndarray], partners: list[tuple[int, int]]) -> dict[str, np.ndarray]:
    """Type scores from the ingredients (see the module table); pure."""
    eig, prev = c["eigen_copying"], c["prev_mass"]
    selfp, kc = c["self_preference"], c["k_composition"]
    L, H = eig.shape
    scores: dict[str, np.ndarray] = {"previous_token": prev}
    src_prev = np.array([prev[m, g] for m, g in partners], dtype=np.float32).reshape(-1)
    match = c.get("induction_match", kc)  # (L, H, n_partners); K-composition for old results
    m0 = np.nan_to_num(match, nan=0.0)
    scores["induction"] = ((m0 * src_prev[None, None, :]).max(-1) if len(partners)
                           else np.zeros((L, H)))
    local = c.get("local_mass", c.get("self_mass", np.zeros((L, H))))
    scores["duplicate_token"] = selfp * (1 - local)
    if "copying_relation" in c:
        scores["copying"] = (c["copying_relation"] + (1 + eig) / 2) / 2
        scores["copy_suppression"] = (c["copying_suppression"] + (1 - eig) / 2) / 2
    else:
        scores["copying"], scores["copy_suppression"] = eig.copy(), -eig
    if "successor_relation" in c:
        scores["successor"] = c["successor_relation"]
    else:
        scores["successor"] = np.full((L, H), np.nan, dtype=np.float32)
    order = ("previous_token", "induction", "duplicate_token", "copying", "copy_suppression",
             "successor")
    return {t: np.asarray(scores[t], dtype=np.float32) for t in order}


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
    projection: P.ProjectionLike = None,
    n_tokens: int | None = S.DEFAULT_N_TOKENS,
    max_distance: int = 64,
    n_samples: int = 256,
    n_partners: int = 16,
    seed: int = 0,
    relations: bool = True,
    scan: ScanResult | None = None,
    sources: Any = None,
    profile: np.ndarray | None = None,
) -> HeadTypes:
    """Label every head with the circuit types from its parameters (no forward pass).

    Args:
        model: the model (lazy checkpoints too).
        projection: a :class:`~headmaps.projection.Projection`, a preset name, options or
            None, resolved by :func:`~headmaps.projection.projection_for`.
        n_tokens: size of the token subset for the eigenvalue copying and self-preference
            scores (the first ordinary token ids; None: the whole vocabulary).
        max_distance: distances of the positional profile.
        n_samples: random queries of the sampled positional profile.
        n_partners: K-composition is measured against this many earlier heads, those with
            the highest previous-token mass (induction needs a previous-token head).
        seed: seed of that sample.
        relations: score the copying and successor relations (approach A, the costly part:
            every head's ``W_O U`` over the vocabulary); False uses the eigenvalue score alone.
        scan: reuse these relation scores (a scan of this model holding ``copying`` and
            ``successor``) instead of scoring them again; its ``tau`` is then the threshold
            of the copying and successor labels.
        sources: a :class:`~headmaps.projection.Sources` (or one of its subset views)
            in the same projection to take the token sample's rows from (a stream
            shared with other parts); default: a new one.
        profile: the sampled positional profile ``(n_layers, n_heads, max_distance + 1)``
            to take the previous-token (and self) mass from, e.g.
            ``attention_summary(...).sampled`` of the same model and projection, so that the
            QK summary and the head types show one number; default: sampled here.

    Returns:
        :class:`HeadTypes`.
    """
    if n_tokens is not None and n_tokens < 2:
        raise HeadmapsError(f"n_tokens must be at least 2 (or None for all), got {n_tokens}")
    t0 = time.perf_counter()
    proj = P.projection_for(model, projection)
    ids = S.token_subset(model, n_tokens)
    src = _sources(model, ids, proj.options, sources)
    skipped: dict[str, str] = {}
    comp: dict[str, np.ndarray] = {"eigen_copying": S.eigen_copying(model, src)}
    comp.update(_relations(model, proj, skipped, scan, relations))
    L, H = model.n_layers, model.n_heads
    if profile is not None:
        mass = np.asarray(profile, dtype=np.float32)
        if mass.ndim != 3 or mass.shape[:2] != (L, H) or mass.shape[2] < 2:
            raise HeadmapsError(f"profile must be ({L}, {H}, max_distance + 1), got shape "
                                f"{mass.shape}")
    else:
        mass = S.positional_mass(model, src, max_distance, n_samples, seed)
    comp["prev_mass"], comp["self_mass"] = mass[..., 1], mass[..., 0]
    comp["local_mass"] = mass[..., :LOCAL_DISTANCE + 1].sum(-1)
    comp["self_preference"] = S.self_preference(model, src)
    partners = candidate_partners(comp["prev_mass"], n_partners)
    kc = S.k_composition(model, partners)
    match = S.induction_match(model, src, partners)
    scores = scores_of({**comp, "k_composition": kc, "induction_match": match}, partners)
    labels, ev = R.apply(scores, comp, tau=scan.tau if scan is not None else None)
    for name, arr in (("k_composition", kc), ("induction_match", match)):
        a0 = np.nan_to_num(arr, nan=-np.inf).max(-1)
        comp[name] = np.where(np.isfinite(a0), a0, np.nan).astype(np.float32)
    return HeadTypes(
        model_id=model.model_id, n_layers=L, n_heads=H, scores=scores, labels=labels,
        components=comp,
        thresholds=ev.rules, skipped=skipped, zscores=ev.z, percentiles=ev.percentile,
        confidence=ev.confidence, notes=ev.notes, **proj.header(),
        params={"n_tokens": int(len(ids)), "max_distance": int(mass.shape[2]) - 1,
                "n_samples": n_samples,
                "n_partners": n_partners, "k_partners": [f"{m}.{g}" for m, g in partners],
                "seed": seed},
        seconds=time.perf_counter() - t0, model_info=model.info(), versions=versions(),
    )
