"""The paired bootstrap noise floor of relation-score changes."""

from __future__ import annotations

import numpy as np
import pytest

from headmaps.diff import paired_floor, resample_counts


def test_identical_hits_have_zero_change_and_zero_floor():
    g = np.random.default_rng(0)
    hits = g.random((4, 3, 90)) < 0.3
    change, floor = paired_floor(hits, hits, resample_counts(90, 500, 0))
    assert change.shape == floor.shape == (4, 3)
    assert (change == 0).all() and (floor == 0).all()


def test_one_flipped_pair_stays_within_the_floor():
    a = np.zeros((1, 100), bool)
    b = a.copy()
    b[0, 7] = True
    change, floor = paired_floor(a, b, resample_counts(100, 2000, 1))
    assert change[0] == pytest.approx(0.01)
    assert abs(change[0]) <= floor[0]  # not a change beyond noise


def test_many_consistent_flips_exceed_the_floor():
    a = np.zeros((1, 100), bool)
    b = a.copy()
    b[0, :20] = True
    change, floor = paired_floor(a, b, resample_counts(100, 2000, 2))
    assert change[0] == pytest.approx(0.2) and abs(change[0]) > 2 * floor[0]


def test_floor_matches_the_normal_approximation():
    """Changes of +1 on a fraction p of n pairs: the 95% half-width is about 1.96 sqrt(p(1-p)/n)."""
    n, p = 400, 0.25
    a = np.zeros((1, n), bool)
    b = a.copy()
    b[0, : int(p * n)] = True
    _, floor = paired_floor(a, b, resample_counts(n, 4000, 3))
    assert floor[0] == pytest.approx(1.96 * np.sqrt(p * (1 - p) / n), rel=0.1)


def test_opposite_flips_cancel_in_the_change_but_widen_the_floor():
    a = np.zeros((1, 100), bool)
    b = a.copy()
    a[0, :30] = True
    b[0, 30:60] = True  # same score, different pairs
    change, floor = paired_floor(a, b, resample_counts(100, 2000, 4))
    assert change[0] == 0 and floor[0] > 0.1


def test_shapes_must_agree():
    with pytest.raises(ValueError, match="differ in shape"):
        paired_floor(np.zeros((2, 5), bool), np.zeros((2, 6), bool), resample_counts(5, 10, 0))


def test_counts_are_resamples_of_all_pairs():
    c = resample_counts(37, 50, 5)
    assert c.shape == (50, 37) and (c.sum(1) == 37).all()
    assert (resample_counts(37, 50, 5) == c).all()
