"""hm.track on a saved series in which head 1.0 becomes a copying head at step 300.

The series (tests/track/series.py) is written once per session; every test reads it.
Scores of the same checkpoint computed by another path (another process, a Dask worker)
are compared with a tolerance of 1e-6 (hit rates over the same pairs; any change of a
top-k decision would move a score by at least 1/n_pairs).
"""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
from series import CROSSING_STEP, HEAD, STEPS, write_series

import headmaps as hm
from headmaps.track import (
    CRASH_ONCE_FILE,
    ONSET_FRACTION,
    SeriesMismatchError,
    TrackResult,
    onset_index,
)
from tiny_vocab import vocab_model

TOL = 1e-6


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """``(paths, copying pairs)`` of the saved series."""
    return write_series(tmp_path_factory.mktemp("series"))


def _track(paths, pairs, **kw):
    kw.setdefault("types", False)
    return hm.track(paths, relations={"copying": pairs}, projection="paper", min_pairs=5, **kw)


@pytest.fixture(scope="module")
def sequential(series):
    """The series tracked in this process, with head types."""
    paths, pairs = series
    return _track(paths, pairs, workers=1, types=True)


def test_the_built_head_crosses_at_its_step(sequential):
    cross = sequential.first_crossing(relation="copying")
    assert list(cross["head"]) == [f"{HEAD[0]}.{HEAD[1]}"]
    row = cross.iloc[0]
    assert row["step"] == CROSSING_STEP and row["checkpoint"] == 3 and row["stays"]
    traj = sequential.trajectory(*HEAD, relation="copying")
    assert traj.shape == (len(STEPS),)
    assert (np.diff(traj) >= -TOL).all()  # the score can only rise with a (see series.py)
    assert traj[2] < sequential.tau <= traj[3]
    assert list(sequential.steps) == list(STEPS)  # read from the names step-<n>


def test_onset_is_where_the_score_leaves_its_start_for_good(sequential):
    traj = sequential.trajectory(*HEAD, relation="copying")
    i = onset_index(traj)
    level = traj[0] + ONSET_FRACTION * (traj[-1] - traj[0])
    assert (traj[i:] >= level).all() and (i == 0 or traj[i - 1] < level)
    assert sequential.onset(*HEAD, relation="copying") == STEPS[i] <= CROSSING_STEP


@pytest.mark.parametrize("curve, fraction, want", [
    ([0.0, 0.0, 0.5, 0.05, 0.2, 1.0], 0.1, 4),   # a blip that falls back does not count
    ([1.0, 1.0, 0.2, 0.0], 0.5, 2),               # a fall counts like a rise
    ([0.0, np.nan, 0.3, 1.0], 0.1, 2),            # a failed checkpoint is skipped
    ([0.0, 0.4, 0.0], 0.1, None),                 # no net change: no onset
    ([np.nan, 2.0], 0.1, None),                   # one value
])
def test_onset_index_rule(curve, fraction, want):
    assert onset_index(np.array(curve), fraction) == want


def test_types_are_tracked_with_labels(sequential):
    assert sequential.types[:2] == ["previous_token", "induction"]
    C, T, L, H = sequential.type_scores.shape
    assert (C, L, H) == (len(STEPS), 2, 2) and T == len(sequential.types)
    copy = sequential.first_crossing(type="copying")
    assert f"{HEAD[0]}.{HEAD[1]}" in set(copy["head"])
    assert int(copy.set_index("head").loc["1.0", "step"]) == CROSSING_STEP


def test_frame_save_load_round_trip(sequential, tmp_path):
    frame = sequential.to_frame()
    n = len(STEPS) * (1 + len(sequential.types)) * 4
    assert len(frame) == n and set(frame["kind"]) == {"relation", "type"}
    sequential.save(tmp_path / "t")
    back = TrackResult.load(tmp_path / "t")
    np.testing.assert_array_equal(back.scores, sequential.scores)  # same numbers, written/read
    np.testing.assert_array_equal(back.type_labels, sequential.type_labels)
    np.testing.assert_array_equal(back.type_scores, sequential.type_scores)
    assert list(back.steps) == list(sequential.steps) and back.relations == ["copying"]
    assert back.summary_markdown() == sequential.summary_markdown()
    assert "1.0 (300)" in back.summary_markdown()
    assert "copying" in back._repr_html_()
    fig = back.figure(relation="copying")
    assert [line.get_label() for line in fig.axes[0].lines][0] == "1.0"


def test_killed_worker_is_reported_and_rerun(series, sequential, caplog):
    paths, pairs = series
    marker = f"{paths[2]}/{CRASH_ONCE_FILE}"
    open(marker, "w").close()
    with caplog.at_level(logging.WARNING, logger="headmaps.track.workers"):
        res = _track(paths, pairs, workers=2, retries=1)
    assert not res.failed
    assert any("died" in r for r in res.attempts.get(2, [])), res.attempts
    assert "died" in caplog.text
    np.testing.assert_allclose(res.scores, sequential.scores, atol=TOL)
    assert res.execution == {"mode": "processes", "workers": 2}


def test_a_checkpoint_that_keeps_failing_is_recorded(series, tmp_path):
    paths, pairs = series
    broken = tmp_path / "step-600"
    shutil.copytree(paths[-1], broken)
    for f in broken.glob("*.safetensors"):
        f.write_bytes(b"not a checkpoint")
    res = _track([*paths, str(broken)], pairs, workers=1, retries=1)
    assert set(res.failed) == {len(paths)}
    assert len(res.attempts[len(paths)]) == 2  # the first try and one retry
    assert np.isnan(res.scores[-1]).all() and not np.isnan(res.scores[:-1]).any()
    assert "Failed checkpoints" in res.summary_markdown()


def test_another_architecture_stops_the_series(series, tmp_path):
    paths, pairs = series
    other, tok = vocab_model(n_layers=3)
    other.save_pretrained(tmp_path / "step-900")
    tok.save_pretrained(tmp_path / "step-900")
    with pytest.raises(SeriesMismatchError, match="n_layers 2 vs 3"):
        _track([paths[0], str(tmp_path / "step-900")], pairs, workers=1)


def test_composition_is_tracked_per_checkpoint(series, tmp_path):
    paths, pairs = series
    res = _track(paths[:2], pairs, workers=1, composition=True)
    comp = res.composition
    assert sorted(comp["checkpoint"].unique()) == [0, 1]
    one = hm.composition(hm.load(paths[1])).to_frame()
    assert len(comp[comp["checkpoint"] == 1]) == len(one)
    res.save(tmp_path / "t")
    assert len(TrackResult.load(tmp_path / "t").composition) == len(comp)


def test_bad_steps_are_refused(series):
    paths, pairs = series
    with pytest.raises(hm.HeadmapsError, match="strictly increasing"):
        _track(paths[:2], pairs, steps=[5, 5], workers=1)
