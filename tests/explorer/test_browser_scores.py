"""Description scores in the explorer (headless Chromium): beside the description, a column,
and the "description score >= x" filter."""

from __future__ import annotations

import pytest

from browser_page import report_page
from headmaps.explorer import synthetic_scan, write_report

pytestmark = pytest.mark.browser

SCORES = {"0.1": (0.9, 0.1), "1.2": (0.5, 0.05), "2.3": (0.2, 0.2), "2.4": (None, None)}


@pytest.fixture(scope="module")
def scored_report(tmp_path_factory):
    scan, extras = synthetic_scan(3, 8, 4, seed=2)
    for key, (s, b) in SCORES.items():
        e = extras.setdefault(key, {})
        e["description"] = f"rule of {key}"
        e.pop("unclear", None)
        e["description_score"] = {"score": s, "baseline": b, "n": 12, "k": 5,
                                  "method": "offline" if s is not None else "none",
                                  "reason": "" if s is not None else "no rule"}
    return write_report(tmp_path_factory.mktemp("report") / "scores.html", scan, extras)


@pytest.fixture
def page(scored_report):
    errors: list[str] = []
    with report_page(scored_report, errors) as pg:
        yield pg
    assert not errors, errors


def rows(pg) -> list[str]:
    return pg.eval_on_selector_all("#hm-tbody tr.r", "rs => rs.map(r => r.dataset.head)")


def open_row(pg, head: str) -> None:
    from playwright.sync_api import expect

    panel = pg.locator("#hm-panel")
    for _ in range(3):  # a click can land before the handlers are bound on a loaded machine
        pg.locator(f'#hm-tbody tr.r[data-head="{head}"]').click()
        if panel.get_attribute("data-head") == head:
            break
        pg.wait_for_timeout(1000)
    expect(panel).to_have_attribute("data-head", head)


def count_is(pg, n: int) -> None:
    pg.wait_for_function(f"() => document.getElementById('hm-count').dataset.count === '{n}'")


def test_score_filter_narrows_the_list(page):
    assert page.locator("#hm-dscore-l").is_visible()
    count_is(page, 24)
    page.fill("#hm-dscore", "0.4")
    count_is(page, 2)
    assert sorted(rows(page)) == ["0.1", "1.2"]
    page.fill("#hm-dscore", "0.8")
    count_is(page, 1)
    assert rows(page) == ["0.1"]
    page.fill("#hm-dscore", "0")
    count_is(page, 3)  # heads with a measured score only
    page.fill("#hm-dscore", "")
    count_is(page, 24)


def test_score_column_and_beside_the_description(page):
    cell = page.locator('#hm-tbody tr.r[data-head="0.1"] td[data-score]')
    assert cell.get_attribute("data-score") == "0.9" and cell.inner_text().startswith("0.90")
    assert page.locator("#hm-dscore-col").count() == 1
    open_row(page, "0.1")
    line = page.locator("#hm-panel .dscore").inner_text()
    assert "Description score 0.90 vs baseline 0.10" in line and "12 held-out tokens" in line
    open_row(page, "2.4")
    assert "not measured (no rule)" in page.locator("#hm-panel .dscore").inner_text()


def test_no_score_filter_or_column_without_scores(tmp_path):
    scan, extras = synthetic_scan(2, 4, 3, seed=1)
    errors: list[str] = []
    with report_page(write_report(tmp_path / "plain.html", scan, extras), errors) as pg:
        assert not pg.locator("#hm-dscore-l").is_visible()
        assert pg.locator("#hm-dscore-col").count() == 0
        assert pg.locator("#hm-tbody tr.r").first.locator("td").count() == 8
    assert not errors, errors
