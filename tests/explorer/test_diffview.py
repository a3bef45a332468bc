"""The explorer's diff view without a browser: payload, entry points, saved sides, errors."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest

import headmaps as hm
from built_diff import COPY_HEAD, copy_head_diff
from headmaps.cli import main
from headmaps.explorer.diffview import build_diff_report, diff_payload, is_diff, write_diff_report


@pytest.fixture(scope="module")
def built():
    return copy_head_diff()


@pytest.fixture(scope="module")
def saved(built, tmp_path_factory):
    return built.save(tmp_path_factory.mktemp("diff") / "d")


def payload_of(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="dv-data">(.*?)</script>', page, re.S)
    return json.loads(m.group(1))


def test_payload_marks_the_copy_head_gained(built):
    p = diff_payload(built, "t")
    assert p["kind"] == "diff" and p["relations"] == ["copying", "verb_past"]
    changed = np.frombuffer(base64.b64decode(p["changed"]), np.uint8).reshape(2, 3, 2)
    assert changed[0][COPY_HEAD] == 1 and changed[0].sum() == 1  # only 1.0, for copying
    assert (changed.astype(bool) == built.changed).all()
    assert p["summary"]["gained"][0] == ["1.0"] and p["summary"]["lost"][0] == []
    qb = np.frombuffer(base64.b64decode(p["scoresB"]), "<u2").reshape(2, 3, 2)
    assert qb[0][COPY_HEAD] == p["Q"] and qb[0][COPY_HEAD] >= p["tauQ"]
    assert p["hasSalient"] and p["hasProfiles"]
    assert set(p["figures"]) >= {"wvo_change", "salient_mapping_overlap", "profile_tv"}


def test_sides_hold_both_salient_operations_and_profiles(built):
    page = build_diff_report(built)
    toks = payload_of(page)["toks"]
    lines = re.search(r'<script type="text/plain" id="dv-sides">(.*?)</script>', page,
                      re.S).group(1).split("\n")
    assert len(lines) == 6
    head = json.loads(lines[COPY_HEAD[0] * 2 + COPY_HEAD[1]])
    assert {"sa", "sb", "pa", "pb"} <= set(head)
    # B's head 1.0 copies: each salient token's best target is the token itself
    assert all(toks[s[0]] == toks[s[2][0]] for s in head["sb"])
    assert not all(toks[s[0]] == toks[s[2][0]] for s in head["sa"])
    assert len(head["pa"]) == len(head["pb"]) == built.profile_a.shape[-1]


def test_saved_diff_keeps_its_sides(built, saved):
    back = hm.HeadDiff.load(saved)
    assert back.salient_b[1, 0].mappings == built.salient_b[1, 0].mappings
    assert np.allclose(back.profile_a, built.profile_a) and np.allclose(back.profile_b,
                                                                        built.profile_b)


def test_diff_without_sides_says_so(tmp_path):
    d = copy_head_diff(salient=False, qk=False)
    assert d.salient_a is None and d.profile_a is None
    back = hm.HeadDiff.load(d.save(tmp_path / "bare"))
    assert back.salient_a is None and back.profile_b is None
    page = build_diff_report(back)
    p = payload_of(page)
    assert not p["hasSalient"] and not p["hasProfiles"]
    assert re.search(r'id="dv-sides">\n*</script>', page)  # every head's line empty


def test_entry_points_write_the_diff_view(built, saved, tmp_path, capsys):
    assert is_diff(built) and is_diff(saved) and not is_diff(tmp_path)
    a = hm.report(built, tmp_path / "a.html")
    b = hm.report(saved, tmp_path / "b.html")
    for p in (a, b):
        text = p.read_text(encoding="utf-8")
        assert 'id="dv-data"' in text and 'id="hm-data"' not in text
        assert "http://" not in text and "https://" not in text.replace(
            "https://github.com", "")  # offline
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.html", "b.html"]  # no temp files
    assert main(["report", "--from", str(saved), "-o", str(tmp_path / "c.html")]) == 0
    assert "wrote the diff view" in capsys.readouterr().out
    assert payload_of((tmp_path / "c.html").read_text(encoding="utf-8"))["summary"][
        "gained"][0] == ["1.0"]


def test_bad_inputs_are_one_line_errors(built, tmp_path, capsys):
    with pytest.raises(hm.HeadmapsError, match="give a path ending in .html"):
        write_diff_report(tmp_path / "view.png", built)
    with pytest.raises(hm.HeadmapsError, match="not a head diff"):
        build_diff_report(tmp_path)
    assert main(["diff", "a", "b", "--html", str(tmp_path / "view.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--html" in err and "ending in .html" in err and "\n" not in err
    (tmp_path / "file").write_text("x")  # a folder that is a file: refused before loading
    assert main(["diff", "a", "b", "--html", str(tmp_path / "file" / "x.html")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("headmaps: error:") and "--html" in err and "\n" not in err


def test_local_paths_stay_out(built, tmp_path):
    import dataclasses

    d = dataclasses.replace(built, model_a="/home/someone/models/base",
                            model_b="/home/someone/models/tuned")
    page = build_diff_report(d)
    assert "/home/someone" not in page and "tuned" in page
    assert "/home/someone" in build_diff_report(d, show_paths=True)
