"""The options the validation experiments share: keywords and one dataclass agree."""

from __future__ import annotations

import pytest

from headmaps import projection as P
from headmaps.errors import HeadmapsError
from headmaps.experiments import AblationOptions, RunOptions
from headmaps.experiments.options import take


def test_keywords_fill_fields_and_projection_overrides():
    kw = {"k": 5, "max_pairs": 20, "fold_norms": True, "m": 3}
    abl = take(AblationOptions, None, kw)
    run = RunOptions.from_kwargs(None, kw, batch_size=64)
    assert abl == AblationOptions(m=3)
    assert run == RunOptions(k=5, max_pairs=20, batch_size=64, projection={"fold_norms": True})
    opts, name = P.explicit("norms", run.projection)
    assert opts.fold_norms and name == "norms"  # norms already folds: the preset is kept


def test_keywords_override_a_given_run():
    base = RunOptions(k=3, seed=7, projection={"value_bias": False})
    run = RunOptions.from_kwargs(base, {"seed": 1, "output_bias": False}, batch_size=64)
    assert (run.k, run.seed, run.batch_size) == (3, 1, 32)  # defaults only without a run
    assert run.projection == {"value_bias": False, "output_bias": False}
    assert P.explicit(run.preset, run.projection)[1] == "custom"


def test_unknown_keyword_lists_both_kinds():
    with pytest.raises(HeadmapsError,
                       match="unknown option.*max_pair.*experiment options: k, preset"):
        RunOptions.from_kwargs(None, {"max_pair": 3})
