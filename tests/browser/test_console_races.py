"""Loads that arrive out of order (headless Chromium against the real API): a view's answer to an
older request must not render over the answer to a newer one. Found by a CI run: the ledger's first
load (20 rows per page) answered after the load the admin asked for with 5 rows per page, and the
table showed 16 rows under "Page 1" (and its cursor chain came from the stale answer)."""
from __future__ import annotations

import re

from tests.browser.conftest import TENANT, stack


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


def _plus_race_two(body, items_key="items"):
    """An account list with one more account, ``race-two`` (a copy of the first, not the default)."""
    extra = dict(body[items_key][0], account_id="race-two", is_default=False)
    return {**body, items_key: [*body[items_key], extra]}


def test_the_account_asked_for_last_is_shown_whichever_answers_last(console, page_as, users):
    # a trader opens their accounts (the default account's venue reads start) and picks another
    # account before those reads answer: the positions shown must be the account they picked
    mine = stack.ApiClient(console, users["trader"].token).call("GET", "/accounts?limit=50")
    assert mine.status == 200 and mine.body["items"], mine.body
    listed = _plus_race_two(mine.body)
    page = page_as(users["trader"])
    held = []

    def venue_reads(route):
        if "/accounts/race-two/" not in route.request.url:
            held.append(route)  # the default account's reads: answered after race-two's
        elif route.request.url.split("?")[0].endswith("/positions"):
            route.fulfill(json={"account_id": "race-two", "venue": "paper", "venue_account_id": "book-two",
                                "as_of": "2026-12-07T00:00:00+00:00", "in_balance": True, "differences": 0,
                                "positions": []})
        else:
            route.fulfill(json={"account_id": "race-two", "balances": []})

    page.route(re.compile(r".*/api/accounts\?.*"), lambda route: route.fulfill(json=listed))
    page.route(re.compile(r".*/api/accounts/[^/?]+/(positions|balance).*"), venue_reads)
    page.get_by_role("link", name="Accounts & positions").click()
    page.get_by_role("button", name="race-two").click()
    page.wait_for_function("() => document.querySelector('main section h2')?.textContent === 'Account race-two'")
    assert len(held) == 2, "the default account's two reads were not the ones held"

    for route in held:  # the stale answers arrive last
        route.fulfill(response=route.fetch())
    page.wait_for_timeout(300)
    assert page.locator("main section h2").first.inner_text() == "Account race-two"


def test_an_admins_account_panel_is_the_account_opened_last(console, page_as, users):
    accounts = stack.ApiClient(console, users["tenant_admin"].token).call("GET", f"/tenants/{TENANT}/accounts?limit=100")
    assert accounts.status == 200 and accounts.body["items"], accounts.body
    listed = _plus_race_two(accounts.body)
    first = listed["items"][0]["account_id"]
    page = page_as(users["tenant_admin"])
    held = []

    def limits(route):
        if "/accounts/race-two/" in route.request.url:
            route.fulfill(json={"account_id": "race-two", "status": "halted", "limits": {"max_daily_trades": 7},
                                "effective": {"max_daily_trades": 7}})
        else:
            held.append(route)  # the first account's panel, answered last

    page.route(re.compile(r".*/api/tenants/[^/]+/accounts\?.*"), lambda route: route.fulfill(json=listed))
    page.route(re.compile(r".*/api/tenants/[^/]+/accounts/[^/]+/limits$"), limits)
    page.get_by_role("link", name="Accounts").click()
    page.get_by_test_id("accounts-table").wait_for()
    page.get_by_role("button", name=f"Limits and state of {first}").click()
    page.wait_for_function("() => !document.querySelector('[data-testid=account-risk]') && "
                           "document.querySelector('main').textContent.includes('Loading…')")  # its read is held
    page.get_by_role("button", name="Limits and state of race-two").click()
    page.wait_for_function("() => document.querySelector('[data-testid=account-state]')?.textContent === 'halted'")
    assert len(held) == 1, "the first account's limits read was not the one held"

    held[0].fulfill(response=held[0].fetch())  # the stale answer arrives last
    page.wait_for_timeout(300)
    assert page.get_by_test_id("account-risk").get_attribute("aria-label") == "Risk of account race-two"
    assert page.get_by_test_id("account-state").text_content() == "halted"


def test_the_open_orders_read_last_is_shown_whichever_answers_last(console, page_as, users):
    # a replace reloads the list; a cancel right after reloads it again: the replace's reload answering
    # after the cancel's must not bring the canceled order back on screen
    api = stack.ApiClient(console, users["trader"].token)
    placed = api.call("POST", "/execute", {"strategy_id": "web_race", "symbol": "SPY", "qty": "1", "side": "buy",
                                           "order_type": "limit", "limit_price": "400.00", "time_in_force": "gtc"})
    assert placed.status == 201 and placed.body["status"] == "placed", placed.body
    intent = placed.body["intent_id"]
    page = page_as(users["trader"])
    reads, held = [], []

    def orders(route):
        reads.append(route.request.url)
        if len(reads) == 2:
            held.append(route)  # the replace's reload: answered after the cancel's
        else:
            route.continue_()

    page.route(re.compile(r".*/api/orders\?.*"), orders)
    page.get_by_role("link", name="Open orders").click()
    row = page.get_by_test_id("orders-table").locator("tbody tr", has_text=intent[:12])
    row.wait_for()
    row.get_by_label("New limit", exact=True).fill("401.00")
    row.get_by_role("button", name="Replace").click()
    page.wait_for_function("() => document.querySelector('[data-testid=order-outcome]')?.textContent.includes('replaced')")
    page.wait_for_timeout(200)
    assert len(held) == 1, reads
    stale = held[0].fetch()  # what that read answers now: the order still working
    assert intent in stale.text()
    row.get_by_role("button", name="Cancel").click()
    page.wait_for_function("() => document.querySelector('[data-testid=order-outcome]')?.textContent.includes('canceled')")
    page.wait_for_function(f"() => !document.querySelector('main').textContent.includes('{intent[:12]}')")

    held[0].fulfill(response=stale)  # the stale list arrives last
    page.wait_for_timeout(300)
    assert intent[:12] not in page.locator("main").inner_text(), "the canceled order came back from a stale read"
