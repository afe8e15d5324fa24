"""The console's main journeys in headless Chromium against the full local stack (see conftest).

A trader places a trade that is placed (SPY, tight) and one that is downgraded (AAPL: 0.26% wide in
the demo's ``wide_spread`` paper scenario, above the 0.10% threshold), sees an API field error,
watches a multi-leg group fill through the Firestore listener (approved by a risk manager in their
own window), downloads the tax export (CSV and TXF), and replaces then cancels a resting limit order. A tenant admin reviews the ledger page by
page (no row twice, none missed), the group inspector and metrics; halts the tenant (the trader's
next order, in their own window, is refused), resumes it, reads both changes in the audit log and
invites a member. An auditor sees every review page but no admin control, and admin calls forged
from the auditor's own session (API and Firestore) are refused with 403.
"""
from __future__ import annotations

import base64
import csv
import io
import json
import re
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from tests.browser.conftest import TENANT, stack

pytestmark = [pytest.mark.slow, pytest.mark.emulator, pytest.mark.timeout(300)]


def _place(page, symbol: str, qty: str, side: str = "buy") -> str:
    page.get_by_label("Symbol", exact=True).fill(symbol)
    page.get_by_label("Side", exact=True).select_option(side)
    page.get_by_label("Quantity", exact=True).fill(qty)
    page.get_by_role("button", name="Place order").click()
    verdict = page.get_by_test_id("verdict-status")
    verdict.wait_for()
    text = verdict.inner_text().lower()
    return text


def test_a_trader_places_a_trade_sees_a_downgrade_watches_a_group_fill_and_downloads_the_tax_export(
        page_as, users, shoot, tmp_path):
    trader = users["trader"]
    page = page_as(trader)
    assert page.get_by_role("link", name="Order ticket").is_visible()
    assert page.get_by_role("link", name="Ledger").count() == 0  # not a trader's screen

    # placed: SPY is tight
    assert _place(page, "SPY", "3") == "placed"
    assert "Filled 3" in page.get_by_test_id("verdict").inner_text()
    # a sale, so the tax export has a disposal
    assert _place(page, "SPY", "1", side="sell") == "placed"
    # downgraded: AAPL's spread is above the threshold, with both numbers shown
    assert _place(page, "AAPL", "1") == "downgraded"
    detail = page.get_by_test_id("downgrade-detail").inner_text()
    assert re.search(r"Spread 0\.2\d+% is above the threshold 0\.1\d*%", detail), detail
    shoot(page, "trader-ticket-downgraded")
    # an API error names the field and the reason
    page.get_by_label("Quantity", exact=True).fill("0.1.2")
    page.get_by_role("button", name="Place order").click()
    page.get_by_test_id("api-error").wait_for()
    assert page.get_by_test_id("error-field").first.inner_text() == "qty"
    assert page.get_by_test_id("error-reason").first.inner_text()

    # a risk manager approves the pair for this trader, in their own window
    risk = page_as(users["risk_manager"])
    decision = f"rpm-web-{trader.uid[:6]}"
    risk.get_by_label("Decision id", exact=True).fill(decision)
    risk.get_by_label("For trader (uid)", exact=True).fill(trader.uid)
    risk.get_by_role("button", name="Issue approval").click()
    risk.get_by_test_id("approval-issued").wait_for()

    # the group: the listener follows the document to FILLED, the API answer agrees
    page.get_by_role("link", name="Multi-leg group").click()
    page.get_by_label("Risk approval (decision id)", exact=True).fill(decision)
    page.get_by_role("button", name="Execute group").click()
    page.get_by_test_id("group-status").wait_for()
    assert page.get_by_test_id("group-status").inner_text() == "FILLED"
    page.wait_for_function(
        "() => document.querySelector('[data-testid=live-status]')?.textContent === 'FILLED'")
    live_legs = page.get_by_test_id("live-legs").inner_text()
    assert "SPY" in live_legs and "MSFT" in live_legs and live_legs.count("FILLED") == 2
    shoot(page, "trader-group-filled")

    # accounts and positions: the ledger's net quantities beside the venue's (the emulator's paper venue
    # lives in each function instance's memory, so the venue column may differ between instances; the
    # page shows a difference rather than hiding it)
    page.get_by_role("link", name="Accounts & positions").click()
    positions = page.get_by_test_id("positions-table")
    positions.wait_for()
    rows = {r.split("\t")[0]: r.split("\t") for r in positions.locator("tbody tr").all_inner_texts()}
    assert Decimal(rows["SPY"][4]) == 4 and Decimal(rows["MSFT"][4]) == -1, rows  # 3 - 1 + 2 and the short leg
    shoot(page, "trader-positions")

    # trade history shows the trades and the group legs
    page.get_by_role("link", name="Trade history").click()
    history = page.get_by_test_id("history-table")
    history.wait_for()
    assert "SPY" in history.inner_text() and "MSFT" in history.inner_text()

    # tax lots: open lots on screen, the CSV and TXF exports downloaded
    page.get_by_role("link", name="Tax lots").click()
    page.get_by_test_id("open-lots").wait_for()
    assert "SPY" in page.get_by_test_id("open-lots").inner_text()
    assert "SPY" in page.get_by_test_id("disposals").inner_text()
    shoot(page, "trader-tax-lots")
    year = datetime.now(timezone.utc).year
    with page.expect_download() as csv_download:
        page.get_by_role("button", name="Download CSV (Form 8949)").click()
    csv_path = tmp_path / "tax.csv"
    csv_download.value.save_as(csv_path)
    assert csv_download.value.suggested_filename == f"tax-{year}-disposals.csv"
    csv_text = csv_path.read_text()
    assert "SPY" in csv_text.splitlines()[1], csv_text[:500]
    with page.expect_download() as txf_download:
        page.get_by_role("button", name="Download TXF").click()
    txf_path = tmp_path / "tax.txf"
    txf_download.value.save_as(txf_path)
    txf = txf_path.read_text()
    assert txf.startswith("V042") and "SPY" in txf, txf[:300]
    assert "Saved" in page.get_by_test_id("download-progress").inner_text()


