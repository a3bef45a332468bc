"""Dynamic (inference-time) relation scores of every head, with forward hooks.

For a prompt built from a template and a source word, the last position is where the
paper reads each head:

* **with context**: the head's actual output there, ``z_h W_O^h``;
* **without context**: the head's output if its attention at the last position went
  entirely to the source token, every other activation as in the normal run. Because
  attention is causal and only the last position's attention changes, that output is
  ``(LN_1(resid_s) W_V^{kv(h)} + b_V) W_O^h`` where ``LN_1(resid_s)`` is the attention
  input at the source position in the normal run. It is computed from the one normal
  pass; ``tests/experiments`` proves it equal to a real intervention on the attention
  probabilities.

Each output is projected to the vocabulary as the model itself would read it
("direct logit attribution"): through the gain of Gemma's post-attention norm, the gain
of the final norm (and LayerNorm's centring) and ``U``. The per-position RMS/LayerNorm
scales are positive numbers shared by every vocabulary entry, so they cannot change a
top-k and are dropped. ``fold_norms=False`` projects with the bare ``U`` instead (as
the reference code's projection does). A pair scores a hit when the target is in the
top-k of the projection (suppression: in the bottom-k); a head's dynamic score for a
template is its hit rate over the relation's pairs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import projection as P
from .. import relations as rel_lib
from ..errors import HeadmapsError
from ..models import HeadModel
from ..relations.tokenisation import continuation_ids, word_ids
from ..scoring.basis import SharedBasis, layer_readout
from ..scoring.kernel import DEFAULT_CHUNK_BYTES, Scratch, count_hits
from .hooks import Captured, capture

logger = logging.getLogger(__name__)

PLACEHOLDER = "<X>"


# ---- prompts --------------------------------------------------------------------------
def split_template(template: str) -> tuple[str, str]:
    """``"This is a document about <X>"`` -> ``("This is a document about", "")``.

    Raises:
        HeadmapsError: the template has no ``<X>`` or more than one.
    """
    if template.count(PLACEHOLDER) != 1:
        raise HeadmapsError(f"a template needs exactly one {PLACEHOLDER}, got {template!r}")
    prefix, suffix = template.split(PLACEHOLDER)
    return prefix, suffix


def build_prompt(tokenizer: Any, template: str, source_ids: Sequence[int]) -> tuple[list[int], int]:
    """Token ids of ``template`` with the source tokens in place of ``<X>``.

    The prompt is assembled at the token level (prefix tokens, then exactly the source
    tokens of ``" source"``, then the suffix tokens), so the source position is known
    exactly and the source is the same token the static score reads. A space that ends
    the prefix is dropped: the source token carries its own leading space. Words and
    the suffix go through the relations' tokenisation (:func:`~headmaps.relations.word_ids`,
    :func:`~headmaps.relations.continuation_ids`), which knows about the dummy prefix of
    SentencePiece tokenizers.

    Args:
        tokenizer: a Hugging Face tokenizer.
        template: text with one ``<X>``.
        source_ids: tokens of the source (one for single-token sources).

    Returns:
        ``(ids, pos)``: the prompt's ids and the position of the (last) source token.
    """
    prefix, suffix = split_template(template)
    ids = list(tokenizer(prefix.rstrip(" "), add_special_tokens=True)["input_ids"])
    ids += list(source_ids)
    pos = len(ids) - 1
    if suffix:
        ids += continuation_ids(tokenizer, suffix)
    return ids, pos


def pad_id(tokenizer: Any) -> int:
    """A token id to pad with (never attended to)."""
    for name in ("pad_token_id", "eos_token_id", "bos_token_id"):
        v = getattr(tokenizer, name, None)
        if v is not None:
            return int(v)
    return 0


def pad_right(seqs: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad ``seqs``; returns ``input_ids`` and ``attention_mask`` ``(B, T)``.

    Right padding keeps every real token at the position it has alone, so the batched
    pass equals the unbatched one for every position encoding.
    """
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


