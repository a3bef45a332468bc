"""Behavioural detectors on a tiny GPT-2 whose heads are built by hand to be a type.

The residual stream holds orthonormal, zero-mean directions (so the layer norms, with
gain 1 and bias 0, only rescale it by a constant factor): a token code ``E_t`` per
token, a "previous token" slot ``F_t`` per token, and a position code ``p(i)``: 8
planes turning by ``ω_k`` per position. Only the built heads write to the stream (the
other heads keep their random queries and keys, so the detectors score them, but their
output and every MLP output are zero):

* **0.0, previous-token**: query ``p(i)`` turned back by one step, key ``p(j)``: the logit
  ``Σ_k cos(ω_k (i - 1 - j))`` peaks at ``j = i - 1``; value reads ``E``, output writes
  ``F``: position ``i`` now holds ``F`` of the token before it.
* **1.1, induction**: query reads ``E`` (the current token), key reads ``F`` (the
  previous-token slot that 0.0 filled): it attends to the position right after an
  earlier occurrence of the current token (K-composition with 0.0); its OV copies ``E``.
* **1.2, duplicate-token**: query and key read ``E`` (same token), minus the position
  logit ``Σ_k cos(ω_k (i - j))`` (which is largest at ``j = i``) so that the earlier
  occurrence beats the position itself.

The margins are checked from the construction (no softmax needed), then the detectors
of :mod:`headmaps.experiments.behaviour` must rank each built head first, far above the
random heads, and the static head types (:func:`headmaps.head_types`) must agree.
(The static-score circuit of ``tests/headtypes/test_static.py`` is not reused: its
induction head's keys read the previous-token head but its queries are random, so it is
an induction head for K-composition only; the detectors score it at chance, 0.034.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import headmaps as hm
from headmaps.experiments import behaviour as B

V, D, H, DH, T = 32, 192, 4, 48, 128  # vocabulary, d_model, heads, d_head, positions
OMEGA = torch.tensor([0.41, 0.83, 1.37, 1.91, 2.53, 2.97, 0.19, 0.07], dtype=torch.float64)
K = len(OMEGA)
PREV, INDUCTION, DUPLICATE = (0, 0), (1, 1), (1, 2)
#: Logit scales of the built heads (after the layer norms and GPT-2's 1/sqrt(d_head)).
PREV_LOGIT, IND_LOGIT, DUP_LOGIT, SELF_PENALTY = 60.0, 60.0, 200.0, 60.0


def position_overlap(d: torch.Tensor) -> torch.Tensor:
    """``p(i) . p(j)`` for ``d = i - j``: the mean of ``cos(ω_k d)`` over the planes."""
    return torch.cos(d[:, None].double() * OMEGA).mean(-1)


def _basis(seed: int = 0) -> torch.Tensor:
    """``(D, D - 1)`` orthonormal columns orthogonal to the all-ones vector (zero mean)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(D, D - 1, generator=g, dtype=torch.float64)
    a -= a.mean(0)
    return torch.linalg.qr(a)[0]


def _positions(n: int) -> torch.Tensor:
    """``(n, 2K)`` unit position codes: (cos, sin) of ``ω_k i`` per plane, over sqrt(K)."""
    ang = torch.arange(n, dtype=torch.float64)[:, None] * OMEGA
    return torch.stack([ang.cos(), ang.sin()], -1).reshape(n, 2 * K) / K**0.5


def _turn_back() -> torch.Tensor:
    """``(2K, 2K)`` map turning each plane by ``-ω_k``: ``p(i) -> p(i - 1)``."""
    R = torch.zeros(2 * K, 2 * K, dtype=torch.float64)
    for k, w in enumerate(OMEGA):
        c, s = torch.cos(w), torch.sin(w)
        R[2 * k:2 * k + 2, 2 * k:2 * k + 2] = torch.tensor([[c, s], [-s, c]])
    return R