def test_a_trader_replaces_and_cancels_a_working_limit_order(page_as, users, shoot):
    page = page_as(users["trader"])
    page.get_by_label("Order type", exact=True).select_option("limit")
    page.get_by_label("Limit price", exact=True).fill("500.00")  # below SPY's bid: rests at the venue
    page.get_by_label("Time in force", exact=True).select_option("gtc")
    assert _place(page, "SPY", "2") == "placed"
    assert "(order new" in page.get_by_test_id("verdict").inner_text() or \
        "(order accepted" in page.get_by_test_id("verdict").inner_text(), page.get_by_test_id("verdict").inner_text()

    page.get_by_role("link", name="Open orders").click()
    orders = page.get_by_test_id("orders-table")
    orders.wait_for()
    row = orders.locator("tbody tr", has_text="500")
    assert row.count() == 1, orders.inner_text()
    row.get_by_label("New limit", exact=True).fill("501.00")
    row.get_by_role("button", name="Replace").click()
    page.wait_for_function("() => document.querySelector('[data-testid=order-outcome]')?.textContent.includes('replaced')")
    page.wait_for_function("() => document.querySelector('[data-testid=orders-table]')?.textContent.includes('501')")
    shoot(page, "trader-open-orders")
    orders.locator("tbody tr", has_text="501").get_by_role("button", name="Cancel").click()
    page.wait_for_function("() => document.querySelector('[data-testid=order-outcome]')?.textContent.includes('canceled')")
    page.wait_for_function("() => !document.querySelector('[data-testid=orders-table] tbody')")  # no working order left


def _ledger_ids(page) -> list[str]:
    table = page.get_by_test_id("ledger-table")
    table.wait_for()
    return table.locator("tbody tr td:last-child").all_inner_texts()