# ---- per-head outputs -------------------------------------------------------------------
def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.promote_types(t.dtype, torch.float32)


def head_values(model: HeadModel, cap: Captured, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-head vectors before ``W_O`` at the last position, with and without context.

    Args:
        model: the model.
        cap: activations of a pass with ``source_pos`` given.
        layer: the layer.

    Returns:
        ``(with_ctx, without_ctx)``, each ``(n_heads, B, d_head)``: the captured ``z_h``,
        and ``LN_1(resid_s) W_V^{kv(h)} + b_V`` at the source position.
    """
    if cap.attn_in is None:
        raise HeadmapsError("the pass was captured without source positions")
    a = model.attention(layer)
    dt = _compute_dtype(cap.z)
    x = cap.attn_in[layer].to(dt)  # (B, d)
    v = torch.einsum("bd,kde->kbe", x, a.W_V.to(x.device, dt))
    if a.b_V is not None:
        v = v + a.b_V.to(x.device, dt)[:, None, :]
    kv = model.spec.kv_index().to(x.device)
    without = v.index_select(0, kv)
    with_ctx = cap.z[layer].to(dt).transpose(0, 1)
    return with_ctx.contiguous(), without.contiguous()


def head_outputs(model: HeadModel, cap: Captured) -> tuple[torch.Tensor, torch.Tensor]:
    """Every head's output ``z_h W_O^h`` at the last position, with and without context.

    Returns:
        ``(with_ctx, without_ctx)``, each ``(n_layers, B, n_heads, d_model)``.
    """
    outs_w, outs_wo = [], []
    for layer in range(model.n_layers):
        zw, zwo = head_values(model, cap, layer)
        W_O = model.attention(layer).W_O.to(zw.device, zw.dtype)  # (H, dh, d)
        outs_w.append(torch.einsum("hbe,hed->bhd", zw, W_O))
        outs_wo.append(torch.einsum("hbe,hed->bhd", zwo, W_O))
    return torch.stack(outs_w), torch.stack(outs_wo)


def readout_basis(model: HeadModel, layer: int, fold_norms: bool = True) -> torch.Tensor:
    """How a head of ``layer`` reaches the logits, ``(d_model, vocab)`` float32.

    With ``fold_norms`` the post-attention norm gain (Gemma) and the final norm (gain,
    LayerNorm centring) are folded into ``U``; otherwise the bare ``U``.
    """
    if not fold_norms:
        return model.U.float()
    return P.output_basis(model, P.ProjectionOptions(fold_norms=True), model.attention(layer))


# ---- the prompt set ---------------------------------------------------------------------
@dataclass
class PromptSet:
    """Every (relation, template, pair) prompt of a dynamic-score run.

    Attributes:
        ids: token ids of each prompt.
        source_pos: ``(N,)`` position of the (last) source token.
        target: ``(N,)`` target token id.
        k: ``(N,)`` top-k of the prompt's relation.
        group: ``(N,)`` ``relation_index * n_templates + template_index``.
        half: ``(N,)`` 0 or 1: which half of its relation's pairs the prompt's pair is in
            (alternate pairs), for the split-half reliability of the dynamic scores.
    """

    ids: list[list[int]]
    source_pos: torch.Tensor
    target: torch.Tensor
    k: torch.Tensor
    group: torch.Tensor
    half: torch.Tensor


def subsample(items: Sequence[Any], max_items: int | None, seed: int = 0) -> list[Any]:
    """At most ``max_items`` of ``items``, a seeded random subset in the original order."""
    items = list(items)
    if max_items is None or len(items) <= max_items:
        return items
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(items), size=max_items, replace=False))
    return [items[i] for i in keep]


@dataclass
class RelationPrompts:
    """The pairs of one relation used for dynamic scores, tokenised."""

    name: str
    pairs: list[tuple[str, str]]
    source_ids: list[list[int]]
    target_ids: list[int]
    k: int
    static_pairs: list[tuple[str, str]]


def single_token_pairs(model: HeadModel, relations: Any, k: Any, max_pairs: int | None,
                       min_pairs: int, seed: int) -> tuple[list[RelationPrompts], dict[str, str]]:
    """Relations with enough single-token pairs (as static scoring keeps them)."""
    chosen, skipped = rel_lib.select(model, relations, k, min_pairs)
    out = []
    for c in chosen:
        prep = c.prepared
        rows = subsample(list(zip(prep.kept, prep.source_ids.tolist(), prep.target_ids.tolist())),
                         max_pairs, seed)
        pairs = [tuple(p) for p, _, _ in rows]
        out.append(RelationPrompts(c.name, pairs, [[int(s)] for _, s, _ in rows],
                                   [int(t) for _, _, t in rows],
                                   c.k, pairs))
    return out, skipped


def multi_token_pairs(model: HeadModel, relations: Any, k: Any, max_pairs: int | None,
                      min_pairs: int, seed: int, first_target_token: bool = False,
                      ) -> tuple[list[RelationPrompts], dict[str, str]]:
    """Pairs whose source is several tokens, plus the single-token pairs of the static score.

    The target is one token, or the first token of a longer target when
    ``first_target_token``.
    """
    tok = model.require_tokenizer()
    chosen, skipped = rel_lib.select(model, relations, k, min_pairs)
    out = []
    for c in chosen:
        pairs = rel_lib.load(c.spec) if isinstance(c.spec, str) else [tuple(p) for p in c.spec]
        rows = []
        for s, t in pairs:
            s_ids, t_ids = word_ids(tok, s), word_ids(tok, t)
            if len(s_ids) > 1 and (len(t_ids) == 1 or (first_target_token and t_ids)):
                rows.append(((s, t), s_ids, t_ids[0]))
        if len(rows) < min_pairs:
            skipped[c.name] = f"only {len(rows)} pairs with a multi-token source (need {min_pairs})"
            continue
        rows = subsample(rows, max_pairs, seed)
        out.append(RelationPrompts(c.name, [tuple(p) for p, _, _ in rows], [r[1] for r in rows],
                                   [r[2] for r in rows], c.k, [tuple(p) for p in c.prepared.kept]))
    return out, skipped


def build_prompt_set(model: HeadModel, rels: Sequence[RelationPrompts],
                     templates: Sequence[str]) -> PromptSet:
    """Every relation x template x pair prompt."""
    tok = model.require_tokenizer()
    ids, pos, tgt, ks, grp, half = [], [], [], [], [], []
    T = len(templates)
    for r, rp in enumerate(rels):
        for t, template in enumerate(templates):
            for j, (s_ids, t_id) in enumerate(zip(rp.source_ids, rp.target_ids)):
                p_ids, p = build_prompt(tok, template, s_ids)
                ids.append(p_ids)
                pos.append(p)
                tgt.append(t_id)
                ks.append(rp.k)
                grp.append(r * T + t)
                half.append(j % 2)
    as_long = lambda x: torch.as_tensor(x, dtype=torch.long)  # noqa: E731
    return PromptSet(ids, as_long(pos), as_long(tgt), as_long(ks), as_long(grp), as_long(half))


# ---- scores ----------------------------------------------------------------------------
@dataclass
class DynamicScores:
    """Dynamic scores of every head for several relations and templates.

    Attributes:
        relations: relation names, in order.
        templates: the templates (each with one ``<X>``).
        with_context: ``(R, T, n_layers, n_heads)``: fraction of the relation's prompts
            (one template) whose target is in the top-k of the head's projected output.
        without_context: the same with attention forced onto the source token.
        supp_with_context, supp_without_context: the same for the bottom-k.
        n_pairs: relation -> pairs per template used.
        k: relation -> top-k.
        pairs: relation -> the (source, target) pairs of the prompts.
        static_pairs: relation -> the single-token pairs for the static score.
        skipped: relation -> why it was left out.
        multitoken: whether sources are multi-token (scored at the last source token).
        first_target_token: whether multi-token targets were scored on their first token.
        fold_norms: whether outputs were read through the model's norm gains.
        to_source: ``(R, T, n_layers, n_heads)``: each head's mean attention weight from
            the last position to the source, or None (not measured, see ``controls``).
        with_context_halves: ``(2, R, T, n_layers, n_heads)``: the with-context scores on
            the even and on the odd pairs of each relation, or None.
    """

    relations: list[str]
    templates: list[str]
    with_context: np.ndarray
    without_context: np.ndarray
    supp_with_context: np.ndarray
    supp_without_context: np.ndarray
    n_pairs: dict[str, int]
    k: dict[str, int]
    pairs: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    static_pairs: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    multitoken: bool = False
    fold_norms: bool = True
    first_target_token: bool = False
    to_source: np.ndarray | None = None
    with_context_halves: np.ndarray | None = None


def default_templates() -> list[str]:
    """The library's neutral templates."""
    return list(rel_lib.templates())


def dynamic_scores(
    model: HeadModel,
    relations: Any = "all",
    templates: Sequence[str] | None = None,
    k: int | dict[str, int] | None = None,
    *,
    max_pairs: int | None = None,
    min_pairs: int = rel_lib.MIN_PAIRS,
    multitoken: bool = False,
    first_target_token: bool = False,
    fold_norms: bool = True,
    batch_size: int = 32,
    chunk_prompts: int = 4096,
    seed: int = 0,
    progress: bool = False,
    controls: bool = False,
) -> DynamicScores:
    """Dynamic scores of every head, with and without context (see the module docstring).

    Args:
        model: a HeadModel with its transformers model.
        relations: as for :func:`headmaps.scoring.scan`.
        templates: templates with one ``<X>`` (default: the library's neutral ones).
        k: top-k, per relation as a dict, or None for the defaults.
        max_pairs: use at most this many pairs per relation (seeded subset).
        min_pairs: a relation needs this many usable pairs.
        multitoken: use pairs whose source is several tokens, read at the last one.
        first_target_token: with ``multitoken``, also keep pairs whose target is several
            tokens, scored on its first token.
        fold_norms: read head outputs through the norm gains (see :func:`readout_basis`).
        batch_size: prompts per forward pass.
        chunk_prompts: prompts whose activations are held at once (each chunk is one
            call of the scan kernel per layer; a prompt holds about
            ``n_layers * 2 * d_model`` floats).
        seed: seed of the pair subset.
        progress: show progress bars.
        controls: also measure each head's attention from the last position to the source
            (``to_source``, for the oracle of the correlation experiment; the passes then
            run the eager attention kernel) and the with-context scores of each half of
            the pairs (``with_context_halves``, for the split-half noise ceiling).

    Returns:
        :class:`DynamicScores`.
    """
    tok = model.require_tokenizer()
    templates = list(templates) if templates is not None else default_templates()
    for t in templates:
        split_template(t)
    if multitoken:
        rels, skipped = multi_token_pairs(model, relations, k, max_pairs, min_pairs, seed,
                                          first_target_token)
    else:
        rels, skipped = single_token_pairs(model, relations, k, max_pairs, min_pairs, seed)
    R, T, L, H = len(rels), len(templates), model.n_layers, model.n_heads
    names = ["with", "without", "supp_with", "supp_without"]
    if controls:
        names += ["to_source", "with_even", "with_odd"]
    acc = {name: torch.zeros(R * T, L, H, dtype=torch.float64) for name in names}
    if R:
        ps = build_prompt_set(model, rels, templates)
        order = sorted(range(len(ps.ids)), key=lambda i: len(ps.ids[i]))  # less padding
        pad = pad_id(tok)
        shared = SharedBasis(model, P.ProjectionOptions(fold_norms=fold_norms), DEFAULT_CHUNK_BYTES)
        scratch = Scratch()  # the kernel's buffers, for every chunk of prompts
        bar = tqdm(total=len(order), desc="dynamic" + (" (multi-token)" if multitoken else ""),
                   unit="prompt", disable=not progress)
        for c0 in range(0, len(order), chunk_prompts):
            idx = order[c0:c0 + chunk_prompts]
            caps = []
            for b0 in range(0, len(idx), batch_size):
                bi = idx[b0:b0 + batch_size]
                ids, mask = pad_right([ps.ids[i] for i in bi], pad)
                caps.append(capture(model, ids, mask, ps.source_pos[bi], to_source=controls))
                bar.update(len(bi))
            cap = Captured(torch.cat([c.z for c in caps], 1),
                           torch.cat([c.attn_in for c in caps], 1),
                           torch.cat([c.hidden for c in caps], 0),
                           torch.cat([c.to_source for c in caps], 1) if controls else None)
            del caps
            _score_chunk(model, cap, ps, torch.as_tensor(idx), acc, shared, scratch, progress)
        bar.close()
    n_all = torch.tensor([len(rp.pairs) for rp in rels], dtype=torch.float64)
    n_even = torch.tensor([(len(rp.pairs) + 1) // 2 for rp in rels], dtype=torch.float64)
    per = {"with_even": n_even, "with_odd": n_all - n_even}
    arr = {n: (a / per.get(n, n_all).repeat_interleave(T).clamp(min=1)[:, None, None]
               ).reshape(R, T, L, H).numpy().astype(np.float32)
           for n, a in acc.items()}
    return DynamicScores(
        relations=[rp.name for rp in rels], templates=templates,
        with_context=arr["with"], without_context=arr["without"],
        supp_with_context=arr["supp_with"], supp_without_context=arr["supp_without"],
        n_pairs={rp.name: len(rp.pairs) for rp in rels}, k={rp.name: rp.k for rp in rels},
        pairs={rp.name: rp.pairs for rp in rels},
        static_pairs={rp.name: rp.static_pairs for rp in rels},
        skipped=skipped, multitoken=multitoken, fold_norms=fold_norms,
        first_target_token=first_target_token, to_source=arr.get("to_source"),
        with_context_halves=(np.stack([arr["with_even"], arr["with_odd"]]) if controls else None))


def _score_chunk(model: HeadModel, cap: Captured, ps: PromptSet, idx: torch.Tensor,
                 acc: dict[str, torch.Tensor], shared: SharedBasis, scratch: Scratch,
                 progress: bool = False) -> None:
    """Add the hits of one chunk of prompts to ``acc`` (per group, layer, head).

    Every prompt's head vectors, with and without context, are rows of the scan kernel
    (:func:`headmaps.scoring.count_hits`, with its exact early exit).
    """
    n = len(idx)
    dev = cap.z.device
    targets = ps.target[idx].to(dev).repeat(2)
    ks = ps.k[idx].to(dev).repeat(2)
    rows = torch.arange(2 * n, device=dev)
    group = ps.group[idx]
    for layer in tqdm(range(model.n_layers), desc="project heads", unit="layer", leave=False,
                      disable=not progress):
        zw, zwo = head_values(model, cap, layer)
        a = model.attention(layer)
        W_O, _, U_columns = layer_readout(shared, a, a.W_O.to(dev, torch.float32))
        Y = torch.cat([zw, zwo], 1).float()  # (H, 2n, dh)
        hits, supp = count_hits(Y, W_O, U_columns, model.vocab_size, rows, targets, ks,
                                scratch=scratch)
        parts = [("with", hits[:, :n]), ("without", hits[:, n:]),
                 ("supp_with", supp[:, :n]), ("supp_without", supp[:, n:])]
        if "to_source" in acc:
            even = ps.half[idx].to(dev) == 0
            parts += [("to_source", cap.to_source[layer].T), ("with_even", hits[:, :n] & even),
                      ("with_odd", hits[:, :n] & ~even)]
        for key, h in parts:
            acc[key][:, layer, :].index_add_(0, group, h.T.to(torch.float64).cpu())
        del W_O, Y
