"""The exact early exit of the scan kernel against the dense path and brute-force counting.

Where the tests compare bitwise, the two sides compare the same float32 logits: the small
integer problems are exact in any order of arithmetic, so every path (early exit, dense,
brute force) holds the same values and must take the same decisions. On the tiny models the
early exit reads continuing rows as ``(Y W_O) U`` (and every block at other shapes) where
the dense path reads ``Y (W_O U)``: their logits agree to rounding only, and that rounding
depends on the CPU's kernels, so those tests compare decisions up to near-ties
(tests/near_ties.py).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

import headmaps as hm
from headmaps import projection as P
from headmaps.scoring import reference_scores, scan
from headmaps.scoring.basis import SharedBasis
from headmaps.scoring.kernel import MixedRows, count_hits, stage_bounds
from near_ties import (
    assert_scans_agree,
    assert_scores_up_to_ties,
    options_of,
    unsure_decisions,
    unsure_for_relations,
)
from tiny import tiny_model
from tiny_tokenizer import tiny_tokenizer

WORDS = [f"w{i}" for i in range(150)]
BLOCKS = (16, 64)  # a cascade 16 -> 64 -> 211 on the tiny vocabulary


def brute_force(Y, W_O, U, rows, targets, k, out_bias=None):
    """Hits and suppressions by counting the other entries at or above (below) the target."""
    H = Y.shape[0]
    logits = torch.einsum("hsd,hde,ev->hsv", Y, W_O, U)[:, rows]
    if out_bias is not None:
        logits = logits + out_bias
    idx = targets.view(1, -1, 1).expand(H, -1, 1)
    tgt = logits.gather(2, idx).squeeze(2)
    others = logits.scatter(2, idx, float("nan"))  # NaN compares False: the target is left out
    return (others >= tgt.unsqueeze(2)).sum(2) < k, (others <= tgt.unsqueeze(2)).sum(2) < k


def integer_problem(seed: int, H=3, S=30, d_head=4, d_model=8, V=700, n_pairs=80, lo=-2, hi=3):
    """Small integer weights: exact logits with many ties."""
    g = torch.Generator().manual_seed(seed)
    Y = torch.randint(lo, hi, (H, S, d_head), generator=g).float()
    W_O = torch.randint(lo, hi, (H, d_head, d_model), generator=g).float()
    U = torch.randint(lo, hi, (d_model, V), generator=g).float()
    rows = torch.sort(torch.randint(0, S, (n_pairs,), generator=g)).values
    targets = torch.randint(0, V, (n_pairs,), generator=g)
    return Y, W_O, U, rows, targets, g


def run(Y, W_O, U, rows, targets, k, out_bias=None, **kw):
    stats: dict = {}
    out = count_hits(Y, W_O, lambda cols: U[:, cols], U.shape[1], rows, targets, k, out_bias,
                     chunk_bytes=4 * 3 * 8 * 64 * 3, stats=stats, **kw)
    return out, stats


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("kmax", [1, 5, 40])
@pytest.mark.parametrize("blocks", [(64,), (64, 192), (128, 256, 512)])
def test_tie_heavy_integers_equal_dense_and_brute_force(seed, kmax, blocks):
    Y, W_O, U, rows, targets, g = integer_problem(seed)
    logits = torch.einsum("hsd,hde,ev->hsv", Y, W_O, U)[:, rows]
    # a third of the targets at the top of head 0's row, a third at the bottom of head 1's
    targets[0::3] = logits[0, 0::3].argmax(-1)
    targets[1::3] = logits[1, 1::3].argmin(-1)
    k = torch.randint(1, kmax + 1, (len(rows),), generator=g)
    (hits, supp), stats = run(Y, W_O, U, rows, targets, k, blocks=blocks)
    (d_hits, d_supp), _ = run(Y, W_O, U, rows, targets, k, exact_dense=True)
    b_hits, b_supp = brute_force(Y, W_O, U, rows, targets, k)
    assert torch.equal(hits, b_hits) and torch.equal(supp, b_supp)
    assert torch.equal(d_hits, b_hits) and torch.equal(d_supp, b_supp)
    assert hits.any() and not hits.all() and supp.any()
    assert [s[:2] for s in stats["stages"]] == [[0, blocks[0]]] + [
        [a, b] for a, b in zip(blocks, list(blocks[1:]) + [700])][:len(stats["stages"]) - 1]


def test_no_row_continues_past_the_first_block():
    """Column 0 is far above and column 1 far below every logit: every pair is decided at once."""
    Y, W_O, U, rows, targets, _ = integer_problem(5)
    targets = targets.clamp(min=2)
    bias = torch.zeros(U.shape[1])
    bias[0], bias[1] = 1e4, -1e4
    k = torch.ones(len(rows), dtype=torch.long)
    (hits, supp), stats = run(Y, W_O, U, rows, targets, k, bias, blocks=(64, 256))
    assert stats["stages"][0][2] == stats["rows"] and stats["stages"][1][2] == 0
    b_hits, b_supp = brute_force(Y, W_O, U, rows, targets, k, bias)
    assert torch.equal(hits, b_hits) and torch.equal(supp, b_supp)
    assert not hits.any() and not supp.any()


def test_every_row_continues_to_the_end():
    """Every target is the last column, lifted far above the rest: all pairs are hits."""
    Y, W_O, U, _, _, g = integer_problem(6)
    S, V = Y.shape[1], U.shape[1]
    rows = torch.arange(S)  # every row has a pair
    targets = torch.full((S,), V - 1)
    bias = torch.zeros(V)
    bias[V - 1] = 1e4
    k = torch.randint(1, 4, (S,), generator=g)
    (hits, supp), stats = run(Y, W_O, U, rows, targets, k, bias, blocks=(64, 256))
    assert [s[2] for s in stats["stages"]] == [stats["rows"]] * 3
    assert hits.all() and not supp.any()
    b_hits, b_supp = brute_force(Y, W_O, U, rows, targets, k, bias)
    assert torch.equal(hits, b_hits) and torch.equal(supp, b_supp)


@pytest.mark.parametrize("n_rows_continuing", ["few", "most"])
def test_both_products_for_continuing_rows(n_rows_continuing):
    """Continuing rows go through (y W_O) U stacked, per head through W_O U, or both.

    All give the same answers.
    """
    H, S = (2, 6) if n_rows_continuing == "few" else (6, 200)
    Y, W_O, U, rows, targets, g = integer_problem(7, H=H, S=S, d_head=2, d_model=16, n_pairs=3 * S)
    k = torch.randint(1, 30, (len(rows),), generator=g)
    (hits, supp), stats = run(Y, W_O, U, rows, targets, k, blocks=(64,))
    assert stats["stages"][1][2] > 0
    b_hits, b_supp = brute_force(Y, W_O, U, rows, targets, k)
    assert torch.equal(hits, b_hits) and torch.equal(supp, b_supp)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("blocks", [(64,), (64, 192)])
@pytest.mark.parametrize("chunk_bytes", [4 * 3 * 8 * 64 * 3, 2**20])
def test_mixed_rows_from_their_base_rows_equal_brute_force(seed, blocks, chunk_bytes):
    """In-context rows mix a prefix row and a base row; their logits come from the base row's
    in the first block (when one chunk holds every row: the larger ``chunk_bytes``) and past
    it where both go on. Integer rows and weights in quarters keep every logit exact
    whichever way it is formed, so the decisions equal brute force bitwise."""
    Y, W_O, U, rows, targets, g = integer_problem(40 + seed, S=30, n_pairs=80)
    H, n, d_head = Y.shape
    prefix = torch.randint(-2, 3, (H, 1, d_head), generator=g).float()
    w_base = torch.randint(0, 5, (H, n, 1), generator=g).float() / 4
    weights = torch.cat([1 - w_base, w_base], -1)
    Y2 = torch.cat([Y, weights[..., :1] * prefix + weights[..., 1:] * Y], 1)
    rows2, targets2 = torch.cat([rows, rows + n]), targets.repeat(2)
    k = torch.randint(1, 30, (len(rows2),), generator=g)
    bias = torch.randint(-2, 3, (U.shape[1],), generator=g).float() if seed % 2 else None
    stats: dict = {}
    hits, supp = count_hits(Y2, W_O, lambda cols: U[:, cols], U.shape[1], rows2, targets2, k,
                            bias, chunk_bytes=chunk_bytes, blocks=blocks, stats=stats,
                            mixed=MixedRows(n, weights, prefix))
    b_hits, b_supp = brute_force(Y2, W_O, U, rows2, targets2, k, bias)
    assert torch.equal(hits, b_hits) and torch.equal(supp, b_supp)
    assert hits[:, len(rows):].any() and hits[:, :len(rows)].any()
    # the mixed rows took their logits from their base rows: in the first block when one
    # chunk held every row (H x n rows x its 64 columns), and past it where both went on
    first = H * n * blocks[0]
    assert stats["mixed"] > (first if chunk_bytes > 2**16 else 0)


def test_stage_bounds_grow_from_k_and_vocabulary():
    assert stage_bounds(49152, 11) == [2048, 4096, 8192, 16384, 32768, 49152]
    bounds = stage_bounds(262144, 26)
    first = bounds[0]
    assert first >= 128 * 26 and first % 64 == 0
    assert bounds[-1] == 262144
    # each boundary doubles the one before, so no block is wider than the columns before it
    assert all(b == 2 * a for a, b in zip(bounds[:-2], bounds[1:-1]))
    assert all(b - a <= a for a, b in zip(bounds, bounds[1:]))
    assert stage_bounds(1000, 11) == [1000]  # a small vocabulary is read densely
    assert stage_bounds(2100, 11) == [2048, 2100]  # the last block is what remains
    assert stage_bounds(211, 3, blocks=(64, 16, 500)) == [16, 64, 211]


# ---- the whole scan on tiny models -------------------------------------------------------

@pytest.fixture(scope="module", params=["llama", "gemma3_text", "gpt2"])
def model(request):
    return hm.load(tiny_model(request.param), tokenizer=tiny_tokenizer(WORDS))


def pairs(seed: int, n: int = 60):
    g = np.random.default_rng(seed)
    return [(WORDS[s], WORDS[t]) for s, t in zip(g.choice(len(WORDS), n), g.choice(len(WORDS), n))]


@pytest.mark.parametrize("preset", ["paper", "norms", "embedding"])
@pytest.mark.parametrize("k", [1, 7, 60, 205])
def test_scan_early_exit_equals_dense(model, preset, k):
    # relations share sources (same seed prefix) with different k: duplicate source rows
    rels = {"a": pairs(0), "b": pairs(0, 45), "c": pairs(1)}
    ks = {"a": k, "b": max(1, k // 2), "c": k}
    stats: dict = {}
    e_hits: dict = {}
    d_hits: dict = {}
    early = scan(model, rels, k=ks, projection=preset, blocks=BLOCKS, stats=stats,
                 chunk_bytes=4 * 8 * 64 * 8, pair_hits=e_hits)
    dense = scan(model, rels, k=ks, projection=preset, exact_dense=True, pair_hits=d_hits)
    assert_scans_agree(model, rels, early, e_hits, dense, d_hits, k=ks)
    assert stats["stages"][0][:2] == [0, 16]
    if k <= 7:  # a real early exit: some rows stop after the first block
        assert stats["stages"][1][2] < stats["rows"]


def test_targets_inside_and_outside_the_first_block(model):
    tok = model.tokenizer
    ps = pairs(3, 80)
    tgt = [tok.encode(" " + t, add_special_tokens=False)[0] for _, t in ps]
    assert min(tgt) < BLOCKS[0] and max(tgt) >= BLOCKS[1]
    e_hits: dict = {}
    d_hits: dict = {}
    early = scan(model, {"a": ps}, k=3, blocks=BLOCKS, pair_hits=e_hits)
    dense = scan(model, {"a": ps}, k=3, exact_dense=True, pair_hits=d_hits)
    assert_scans_agree(model, {"a": ps}, early, e_hits, dense, d_hits, k=3)


@pytest.mark.parametrize("preset", ["paper", "norms"])
def test_shared_basis_with_gain_in_the_left_factor_equals_reference(model, preset):
    """Gemma's post-attention gain moves into W_O; scores still equal the per-layer reference."""
    ps = pairs(4)
    res = scan(model, {"a": ps}, k=5, blocks=BLOCKS,
               projection=hm.projection_for(model, preset, output_bias=True))
    enc = lambda w: model.tokenizer.encode(" " + w, add_special_tokens=False)[0]  # noqa: E731
    src, tgt = torch.tensor([enc(s) for s, _ in ps]), torch.tensor([enc(t) for _, t in ps])
    opts = replace(P.PRESETS[preset], output_bias=True)
    s, sp = reference_scores(model, src, tgt, 5, opts)
    # the reference forms X (W_V W_O) U head by head: equal decisions up to near-ties
    unsure = unsure_decisions(model, src, tgt, 5, opts)
    assert_scores_up_to_ties(res["a"].scores, s, unsure[0], "scores")
    assert_scores_up_to_ties(res["a"].suppression, sp, unsure[1], "suppression")