def test_a_tenant_admin_reviews_the_ledger_page_by_page_and_inspects_groups_and_metrics(
        console, page_as, users, shoot, tmp_path):
    api = stack.ApiClient(console, users["trader"].token)
    for i in range(7):  # enough rows for several pages of 5, whatever ran before
        r = api.call("POST", "/execute", {"strategy_id": "web_seed", "symbol": "SPY", "qty": "1",
                                          "side": "buy" if i % 2 == 0 else "sell"})
        assert r.status == 201, r.body
    admin_api = stack.ApiClient(console, users["tenant_admin"].token)
    everything = admin_api.call("GET", f"/tenants/{TENANT}/ledger?limit=500")
    assert everything.status == 200
    expected = [row["ledger_id"] for row in everything.body["items"]]
    assert len(expected) >= 7

    page = page_as(users["tenant_admin"])
    page.get_by_label("Rows per page", exact=True).select_option("5")
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_function("() => document.querySelectorAll('[data-testid=ledger-table] tbody tr').length === 5")
    seen: list[str] = []
    pages = 0
    while True:
        pages += 1
        page.wait_for_function(f"() => document.querySelector('[data-testid=ledger-page]')?.textContent === 'Page {pages}'")
        ids = _ledger_ids(page)
        assert 1 <= len(ids) <= 5
        seen += ids
        if pages == 2:
            shoot(page, "admin-ledger-page-2")
        next_button = page.get_by_role("button", name="Next page")
        if next_button.is_disabled():
            break
        next_button.click()
    assert pages >= 2
    assert len(seen) == len(set(seen)), "a row was shown on two pages"
    assert seen == expected, "pages walked newest first, every row once"

    with page.expect_download() as csv_download:
        page.get_by_role("button", name="Download CSV").click()
    path = tmp_path / "ledger.csv"
    csv_download.value.save_as(path)
    rows = list(csv.reader(io.StringIO(path.read_text())))
    assert len(rows) == len(expected) + 1  # the header and every row

    # a correction is appended (the row itself is immutable) and shows in the review
    page.get_by_label("Ledger id to correct", exact=True).fill(expected[-1])
    page.get_by_label("Reason", exact=True).fill("broker confirm arrived late")
    page.get_by_role("button", name="Append correction").click()
    page.get_by_test_id("admin-saved").wait_for()
    page.get_by_label("Status", exact=True).select_option("correction")
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_function(
        f"() => document.querySelector('[data-testid=ledger-table]')?.textContent.includes('corrects {expected[-1]}')")

    page.get_by_role("link", name="Metrics").click()
    page.get_by_test_id("metric-cards").wait_for()
    assert page.locator("main svg").count() >= 3
    shoot(page, "admin-metrics")

    page.get_by_role("link", name="Groups").click()
    page.get_by_test_id("groups-table").wait_for()
    page.get_by_test_id("groups-table").locator("tbody tr button").first.click()
    page.get_by_test_id("inspected-status").wait_for()
    assert page.get_by_test_id("inspected-status").inner_text() == "FILLED"
    trail = page.get_by_test_id("audit-trail").inner_text()
    assert "leg_1 SPY submitted" in trail and "leg_2 MSFT FILLED" in trail and "group FILLED" in trail, trail
    shoot(page, "admin-group-inspector")


