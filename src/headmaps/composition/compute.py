"""Q-, K- and V-composition of every pair of heads, raw and through the projection.

An earlier head ``g`` (layer ``l_g``) *composes* with a later head ``h`` (layer
``l_h > l_g``) when what ``g`` writes into the residual stream is read by ``h``: by its
queries (Q), its keys (K) or its values (V). Row-vector convention throughout: a head's
output is ``x W_V W_O`` and its logit ``(x_q W_Q)(x_k W_K)^T``, ``W_QK = W_Q W_K^T``,
``W_OV = W_V W_O``; ``W_V`` and ``W_K`` are those of the head's key/value head under
grouped-query attention (``ArchSpec.kv_index``).

**Raw** (Elhage et al. 2021, in the row convention), with each layer's diagonal gains
folded into its own ``W_Q``, ``W_K``, ``W_V`` as TransformerLens's ``fold_ln`` does
(input-norm gain ``γ`` and LayerNorm centring ``C`` on the ``d_model`` side,
``D = C diag(γ)``; Gemma 3's query/key-norm gains on the ``d_head`` side), written here
for the receiving head::

    Q: ||W_OV^g D W_QK^h||   / (||W_OV^g|| ||D W_QK^h||)        g feeds h's queries
    K: ||W_OV^g D W_QK^hT||  / (||W_OV^g|| ||D W_QK^h||)        g feeds h's keys
    V: ||W_OV^g D W_OV^h||   / (||W_OV^g|| ||D W_OV^h||)        g feeds h's values

(Frobenius norms). No ``d_model x d_model`` matrix is formed: each norm is
``||L · core · R^T||`` with ``core`` a ``d_head x d_head`` product of the inner factors
(``W_O^g D W_K^h``...) and ``L``, ``R`` square roots of the ``d_head x d_head`` Gram
matrices of the outer ones (``L^T L = W_V^gT W_V^g``...): :func:`chain_norm`.

**Through the projection** (the headmaps version): the same quantities measured on the
token representations the projection reads, a fixed sample of ``n`` tokens with rows
``X_l`` entering each layer (``Sources.at(l)`` through the layer's input norm). ``g``
writes ``A_g = X_lg W_V^g W_O^g`` (times Gemma's post-attention norm gain, as the
projection folds it, over that norm's typical scale: the median over the sample of the
RMS of the layer's output when every head reads the sample token itself). ``h`` reads
a write ``a`` through its input norm, ``a D / s``:
the gain and centring are exact, but the norm's per-row scale ``1 / s`` belongs to the
position the write is added to, which the sample does not fix, so it is replaced by one
number per layer, ``s_h`` = the median over the sample of the norm's denominator
(``sqrt(mean(x^2) + eps)``, centred for LayerNorm) at ``l_h``; likewise a query/key norm
(Gemma 3) contributes its gain over ``s_q``/``s_k``, the median of its denominator on the
sample's raw queries/keys. Everything is *centred over the sample* (the mean of a write
moves every logit of a query alike, and the path-patching check of
:mod:`headmaps.experiments.pathpatch` keeps that mean: it mean-ablates), so biases drop
out. With ``Q_h`` the sample's queries of ``h`` (exact, with their norm and bias),
``K̃_h`` its centred keys, ``Ṽ_h = X̃_lh W_V^h W_O^h`` its centred outputs, and ``K_g``,
``Q_g``, ``V_g`` what ``g``'s centred writes add to them::

    K-comp(g→h) = ||Q_h K_g^T||  / ||Q_h K̃_h^T||     the RMS change of h's logits that g's
    Q-comp(g→h) = ||Q_g K̃_h^T|| / ||Q_h K̃_h^T||     writes cause, over the RMS spread of
    V-comp(g→h) = ||V_g||         / ||Ṽ_h||           h's logits (outputs) on the sample

Each numerator is again ``||L · core · R^T||``: ``L`` the root of ``W_V^gT Σ_g W_V^g``
(``Σ_g`` the sample covariance of ``X_lg``), ``core = W_O^g (D / s_h) W_K^h (γ_k / s_k)``,
``R`` the root of ``Q_h^T Q_h / n``; the denominators are ``d_head``-sized too. So the
projection score is the raw one with the identity replaced by the sample's statistics
on both sides (white, centred rows and ``s = 1`` give the raw numerator exactly; tested),
and it is scale-aware: a head that writes little, or into directions the sample never
excites, composes little. Positions are left out of both versions: logits are taken at
distance 0 (no rotary rotation), as in the content preferences of
:mod:`headmaps.attention`. Cost per later layer: one ``(n_earlier, d_head, d_model) x
(d_model, d_head)`` batched product per kind, then ``d_head^3`` per pair.

**The induction circuit** (kind ``induction``, :data:`INDUCTION`): K-composition
measures how much a writer moves the reader's logits, in any direction; an induction
head needs a previous-token head whose write, for token ``a``, makes the key that the
query of ``a`` finds. That is :func:`headmaps.headtypes.static.induction_match` (a
z-score of each query's logit on its own token's key against the other tokens' keys),
here for every pair: ``projection`` on the sample's rows, ``raw`` on the same tokens'
embeddings with the same norms (Elhage et al.'s ``W_E W_QK^h W_OV^gT W_E^T`` circuit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .. import projection as P
from ..models import HeadModel
from ..models import qk as Q
from ..models.weights import Norm

#: The composition kinds, in display order: the three paths, then the induction circuit
#: (the K path read as a match, :data:`INDUCTION`).
KINDS = ("Q", "K", "V", "induction")
#: What :func:`headmaps.composition.composition` computes unless asked: the three paths.
PATH_KINDS = ("Q", "K", "V")
#: The induction circuit: for each query token ``a``, the z-score of the reader's logit
#: on the key that the writer's output for ``a`` forms, against the keys of every other
#: token (:func:`headmaps.headtypes.static.induction_match`): K-composition asks how much
#: a writer moves the reader's logits, this asks whether it moves them toward the
#: matching token, which is what an induction head needs of a previous-token head.
INDUCTION = "induction"


def canonical_kind(kind: str) -> str:
    """``"k"`` -> ``"K"``, ``"Induction"`` -> ``"induction"``; unknown names unchanged (upper)."""
    return INDUCTION if str(kind).lower() == INDUCTION else str(kind).upper()


#: The two methods, in display order.
METHODS = ("projection", "raw")


def gram_root(G: torch.Tensor) -> torch.Tensor:
    """``R`` with ``R^T R = G`` for symmetric PSD ``G`` ``(..., k, k)``; float64.

    ``||M A^T||_F = ||M R^T||_F`` whenever ``A^T A = G``: a ``(n, k)`` factor ``A``
    (``W_V``, the sample's queries) is replaced by a ``(k, k)`` one.
    """
    evals, evecs = torch.linalg.eigh(G.double())
    return (evecs * evals.clamp_min(0).sqrt().unsqueeze(-2)).transpose(-1, -2)


def chain_norm(left: torch.Tensor, core: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """``||left @ core @ right^T||_F`` batched: ``(..., k, k)`` each -> ``(...)``."""
    return (left @ core @ right.transpose(-1, -2)).pow(2).sum((-2, -1)).sqrt()


def norm_scale(norm: Norm | None, x: torch.Tensor | None) -> float:
    """The median over rows of ``norm``'s denominator on ``x`` ``(n, k)``; 1 without norm or x."""
    if norm is None or x is None or len(x) == 0:
        return 1.0
    x = x.double()
    if norm.kind == "layernorm":
        x = x - x.mean(-1, keepdim=True)
    return float((x.pow(2).mean(-1) + norm.eps).sqrt().median())


@dataclass
class Read:
    """How a layer reads a write through its input norm: ``x -> x D / scale``.

    ``D = C diag(γ)``: LayerNorm's centring ``C = I - 11^T/d`` (linear) then the gain;
    the per-row scale is ``1 / scale`` (see the module docstring). Never formed as a
    ``d x d`` matrix.
    """

    gain: torch.Tensor  # (d,) float64
    centre: bool
    scale: float = 1.0

    @classmethod
    def of(cls, norm: Norm, d: int, scale: float = 1.0) -> Read:
        """The read of ``norm`` (no gain: ones) at ``scale``."""
        g = norm.weight.double().cpu() if norm.weight is not None else \
            torch.ones(d, dtype=torch.float64)
        return cls(g, norm.kind == "layernorm", scale)

    def after(self, W: torch.Tensor) -> torch.Tensor:
        """``W D / scale`` for writes ``W`` ``(..., d)``."""
        if self.centre:
            W = W - W.mean(-1, keepdim=True)
        return W * self.gain / self.scale

    def before(self, W: torch.Tensor) -> torch.Tensor:
        """``D W / scale`` for readers ``W`` ``(..., d, k)``."""
        W = W * (self.gain / self.scale)[:, None]
        return W - W.mean(-2, keepdim=True) if self.centre else W


def head_gain(norm: Norm | None, dh: int, scale: float = 1.0) -> torch.Tensor:
    """A query/key norm read as its gain over ``scale``: ``(dh,)`` float64 (ones if none)."""
    if norm is None or norm.weight is None:
        return torch.ones(dh, dtype=torch.float64) / (scale if norm is not None else 1.0)
    return norm.weight.double().cpu() / scale


@dataclass
class Writer:
    """What the earlier heads write, as ``d_head``-sized factors.

    Attributes:
        layer: ``(n_g,)`` layer of each writing head.
        head: ``(n_g,)`` its index in the layer.
        left: ``(n_g, dh, dh)`` root of ``W_V^T Σ W_V`` (``Σ = I`` for raw).
        W_O: ``(n_g, dh, d)`` output weights (post-attention norm gain folded in).
        norm: ``(n_g,)`` ``||X̃ W_V W_O||`` per row (``||W_OV||_F`` for raw).
    """

    layer: torch.Tensor
    head: torch.Tensor
    left: torch.Tensor
    W_O: torch.Tensor
    norm: torch.Tensor


@dataclass
class Reader:
    """How the heads of one later layer read, as ``d_head``-sized factors (float64).

    Attributes:
        read: the layer's read of a write (``D / s_h`` for the projection).
        kv: ``(H,)`` the key/value head of each query head.
        W_Q: ``(H, d, dh)`` query weights times the query-norm gain (over ``s_q``).
        W_K: ``(n_kv, d, dh)`` key weights times the key-norm gain (over ``s_k``).
        W_V: ``(n_kv, d, dh)`` value weights.
        R_Q: ``(H, dh, dh)`` root of the queries' Gram (raw: of ``D W_Q``).
        R_K: ``(H, dh, dh)`` root of the centred keys' Gram (raw: of ``D W_K``).
        R_O: ``(H, dh, dh)`` root of ``W_O W_O^T``.
        den: kind -> ``(H,)`` the denominator of each kind's score.
    """

    read: Read
    kv: torch.Tensor
    W_Q: torch.Tensor
    W_K: torch.Tensor
    W_V: torch.Tensor
    R_Q: torch.Tensor
    R_K: torch.Tensor
    R_O: torch.Tensor
    den: dict[str, torch.Tensor]


def _post_gain(model: HeadModel, layer: int, opts: P.ProjectionOptions | None) -> torch.Tensor:
    """Gemma's post-attention norm gain ``(d,)`` where the projection folds it, else ones."""
    post = model.attention(layer).post_norm
    if post is not None and post.weight is not None and (opts is None or opts.fold_norms):
        return post.weight.double().cpu()
    return torch.ones(model.d_model, dtype=torch.float64)


def _post_scale(model: HeadModel, layer: int, X: torch.Tensor,
                opts: P.ProjectionOptions | None) -> float:
    """The typical per-row scale of Gemma's post-attention norm on the sample (else 1).

    The norm divides the whole layer's output ``o`` by its RMS at each position; as for
    the input norm (module docstring), that scale is replaced by its median over the
    sample, with ``o`` the layer's output when every head reads the sample token itself.
    """
    a = model.attention(layer)
    if a.post_norm is None or (opts is not None and not opts.fold_norms):
        return 1.0
    v = torch.einsum("nd,kde->kne", X, a.W_V.double().cpu())
    if a.b_V is not None:
        v = v + a.b_V.double().cpu()[:, None, :]
    o = torch.einsum("hne,hed->nd", v[model.spec.kv_index().cpu()], a.W_O.double().cpu())
    if a.b_O is not None:
        o = o + a.b_O.double().cpu()
    return norm_scale(a.post_norm, o)


def writers(model: HeadModel, layers: Sequence[int],
            rows: dict[int, torch.Tensor] | None = None,
            opts: P.ProjectionOptions | None = None) -> Writer:
    """The write factors of every head of ``layers``.

    Args:
        model: the model.
        layers: the writing layers.
        rows: layer -> ``(n, d)`` sample rows after the layer's input norm (the
            projection); None: raw (``Σ = I``, the layer's read ``D`` folded into ``W_V``).
        opts: projection options (whether the post-attention gain is folded).
    """
    kv = model.spec.kv_index().cpu()
    parts: dict[str, list[torch.Tensor]] = {"layer": [], "head": [], "left": [], "W_O": [],
                                            "norm": []}
    for layer in layers:
        a = model.attention(layer)
        W_V = a.W_V.double().cpu()
        W_O = a.W_O.double().cpu() * _post_gain(model, layer, opts)  # (H, dh, d)
        if rows is None:
            G = _gram(Read.of(a.input_norm, model.d_model).before(W_V))
        else:
            X = rows[layer].double().cpu()
            G = _gram(torch.einsum("nd,kde->kne", X - X.mean(0), W_V), len(X))
            W_O = W_O / _post_scale(model, layer, X, opts)
        G = G[kv]
        parts["left"].append(gram_root(G))
        parts["W_O"].append(W_O)
        parts["norm"].append(_ov_norm(G, W_O))
        parts["layer"].append(torch.full((model.n_heads,), layer))
        parts["head"].append(torch.arange(model.n_heads))
    return Writer(**{k: torch.cat(v) for k, v in parts.items()})


def _gram(A: torch.Tensor, n: int = 1) -> torch.Tensor:
    """``A^T A / n`` over the last two axes."""
    return A.transpose(-1, -2) @ A / n


def _ov_norm(G_V: torch.Tensor, W_O: torch.Tensor) -> torch.Tensor:
    """``||A W_O||_F`` per head from ``G_V = A^T A`` ``(H, dh, dh)`` and ``W_O`` ``(H, dh, d)``."""
    return (G_V * (W_O @ W_O.transpose(1, 2)).transpose(1, 2)).sum((1, 2)).clamp_min(0).sqrt()


def reader(model: HeadModel, layer: int, rows: torch.Tensor | None = None,
           raw_rows: torch.Tensor | None = None) -> Reader:
    """The read factors of every head of ``layer``.

    Args:
        model: the model.
        layer: the reading layer.
        rows: ``(n, d)`` the sample's rows after the layer's input norm (projection);
            None for raw.
        raw_rows: the same rows before the norm (for the typical scale ``s_h``; None: 1).
    """
    qk, a = model.qk(layer), model.attention(layer)
    kv = model.spec.kv_index().cpu()
    H, dh, d = model.n_heads, model.d_head, model.d_model
    W_Q, W_K = qk.W_Q.double().cpu(), qk.W_K.double().cpu()
    W_V, W_O = a.W_V.double().cpu(), a.W_O.double().cpu()
    R_O = gram_root(W_O @ W_O.transpose(1, 2))
    eye = torch.eye(dh, dtype=torch.float64)
    if rows is None:
        read = Read.of(qk.input_norm, d)
        W_Q = W_Q * head_gain(qk.q_norm, dh)
        W_K = W_K * head_gain(qk.k_norm, dh)
        R_Q = gram_root(_gram(read.before(W_Q)))
        R_K = gram_root(_gram(read.before(W_K)))[kv]
        den = {"Q": chain_norm(R_K, eye, R_Q), "V": _ov_norm(_gram(read.before(W_V))[kv], W_O)}
        den["K"] = den["Q"]
        return Reader(read, kv, W_Q, W_K, W_V, R_Q, R_K, R_O, den)
    X = rows.double().cpu()
    n = len(X)
    read = Read.of(qk.input_norm, d, norm_scale(qk.input_norm, raw_rows))
    q = Q.queries(qk, X.float(), torch.arange(H)).double().cpu()  # (H, n, dh) exact
    k = Q.keys(qk, X.float()).double().cpu()  # (n_kv, n, dh)
    kc = k - k.mean(1, keepdim=True)
    s_q = [norm_scale(qk.q_norm, X @ W_Q[h]) for h in range(H)]
    s_k = [norm_scale(qk.k_norm, X @ W_K[j]) for j in range(len(W_K))]
    W_Q = W_Q * torch.stack([head_gain(qk.q_norm, dh, s) for s in s_q])[:, None, :]
    W_K = W_K * torch.stack([head_gain(qk.k_norm, dh, s) for s in s_k])[:, None, :]
    R_Q = gram_root(_gram(q, n))
    R_K = gram_root(_gram(kc, n))[kv]
    XV = torch.einsum("nd,kde->kne", X - X.mean(0), W_V)  # (n_kv, n, dh), centred
    den = {"Q": chain_norm(R_K, eye, R_Q), "V": _ov_norm(_gram(XV, n)[kv], W_O)}
    den["K"] = den["Q"]
    return Reader(read, kv, W_Q, W_K, W_V, R_Q, R_K, R_O, den)


def pair_scores(w: Writer, r: Reader, kinds: Sequence[str] = PATH_KINDS,
                raw: bool = False) -> dict[str, torch.Tensor]:
    """Kind -> ``(H_reader, n_writers)`` composition of every reading head with every writer.

    ``raw``: divide by the writer's ``||W_OV||`` too (Elhage's normalisation); the
    projection's numerator carries the write's size (see the module docstring).
    The big products run in float32 (``d_model``-long sums), the roots in float64.
    """
    out: dict[str, torch.Tensor] = {}
    LW = (w.left @ r.read.after(w.W_O)).float()  # (n_g, dh, d): L W_O D / s
    for kind in kinds:
        if kind == "Q":
            core = torch.einsum("gxd,hdy->ghxy", LW, r.W_Q.float())
            right = r.R_K
        elif kind in ("K", "V"):
            per_kv = torch.einsum("gxd,kdy->gkxy", LW, (r.W_K if kind == "K" else r.W_V).float())
            core = per_kv[:, r.kv]
            right = r.R_Q if kind == "K" else r.R_O
        else:
            raise ValueError(f"unknown composition kind {kind!r}; use Q, K or V")
        num = (core @ right.float().transpose(-1, -2)[None]).pow(2).sum((-2, -1)).double().sqrt()
        den = r.den[kind][None, :] * (w.norm[:, None] if raw else 1.0)
        out[kind] = (num / den.clamp_min(1e-30)).T
    return out
