"""The explorer's diff view in headless Chromium: relation picker, colour by change, head detail.

A built diff (head 1.0 of B replaced by an exact copy head, as in tests/diff/test_diff.py),
rendered by ``hm.report(diff, path)`` and opened with the same launch as test_browser.py.
"""

from __future__ import annotations

import pytest

import headmaps as hm
from browser_page import report_page
from built_diff import copy_head_diff

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def diff_html(tmp_path_factory):
    return hm.report(copy_head_diff(), tmp_path_factory.mktemp("diff") / "diff.html")


@pytest.fixture
def page(diff_html):
    errors: list[str] = []
    with report_page(diff_html, errors) as pg:
        yield pg
    assert not errors, errors


PIXEL = """([grid, l, h]) => {
  const g = document.getElementById(grid), cv = g.querySelector('canvas');
  const x = Math.floor((h + 0.5) * cv.width / 2), y = Math.floor((l + 0.5) * cv.height / 3);
  return Array.from(cv.getContext('2d').getImageData(x, y, 1, 1).data.slice(0, 3));
}"""


def statuses(pg, grid="dv-grid-d") -> dict[str, str]:
    return pg.eval_on_selector_all(f"#{grid} .c", "cs => Object.fromEntries(cs.map(c => "
                                                  "[c.dataset.head, c.dataset.status]))")


def test_relation_picker_switches_the_view(page):
    options = page.eval_on_selector_all("#dv-rel option", "os => os.map(o => o.value)")
    assert options[:2] == ["r0", "r1"] and "f:wvo_change" in options
    assert page.get_attribute("#dv-grids", "data-view") == "r0"
    assert page.locator("#dv-grids .dv-grid").count() == 3  # A, B and the change
    assert "copying" in page.inner_text("#dv-legend-text")
    page.select_option("#dv-rel", "r1")
    page.wait_for_function("() => document.getElementById('dv-grids').dataset.view === 'r1'")
    assert "verb_past" in page.inner_text("#dv-legend-text")
    assert statuses(page)["1.0"] != "gained"  # a copy head does not gain the past tense
    page.select_option("#dv-rel", "f:wvo_change")
    page.wait_for_function("() => document.getElementById('dv-grids').dataset.view === "
                           "'f:wvo_change'")
    assert page.locator("#dv-grids .dv-grid").count() == 1  # one figure per head
    assert page.is_disabled("#dv-mode-supp")  # suppression is a relation's


def test_change_is_the_colour_and_beyond_floor_is_marked(page):
    st = statuses(page)
    assert st["1.0"] == "gained" and all(v == "same" for k, v in st.items() if k != "1.0")
    assert page.get_attribute("#dv-grids", "data-changed") == "1"
    cell = page.locator('#dv-grid-d .c[data-head="1.0"]')
    assert "chg" in cell.get_attribute("class") and cell.inner_text() == "\u25b2"
    r, g, b = page.evaluate(PIXEL, ["dv-grid-d", 1, 0])
    assert b > r + 80  # a strong rise: deep blue
    for layer, h in ((0, 0), (2, 1)):  # unchanged: pale, close to the neutral background
        assert min(page.evaluate(PIXEL, ["dv-grid-d", layer, h])) > 200
    ra, _, ba = page.evaluate(PIXEL, ["dv-grid-a", 1, 0])
    rb, _, bb = page.evaluate(PIXEL, ["dv-grid-b", 1, 0])
    assert rb < ra and bb <= ba  # B's score (1.0) darker than A's


def open_head(pg, head: str) -> None:
    from playwright.sync_api import expect

    panel = pg.locator("#dv-panel")
    for _ in range(3):  # a click can land before the handlers are bound on a loaded machine
        pg.locator(f'#dv-grid-d .c[data-head="{head}"]').click()
        if panel.get_attribute("data-head") == head:
            break
        pg.wait_for_timeout(1000)
    expect(panel).to_have_attribute("data-head", head)


def test_head_detail_shows_both_sides(page):
    open_head(page, "1.0")
    panel = page.locator("#dv-panel")
    assert panel.locator('tr[data-relation="copying"]').get_attribute("data-status") == "gained"
    assert "gained" in panel.locator('tr[data-relation="copying"]').inner_text()
    rows_b = panel.locator('.dv-salient [data-side="b"] tbody tr')
    assert rows_b.count() >= 5
    for k in range(3):  # B copies: each source token's first target is itself
        row = rows_b.nth(k)
        assert row.locator("td").first.inner_text() == row.locator(".maps .tok").first.inner_text()
    assert panel.locator('.dv-salient [data-side="a"] tbody tr').count() == rows_b.count()
    n_a = panel.locator("svg.dv-profile rect.pa").count()
    assert n_a >= 3 and n_a == panel.locator("svg.dv-profile rect.pb").count()
    assert panel.locator('dd[data-figure="wvo_change"]').inner_text() != "0.000"
    panel.locator('tr[data-relation="verb_past"]').click()  # a row picks its relation
    page.wait_for_function("() => document.getElementById('dv-grids').dataset.view === 'r1'")
    open_head(page, "0.0")
    assert page.locator("#dv-panel").get_attribute("data-head") == "0.0"
    assert page.locator('#dv-panel .dv-salient [data-side="a"] .tok.shared').count() > 0


def test_table_filters_by_status(page):
    assert page.get_attribute("#dv-count", "data-count") == "6"
    page.select_option("#dv-show", "gained")
    page.wait_for_function("() => document.getElementById('dv-count').dataset.count === '1'")
    assert page.eval_on_selector_all("#dv-tbody tr.r", "rs => rs.map(r => r.dataset.head)") == [
        "1.0"]
    page.select_option("#dv-show", "same")
    page.wait_for_function("() => document.getElementById('dv-count').dataset.count === '5'")