def test_a_tenant_admin_halts_the_tenant_the_traders_next_trade_is_refused_and_the_audit_log_shows_it(
        page_as, users, shoot):
    admin = page_as(users["tenant_admin"])
    trader = page_as(users["trader"])
    admin.get_by_role("link", name="Trading state").click()
    admin.get_by_label("Halted: no new orders, no new group legs (rollbacks still run)").check()
    admin.get_by_role("button", name="Set trading state").click()
    admin.wait_for_function("() => document.querySelector('[data-testid=tenant-state]')?.textContent === 'halted'")
    shoot(admin, "admin-trading-state-halted")
    try:
        assert _place(trader, "SPY", "1") == "rejected"
        code = trader.get_by_test_id("rejection-code").inner_text()
        assert "HALT" in code or "KILL" in code, code
        shoot(trader, "trader-refused-while-halted")
    finally:
        admin.get_by_label("Active: trading as usual").check()
        admin.get_by_role("button", name="Set trading state").click()
        admin.wait_for_function("() => document.querySelector('[data-testid=tenant-state]')?.textContent === 'active'")
    assert _place(trader, "SPY", "1") == "placed", trader.get_by_test_id("verdict").inner_text()

    admin.get_by_role("link", name="Audit log").click()
    audit = admin.get_by_test_id("audit-table")
    audit.wait_for()
    text = audit.inner_text()
    assert text.count("risk.tenant_state.set") >= 2 and "halted" in text, text[:800]
    shoot(admin, "admin-audit-log")

    # members: an invitation by e-mail, then listed with its role
    admin.get_by_role("link", name="Members").click()
    email = f"invited-{users['trader'].uid[:6].lower()}@acme.example"
    admin.get_by_label("Email or uid", exact=True).fill(email)
    admin.get_by_label("Role", exact=True).select_option("auditor")
    admin.get_by_label("Invite (create the user)").check()
    admin.get_by_role("button", name="Add member").click()
    admin.get_by_test_id("admin-saved").wait_for()
    admin.wait_for_function(f"() => document.querySelector('[data-testid=members-table]')?.textContent.includes('{email}')")
    shoot(admin, "admin-members")

    # the daily reconciliation, run on demand (its status is what the page shows; breaks are listed)
    admin.get_by_role("link", name="Reconciliation").click()
    admin.get_by_role("button", name="Run reconciliation now").click()
    admin.get_by_test_id("recon-status").wait_for()
    assert admin.get_by_test_id("recon-status").inner_text().lower() in {"clean", "breaks", "incomplete"}
    shoot(admin, "admin-reconciliation")


_TOKEN_FROM_SESSION = """async () => {
  const db = await new Promise((ok, fail) => { const r = indexedDB.open('firebaseLocalStorageDb'); r.onsuccess = () => ok(r.result); r.onerror = fail; });
  const rows = await new Promise((ok, fail) => { const r = db.transaction('firebaseLocalStorage').objectStore('firebaseLocalStorage').getAll(); r.onsuccess = () => ok(r.result); r.onerror = fail; });
  return rows.map((row) => row.value && row.value.stsTokenManager && row.value.stsTokenManager.accessToken).find(Boolean);
}"""

_FORGE = """async ([url, method, token, body]) => {
  const r = await fetch(url, { method, headers: { 'Authorization': 'Bearer ' + token, 'Content-Type': 'application/json' },
                               body: body === null ? undefined : JSON.stringify(body) });
  return { status: r.status, body: await r.text() };
}"""

ADMIN_CONTROLS = ("Set trading state", "Save limits", "Add member", "Set role", "Set default account", "Suspend",
                  "Re-activate", "Append correction",
                  "Create account", "Run reconciliation now", "Place order", "Execute group", "Issue approval",
                  "Limits and state", "Save account limits", "Set account trading state")


