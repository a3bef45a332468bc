"""Calibration: which projection's static scores agree best with inference on this model.

One small, seeded correlation run. The dynamic scores are computed once
(:func:`~headmaps.experiments.dynamic.dynamic_scores`); every candidate projection's
static scores are then correlated with them by
:func:`~headmaps.experiments.correlation.correlation` (``dynamic=``), the same code as
``headmaps validate --experiment correlation``.

Selection rule (:data:`RULE`): the candidate with the highest median Pearson r without
context over the sampled relations wins; candidates within :data:`TIE` of the best
count as tied, and among them the simplest (fewest options switched on) wins, then the
one tried first (presets before other combinations).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from .. import projection as P
from .. import relations as rel_lib
from ..errors import HeadmapsError
from ..io import versions
from ..models import HeadModel
from ..projection.calibration import Calibration, check_store_writable, fingerprint, store
from .correlation import correlation
from .dynamic import default_templates, dynamic_scores

logger = logging.getLogger(__name__)

#: Median-r differences up to this count as ties (broken towards the simpler projection).
TIE = 0.01
RULE = (f"highest median Pearson r without context over relations; within {TIE} of the best, "
        "the fewest options switched on, then presets first")
#: The default sample: eight relations, two per category, that most vocabularies keep
#: as single tokens; with 8 pairs each and 2 templates that is 128 prompts (README has
#: the time on SmolLM2-135M).
DEFAULT_RELATIONS = ("copying", "word_first_letter", "country_to_capital", "country_to_language",
                     "antonym", "verb_to_past_tense", "adj_to_comparative", "english_to_french")
DEFAULT_MAX_PAIRS = 8
DEFAULT_N_TEMPLATES = 2


def _has_biases(model: HeadModel) -> bool:
    a = model.attention(0)
    return a.b_V is not None or a.b_O is not None


def effective(model: HeadModel, opts: P.ProjectionOptions) -> P.ProjectionOptions:
    """``opts`` with the switches this architecture ignores turned off.

    ``scale_embeddings`` does nothing when the embedding scale is 1, the bias switches
    nothing without biases; two candidates with the same effective options score the same.
    """
    if model.embedding_scale == 1.0:
        opts = replace(opts, scale_embeddings=False)
    if not _has_biases(model):
        opts = replace(opts, value_bias=False, output_bias=False)
    return opts


def complexity(opts: P.ProjectionOptions) -> int:
    """Switches on: the residual source (2 for token_alone), norm folding, scaling, biases."""
    source = {"mlp0_residual": 1, "token_alone": 2}.get(opts.source, 0)
    return (source + int(bool(opts.prefix)) + int(opts.fold_norms) + int(opts.scale_embeddings)
            + int(opts.value_bias) + int(opts.output_bias) + int(opts.mlp0_at_layer0))


def candidate_name(opts: P.ProjectionOptions) -> str:
    """``mlp0+fold``, ``embedding+fold+scale+bias``...: the source, then each switch on."""
    parts = [opts.source]
    parts += ["fold"] if opts.fold_norms else []
    parts += ["scale"] if opts.scale_embeddings else []
    if opts.value_bias or opts.output_bias:
        parts += ["bias"] if opts.value_bias and opts.output_bias else (
            ["vbias"] if opts.value_bias else ["obias"])
    parts += [f"after {opts.prefix}"] if opts.prefix else []
    return "+".join(parts)


def prefixes(model: HeadModel) -> list[str]:
    """``""`` (a lone token) and the tokenizer's bos, eos, unk and pad tokens, one per id.

    A model's first token acts as an attention sink, so what a lone token's residual
    looks like depends on the model; a token before it changes that (which one works is
    measured, not assumed).
    """
    tok = model.tokenizer
    if tok is None:
        return [""]
    vocab = tok.get_vocab()
    out, ids = [""], set()
    for name in ("bos_token", "eos_token", "unk_token", "pad_token"):
        t = getattr(tok, name, None)
        if isinstance(t, str) and t and t in vocab and vocab[t] not in ids:
            ids.add(vocab[t])
            out.append(t)
    return out


def candidates(model: HeadModel) -> list[tuple[str, P.ProjectionOptions]]:
    """Every distinct projection worth trying on ``model``: the presets, then the combinations.

    Combinations: source (embedding, mlp0, mlp0_residual) x fold_norms, x
    scale_embeddings when the model scales its embeddings, x biases (value and output
    together) when it has any; and ``token_alone`` with folded norms and the model's
    embedding scale (the residual the model itself would carry), x biases, alone and
    after each of the tokenizer's special tokens (see :func:`prefixes`); the ``through``
    preset tries the rule's document-start token (:func:`~headmaps.projection.document_prefix`).
    Candidates
    whose effective options (see :func:`effective`) equal an earlier one are dropped; the
    effective options are what is tried.
    """
    scale = (False, True) if model.embedding_scale != 1.0 else (False,)
    bias = (False, True) if _has_biases(model) else (False,)
    out: list[tuple[str, P.ProjectionOptions]] = []
    seen: set[P.ProjectionOptions] = set()
    pool = list(P.PRESETS.items())
    for source in ("embedding", "mlp0", "mlp0_residual"):
        for fold in (False, True):
            for s in scale:
                for b in bias:
                    o = P.ProjectionOptions(source=source, fold_norms=fold, scale_embeddings=s,
                                            value_bias=b, output_bias=b)
                    pool.append((candidate_name(o), o))
    for prefix in prefixes(model):
        for b in bias:
            o = P.ProjectionOptions(source="token_alone", fold_norms=True, scale_embeddings=True,
                                    value_bias=b, output_bias=b, prefix=prefix)
            pool.append((candidate_name(effective(model, o)), o))
    for name, opts in pool:
        eff = effective(model, P.concrete(model, opts))
        if eff not in seen:
            seen.add(eff)
            out.append((name, eff))
    return out


def choose(rows: Sequence[dict[str, Any]], tie: float = TIE) -> int:
    """Index of the winner among candidate rows (``median_r``, ``complexity``), by :data:`RULE`.

    Raises:
        HeadmapsError: no candidate has a defined median r.
    """
    r = np.array([np.nan if row["median_r"] is None else row["median_r"] for row in rows], float)
    if not len(r) or np.all(np.isnan(r)):
        raise HeadmapsError("calibration: no candidate has a defined correlation (no head scored "
                            "on the sampled pairs); use more pairs (--max-pairs) or relations")
    best = np.nanmax(r)
    tied = [i for i in range(len(rows)) if not math.isnan(r[i]) and r[i] >= best - tie]
    return min(tied, key=lambda i: (rows[i]["complexity"], i))


def calibrate(
    model: HeadModel,
    relations: Any = None,
    templates: Sequence[str] | None = None,
    *,
    max_pairs: int | None = DEFAULT_MAX_PAIRS,
    n_templates: int = DEFAULT_N_TEMPLATES,
    k: int | dict[str, int] | None = None,
    min_pairs: int = rel_lib.MIN_PAIRS,
    seed: int = 0,
    batch_size: int = 32,
    candidates_: Sequence[tuple[str, P.ProjectionOptions]] | None = None,
    save: bool = True,
    progress: bool = False,
) -> Calibration:
    """Choose the projection whose static scores agree best with inference on ``model``.

    Dynamic scores of every head are computed once on a small seeded sample; each
    candidate projection's static scores are correlated with them (the correlation
    experiment, :func:`~headmaps.experiments.correlation`), and the winner is chosen by
    :data:`RULE`. With ``save`` it is stored for the model (see
    :mod:`headmaps.projection.calibration`), and ``hm.scan``, ``hm.salient_operations``, the
    correlation experiment, the report and the CLI then use it whenever no projection is
    given (:func:`~headmaps.projection.projection_for`).

    Args:
        model: a HeadModel with its transformers model and tokenizer (``hm.load``).
        relations: relations to sample (as for :func:`headmaps.scan`); default
            :data:`DEFAULT_RELATIONS` (those valid for the model).
        templates: templates with one ``<X>`` (default: the first ``n_templates`` of the
            library's neutral ones).
        max_pairs: pairs per relation (a seeded subset); None for all.
        n_templates: how many default templates to use when ``templates`` is None.
        k: top-k (default per relation).
        min_pairs: a relation needs this many single-token pairs.
        seed: seed of the pair subset.
        batch_size: prompts per forward pass.
        candidates_: ``(name, ProjectionOptions)`` to try instead of :func:`candidates`.
        save: store the result for the model in the headmaps cache.
        progress: show progress bars.

    Returns:
        :class:`~headmaps.projection.calibration.Calibration`; its ``candidates`` hold every
        candidate's median r.
    """
    t0 = time.perf_counter()
    if save:  # fail now, not after the run
        check_store_writable()
    relations = list(DEFAULT_RELATIONS) if relations is None else relations
    if templates is None:
        templates = default_templates()[:max(1, n_templates)]
    dyn = dynamic_scores(model, relations, templates, k, max_pairs=max_pairs, seed=seed,
                         min_pairs=min_pairs,
                         batch_size=batch_size, progress=progress)
    if not dyn.relations:
        why = "; ".join(f"{n}: {w}" for n, w in dyn.skipped.items())
        raise HeadmapsError(f"calibration: no relation can be used on {model.model_id} ({why})")
    rows = []
    for name, opts in (candidates_ if candidates_ is not None else candidates(model)):
        res = correlation(model, dynamic=dyn, projection=opts)
        n_def = int(res.per_relation.corr_without_context.notna().sum())
        with warnings.catch_warnings():  # a candidate with no defined r is allowed (NaN)
            warnings.simplefilter("ignore", RuntimeWarning)
            med = res.median("corr_without_context")
            m = res.median("corr_with_context")
        rows.append({"name": name, "options": opts.to_dict(),
                     "median_r": None if math.isnan(med) else round(med, 4),
                     "median_r_with_context": None if math.isnan(m) else round(m, 4),
                     "n_relations": n_def, "complexity": complexity(opts)})
        logger.info("calibration: %s median r %.3f over %d relations", name, med, n_def)
    win = rows[choose(rows)]
    cal = Calibration(
        model_id=model.model_id, fingerprint=fingerprint(model), choice=win["name"],
        options=dict(win["options"]), median_r=float(win["median_r"]),
        n_pairs=int(sum(dyn.n_pairs.values())), candidates=rows,
        sample={"relations": dict(dyn.n_pairs), "templates": list(dyn.templates), "seed": seed,
                "max_pairs": max_pairs, "k": dict(dyn.k), "skipped": dict(dyn.skipped)},
        rule=RULE, seconds=round(time.perf_counter() - t0, 2), versions=versions())
    if save:
        path = store(cal, model)
        logger.info("calibration of %s stored in %s", model.model_id, path)
    return cal
