"""Loads that arrive out of order (headless Chromium against the real API): a view's answer to an
older request must not render over the answer to a newer one. Found by a CI run: the ledger's first
load (20 rows per page) answered after the load the admin asked for with 5 rows per page, and the
table showed 16 rows under "Page 1" (and its cursor chain came from the stale answer)."""
from __future__ import annotations

import re

from tests.browser.conftest import stack


def test_a_ledger_answer_that_arrives_after_a_newer_one_is_not_rendered(console, page_as, users):
    api = stack.ApiClient(console, users["trader"].token)
    for _ in range(7):  # more rows than one page of 5, whatever ran before
        reply = api.call("POST", "/execute", {"strategy_id": "web_race", "symbol": "SPY", "qty": "1", "side": "buy"})
        assert reply.status == 201, reply.body
    page = page_as(users["tenant_admin"])
    held = []

    def hold_the_default_page(route):
        if "limit=20" in route.request.url:
            held.append(route)  # answered later, after the newer load has rendered
        else:
            route.continue_()

    page.route(re.compile(r".*/api/tenants/[^/]+/ledger\?.*"), hold_the_default_page)
    page.get_by_role("link", name="Reconciliation").click()
    page.get_by_role("link", name="Ledger").click()
    page.get_by_label("Rows per page", exact=True).select_option("5")
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_function("() => document.querySelectorAll('[data-testid=ledger-table] tbody tr').length === 5")
    assert len(held) == 1, "the view's first load (20 per page) was not the one held"

    held[0].fulfill(response=held[0].fetch())  # the stale answer arrives last
    page.wait_for_timeout(500)

    rows = page.locator("[data-testid=ledger-table] tbody tr").count()
    assert rows == 5, f"the stale 20-row answer rendered over the 5-row one ({rows} rows)"
    assert page.get_by_test_id("ledger-page").inner_text() == "Page 1"
    page.get_by_role("button", name="Next page").click()
    page.wait_for_function("() => document.querySelector('[data-testid=ledger-page]')?.textContent === 'Page 2'")
    assert 1 <= page.locator("[data-testid=ledger-table] tbody tr").count() <= 5  # the 5-row cursor chain


def test_a_tax_year_answer_that_arrives_after_the_year_asked_for_is_not_rendered(console, page_as, users):
    # the tax view loads the current year on open; a user who asks for another year before that answer
    # arrives must see the year they asked for (found beside the reconciliation view's same race)
    page = page_as(users["trader"])
    held = []

    def hold_this_year(route):
        if "year=2019" in route.request.url:
            route.continue_()
        else:
            held.append(route)  # the view's first load, answered after the year asked for

    page.route(re.compile(r".*/api/portfolio/tax-lots/export\?.*"), hold_this_year)
    page.get_by_role("link", name="Tax lots").click()
    page.wait_for_function("() => document.querySelector('main').textContent.includes('Loading…')")
    page.get_by_role("spinbutton", name="Tax year").fill("2019")
    page.get_by_role("button", name="Show", exact=True).click()
    page.wait_for_function("() => document.querySelector('main h2')?.textContent === 'Realized in 2019 by Form 8949 box'")
    assert len(held) == 1, "the view's first load was not the one held"

    with page.expect_response(lambda r: "tax-lots/export" in r.url and "year=2019" not in r.url):
        held[0].fulfill(response=held[0].fetch())  # the stale answer arrives last
    page.evaluate("() => new Promise((done) => setTimeout(done, 50))")
    assert page.locator("main h2").first.inner_text() == "Realized in 2019 by Form 8949 box"
