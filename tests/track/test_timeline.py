"""The timeline view of a series: its payload is the library's crossings, and the page works.

The page is driven in Debian's headless Chromium (Playwright), as the explorer's tests do.
"""

from __future__ import annotations

import base64

import numpy as np
import pytest
from playwright import sync_api
from series import CROSSING_STEP, HEAD, write_series

import headmaps as hm
from browser_page import ARGS, CHROMIUM
from headmaps.explorer.timeline import MAXQ, NAN_Q, timeline_payload, write_timeline_report


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    paths, pairs = write_series(tmp_path_factory.mktemp("series"))
    return hm.track(paths, relations={"copying": pairs}, projection="paper", min_pairs=5, workers=1,
                    types=True)


def _u16(text):
    return np.frombuffer(base64.b64decode(text), dtype="<u2")


def test_payload_holds_the_librarys_crossings_and_scores(tracked):
    p = timeline_payload(tracked, "t")
    names = [s["name"] for s in p["series"]]
    assert names == ["copying", *tracked.types]
    copying = p["series"][0]
    first = np.array(copying["first"]).reshape(tracked.n_layers, tracked.n_heads)
    want = np.full_like(first, -1)
    for row in tracked.first_crossing(relation="copying").itertuples(index=False):
        want[row.layer, row.h] = row.checkpoint
    np.testing.assert_array_equal(first, want)
    assert first[HEAD] == list(tracked.steps).index(CROSSING_STEP)
    q = _u16(copying["scores"]).reshape(len(tracked.steps), tracked.n_layers, tracked.n_heads)
    assert q.max() <= MAXQ and (q != NAN_Q).all()
    back = copying["lo"] + q / MAXQ * (copying["hi"] - copying["lo"])
    np.testing.assert_allclose(back, tracked.scores[:, 0], atol=(copying["hi"] - copying["lo"])
                               / MAXQ)  # one quantisation step


def test_a_failed_checkpoint_travels_as_nan(tracked):
    import dataclasses

    scores = tracked.scores.copy()
    scores[1] = np.nan
    broken = dataclasses.replace(tracked, scores=scores, failed={1: "boom"})
    q = _u16(timeline_payload(broken, "t")["series"][0]["scores"])
    per = q.reshape(len(tracked.steps), -1)
    assert (per[1] == NAN_Q).all() and (per[0] != NAN_Q).all()


def test_wrong_suffix_and_wrong_source_are_one_line_errors(tracked, tmp_path):
    with pytest.raises(hm.HeadmapsError, match="ending in .html"):
        write_timeline_report(tmp_path / "t.txt", tracked)
    with pytest.raises(hm.HeadmapsError, match="not a checkpoint series"):
        write_timeline_report(tmp_path / "t.html", tmp_path)


@pytest.mark.browser
def test_the_page_shows_crossings_and_draws_a_head(tracked, tmp_path):
    tracked.save(tmp_path / "saved")
    path = hm.report(tmp_path / "saved", tmp_path / "timeline.html")  # a saved folder works too
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page()
        errors, requests = [], []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(path.resolve().as_uri())
        page.wait_for_function("() => window.__headmapsReady === true")
        head = f"{HEAD[0]}.{HEAD[1]}"
        cell = f'#tl-grid .c[data-head="{head}"]'
        assert page.get_attribute(cell, "data-first") == str(list(tracked.steps).index(
            CROSSING_STEP))
        assert page.locator("#tl-tbody tr").count() == len(
            tracked.first_crossing(relation="copying"))
        page.click(cell)
        assert page.is_visible("#tl-panel")
        assert page.locator("#tl-chart circle.pt").count() == len(tracked.steps)
        assert page.locator("#tl-chart line.tau").count() == 1
        assert f"step {CROSSING_STEP}" in page.inner_text("#tl-panel-text")
        page.select_option("#tl-series", str(1 + tracked.types.index("copying")))
        assert page.get_attribute("#tl-grid", "data-series") == "copying"
        assert page.locator("#tl-chart line.tau").count() == 0  # a type has no single tau
        assert not errors, errors
        assert requests == [path.resolve().as_uri()]
        browser.close()
