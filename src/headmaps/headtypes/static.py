"""Parameter-only head-type scores, batched over heads (definitions: docs/head-types.md).

Every function returns arrays over ``(n_layers, n_heads)`` (or pairs of heads) and reads
the layer's tensors through the model view, so lazy checkpoints work too. Source
representations, norm folding and ``U`` come from the same projection presets as the
OV relation scores (:mod:`headmaps.projection`).

* :func:`eigen_copying`: ``sum(λ) / sum(|λ|)`` over the eigenvalues of the OV circuit in
  token space ``X_S W_V W_O U_S`` (``|S| x |S|``, rank ``d_head``). Its nonzero
  eigenvalues are those of the ``d_head x d_head`` product ``W_O (U_S X_S) W_V``, so
  only the ``d_model x d_model`` matrix ``U_S X_S`` is formed per layer. ``S`` is a
  subset of tokens: by default the first ``n_tokens`` ordinary token ids (BPE
  vocabularies number tokens by merge order, so low ids are the frequent ones); the full
  vocabulary costs ``2 d_model^2 |V|`` per layer and gives the same ranking in practice.
  +1: every eigenvalue positive (the head copies); -1: all negative (it suppresses).
* :func:`k_composition`: Elhage et al.'s K-composition of a later head ``h`` with an
  earlier head ``g`` in the form that fits rotary models, on the key side only:
  ``||W_VO^g diag(γ) W_K^h||_F / (||W_VO^g||_F ||diag(γ) W_K^h||_F)`` with ``γ`` the
  input-norm gain of ``h``'s layer. Elhage's ``W_QK^h = W_Q W_K^T`` is not defined
  under rotary embeddings (it becomes ``W_Q R(Δ) W_K^T``, different for every
  distance); the rotation acts on the key's ``d_head`` side as an orthogonal matrix, so
  the key-side norm above is the same at every distance.
* :func:`self_preference`: the QK content preference of a token for itself: for each
  query token ``a`` of ``S``, ``(s(a, a) - mean_b s(a, b)) / std_b s(a, b)`` with ``s``
  the content logit (distance 0, no rotation, as in :mod:`headmaps.attention`), averaged
  over ``a``. Mean and std over keys come from the keys' mean and covariance, so no
  ``|S| x |S|`` matrix is formed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .. import projection as P
from ..errors import HeadmapsError
from ..models import HeadModel
from ..models import qk as Q
from ..models.weights import QKWeights
from ..salient.tokens import valid_mask

#: Default size of the token subset ``S`` (see the module docstring).
DEFAULT_N_TOKENS = 8192


def token_subset(model: HeadModel, n_tokens: int | None = DEFAULT_N_TOKENS) -> torch.Tensor:
    """The first ``n_tokens`` valid (non-special) token ids, ``(n,)`` long; all for None."""
    mask = valid_mask(model.tokenizer, model.vocab_size)
    ids = mask.nonzero().reshape(-1)
    return ids if n_tokens is None else ids[:n_tokens]


def eigen_copying(model: HeadModel, src: P.Sources,
                  layers: Sequence[int] | None = None) -> np.ndarray:
    """Eigenvalue copying score ``sum(λ)/sum(|λ|)`` of every head, ``(len(layers), n_heads)``.

    Args:
        model: the model.
        src: source representations of the token subset ``S`` (and the projection options).
        layers: layers (default all).
    """
    layers = list(range(model.n_layers)) if layers is None else list(layers)
    kv = model.spec.kv_index()
    out = np.zeros((len(layers), model.n_heads), dtype=np.float32)
    with torch.no_grad():
        for i, layer in enumerate(layers):
            a = model.attention(layer)
            X = P.layer_sources(src.at(layer), a, src.opts)  # (n, d)
            U = P.output_basis(model, src.opts, a, columns=src.ids.to(model.U.device))  # (d, n)
            G = U @ X  # (d, d)
            W_V = a.W_V.float()[kv.to(a.W_V.device)]  # (H, d, dh)
            small = a.W_O.float() @ G @ W_V  # (H, dh, dh)
            lam = torch.linalg.eigvals(small.double())
            out[i] = (lam.sum(-1).real / lam.abs().sum(-1).clamp_min(1e-30)).float().cpu().numpy()
    return out


def _key_weights(model: HeadModel, layer: int) -> torch.Tensor:
    """``diag(γ) W_K`` of ``layer`` per query head, ``(n_heads, d, dh)`` float32."""
    qk = model.qk(layer)
    W_K = qk.W_K.float()[model.spec.kv_index().to(qk.W_K.device)]
    g = qk.input_norm.weight
    return W_K if g is None else g.float()[None, :, None] * W_K


def k_composition(model: HeadModel,
                  partners: Sequence[tuple[int, int]] | None = None) -> np.ndarray:
    """K-composition of every head with earlier heads ``g`` (key-side form, module docstring).

    Args:
        model: the model.
        partners: the earlier heads ``g`` as ``(layer, head)`` (default every head).

    Returns:
        ``(L, H, n_partners)``: ``[l, h, i]`` is the composition of head ``h`` of layer
        ``l`` with ``partners[i]``; NaN where ``partners[i]`` is not in an earlier layer.
    """
    L, H = model.n_layers, model.n_heads
    if partners is None:
        partners = [(m, g) for m in range(L) for g in range(H)]
    partners = [(int(m), int(g)) for m, g in partners]
    out = np.full((L, H, len(partners)), np.nan, dtype=np.float32)
    if not partners:
        return out
    with torch.no_grad():
        factors = []  # per source: R (dh, dh) with R^T R = W_V^T W_V, and W_O (dh, d)
        for m, g in partners:
            v, o = model.ov(m, g)
            v, o = v.float(), o.float()
            gram = v.T @ v
            evals, evecs = torch.linalg.eigh(gram.double())
            R = (evecs * evals.clamp_min(0).sqrt()).T.float()  # R^T R = gram
            factors.append((R @ o, (gram * (o @ o.T)).sum().clamp_min(0).sqrt()))
        A = torch.stack([f[0] for f in factors])  # (n_s, dh, d): ||A K||_F = ||W_V W_O K||_F
        norm_vo = torch.stack([f[1] for f in factors])
        first = torch.tensor([m for m, _ in partners])
        for layer in range(1, L):
            earlier = (first < layer).nonzero().reshape(-1)
            if len(earlier) == 0:
                continue
            K = _key_weights(model, layer)  # (H, d, dh)
            nk = K.pow(2).sum((1, 2)).sqrt()
            prod = torch.einsum("sxd,hdy->shxy", A[earlier], K)  # (n_e, H, dh, dh)
            denom = (norm_vo[earlier][:, None] * nk[None]).clamp_min(1e-30)
            comp = prod.pow(2).sum((2, 3)).sqrt() / denom
            out[layer][:, earlier.numpy()] = comp.T.cpu().numpy()
    return out


def _match_z(q: torch.Tensor, k: torch.Tensor, kv: torch.Tensor | None = None) -> np.ndarray:
    """Per head, the mean z-score of each query's logit on its own key ``(H,)``.

    ``q`` ``(H, n, dh)``, ``k`` ``(H, n, dh)`` or, with ``kv`` (each query head's key
    head, ``(H,)``), ``(n_kv, n, dh)``: row ``j`` of ``k`` is the key matched to query
    ``j``; the z-score is against the logits of that query on all ``n`` keys (their mean
    and std, from the keys' mean and covariance, formed once per key head).
    """
    k_mean = k.mean(1, keepdim=True)
    kc = k - k_mean
    C = kc.transpose(1, 2) @ kc / k.shape[1]  # (n_kv or H, dh, dh)
    if kv is not None:
        k, k_mean, C = k[kv], k_mean[kv], C[kv]
    diag = (q * k).sum(-1)
    mean = (q * k_mean).sum(-1)
    std = ((q @ C) * q).sum(-1).clamp_min(1e-30).sqrt()
    return ((diag - mean) / std).mean(1).float().cpu().numpy()


def self_preference(model: HeadModel, src: P.Sources) -> np.ndarray:
    """Mean standardised content logit of a token on itself, ``(n_layers, n_heads)``.

    Args:
        model: the model.
        src: source representations of the token subset (queries and keys).
    """
    L, H = model.n_layers, model.n_heads
    out = np.zeros((L, H), dtype=np.float32)
    heads = torch.arange(H)
    kv = model.spec.kv_index()
    with torch.no_grad():
        for layer in range(L):
            qk = model.qk(layer)
            X = Q.layer_input(qk, src.at(layer), src.opts)
            q = Q.queries(qk, X, heads.to(X.device))  # (H, n, dh)
            out[layer] = _match_z(q, Q.keys(qk, X), kv.to(X.device))
    return out


def previous_token_mass(model: HeadModel, src: P.Sources, max_distance: int = 64,
                        n_samples: int = 256,
                        seed: int = 0) -> np.ndarray:
    """Expected attention on distance 1 of the sampled positional profile, ``(n_layers, n_heads)``.

    The sampled profile of :mod:`headmaps.attention` (random query tokens, each with
    random key tokens at distances ``0..max_distance``, softmax of the exact logits,
    averaged), drawn from the token subset of ``src`` so that only its keys are formed.
    This is the one definition of a head's previous-token mass: the head types, ``headmaps
    types`` and the report's QK summary all show this number.
    """
    return positional_mass(model, src, max_distance, n_samples, seed)[..., 1]


def positional_mass(model: HeadModel, src: P.Sources, max_distance: int = 64,
                    n_samples: int = 256, seed: int = 0) -> np.ndarray:
    """The sampled positional profile of every head, ``(n_layers, n_heads, max_distance + 1)``.

    See :func:`previous_token_mass`; ``[..., 0]`` is the expected attention on the query's
    own position, ``[..., 1]`` on the previous token.
    """
    from ..attention.compute import sampled_profile

    L, H = model.n_layers, model.n_heads
    out = np.zeros((L, H, max_distance + 1), dtype=np.float32)
    heads = torch.arange(H)
    with torch.no_grad():
        for layer in range(L):
            qk = model.qk(layer)
            if qk.positions.kind == "learned":
                n_pos = qk.positions.embedding.shape[0] - qk.positions.offset
                if max_distance >= n_pos:
                    raise HeadmapsError(f"max_distance={max_distance} exceeds the model's {n_pos} "
                                        "positions; "
                                        f"pass max_distance <= {n_pos - 1}")
            base = src.at(layer)
            K = Q.keys(qk, Q.layer_input(qk, base, src.opts))  # (n_kv, n, dh), rows = subset
            valid = torch.ones(base.shape[0], dtype=torch.bool, device=base.device)
            s = sampled_profile(model, qk, heads.to(base.device), K, base, src.opts, valid,
                                max_distance, n_samples, seed + layer)
            out[layer] = s.float().cpu().numpy()
    return out


#: Tokens of the subset used as queries and keys of :func:`induction_match`.
N_MATCH_TOKENS = 2048


def induction_match(model: HeadModel, src: P.Sources, partners: Sequence[tuple[int, int]],
                    n_tokens: int = N_MATCH_TOKENS) -> np.ndarray:
    """The induction QK circuit of every head with each earlier head ``g``: a z-score.

    An induction head's query at a token ``a`` must find the key whose *previous* token
    was ``a``; a previous-token head ``g`` wrote that token's value into the key
    position's residual. So for each query token ``a`` (the first ``n_tokens`` of the
    subset) the head's content logit on the key built from ``g``'s output for ``a``,
    ``s(a, a) = q_a . k(OV_g(a))``, is standardised against the keys ``k(OV_g(b))`` of
    every other token: ``(s(a, a) - mean_b s(a, b)) / std_b s(a, b)``, averaged over
    ``a``. ``OV_g(b) = (LN(x_b) W_V^g + b_V) W_O^g`` (times ``g``'s post-attention norm
    gain, Gemma) with ``x_b`` the source representation at ``g``'s layer; the key is
    ``W_K`` of the head's layer applied to that vector through the layer's input norm
    (and key norm), so the query side is in the score: unlike K-composition, query heads
    that share one key head differ. Elhage et al. read the same circuit off
    ``W_E W_Q^h W_K^hT W_OV^gT W_E^T``; here it is in the projection's source space.

    Returns:
        ``(L, H, len(partners))``; NaN where ``partners[i]`` is not in an earlier layer.
    """
    match = InductionMatch(model, partners, src.opts)
    out = np.full((model.n_layers, model.n_heads, len(match.partners)), np.nan,
                  dtype=np.float32)
    rows = torch.arange(min(n_tokens, len(src.ids)))
    for layer in range(model.n_layers if match.partners else 0):
        full = src.at(layer)
        out[layer] = match.step(layer, full[rows.to(full.device)])
    return out


def write_keys(qk: QKWeights, v: torch.Tensor, W_O: torch.Tensor,
               opts: P.ProjectionOptions) -> torch.Tensor:
    """``Q.keys(qk, Q.layer_input(qk, v @ W_O, opts))`` without forming the write.

    A head's write ``y = v W_O`` (``v`` ``(n, d_head)``, ``W_O`` ``(d_head, d_model)``)
    through the layer's input norm is ``(y C) r γ + β``: LayerNorm's centring ``C`` is
    ``W_O``'s rows centred, and the row scale ``r = (mean((y C)^2) + eps)^-1/2`` comes
    from ``v (W_O C)(W_O C)^T v^T``; so the key product runs at width ``d_head``, not
    ``d_model``. Equal to the direct form up to float32 rounding (tested).

    Returns:
        ``(n_kv, n, d_head)``: the keys, with bias and key norm.
    """
    W_K = qk.W_K.float().to(v.device)
    norm = qk.input_norm if opts.fold_norms else None
    if norm is not None and norm.kind == "layernorm":
        W_O = W_O - W_O.mean(-1, keepdim=True)
    scale = torch.ones(len(v), dtype=v.dtype, device=v.device)
    if norm is not None:
        ms = ((v @ (W_O @ W_O.T)) * v).sum(-1) / W_O.shape[-1]
        scale = torch.rsqrt(ms + norm.eps)
        if norm.weight is not None:
            W_O = W_O * norm.weight.float().to(W_O.device)
    k = torch.einsum("ne,kef->knf", v, torch.einsum("ed,kdf->kef", W_O, W_K)) * scale[:, None]
    if norm is not None and norm.bias is not None:
        k = k + (norm.bias.float().to(v.device) @ W_K)[:, None, :]
    if qk.b_K is not None:
        k = k + qk.b_K.float().to(v.device)[:, None, :]
    return qk.k_norm(k).float() if qk.k_norm is not None else k


class InductionMatch:
    """:func:`induction_match` one layer at a time, for a caller that walks the layers.

    Call :meth:`step` with each layer's rows in increasing layer order (a stream
    advances once): it scores the layer's heads against the partners of earlier layers,
    then records what the layer's own partners write.
    """

    def __init__(self, model: HeadModel, partners: Sequence[tuple[int, int]],
                 opts: P.ProjectionOptions):
        self.model, self.opts = model, opts
        self.partners = [(int(m), int(g)) for m, g in partners]
        # partner index -> its write as (n, d_head) values and (d_head, d_model) output weights
        self.written: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def step(self, layer: int, base: torch.Tensor) -> np.ndarray:
        """Layer ``layer``'s row of the score, ``(H, len(partners))`` (NaN where not earlier).

        Args:
            layer: the layer, one more than the previous call's.
            base: the token rows entering it ``(n, d_model)``: queries, and the tokens
                whose writes form the keys.
        """
        model, opts = self.model, self.opts
        out = np.full((model.n_heads, len(self.partners)), np.nan, dtype=np.float32)
        kv = model.spec.kv_index().to(base.device)
        with torch.no_grad():
            earlier = [i for i, (m, _) in enumerate(self.partners)
                       if m < layer and i in self.written]
            if earlier:
                qk = model.qk(layer)
                q = Q.queries(qk, Q.layer_input(qk, base, opts),
                              torch.arange(model.n_heads, device=base.device))
                for i in earlier:
                    out[:, i] = _match_z(q, write_keys(qk, *self.written[i], opts), kv)
            here = [i for i, (m, _) in enumerate(self.partners) if m == layer]
            if here:
                a = model.attention(layer)
                X = P.layer_sources(base, a, opts)
                for i in here:
                    g = self.partners[i][1]
                    v = X @ a.W_V[kv[g]].float().to(X.device)
                    if a.b_V is not None:
                        v = v + a.b_V[kv[g]].float().to(X.device)
                    W_O = a.W_O[g].float().to(X.device)
                    post = a.post_norm
                    if opts.fold_norms and post is not None and post.weight is not None:
                        W_O = W_O * post.weight.float().to(W_O.device)
                    self.written[i] = (v, W_O)
        return out
