"""Weight-space figures through the low-rank factors, against the dense d x d matrices."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg as sl
import torch

from headmaps.diff import weights as W


def _factors(seed: int, d: int = 48, r: int = 8, batch: int = 3):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, d, r, generator=g, dtype=torch.float64),
            torch.randn(batch, r, d, generator=g, dtype=torch.float64))


def test_relative_change_equals_the_dense_norm():
    a1, b1 = _factors(0)
    a2, b2 = a1 + 0.01 * _factors(1)[0], b1 + 0.3 * _factors(2)[1]
    got = W.relative_change(a1, b1, a2, b2)
    dense = (a2 @ b2 - a1 @ b1).flatten(1).norm(dim=1) / (a1 @ b1).flatten(1).norm(dim=1)
    torch.testing.assert_close(got, dense, rtol=1e-9, atol=0)


def test_relative_change_resolves_tiny_changes_and_zero_heads():
    a1, b1 = _factors(3, batch=1)
    rel = W.relative_change(a1, b1, a1 * (1 + 1e-7), b1)
    assert float(rel) == pytest.approx(1e-7, rel=1e-3)
    z = torch.zeros_like(a1)
    assert float(W.relative_change(z, b1, z, b1)) == 0
    assert math.isinf(float(W.relative_change(z, b1, a1, b1)))


def test_principal_angles_match_scipy():
    a, b = (t[0] for t in _factors(4, batch=1))
    a2, b2 = (t[0] for t in _factors(5, batch=1))
    a2 = a + 0.05 * a2  # W_V moved, W_O kept: the circuit reads elsewhere, writes the same
    read1, write1 = W.subspaces(a, b)
    read2, write2 = W.subspaces(a2, b)
    assert read1.shape == write1.shape == (48, 8)
    dense1, dense2 = (a @ b).numpy(), (a2 @ b).numpy()
    ref_read = np.degrees(sl.subspace_angles(dense1, dense2)).max()
    assert W.max_principal_angle(read1, read2) == pytest.approx(ref_read, rel=1e-6)
    assert 0.5 < ref_read < 45
    assert W.max_principal_angle(write1, write2) < 1e-6
    assert W.max_principal_angle(read1, read1) < 1e-6


def test_rank_deficient_and_zero_heads():
    a, b = (t[0] for t in _factors(6, batch=1))
    a_low = a.clone()
    a_low[:, 4:] = 0  # rank 4
    read, write = W.subspaces(a_low, b)
    assert read.shape[1] == 4 and write.shape[1] == 4
    full_read, _ = W.subspaces(a, b)
    # a 4-dim span of a's columns lies inside the 8-dim span: angle 0
    assert W.max_principal_angle(read, full_read) < 1e-6
    empty, _ = W.subspaces(torch.zeros_like(a), b)
    assert empty.shape[1] == 0 and math.isnan(W.max_principal_angle(empty, full_read))