def test_a_slice_across_the_cache_is_the_folded_basis(model):
    """The shared basis caches its first columns; a slice that starts inside the cache and
    ends beyond it is folded afresh, and holds the same columns as the cache and the fold."""
    opts = hm.projection_for(model, "norms").options
    d = model.d_model
    assert model.vocab_size > 160  # the slice below ends inside the vocabulary
    shared = SharedBasis(model, opts, cache_bytes=4 * d * 100)
    whole = P.output_basis(model, opts)
    across = shared(slice(64, 160))
    assert across.shape == (d, 96)
    # elementwise folding (a gain times U, LayerNorm's centring per column) rounds alike
    # whatever the layout: a tolerance of a few float32 ulps of the columns' scale
    tol = 4 * 2.0 ** -24 * float(whole.abs().max())
    torch.testing.assert_close(across, whole[:, 64:160], rtol=0, atol=tol)
    torch.testing.assert_close(across[:, :36], shared(slice(64, 100)), rtol=0, atol=tol)
    assert shared(slice(0, 100)).data_ptr() == shared(slice(0, 50)).data_ptr()  # cached view


# ---- degenerate heads: no strict advantage, no hit -----------------------------------------

@pytest.mark.parametrize("k", [1, 3, 40])
@pytest.mark.parametrize("kind", ["zero", "constant"])
def test_degenerate_rows_never_hit(kind, k):
    """A zeroed or constant head gives every target a tie with every other entry: a miss."""
    Y, W_O, U, rows, targets, g = integer_problem(8)
    if kind == "zero":
        W_O[1] = 0.0
    else:  # every logit of head 1 equal: U's columns identical along what head 1 writes
        W_O[1] = 0.0
        W_O[1, :, 0] = 1.0
        U[0] = 2.0
    kv = torch.full((len(rows),), k)
    for dense in (False, True):
        (hits, supp), _ = run(Y, W_O, U, rows, targets, kv, exact_dense=dense, blocks=(64,))
        assert not hits[1].any() and not supp[1].any()
        b_hits, b_supp = brute_force(Y, W_O, U, rows, targets, kv)
        assert torch.equal(hits, b_hits) and torch.equal(supp, b_supp)
        assert hits[0].any()  # the ordinary heads still hit


