"""Behavioural head-type detectors: real forward passes, attention probabilities per head.

These are the judges that the parameter-only head types (:mod:`headmaps.headtypes`)
are checked against. Each returns an ``(n_layers, n_heads)`` array; exact definitions,
with ``A[l, h, i, j]`` the attention probability of query position ``i`` on key position
``j`` (softmax output, rows sum to 1), averaged over the batch:

* **previous-token** (:func:`previous_token_scores`): ``mean_{i >= 1} A[i, i - 1]`` on
  :data:`TEXT` (prose written for this project), i.e. the mean attention to distance 1.
* **induction** (:func:`induction_scores`): sequences of ``n`` distinct random tokens
  ``t_0..t_{n-1}`` repeated once (length ``2n``); ``mean_{j = 0..n-2} A[n + j, j + 1]``:
  attention from the second copy of ``t_j`` to the token that followed its earlier
  occurrence.
* **duplicate-token** (:func:`duplicate_token_scores`): the same sequences,
  ``mean_{j = 0..n-1} A[n + j, j]``: attention to the earlier occurrence of the same token.
* **copying** and **successor** (:func:`relation_behaviour`): the dynamic relation score
  of :mod:`headmaps.experiments.dynamic` (without context by default: the head's output
  when its attention at the last position rests on the source token; mean over the
  library's neutral templates) for the ``copying`` and ``successor`` relations: the
  fraction of prompts whose target is in the top-k of that output projected to the
  vocabulary.
* **copy suppression** (:func:`copy_suppression_scores`): where the model predicts a token
  that occurs earlier in the prompt, the direct effect on that token's logit of what the
  head reads from its earlier occurrences, weighted by its attention there (positive =
  suppression).

Attention probabilities are read with forward hooks (:func:`~headmaps.experiments.hooks.hooked`)
on every attention module while the model runs its eager attention (switched on for the
pass and restored afterwards), so they are the model's own softmax outputs.
Random tokens are drawn with a seeded generator.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from ..errors import HeadmapsError
from ..models import HeadModel
from .hooks import Hook, eager_attention, hf_model_of, hooked, input_device, layer_modules

logger = logging.getLogger(__name__)

#: Prose written for this project (no licence concerns), for the previous-token detector.
TEXT = (
    "The lighthouse keeper climbed the stairs every evening at six. From the lamp room he could "
    "see the harbour, the fishing boats coming home, and the long grey line of the northern "
    "cliffs. He wrote the weather in a small notebook: wind from the west, light rain, a calm sea "
    "by night. In winter the storms were loud and the glass shook in its frame, but the lamp kept "
    "turning. His daughter sent letters from the city, where she studied chemistry and worked in a "
    "bakery on weekends. She asked whether he was warm enough, whether the roof still leaked, and "
    "whether the old cat had caught any more mice. He answered each letter on Sunday, slowly, with "
    "a pencil that he sharpened with a knife. When the new electric lamp arrived, a young engineer "
    "came to install it. They drank tea together and talked about tides, engines and the price of "
    "bread."
)


def attention_patterns(model: HeadModel, input_ids: torch.Tensor) -> torch.Tensor:
    """Attention probabilities of every head for unpadded sequences.

    Args:
        model: a HeadModel with its transformers model.
        input_ids: ``(B, T)`` token ids (no padding).

    Returns:
        ``(n_layers, B, n_heads, T, T)`` float32 probabilities (query, key).
    """
    hf = hf_model_of(model)
    mods = layer_modules(model)
    out: list[torch.Tensor | None] = [None] * len(mods)

    def grab(i: int):
        def fn(_m, _args, output):
            w = output[1] if isinstance(output, tuple) and len(output) > 1 else None
            if w is None:
                raise HeadmapsError("the attention module returned no probabilities (eager "
                                    "attention unavailable)")
            out[i] = w.detach().float().cpu()
        return fn

    hooks: list[Hook] = [(m.attention, "forward", grab(i)) for i, m in enumerate(mods)]
    dev = input_device(hf)
    with torch.no_grad(), eager_attention(hf), hooked(hooks):
        hf.base_model(input_ids=input_ids.to(dev),
                      attention_mask=torch.ones_like(input_ids).to(dev),
                      use_cache=False, output_attentions=True)
    return torch.stack(out)  # type: ignore[arg-type]


def token_pool(model: HeadModel, n_pool: int = 20000) -> torch.Tensor:
    """Ordinary token ids to draw random sequences from: the first ``n_pool`` non-special ids."""
    V = model.vocab_size
    special: set[int] = set()
    tok = model.tokenizer
    if tok is not None:
        special = set(getattr(tok, "all_special_ids", []) or [])
        V = min(V, len(tok))
    ids = [i for i in range(min(V, n_pool + len(special))) if i not in special][:n_pool]
    return torch.tensor(ids, dtype=torch.long)


def repeated_random(model: HeadModel, n_tokens: int = 50, n_seqs: int = 8, seed: int = 0,
                    pool: torch.Tensor | None = None) -> torch.Tensor:
    """``(n_seqs, 2 * n_tokens)`` sequences of distinct random tokens repeated once (seeded)."""
    pool = token_pool(model) if pool is None else pool
    if len(pool) < n_tokens:
        raise HeadmapsError(f"need {n_tokens} distinct tokens, the pool has {len(pool)}")
    g = torch.Generator().manual_seed(seed)
    rows = [pool[torch.randperm(len(pool), generator=g)[:n_tokens]] for _ in range(n_seqs)]
    first = torch.stack(rows)
    return torch.cat([first, first], 1)


def previous_token_scores(model: HeadModel, input_ids: torch.Tensor | None = None) -> np.ndarray:
    """Mean attention to distance 1, ``mean_{i>=1} A[i, i-1]``, per head ``(n_layers, n_heads)``.

    Args:
        model: the model.
        input_ids: ``(B, T)`` token ids; default :data:`TEXT` tokenised without special tokens.
    """
    if input_ids is None:
        tok = model.require_tokenizer()
        input_ids = torch.tensor([tok(TEXT, add_special_tokens=False)["input_ids"]])
    A = attention_patterns(model, input_ids)
    T = A.shape[-1]
    i = torch.arange(1, T)
    return A[..., i, i - 1].mean(dim=(1, 3)).numpy()


def repeat_scores(model: HeadModel, n_tokens: int = 50, n_seqs: int = 8, seed: int = 0,
                  pool: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Induction and duplicate-token scores from one pass over repeated random tokens.

    Returns:
        ``(induction, duplicate)``, each ``(n_layers, n_heads)``; see the module docstring.
    """
    ids = repeated_random(model, n_tokens, n_seqs, seed, pool)
    A = attention_patterns(model, ids)
    n = n_tokens
    j = torch.arange(n - 1)
    induction = A[..., n + j, j + 1].mean(dim=(1, 3)).numpy()
    jj = torch.arange(n)
    duplicate = A[..., n + jj, jj].mean(dim=(1, 3)).numpy()
    return induction, duplicate


