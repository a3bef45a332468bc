"""The options the validation experiments share: keywords and one dataclass agree."""

from __future__ import annotations

import pytest

from headmaps.errors import HeadmapsError
from headmaps.experiments import AblationOptions, RunOptions
from headmaps.experiments.options import take


def test_keywords_fill_fields_and_the_projection():
    kw = {"k": 5, "max_pairs": 20, "projection": "norms", "m": 3}
    abl = take(AblationOptions, None, kw)
    run = RunOptions.from_kwargs(None, kw, batch_size=64)
    assert abl == AblationOptions(m=3)
    assert run == RunOptions(k=5, max_pairs=20, batch_size=64, projection="norms")


def test_keywords_override_a_given_run():
    base = RunOptions(k=3, seed=7, projection="paper")
    run = RunOptions.from_kwargs(base, {"seed": 1}, batch_size=64)
    assert (run.k, run.seed, run.batch_size) == (3, 1, 32)  # defaults only without a run
    assert run.projection == "paper"


def test_unknown_keyword_names_the_fields_and_projection_for():
    with pytest.raises(HeadmapsError, match="unknown option.*max_pair.*experiment options: k, "
                                            "projection.*hm.projection_for"):
        RunOptions.from_kwargs(None, {"max_pair": 3})
    with pytest.raises(HeadmapsError, match="fold_norms"):  # projection options go elsewhere
        RunOptions.from_kwargs(None, {"fold_norms": True})