def test_a_target_tied_with_fewer_than_k_others_is_a_hit():
    """Two columns tie for the top of the row: each is a hit at k=2, a miss at k=1."""
    Y = torch.ones(1, 1, 1)
    W_O = torch.ones(1, 1, 1)
    U = torch.linspace(-1.0, 1.0, 200).view(1, -1)
    U[0, 1] = U[0, 2] = 5.0
    rows, targets = torch.zeros(2, dtype=torch.long), torch.tensor([1, 2])
    for k, expected in ((1, False), (2, True)):
        (hits, _), _ = run(Y, W_O, U, rows, targets, torch.full((2,), k), blocks=(64,))
        assert hits.tolist() == [[expected, expected]]


def test_zeroed_head_scans_to_zero():
    """A head whose o_proj columns are zero claims no relation (it claimed all under ties-win)."""
    ps = pairs(5)
    raw = tiny_model("llama")
    original = hm.load(raw, tokenizer=tiny_tokenizer(WORDS))
    b_hits: dict = {}
    full = scan(original, {"a": ps}, k=5, projection="norms", blocks=BLOCKS, pair_hits=b_hits)
    base = full["a"]
    # the other heads' logits are unchanged but computed at other shapes (the zeroed head's
    # rows leave the cascade at once; the dense path reads every column): the same decisions
    # up to near-ties of the original model's logits
    unsure = unsure_for_relations(original, {"a": ps}, options_of(full), k=5)["a"]
    layer, head, d_head = 1, 3, raw.config.head_dim
    with torch.no_grad():
        raw.model.layers[layer].self_attn.o_proj.weight[:, head * d_head:(head + 1) * d_head] = 0
    zeroed = hm.load(raw, tokenizer=tiny_tokenizer(WORDS))
    others = np.ones_like(base.scores, dtype=bool)
    others[layer, head] = False
    for dense in (False, True):
        hits: dict = {}
        res = scan(zeroed, {"a": ps}, k=5, projection="norms", blocks=BLOCKS, exact_dense=dense,
                   pair_hits=hits)["a"]
        # exact on any path: every logit of the zeroed head is exactly 0, a tie with all
        assert res.scores[layer, head] == 0.0 and res.suppression[layer, head] == 0.0
        for j, what in enumerate(("scores", "suppression")):
            differ = hits["a"][j] != b_hits["a"][j]
            differ[layer, head] = False
            assert unsure[j][differ].all(), what
            gap = np.abs(getattr(res, what) - getattr(base, what))
            assert (gap[others] <= differ.mean(-1)[others] + 1e-6).all(), what
        assert base.scores[others].max() > 0


