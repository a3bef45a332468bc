"""Head types in the explorer: badges in the head list and detail, and the type filter.

A synthetic scan with hand-written head-type extras (schema :mod:`headmaps.explorer.schema`),
rendered in headless Chromium (same launch as test_browser.py).
"""

from __future__ import annotations

import pytest

from browser_page import report_page
from headmaps.explorer import synthetic_scan, write_report

pytestmark = pytest.mark.browser

TYPES = {"2.5": ["induction"], "1.1": ["previous_token", "copying"], "0.3": ["previous_token"]}


@pytest.fixture(scope="module")
def typed_report(tmp_path_factory):
    scan, extras = synthetic_scan(3, 8, 4, seed=2)
    for key, kinds in TYPES.items():
        extras.setdefault(key, {})["types"] = kinds
    extras["2.5"]["type_evidence"] = {"induction": "induction (from parameters): score 2.7, z 15"}
    return write_report(tmp_path_factory.mktemp("report") / "types.html", scan, extras)


@pytest.fixture
def page(typed_report):
    errors: list[str] = []
    with report_page(typed_report, errors) as pg:
        yield pg
    assert not errors, errors


def rows(pg) -> list[str]:
    return pg.eval_on_selector_all("#hm-tbody tr.r", "rs => rs.map(r => r.dataset.head)")


def test_badges_in_head_list_and_detail(page):
    row = page.locator('#hm-tbody tr.r[data-head="1.1"]')
    badges = row.locator(".badge.htype")
    assert [badges.nth(k).inner_text() for k in range(badges.count())] == [
        "previous token", "copying"]
    assert page.locator('#hm-tbody tr.r[data-head="1.2"] .badge.htype').count() == 0
    from playwright.sync_api import expect

    panel = page.locator("#hm-panel")
    # on a loaded machine a click can land before the table's handlers are bound: click
    # again until the panel follows (at most 3 tries), then assert it shows the head
    for _ in range(3):
        page.locator('#hm-tbody tr.r[data-head="2.5"]').click()
        if panel.get_attribute("data-head") == "2.5":
            break
        page.wait_for_timeout(1000)
    expect(panel).to_have_attribute("data-head", "2.5")
    assert panel.locator('.meta .badge.htype[data-type="induction"]').inner_text() == "induction"
    # a label's evidence is its tooltip; a label without evidence keeps the generic one
    ind = page.locator('#hm-tbody tr.r[data-head="2.5"] .badge.htype')
    assert ind.get_attribute("title") == "induction (from parameters): score 2.7, z 15"
    assert badges.nth(0).get_attribute("title") == "head type (from parameters)"


def test_type_filter_narrows_the_list(page):
    assert page.locator("#hm-type-l").is_visible()
    options = page.eval_on_selector_all("#hm-type option", "os => os.map(o => o.value)")
    assert options == ["all", "previous_token", "induction", "copying"]  # the types' own order
    assert page.get_attribute("#hm-count", "data-count") == "24"
    page.select_option("#hm-type", "previous_token")
    page.wait_for_function("() => document.getElementById('hm-count').dataset.count === '2'")
    assert sorted(rows(page)) == ["0.3", "1.1"]
    page.select_option("#hm-type", "induction")
    page.wait_for_function("() => document.getElementById('hm-count').dataset.count === '1'")
    assert rows(page) == ["2.5"]
    page.select_option("#hm-type", "all")
    page.wait_for_function("() => document.getElementById('hm-count').dataset.count === '24'")


def test_no_type_filter_without_types(tmp_path):
    scan, extras = synthetic_scan(2, 4, 3, seed=1)
    page = write_report(tmp_path / "plain.html", scan, extras).read_text(encoding="utf-8")
    assert '"types":{"names":[],"heads":[]}' in page