def build_gpt2(copy_suppression: bool = False):
    """The tiny GPT-2 described in the module docstring (float64, eager).

    With ``copy_suppression``: head 1.1 copies three times as strongly (so the model
    predicts the token after the earlier copy) and head 1.3 has 1.1's queries and keys
    but writes the *negative* of the token it attends to: a copy-suppression head.
    """
    import transformers

    config = transformers.GPT2Config(n_embd=D, n_layer=3, n_head=H, vocab_size=V, n_positions=T,
                                     bos_token_id=1, eos_token_id=2)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).double().eval()
    basis = _basis()
    E, F, P = basis[:, :V], basis[:, V:2 * V], basis[:, 2 * V:2 * V + 2 * K]  # (D, .)
    # Layer norms leave a zero-mean x as x * sqrt(D) / |x|: |x|^2 is 2 at layer 0
    # (token + position), about 3 at layer 1 (+ the previous-token slot).
    c0, c1 = (D / 2) ** 0.5, (D / 3) ** 0.5
    scale = DH**0.5  # GPT-2 divides the logits by sqrt(d_head)
    tr = model.transformer
    with torch.no_grad():
        tr.wte.weight.copy_(E.T)
        tr.wpe.weight.copy_(_positions(T) @ P.T)
        for block in tr.h:
            for ln in (block.ln_1, block.ln_2):
                ln.weight.fill_(1.0)
                ln.bias.zero_()
            block.mlp.c_proj.weight.zero_()
            block.mlp.c_proj.bias.zero_()
            block.attn.c_proj.weight.zero_()  # only the built heads below write
            block.attn.c_proj.bias.zero_()

        def head(layer: int, h: int, W_Q, W_K, W_V=None, W_O=None) -> None:
            """Set one head: ``W_* (D, rows)`` read the stream, ``W_O (rows, D)`` writes it."""
            attn = tr.h[layer].attn
            cols = slice(h * DH, (h + 1) * DH)
            for part, W in enumerate((W_Q, W_K, W_V)):
                block = attn.c_attn.weight[:, part * D:(part + 1) * D][:, cols]
                attn.c_attn.bias[part * D:(part + 1) * D][cols] = 0
                block.zero_()
                if W is not None:
                    block[:, :W.shape[1]] = W
            if W_O is not None:
                attn.c_proj.weight[cols][:W_O.shape[0]] = W_O

        # 0.0: q . k = PREV_LOGIT * p(i - 1) . p(j); writes F of the attended token.
        head(0, 0, P @ _turn_back().T * (PREV_LOGIT * scale / c0**2), P, E, F.T / c0)
        # 1.1: q . k = IND_LOGIT * [token(i) == token written in F at j]; copies E.
        boost = 3.0 if copy_suppression else 1.0
        head(1, 1, E * (IND_LOGIT * scale / c1**2), F, E, E.T * (boost / c1))
        if copy_suppression:
            head(1, 3, E * (IND_LOGIT * scale / c1**2), F, E, -E.T / c1)
        # 1.2: q . k = DUP_LOGIT * [token(i) == token(j)] - SELF_PENALTY * p(i) . p(j).
        q = torch.cat([E * DUP_LOGIT, -P * SELF_PENALTY], 1) * (scale / c1**2)
        head(1, 2, q, torch.cat([E, P], 1))
    return model


@pytest.fixture(scope="module")
def built():
    return hm.load(build_gpt2())


def test_the_construction_has_wide_margins():
    """From the construction: each built head's target logit beats every other by >= 20."""
    d = torch.arange(-1, T)  # i - 1 - j for every key j <= i
    prev = PREV_LOGIT * position_overlap(d)
    assert prev[1] - torch.cat([prev[:1], prev[2:]]).max() > 20  # j = i - 1 wins
    overlap = position_overlap(torch.arange(1, T))  # i - j >= 1
    self_, earlier = DUP_LOGIT - SELF_PENALTY, DUP_LOGIT - SELF_PENALTY * overlap.max()
    other = SELF_PENALTY * -overlap.min()  # a different token, anywhere
    assert earlier - self_ > 20 and earlier - other > 20


def test_attention_of_the_built_heads(built):
    """The heads do what they were built for, on one repeated sequence."""
    ids = B.repeated_random(built, 12, 1, seed=3)
    A = B.attention_patterns(built, ids)[:, 0]  # (layer, head, query, key)
    i = torch.arange(1, 24)
    assert A[0, 0, i, i - 1].min() > 0.99
    j = torch.arange(1, 11)
    assert A[1, 1, 12 + j, j + 1].min() > 0.99
    j = torch.arange(12)
    assert A[1, 2, 12 + j, j].min() > 0.99


def test_induction_detector_ranks_the_built_head_first(built):
    ind = B.induction_scores(built, n_tokens=24, n_seqs=4)
    assert ind.shape == (3, H)
    assert np.unravel_index(np.argmax(ind), ind.shape) == INDUCTION
    # Only the query n (token t_0) splits between two keys: position 0's previous-token
    # slot also holds t_0 (it can only attend to itself), so the score is about 1 - 0.5/23.
    assert ind[INDUCTION] > 0.95
    others = np.delete(ind.ravel(), INDUCTION[0] * H + INDUCTION[1])
    assert others.max() < 0.15  # random heads: about 1 / (number of keys)