def test_an_auditor_sees_no_admin_controls_and_forged_admin_calls_from_their_session_are_refused(
        console, page_as, users, shoot):
    page = page_as(users["auditor"])
    links = page.locator("#nav a").all_inner_texts()
    assert links == ["Ledger", "Groups", "Metrics", "Members", "Accounts", "Audit log", "Reconciliation"]
    page.get_by_test_id("ledger-table").wait_for()  # auditors read the ledger
    shoot(page, "auditor-ledger")
    for link in ("Members", "Accounts", "Audit log", "Reconciliation"):
        page.get_by_role("link", name=link).click()
        page.wait_for_function(
            "() => !document.querySelector('main').textContent.includes('Loading') && document.querySelector('main h1')")
        for control in ADMIN_CONTROLS:
            assert page.get_by_role("button", name=control).count() == 0, (link, control)
        assert page.get_by_role("radio").count() == 0, link
        assert page.get_by_test_id("api-error").count() == 0, (link, page.locator("main").inner_text()[:500])
        if link in ("Members", "Accounts"):
            assert page.get_by_text("Read-only").count() == 1, link
        if link == "Accounts":  # each account's own limits and status, read-only
            assert "Own limits" in page.get_by_test_id("accounts-table").inner_text()
        if link == "Audit log":
            assert "member.add" in page.get_by_test_id("audit-table").inner_text()  # the fixture's provisioning
            shoot(page, "auditor-audit-log")

    token = page.evaluate(_TOKEN_FROM_SESSION)
    assert token and token.count(".") == 2
    # the tenant kill switch and a role change through the API, from the console's own origin
    forged = page.evaluate(_FORGE, [console.console_url + f"/api/tenants/{TENANT}/trading-state", "PUT", token,
                                    {"state": "halted"}])
    assert forged["status"] == 403, forged
    forged = page.evaluate(_FORGE, [console.console_url + f"/api/tenants/{TENANT}/members/{users['auditor'].uid}/role",
                                    "PUT", token, {"role": "tenant_admin"}])
    assert forged["status"] == 403, forged
    assert json.loads(forged["body"])["error"]["code"]
    # the tenant's switch document written straight to Firestore with the auditor's token (rules)
    config_url = f"{console.documents_url}/tenants/{TENANT}/config/risk"
    forged = page.evaluate(_FORGE, [config_url, "PATCH", token, {"fields": {"kill_switch": {"booleanValue": True}}}])
    assert forged["status"] == 403, forged
    # nothing changed: the tenant still trades, and a fresh token of the auditor still says auditor
    reply, doc = stack.FirestoreRest(console, "owner").get(f"tenants/{TENANT}/config/risk")
    assert reply.status == 404 or not (doc or {}).get("kill_switch"), doc
    fresh = stack.AuthClient(console).sign_in(users["auditor"].email)
    payload = fresh.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["role"] == "auditor" and claims["tenant_id"] == TENANT
    # a screen typed by hand that is not the auditor's falls back to their first screen
    page.goto(console.console_url + "/#/trading")
    page.get_by_test_id("ledger-table").wait_for()
    assert page.get_by_role("radio").count() == 0


_UNLABELLED = """() => [...document.querySelectorAll('main input, main select, main button')]
  .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.textContent.trim())
  .map((el) => el.outerHTML.slice(0, 120))"""


def test_sign_in_works_from_the_keyboard_and_every_control_has_a_label(console, browser, users):
    context = browser.new_context(viewport={"width": 1180, "height": 760})
    try:
        page = context.new_page()
        page.goto(console.console_url + "/")
        email = page.get_by_label("Email", exact=True)
        email.wait_for()
        assert page.evaluate("() => document.activeElement.name") == "email"  # focus starts in the form
        page.keyboard.type(users["trader"].email)
        page.keyboard.press("Tab")
        page.keyboard.type(stack.PASSWORD)
        page.keyboard.press("Enter")
        page.get_by_test_id("who").wait_for()
        for screen in ("ticket", "orders", "group", "positions", "history", "tax", "taxtools"):
            page.goto(f"{console.console_url}/#/{screen}")
            page.wait_for_function("() => !document.querySelector('main').textContent.includes('Loading')")
            assert page.evaluate(_UNLABELLED) == [], screen
        # the ticket from the keyboard: Tab to the button, Enter submits
        page.goto(f"{console.console_url}/#/ticket")
        page.get_by_label("Quantity", exact=True).fill("1")
        page.get_by_label("Account (blank: your default)", exact=True).focus()
        page.keyboard.press("Tab")
        assert page.evaluate("() => document.activeElement.textContent") == "Place order"
        page.keyboard.press("Enter")
        page.get_by_test_id("verdict-status").wait_for()
        assert page.get_by_test_id("verdict-status").inner_text().lower() == "placed"
    finally:
        context.close()