def induction_scores(model: HeadModel, n_tokens: int = 50, n_seqs: int = 8,
                     seed: int = 0) -> np.ndarray:
    """Attention from a repeated token to the token after its earlier occurrence.

    Returns ``(n_layers, n_heads)``.
    """
    return repeat_scores(model, n_tokens, n_seqs, seed)[0]


def duplicate_token_scores(model: HeadModel, n_tokens: int = 50, n_seqs: int = 8,
                           seed: int = 0) -> np.ndarray:
    """Attention from a repeated token to its earlier occurrence ``(n_layers, n_heads)``."""
    return repeat_scores(model, n_tokens, n_seqs, seed)[1]


def relation_behaviour(model: HeadModel, relation: str, max_pairs: int | None = 200,
                       seed: int = 0, context: bool = False, both: bool = False) -> Any:
    """Dynamic score of ``relation``, mean over templates ``(n_layers, n_heads)``.

    Args:
        model: a model with tokenizer and transformers model.
        relation: a relation name (``copying``, ``successor``...).
        max_pairs: at most this many pairs (seeded subset).
        seed: seed of the subset.
        context: False (default): the head's output when its attention at the last
            position rests on the source token (what the head *writes* when it reads the
            token, in the real residual stream: the behaviour of an OV type); True: its
            actual output (also depends on where the head looks in these templates).
        both: return ``(without_context, with_context)``.
    """
    from .dynamic import dynamic_scores

    ds = dynamic_scores(model, [relation], max_pairs=max_pairs, seed=seed)
    if not ds.relations:
        raise HeadmapsError(f"relation {relation!r} cannot be scored on {model.model_id}: "
                            f"{ds.skipped.get(relation, 'too few single-token pairs')}")
    if both:
        return ds.without_context[0].mean(0), ds.with_context[0].mean(0)
    return (ds.with_context if context else ds.without_context)[0].mean(0)


#: Behavioural detector names, in display order.
BEHAVIOURS = ("previous_token", "induction", "duplicate_token", "copying", "copy_suppression",
              "successor")