def test_duplicate_token_detector_ranks_the_built_head_first(built):
    dup = B.duplicate_token_scores(built, n_tokens=24, n_seqs=4)
    assert np.unravel_index(np.argmax(dup), dup.shape) == DUPLICATE
    assert dup[DUPLICATE] > 0.98
    others = np.delete(dup.ravel(), DUPLICATE[0] * H + DUPLICATE[1])
    assert others.max() < 0.15


def test_previous_token_detector_and_the_other_detectors_disagree(built):
    """Each built head is first for its own type only."""
    ids = B.repeated_random(built, 24, 2, seed=1)[:, :24]  # distinct tokens, no repeats
    prev = B.previous_token_scores(built, ids)
    assert np.unravel_index(np.argmax(prev), prev.shape) == PREV and prev[PREV] > 0.99
    ind, dup = B.repeat_scores(built, n_tokens=24, n_seqs=4)
    assert ind[PREV] < 0.05 and dup[PREV] < 0.05  # from n + j, the key before is never j + 1 or j
    assert dup[INDUCTION] < 0.05 and ind[DUPLICATE] < 0.05


def test_static_types_rank_the_same_heads_first(built):
    """The parameter-only head types agree with the detectors on this model, and the
    labels fire on the built heads and on no random head."""
    res = hm.head_types(built, relations=False, n_partners=4, max_distance=16)
    for kind, want in (("previous_token", PREV), ("induction", INDUCTION),
                       ("duplicate_token", DUPLICATE), ("copying", INDUCTION)):
        assert res.top(kind, 1)[0][:2] == want, kind
        assert want in res.heads_of(kind), kind
    built_heads = {PREV, INDUCTION, DUPLICATE}
    for kind in ("previous_token", "induction", "copying"):
        assert set(res.heads_of(kind)) <= built_heads, (kind, res.heads_of(kind))


COPY_SUPPRESSION = (1, 3)


@pytest.fixture(scope="module")
def built_cs():
    return hm.load(build_gpt2(copy_suppression=True))


def test_copy_suppression_detector_ranks_the_built_head_first(built_cs):
    """1.3 attends to the predicted earlier token and writes its negative; 1.1 copies it."""
    from headmaps.headtypes.validate import POSITIVE

    r = B.copy_suppression_scores(built_cs, n_tokens=24, n_seqs=4, parts=True)
    cs = r["score"]
    assert r["positions"] >= 4 * 20  # the second copies predict the token after the first
    assert np.unravel_index(np.argmax(cs), cs.shape) == COPY_SUPPRESSION
    assert cs[COPY_SUPPRESSION] > 3 * POSITIVE["copy_suppression"]
    assert r["attention"][COPY_SUPPRESSION] > 0.9
    assert cs[INDUCTION] < -3 * POSITIVE["copy_suppression"]  # copying: the opposite sign
    others = np.delete(cs.ravel(), [INDUCTION[0] * H + INDUCTION[1],
                                    COPY_SUPPRESSION[0] * H + COPY_SUPPRESSION[1]])
    assert np.abs(others).max() < 0.05  # heads that write nothing
    with pytest.raises(hm.HeadmapsError, match="length >= 3"):
        B.copy_suppression_scores(built_cs, [torch.zeros(2, dtype=torch.long)])


def test_static_copy_suppression_agrees_and_labels_only_the_built_head(built_cs):
    from headmaps.headtypes.validate import auroc

    res = hm.head_types(built_cs, relations=False, n_partners=4, max_distance=16)
    assert res.top("copy_suppression", 1)[0][:2] == COPY_SUPPRESSION
    assert res.heads_of("copy_suppression") == [COPY_SUPPRESSION]
    assert COPY_SUPPRESSION not in res.heads_of("copying")
    cs = B.copy_suppression_scores(built_cs, n_tokens=24, n_seqs=4)
    assert auroc(res.scores["copy_suppression"], cs >= 0.5) == 1.0
    ev = res.evidence(*COPY_SUPPRESSION, "copy_suppression")[0]
    assert ev["label"] and ev["z"] >= 3.5 and ev["percentile"] == 100.0
    assert 0.5 <= ev["confidence"] <= 1 and "robust z" in ev["rule"]