def test_one_scratch_serves_calls_of_any_size():
    """A scan passes one Scratch to every layer's call: its buffers grow and are sliced, and
    a call after a bigger one (or a smaller one) gives the brute-force answers."""
    from headmaps.scoring.kernel import Scratch

    scratch = Scratch()
    for seed, (S, V, n_pairs) in enumerate([(30, 700, 80), (60, 900, 200), (10, 300, 25)]):
        Y, W_O, U, rows, targets, g = integer_problem(20 + seed, S=S, V=V, n_pairs=n_pairs)
        k = torch.randint(1, 6, (len(rows),), generator=g)
        hits, supp = count_hits(Y, W_O, lambda cols, U=U: U[:, cols], V, rows, targets, k,
                                chunk_bytes=4 * 3 * 8 * 64 * 3, blocks=(64, 256), scratch=scratch)
        b_hits, b_supp = brute_force(Y, W_O, U, rows, targets, k)
        # booleans from exact integer logits (module docstring): equal on any CPU
        assert torch.equal(hits, b_hits) and torch.equal(supp, b_supp)


def test_a_source_with_many_targets_near_its_top():
    """Several targets of one row at ranks 0-5: the highest one's count is exact, the others
    start from its count as a lower bound and need their own pass while it is below k."""
    Y, W_O, U, _, _, _ = integer_problem(30, S=4)
    logits = torch.einsum("hsd,hde,ev->hsv", Y, W_O, U)
    order = torch.argsort(logits[0, 2], descending=True)
    targets = order[:6].clone()
    rows = torch.full((6,), 2)
    for k_all in (1, 3, 7):
        k = torch.full((6,), k_all)
        (hits, supp), _ = run(Y, W_O, U, rows, targets, k, blocks=(64, 256))
        b_hits, b_supp = brute_force(Y, W_O, U, rows, targets, k)
        assert torch.equal(hits, b_hits) and torch.equal(supp, b_supp)  # exact integers
    assert b_hits[0].any()  # the problem has hits on head 0 to get right