def behaviour_scores(model: HeadModel, *, relations: bool = True, n_tokens: int = 50,
                     n_seqs: int = 8, max_pairs: int | None = 200,
                     seed: int = 0) -> dict[str, np.ndarray]:
    """Every behavioural detector on ``model``: name -> ``(n_layers, n_heads)``.

    Args:
        model: a model with its transformers model (and tokenizer for the text and relations).
        relations: also run the copying and successor relation detectors (need a tokenizer;
            without context, see :func:`relation_behaviour`).
        n_tokens: length of each repeated random sequence.
        n_seqs: number of repeated random sequences.
        max_pairs: pairs per relation for the dynamic scores.
        seed: seed of the random tokens and pair subsets.
    """
    induction, duplicate = repeat_scores(model, n_tokens, n_seqs, seed)
    out = {"previous_token": previous_token_scores(model), "induction": induction,
           "duplicate_token": duplicate,
           "copy_suppression": copy_suppression_scores(model, n_tokens=n_tokens, n_seqs=n_seqs,
                                                       seed=seed)}
    if relations:
        for name in ("copying", "successor"):
            out[name] = relation_behaviour(model, name, max_pairs, seed)
    return out


# ---- copy suppression -------------------------------------------------------------------
#: Vocabulary columns drawn (seeded) to estimate the mean and covariance of the readout
#: columns: the z of a token in a head's logits needs them, not the whole vocabulary.
N_VOCAB_SAMPLE = 8192


