"""The console's second round of screens in headless Chromium against the full local stack (see conftest):

- the order ticket's bracket / OTO / OCO exits: a bracket that is placed, and one the venue cannot hold
  (bracket with time in force ioc) refused with its code ORDER_TYPE_NOT_SUPPORTED;
- metrics: estimated vs actual slippage and cost savings by day, by strategy and by asset class (inline SVG);
- per-account limits and trading state (admin only; the halted account's next trade is refused);
- the reconciliation report's cash section and cash breaks (a ``breaks`` report with only cash breaks
  never reads "0 breaks");
- the lot-method election and the 1099-B statement upload (a text/csv body) with its differences.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import pytest

from backend.tax.holding import resolve_tz, trade_date
from tests.browser.conftest import TENANT, stack
from tests.browser.test_console import _place

pytestmark = [pytest.mark.slow, pytest.mark.emulator, pytest.mark.timeout(300)]


def _execute(console, token, **body):
    reply = stack.ApiClient(console, token).call("POST", "/execute", {"qty": "1", "side": "buy", **body})
    assert reply.status == 201, reply.body
    return reply.body


def _trader_account(console, users) -> str:
    """The trader's account (made by the conftest's admin): the one they own."""
    admin = stack.ApiClient(console, users["tenant_admin"].token)
    reply = admin.call("GET", f"/tenants/{TENANT}/accounts?limit=100")
    assert reply.status == 200, reply.body
    owned = [a["account_id"] for a in reply.body["items"] if users["trader"].uid in a["owner_uids"]]
    assert len(owned) == 1, reply.body
    return owned[0]


def test_the_ticket_places_a_bracket_and_shows_the_coded_refusal_of_one_the_venue_cannot_hold(page_as, users, shoot):
    page = page_as(users["trader"])
    page.get_by_label("Order class", exact=True).select_option("bracket")
    page.get_by_label("Time in force", exact=True).select_option("gtc")
    page.get_by_label("Take-profit limit price", exact=True).fill("560.00")
    page.get_by_label("Stop-loss stop price", exact=True).fill("480.00")
    assert _place(page, "SPY", "1") == "placed", page.get_by_test_id("verdict").inner_text()
    legs = page.get_by_test_id("protective-legs").inner_text()
    assert legs == "Order class bracket: take profit limit 560.00, stop loss stop 480.00", legs

    # the same bracket with time in force ioc: the venue holds brackets day or gtc only
    page.get_by_label("Time in force", exact=True).select_option("ioc")
    assert _place(page, "SPY", "1") == "rejected", page.get_by_test_id("verdict").inner_text()
    assert page.get_by_test_id("rejection-code").inner_text() == "ORDER_TYPE_NOT_SUPPORTED"
    verdict = page.get_by_test_id("verdict").inner_text()
    assert "bracket with time_in_force ioc for EQUITY" in verdict, verdict
    shoot(page, "trader-ticket-order-class-refused")

    # an OCO without its stop loss is refused, naming the missing field
    page.get_by_label("Order class", exact=True).select_option("oco")
    page.get_by_label("Time in force", exact=True).select_option("gtc")
    page.get_by_label("Stop-loss stop price", exact=True).fill("")
    page.get_by_label("Side", exact=True).select_option("sell")
    page.get_by_role("button", name="Place order").click()
    page.wait_for_function("() => document.querySelector('#ticket-result').textContent.includes('is required for oco')")
    assert "stop_loss" in page.locator("#ticket-result").inner_text()


def _series_values(page, testid: str, label: str) -> dict[str, str]:
    """{series name: value text} of one row (by its label) of a grouped chart."""
    return page.evaluate("""([testid, label]) => {
      const svg = document.querySelector(`[data-testid=${testid}]`);
      const texts = [...svg.querySelectorAll('text')];
      const at = texts.findIndex((t) => t.textContent === label);
      if (at < 0) return null;
      const out = {};
      for (const t of texts.slice(at + 1)) {
        if (!t.dataset.series) break;
        out[t.dataset.series] = t.textContent;
      }
      return out;
    }""", [testid, label])


def _fx_trader_token(console, users) -> str:
    """A second trader with a FOREX account of their own (the first trader keeps exactly one account)."""
    auth = stack.AuthClient(console)
    run = users["trader"].uid[:6]
    fx = auth.create_user("trader", f"fx-trader-{run}@acme.example", {"tenant_id": TENANT, "role": "trader"})
    admin = stack.ApiClient(console, users["tenant_admin"].token)
    account = f"web-fx-{run}"
    for method, path, body in (
            ("POST", f"/tenants/{TENANT}/members", {"uid": fx.uid, "role": "trader"}),
            ("POST", f"/tenants/{TENANT}/accounts", {"account_id": account, "connection_id": "deployment",
                                                    "venue_account_id": f"book-{account}", "owner_uids": [fx.uid],
                                                    "asset_classes": ["FOREX"]}),
            ("PUT", f"/tenants/{TENANT}/members/{fx.uid}/default-account", {"account_id": account})):
        reply = admin.call(method, path, body)
        assert reply.status in (200, 201), (method, path, reply.status, reply.body)
    return auth.sign_in(fx.email)


def test_metrics_chart_estimated_vs_actual_slippage_and_cost_savings_by_day_strategy_and_class(
        console, page_as, users, shoot):
    token = users["trader"].token
    assert _execute(console, token, strategy_id="web_tca", symbol="SPY")["status"] == "placed"
    assert _execute(console, token, strategy_id="web_tca", symbol="AAPL")["status"] == "downgraded"
    # EUR/USD is wider than the threshold in this market: a FOREX downgrade with its own cost savings
    fx = _execute(console, _fx_trader_token(console, users), strategy_id="web_fx", symbol="EUR/USD",
                  asset_class="FOREX", qty="10000")
    assert fx["status"] == "downgraded", fx
    today = datetime.now(timezone.utc).date().isoformat()

    page = page_as(users["tenant_admin"])
    page.get_by_role("link", name="Metrics").click()
    page.get_by_test_id("chart-slippage-day").wait_for()
    day = _series_values(page, "chart-slippage-day", today)
    assert day and re.fullmatch(r"-?\d+\.\d{3}%", day["estimated (filled)"]) and re.fullmatch(r"-?\d+\.\d{3}%", day["actual"]), day
    strategy = _series_values(page, "chart-slippage-strategy", "web_tca")
    assert strategy and strategy["actual"] != "–", strategy
    savings = _series_values(page, "chart-savings-strategy", "web_tca")
    assert savings and float(savings["cost savings"]) > 0, savings  # the AAPL downgrade's spread cost avoided
    assert float(_series_values(page, "chart-savings-day", today)["cost savings"]) > 0
    assert page.locator("[data-testid=chart-slippage-day] rect[data-series=actual]").count() >= 1
    # by asset class (the API's by_asset_class): the trades were EQUITY; the old "not available" note is gone
    equity = _series_values(page, "chart-slippage-class", "EQUITY")
    assert equity and re.fullmatch(r"-?\d+\.\d{3}%", equity["estimated (filled)"]) and equity["actual"] != "–", equity
    assert float(_series_values(page, "chart-savings-class", "EQUITY")["cost savings"]) > 0
    forex = _series_values(page, "chart-savings-class", "FOREX")
    assert forex and float(forex["cost savings"]) > 0, forex  # counted in its own class, not EQUITY's
    assert _series_values(page, "chart-slippage-class", "FOREX") is not None
    assert page.get_by_test_id("asset-class-note").count() == 0
    page.evaluate("() => [...document.querySelectorAll('main h2')].find((x) => x.textContent === 'Slippage and cost savings')"
                  ".scrollIntoView({ block: 'start' })")
    shoot(page, "admin-metrics-slippage")
    page.evaluate("() => [...document.querySelectorAll('main h2')].find((x) => x.textContent === 'By asset class')"
                  ".scrollIntoView({ block: 'start' })")
    shoot(page, "admin-metrics-asset-class")


def test_an_admin_sets_an_accounts_limits_and_halts_it_the_traders_next_trade_is_refused(console, page_as, users, shoot):
    account = _trader_account(console, users)
    page = page_as(users["tenant_admin"])
    page.get_by_role("link", name="Accounts").click()
    page.get_by_test_id("accounts-table").wait_for()
    page.get_by_role("button", name=f"Limits and state of {account}").click()
    panel = page.get_by_test_id("account-risk")
    panel.wait_for()
    assert page.get_by_test_id("account-state").text_content() == "active"
    page.get_by_label("Account max daily trades", exact=True).fill("40")
    page.get_by_label("Account max position by class (CLASS=qty, …)", exact=True).fill("EQUITY=90")
    page.get_by_role("button", name="Save account limits").click()
    page.get_by_test_id("account-risk-saved").wait_for()
    limits = page.get_by_test_id("account-limits-table").inner_text()
    assert re.search(r"max_daily_trades\t40", limits) and '"EQUITY":"90"' in limits, limits
    page.wait_for_function(
        f"() => [...document.querySelectorAll('[data-testid=accounts-table] tbody tr')].some((tr) => "
        f"tr.textContent.includes('{account}') && tr.textContent.includes('40 trades/day') && tr.textContent.includes('EQUITY ≤ 90'))")
    # a field error keeps its field
    page.get_by_label("Account max daily trades", exact=True).fill("-1")
    page.get_by_role("button", name="Save account limits").click()
    page.get_by_test_id("api-error").wait_for()
    assert "max_daily_trades" in page.get_by_test_id("error-field").first.inner_text()

    page.get_by_label("Account halted").check()
    page.get_by_role("button", name="Set account trading state").click()
    page.wait_for_function("() => document.querySelector('[data-testid=account-state]')?.textContent === 'halted'")
    shoot(page, "admin-account-limits")
    try:
        refused = stack.ApiClient(console, users["trader"].token).call(
            "POST", "/execute", {"strategy_id": "web_halt", "symbol": "SPY", "qty": "1", "side": "buy"})
        assert refused.status == 400 or (refused.body or {}).get("status") == "rejected", refused.body
        assert "halt" in json.dumps(refused.body).lower(), refused.body
    finally:
        page.get_by_label("Account active").check()
        page.get_by_role("button", name="Set account trading state").click()
        page.wait_for_function("() => document.querySelector('[data-testid=account-state]')?.textContent === 'active'")
        page.get_by_label("Account max daily trades", exact=True).fill("")
        page.get_by_label("Account max position by class (CLASS=qty, …)", exact=True).fill("")
        page.get_by_role("button", name="Save account limits").click()
        page.wait_for_function("() => [...document.querySelectorAll('[data-testid=account-limits-table] tbody tr')]"
                               ".every((tr) => tr.children[1].textContent === '–')")  # no own limit left
    assert _execute(console, users["trader"].token, strategy_id="web_halt", symbol="SPY")["status"] == "placed"


_CASH_ONLY_REPORT = {  # the shape backend.risk.reconciliation.build_report writes: one cash break, no position break
    "tenant_id": TENANT, "day": "2026-12-04", "status": "breaks", "run_at": "2026-12-04T23:30:00+00:00",
    "accounts_checked": 1, "break_count": 0, "breaks": [], "cash_break_count": 1,
    "cash_breaks": [{"account_id": "acct-1", "venue_account_id": "book-1", "currency": "USD", "ledger": "-520.01",
                     "venue": "-521.01", "difference": "-1.00", "since": "2026-12-04T23:30:00+00:00"}],
    "accounts": [{"account_id": "acct-1", "venue_account_id": "book-1",
                  "cash": [{"currency": "USD", "ledger": "-520.01", "venue": "-521.01", "difference": "-1.00",
                            "ledger_fills": 1, "venue_fills": 1}]}],
    "cash_unavailable": [], "errors": [],
}


def test_the_reconciliation_report_shows_cash_per_account_and_a_cash_only_break_is_not_zero_breaks(
        console, page_as, users, shoot):
    page = page_as(users["tenant_admin"])
    page.get_by_role("link", name="Reconciliation").click()
    page.get_by_role("button", name="Run reconciliation now").click()
    page.get_by_test_id("recon-status").wait_for()
    status = page.get_by_test_id("recon-status").inner_text().lower()
    cash = page.get_by_test_id("recon-cash").inner_text()
    account = _trader_account(console, users)
    assert account in cash, cash  # every account has a cash line: amounts, or why they are unavailable
    counts = page.get_by_test_id("recon-counts").inner_text()
    assert re.search(r"\d+ position breaks? · \d+ cash breaks?", counts), counts
    if status == "incomplete":
        assert page.get_by_test_id("recon-cash-unavailable").count() + page.locator("main table").count() >= 1

    # a stored report of another day whose only breaks are cash breaks (served as the API stores it)
    page.route(re.compile(r".*/api/tenants/[^/]+/reconciliation\?day=2026-12-04$"),
               lambda route: route.fulfill(status=200, content_type="application/json", body=json.dumps(_CASH_ONLY_REPORT)))
    page.get_by_label("Day (UTC)", exact=True).fill("2026-12-04")
    page.get_by_role("button", name="Show report").click()
    page.wait_for_function("() => document.querySelector('[data-testid=recon-cash-breaks] tbody')")
    assert page.get_by_test_id("recon-status").inner_text().lower() == "breaks"
    counts = page.get_by_test_id("recon-counts").inner_text()
    assert "0 breaks" not in counts and "1 cash break" in counts, counts
    assert page.get_by_test_id("recon-breaks").inner_text() == "No position breaks."
    breaks = page.get_by_test_id("recon-cash-breaks").inner_text()
    assert "acct-1" in breaks and "-1.00" in breaks and "USD" in breaks, breaks
    assert "-521.01" in page.get_by_test_id("recon-cash").inner_text()
    shoot(page, "admin-reconciliation-cash-breaks")


def test_a_run_answering_after_the_admin_asked_for_another_day_does_not_replace_that_days_report(
        console, page_as, users):
    # found by the full suite under load: "Run reconciliation now" answered after "Show report" of
    # another day, and the run's report replaced the day the admin had asked for
    page = page_as(users["tenant_admin"])
    page.get_by_role("link", name="Reconciliation").click()
    page.wait_for_function("() => !document.querySelector('main').textContent.includes('Loading…')")
    held = []
    page.route(re.compile(r".*/api/tenants/[^/]+/reconciliation$"),
               lambda route: held.append(route) if route.request.method == "POST" else route.continue_())
    page.route(re.compile(r".*/api/tenants/[^/]+/reconciliation\?day=2026-12-04$"),
               lambda route: route.fulfill(status=200, content_type="application/json", body=json.dumps(_CASH_ONLY_REPORT)))
    page.get_by_role("button", name="Run reconciliation now").click()
    page.wait_for_function("() => document.querySelector('main').textContent.includes('Reconciling…')")
    page.get_by_label("Day (UTC)", exact=True).fill("2026-12-04")
    page.get_by_role("button", name="Show report").click()
    page.wait_for_function("() => document.querySelector('[data-testid=recon-cash-breaks] tbody')")
    assert len(held) == 1
    clean = {**_CASH_ONLY_REPORT, "day": "2026-12-07", "status": "clean", "cash_break_count": 0, "cash_breaks": [],
             "accounts": [{"account_id": "acct-1", "venue_account_id": "book-1", "cash": []}]}
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/reconciliation")):
        held[0].fulfill(status=200, content_type="application/json", body=json.dumps(clean))
    page.evaluate("() => new Promise((done) => setTimeout(done, 50))")  # the late answer's handler has run
    assert page.get_by_test_id("recon-status").inner_text().lower() == "breaks"
    assert "1 cash break" in page.get_by_test_id("recon-counts").inner_text()
    assert "acct-1" in page.get_by_test_id("recon-cash-breaks").inner_text()


def test_a_trader_elects_a_lot_method_and_reconciles_a_1099b_statement(console, page_as, users, shoot):
    token = users["trader"].token
    _execute(console, token, strategy_id="web_tax", symbol="SPY", qty="2")
    _execute(console, token, strategy_id="web_tax", symbol="SPY", side="sell")
    page = page_as(users["trader"])
    page.get_by_role("link", name="Tax election & 1099-B").click()

    page.get_by_label("Lot method", exact=True).select_option("HIFO")
    page.get_by_role("button", name="Record election").click()
    page.get_by_test_id("election-recorded").wait_for()
    assert page.get_by_test_id("election-method").inner_text() == "HIFO"
    # forward only: a time in the past is refused with its field
    page.get_by_label("Lot method", exact=True).select_option("FIFO")
    page.get_by_label("Effective from (blank: now)", exact=True).fill("2020-01-02T10:00")
    page.get_by_role("button", name="Record election").click()
    page.get_by_test_id("api-error").wait_for()
    assert page.get_by_test_id("error-field").first.inner_text() == "effective_at"

    # the sale's date on a 1099-B is its trade date in the tax time zone (New York), not UTC's date:
    # between 00:00 and 05:00 UTC the two differ
    today = trade_date(datetime.now(timezone.utc), resolve_tz(None)).isoformat()
    statement = ("description,date_sold,proceeds,cost_basis\n"
                 f"1 SPY,{today},1.00,\n"  # our sale, with a wrong amount on the statement
                 f"3 ZZZQ,{today},30.00,29.00\n")  # a sale we never made
    page.get_by_label("Statement CSV file", exact=True).set_input_files(
        files=[{"name": "1099b.csv", "mimeType": "text/csv", "buffer": statement.encode()}])
    page.get_by_label("Statement tax year", exact=True).fill(today[:4])
    page.get_by_role("button", name="Reconcile statement").click()
    page.get_by_test_id("statement-result").wait_for()
    assert page.get_by_test_id("statement-rows").inner_text() == "2"
    assert page.get_by_test_id("statement-matched").inner_text() == "1"
    rows = page.get_by_test_id("statement-rows-table").inner_text()
    assert "NOT_IN_LEDGER" in rows and "PROCEEDS_DIFFER" in rows and "DIFFERENT" in rows, rows
    page.evaluate("() => [...document.querySelectorAll('main h2')].find((x) => x.textContent.startsWith('1099-B'))"
                  ".scrollIntoView({ block: 'start' })")
    shoot(page, "trader-tax-statement")

    # a statement without its required columns names the problem
    page.get_by_label("Statement CSV file", exact=True).set_input_files(
        files=[{"name": "bad.csv", "mimeType": "text/csv", "buffer": b"symbol,quantity\nSPY,1\n"}])
    page.get_by_role("button", name="Reconcile statement").click()
    refusal = page.get_by_test_id("api-error").filter(has_text="csv")
    refusal.wait_for()
    assert refusal.inner_text().startswith("400"), refusal.inner_text()
