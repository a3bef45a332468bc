"""Registry API: names, info, load, categories, unknown names."""

from __future__ import annotations

import json

import pytest

import headmaps as hm
import headmaps.relations as R


def test_load_returns_fresh_tuples():
    a = R.load("country_to_capital")
    assert ("France", "Paris") in a
    assert all(isinstance(p, tuple) and len(p) == 2 for p in a)
    a.clear()
    assert len(R.load("country_to_capital")) > 100


def test_info_fields():
    info = R.info("country_to_capital")
    assert isinstance(info, R.RelationInfo)
    assert (info.name, info.category, info.default_k) == ("country_to_capital", "knowledge", 10)
    assert info.prompt_template == "The capital of <X> is"
    assert info.n_pairs == len(R.load("country_to_capital"))
    assert "rule" in info.extra


def test_is_builtin():
    assert R.is_builtin("antonym") and not R.is_builtin("antonyms") and not R.is_builtin(3)


@pytest.mark.parametrize("bad", ["country_to_capitals", "nonsense"])
def test_unknown_name_lists_available(bad):
    with pytest.raises(R.UnknownRelationError) as exc:
        R.load(bad)
    msg = str(exc.value)
    assert bad in msg and "country_to_capital" in msg and "antonym" in msg
    assert isinstance(exc.value, hm.HeadmapsError) and isinstance(exc.value, KeyError)
    with pytest.raises(R.UnknownRelationError):
        R.info(bad)


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "absent.json"
    with pytest.raises(R.UnknownRelationError, match="no such file") as exc:
        R.load(path)
    assert str(path) in str(exc.value)


def test_load_accepts_paths(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps([["a", "b"], ["c", "d"]]))
    assert R.load(path) == [("a", "b"), ("c", "d")]
    assert R.load(str(path)) == [("a", "b"), ("c", "d")]
    info = R.info(path)
    assert (info.name, info.category, info.n_pairs, info.default_k) == ("mine", "custom", 2, 10)


def test_builtin_validation_catches_a_broken_file(tmp_path, monkeypatch):
    from headmaps.relations import registry

    good = json.loads((registry.DATA_DIR / "antonym.json").read_text(encoding="utf-8"))
    good["pairs"].append(good["pairs"][0])
    (tmp_path / "antonym.json").write_text(json.dumps(good), encoding="utf-8")
    monkeypatch.setattr(registry, "DATA_DIR", tmp_path)
    registry._builtin.cache_clear()
    try:
        with pytest.raises(R.RelationDataError, match="duplicate pair"):
            R.load("antonym")
    finally:
        registry._builtin.cache_clear()