def _pass_for_suppression(model: HeadModel, input_ids: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One eager pass: attention probabilities, attention inputs and the predicted tokens.

    Returns:
        ``(A, X, pred)``: ``(n_layers, B, n_heads, T, T)`` probabilities,
        ``(n_layers, B, T, d_model)`` inputs of the attention modules (the normed
        residual stream) and ``(B, T)`` the model's own argmax next token.
    """
    from .hooks import _hidden_states

    hf = hf_model_of(model)
    mods = layer_modules(model)
    A: list[torch.Tensor | None] = [None] * len(mods)
    X: list[torch.Tensor | None] = [None] * len(mods)

    def grab_x(i: int):
        def fn(_m, args, kwargs):
            X[i] = _hidden_states(args, kwargs).detach().float().cpu()
        return fn

    def grab_a(i: int):
        def fn(_m, _args, output):
            w = output[1] if isinstance(output, tuple) and len(output) > 1 else None
            if w is None:
                raise HeadmapsError("the attention module returned no probabilities (eager "
                                    "attention unavailable)")
            A[i] = w.detach().float().cpu()
        return fn

    hooks: list[Hook] = [(m.attention, "pre", grab_x(i)) for i, m in enumerate(mods)]
    hooks += [(m.attention, "forward", grab_a(i)) for i, m in enumerate(mods)]
    dev = input_device(hf)
    with torch.no_grad(), eager_attention(hf), hooked(hooks):
        out = hf.base_model(input_ids=input_ids.to(dev),
                            attention_mask=torch.ones_like(input_ids).to(dev),
                            use_cache=False, output_attentions=True)
        hidden = out.last_hidden_state
        head = hf.get_output_embeddings() if hasattr(hf, "get_output_embeddings") else None
        W = head.weight if head is not None else model.U.T
        pred = torch.stack([(h @ W.to(h.device, h.dtype).T).argmax(-1) for h in hidden])
    return torch.stack(A), torch.stack(X), pred.cpu()  # type: ignore[arg-type]


def suppression_prompts(model: HeadModel, n_tokens: int = 50, n_seqs: int = 8,
                        seed: int = 0) -> list[torch.Tensor]:
    """The prompt batches of :func:`copy_suppression_scores`.

    Repeated random tokens (after the first copy the model predicts the token that
    followed the earlier occurrence: an earlier token is the plausible next one), and
    :data:`TEXT` when the model has a tokenizer (natural text, where a predicted word
    often appeared before).
    """
    out = [repeated_random(model, n_tokens, n_seqs, seed)]
    if model.tokenizer is not None:
        out.append(torch.tensor([model.tokenizer(TEXT, add_special_tokens=False)["input_ids"]]))
    return out


def copy_suppression_scores(model: HeadModel, prompts: list[torch.Tensor] | None = None, *,
                            n_tokens: int = 50, n_seqs: int = 8, seed: int = 0,
                            parts: bool = False) -> Any:
    """Behavioural copy suppression: does a head lower the logit of an earlier token it attends to?

    At every position ``i`` whose predicted next token ``t`` (the model's own argmax)
    occurs earlier in the prompt (positions ``J``, the first position excluded: it is
    where attention rests), for every head: the direct effect, through the readout,
    of the part of the head's output that comes from attending to ``J``:

        ``e = sum_{j in J} A[i, j] * z_j``,  ``z_j = w_j . (u_t - mean_v u_v) / sd_v(w_j . u_v)``

    with ``w_j = (x_j W_V + b_V) W_O`` the head's output for a key ``j`` (``x_j`` the
    attention input there), ``u_v`` the readout column of token ``v`` (the final norm
    gain and Gemma's post-attention norm gain folded in, as in the dynamic scores), and
    mean and standard deviation over a seeded sample of :data:`N_VOCAB_SAMPLE` columns.
    ``z_j`` says how far below (negative) or above the head's average logit the earlier
    token lands when the head reads it; the attention weight makes the effect count only
    as much as the head attends there. The score is ``-mean e`` over all such positions:
    positive = suppression (a copy-suppression head), negative = copying.

    Args:
        model: a model with its transformers model.
        prompts: ``(B, T)`` id batches; default :func:`suppression_prompts`.
        n_tokens: length of the default repeated random sequences.
        n_seqs: their number.
        seed: their seed (and of the vocabulary sample).
        parts: also return the mean attention on ``J`` and the number of positions.

    Returns:
        ``(n_layers, n_heads)`` scores, or with ``parts`` a dict ``score``,
        ``attention`` (mean ``sum_{j in J} A[i, j]``), ``positions``.
    """
    from .. import projection as P

    prompts = suppression_prompts(model, n_tokens, n_seqs, seed) if prompts is None else prompts
    L, H = model.n_layers, model.n_heads
    total = torch.zeros(L, H, dtype=torch.float64)
    att = torch.zeros(L, H, dtype=torch.float64)
    count = 0
    kv = model.spec.kv_index()
    g = torch.Generator().manual_seed(seed)
    V = model.vocab_size
    sample = torch.randperm(V, generator=g)[:N_VOCAB_SAMPLE]
    fold = P.ProjectionOptions(fold_norms=True)
    for ids in prompts:
        if ids.ndim != 2 or ids.shape[1] < 3:
            raise HeadmapsError(f"copy-suppression prompts must be (batch, length >= 3) ids, got "
                                f"shape {tuple(ids.shape)}")
        A, X, pred = _pass_for_suppression(model, ids)
        B_, T = ids.shape
        pos = torch.arange(T)
        earlier = (pos[None, :] < pos[:, None]) & (pos[None, :] >= 1)  # (i, j)
        occ = (ids[:, None, :] == pred[:, :, None]) & earlier[None]  # (B, i, j)
        rows = occ.any(-1).nonzero()  # (n, 2): (b, i)
        if len(rows) == 0:
            continue
        b_idx, i_idx = rows[:, 0], rows[:, 1]
        targets = pred[b_idx, i_idx]  # (n,)
        uniq, inv = torch.unique(targets, return_inverse=True)
        occ_r = occ[b_idx, i_idx].double()  # (n, T)
        count += len(rows)
        with torch.no_grad():
            for layer in range(L):
                a = model.attention(layer)
                Ub = P.output_basis(model, fold, a, columns=torch.cat([sample, uniq])
                                    .to(model.U.device)).double().cpu()
                S, Ut = Ub[:, :len(sample)], Ub[:, len(sample):]
                mu = S.mean(1)
                Sc = S - mu[:, None]
                cov = Sc @ Sc.T / S.shape[1]
                v = torch.einsum("btd,kde->btke", X[layer].double(), a.W_V.double().cpu())
                if a.b_V is not None:
                    v = v + a.b_V.double().cpu()
                v = v[:, :, kv]  # (B, T, H, dh)
                w = torch.einsum("bthe,hed->bthd", v, a.W_O.double().cpu())  # (B, T, H, d)
                sd = torch.einsum("bthd,de,bthe->bth", w, cov, w).clamp_min(1e-30).sqrt()
                ut = (Ut - mu[:, None])[:, inv].T  # (n, d)
                for b in range(B_):
                    r = (b_idx == b).nonzero().reshape(-1)
                    if len(r) == 0:
                        continue
                    z = torch.einsum("thd,nd->nth", w[b], ut[r]) / sd[b]  # (n_b, T, H)
                    Ar = A[layer][b, :, i_idx[r], :].double().transpose(0, 1)  # (n_b, H, T)
                    e = torch.einsum("nht,nt,nth->nh", Ar, occ_r[r], z)
                    total[layer] += e.sum(0)
                    att[layer] += torch.einsum("nht,nt->nh", Ar, occ_r[r]).sum(0)
    if count == 0:
        raise HeadmapsError("no position of the prompts predicts a token that occurs earlier: "
                            "copy suppression cannot be measured")
    score = (-total / count).float().numpy()
    if not parts:
        return score
    return {"score": score, "attention": (att / count).float().numpy(), "positions": count}
