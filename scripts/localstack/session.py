"""The scripted session of the local stack: every step an app would take, each with an expected
outcome, then ready-to-use ID tokens and a curl line for every API route. The demo tenant's venues
and account documents are built by ``scripts/localstack/demo_tenant.py``.

Users with custom claims in the Auth emulator (two traders, a tenant admin, a risk manager and an
auditor of ``acme_corp``). Then the tenant's accounts, written with admin credentials (the
emulator's ``owner`` token, as the admin API or the Admin SDK would): broker connections
(``tenants/acme_corp/broker_connections``: ``demo_paper`` — the ``paper`` venue — by default, or
``demo_alpaca`` — ``alpaca_broker`` on the local Alpaca-compatible server — with ``--alpaca``, and
``demo_oanda`` — ``oanda`` on the local OANDA v20 server — for FOREX/COMMODITY), each with a
``credentials_ref`` (``env:NAME``, the value only in the functions' environment, never in
Firestore); one account per trader (``trader_main``, ``trader2_main``) plus the first trader's FX
account ``trader_fx``; member documents whose ``default_account_id`` is the trader's account. The
functions run with strict accounts (the deployed default: ``EXEC_ACCOUNTS`` unset), so only these
documents count.

Through the API with the first trader's ID token: a placed trade, a downgraded one (wide spread), a
rejected one (position limit), a replay with the same Idempotency-Key, a multi-leg pair approved by
the risk manager and its read-back, a signal, the history page. Two users, two accounts: the first
trader buys SPY without naming an account (their default), the second sells SPY in theirs, the
second naming the first's account and an invented account id are refused (``ACCOUNT_NOT_OWNED``),
EUR/USD goes to the OANDA account; then the ledger rows (``broker_account_id``,
``venue_account_id``), the venue's positions per account (read from the local servers) and the
admin's reconciliation run (ledger = venue, per account). Through the Firestore REST API with the
trader's token (rules apply): an intent document executed by the Firestore trigger, plus writes and
reads the rules must refuse; the sweeper invoked as Cloud Scheduler would; the tenant ledger read
with the admin's token.
"""
from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Callable

from scripts.localstack.clients import (
    PASSWORD,
    ApiClient,
    AuthClient,
    FirestoreRest,
    User,
    invoke_scheduled,
    wait_for,
)
from scripts.localstack.demo_tenant import (
    ALPACA_CONNECTION,
    ALPACA_CREDENTIALS_ENV,
    FX_ACCOUNT,
    OANDA_CONNECTION,
    OANDA_CREDENTIALS_ENV,
    PAPER_CONNECTION,
    TENANT,
    TRADER2_ACCOUNT,
    TRADER_ACCOUNT,
    DemoVenues,
    paper_connection,
    trader_account,
    write_account,
    write_connection,
    write_member,
)
from scripts.localstack.suite import EmulatorSuite
from tests.support.firestore_rest import encode_fields

# ----------------------------------------------------------------- request bodies (session and curl)

FINAL_INTENT_STATUSES = {"placed", "downgraded", "rejected", "dry_run"}


def _account(account: str | None) -> dict[str, str]:
    """The ``broker_account_id`` field, or nothing (the caller's default account)."""
    return {} if account is None else {"broker_account_id": account}


def execute_body(symbol: str = "SPY", side: str = "buy", qty: str = "10", account: str | None = TRADER_ACCOUNT,
                 **extra: Any) -> dict[str, Any]:
    return {"strategy_id": "demo_momentum", **_account(account), "symbol": symbol, "side": side, "qty": qty, **extra}


def pair_body(decision_id: str, account: str | None = TRADER_ACCOUNT) -> dict[str, Any]:
    return {"strategy_id": "pairs_demo", **_account(account),
            "legs": [{"leg_id": "long_spy", "symbol": "SPY", "direction": 1, "units": 10, "asset_class": "EQUITY"},
                     {"leg_id": "short_msft", "symbol": "MSFT", "direction": -1, "units": 5, "asset_class": "EQUITY"}],
            "rpm_output": {"decision_id": decision_id, "approved": True, "expires_at": "2099-01-01T00:00:00+00:00",
                           "approved_legs": {"long_spy": 10, "short_msft": 5}},
            "max_group_slippage_pips": 50, "allow_partial_fills": False}


def approval_body(decision_id: str, for_uid: str) -> dict[str, Any]:
    """What a risk manager sends to POST /risk/approvals for ``pair_body``'s legs."""
    return {"decision_id": decision_id, "for_uid": for_uid, "expires_at": "2099-01-01T00:00:00+00:00",
            "legs": [{"leg_id": "long_spy", "symbol": "SPY", "direction": 1, "max_units": "10"},
                     {"leg_id": "short_msft", "symbol": "MSFT", "direction": -1, "max_units": "5"}]}


def signal_body(account: str | None = TRADER_ACCOUNT) -> dict[str, Any]:
    return {"strategy_id": "demo_signals", **_account(account), "signal_type": "BUY", "symbol": "SPY",
            "qty": "2", "confidence": 0.8, "reasoning": "breakout",
            "market_data": {"price": 520.0, "bid": 519.99, "ask": 520.01}}


def intent_document(uid: str, symbol: str = "MSFT", qty: str = "3",
                    account: str | None = TRADER_ACCOUNT) -> dict[str, Any]:
    """The document an app writes to tenants/<t>/order_intents/<id> (the shape firestore.rules accept;
    without ``account`` the trigger binds the member's default account)."""
    return {"uid": uid, "status": "new", "kind": "single",
            "intent": {"strategy_id": "app_client", **_account(account), "symbol": symbol, "side": "buy", "qty": qty}}


# ----------------------------------------------------------------- the session


@dataclass
class Session:
    """``venues``: the run's local venue servers (``DemoVenues``); None: paper accounts only, no FX
    account. ``broker``: the venue name the traders' main accounts answer with (from ``venues``)."""

    suite: EmulatorSuite
    broker: str = "paper"
    out: Callable[[str], None] = print
    results: list[tuple[str, bool, str]] = field(default_factory=list)
    venues: DemoVenues | None = None
    trader: User | None = None
    trader2: User | None = None
    admin: User | None = None
    risk: User | None = None
    auditor: User | None = None
    group_id: str | None = None
    intent_id: str | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    accounts: dict[str, Any] = field(default_factory=dict)  # account id → Account, as written

    def __post_init__(self) -> None:
        if self.venues is not None:
            self.broker = self.venues.broker

    def check(self, label: str, ok: bool, detail: str) -> bool:
        self.results.append((label, ok, detail))
        self.out(f"  {'ok  ' if ok else 'FAIL'}  {label:52} {detail}")
        return ok

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(ok for _, ok, _ in self.results)

    def run(self) -> bool:
        auth = AuthClient(self.suite)
        self.trader = auth.create_user("trader", "trader@acme.example", {"tenant_id": TENANT, "role": "trader"})
        self.trader2 = auth.create_user("trader2", "trader2@acme.example", {"tenant_id": TENANT, "role": "trader"})
        self.admin = auth.create_user("admin", "admin@acme.example", {"tenant_id": TENANT, "role": "tenant_admin"})
        self.risk = auth.create_user("risk", "risk@acme.example", {"tenant_id": TENANT, "role": "risk_manager"})
        self.auditor = auth.create_user("auditor", "auditor@acme.example", {"tenant_id": TENANT, "role": "auditor"})
        self.out("Users (Auth emulator, custom claims in the ID token):")
        for user in (self.trader, self.trader2, self.admin, self.risk, self.auditor):
            self.out(f"  {user.name:7} {user.email:22} uid={user.uid}  {json.dumps(user.claims)}")
        self.provision()
        self.api_steps()
        self.accounts_steps()
        self.firestore_steps()
        self.scheduler_steps()
        self.ledger()
        return self.ok

    # ---- the tenant's accounts, written by an admin ------------------------------------------------
    def provision(self) -> None:
        """Connections, one account per trader (+ the FX account), member documents with defaults."""
        from backend.domain.accounts import BrokerConnection

        assert self.trader is not None and self.trader2 is not None
        admin = FirestoreRest(self.suite, "owner")  # the emulator's admin credentials (rules bypassed)
        at = datetime.now(timezone.utc)
        venues = self.venues or DemoVenues()
        self.out(f"\nTenant {TENANT}'s accounts, written with admin credentials (strict accounts: only admin-written "
                 "documents count):")
        if venues.alpaca is not None:
            main = BrokerConnection(connection_id=ALPACA_CONNECTION, venue="alpaca_broker", environment="sandbox",
                                    base_url=venues.alpaca.url, credentials_ref=f"env:{ALPACA_CREDENTIALS_ENV}",
                                    created_at=at, updated_at=at)
        else:
            main = paper_connection(at)
        connections = [main]
        if venues.oanda is not None:
            connections.append(BrokerConnection(
                connection_id=OANDA_CONNECTION, venue="oanda", environment="paper", base_url=venues.oanda.url,
                credentials_ref=f"env:{OANDA_CREDENTIALS_ENV}", created_at=at, updated_at=at))
        for connection in connections:
            r = write_connection(admin, connection)
            ref = connection.credentials_ref.text if connection.credentials_ref is not None else "no credentials"
            self.check(f"broker_connections/{connection.connection_id}", r.status == 200,
                       f"{r.status} {connection.venue.value} {connection.environment.value} "
                       f"{connection.base_url or '(simulated in the functions)'} {ref}")
        wanted = [(self.trader, TRADER_ACCOUNT, main), (self.trader2, TRADER2_ACCOUNT, main)]
        if venues.oanda is not None:
            wanted.append((self.trader, FX_ACCOUNT, connections[1]))
        for user, account_id, connection in wanted:
            if connection.venue.value == "alpaca_broker":
                venue_account_id = venues.alpaca.open_account()  # a Broker API account (UUID) at the venue
            elif connection.venue.value == "oanda":
                venue_account_id = venues.oanda.account_id
            else:
                venue_account_id = f"book-{account_id}"  # a paper book of the connection's simulated venue
            account = trader_account(account_id, user, connection, venue_account_id, at)
            r = write_account(admin, account)
            self.accounts[account_id] = account
            self.check(f"accounts/{account_id}", r.status == 200,
                       f"{r.status} owner {user.name}, {connection.connection_id} venue account {venue_account_id}, "
                       f"{'/'.join(sorted(c.value for c in account.asset_classes))}")
        for user, account_id in ((self.trader, TRADER_ACCOUNT), (self.trader2, TRADER2_ACCOUNT)):
            r = write_member(admin, user, account_id, at)
            self.check(f"members/<{user.name}>", r.status == 200, f"{r.status} default_account_id={account_id}")
        r, rows = admin.list(f"tenants/{TENANT}/broker_connections")
        stored = json.dumps([row for _, row in rows], default=str)
        leaked = [v for v in venues.secret_values() if v in stored]
        self.check("no credential in Firestore (references only)", r.status == 200 and not leaked and bool(rows),
                   f"{r.status} {len(rows)} connection documents; the values live in the functions' env only")

    # ---- through the HTTP API -----------------------------------------------------------------
    def api_steps(self) -> None:
        assert self.trader is not None
        api = ApiClient(self.suite, self.trader.token)
        key = f"demo-{self.run_id}-buy-spy"
        self.out(f"\nThrough the HTTP API ({self.suite.api_url}), trader's token:")

        r = api.call("GET", "/healthz", token=None)
        self.check("GET /healthz (no token)", r.status == 200 and r.get("status") == "ok", f"{r.status} {r.body}")

        r = api.call("POST", "/execute", execute_body("SPY", qty="10"), headers={"Idempotency-Key": key})
        first = r
        self.check("POST /execute buy 10 SPY (tight spread)",
                   r.status == 201 and r.get("status") == "placed" and r.get("broker") == self.broker,
                   f"{r.status} {r.get('status')} {_fill(r.body)}")

        r = api.call("POST", "/execute", execute_body("AAPL", qty="5"))
        self.check("POST /execute buy 5 AAPL (spread 0.26% > 0.10%)",
                   r.status == 201 and r.get("status") == "downgraded",
                   f"{r.status} {r.get('status')}: {r.get('reason')}")

        r = api.call("POST", "/execute", execute_body("SPY", qty="5000"))
        code = ((r.get("rejection") or {}).get("code")) if isinstance(r.get("rejection"), dict) else None
        self.check("POST /execute buy 5000 SPY (over the position limit)",
                   r.status == 201 and r.get("status") == "rejected" and code == "POSITION_LIMIT",
                   f"{r.status} {r.get('status')}: {r.get('reason')}")

        r = api.call("POST", "/execute", execute_body("SPY", qty="10"), headers={"Idempotency-Key": key})
        self.check("POST /execute the first again, same Idempotency-Key",
                   r.status == 200 and r.headers.get("Idempotent-Replayed") == "true" and r.get("replayed") is True
                   and first.get("broker_order_id") is not None
                   and r.get("broker_order_id") == first.get("broker_order_id"),
                   f"{r.status} {r.get('status')} replayed, same order {str(r.get('broker_order_id'))[:8]}…")

        # the risk manager issues the approval the group references (a trader cannot approve themselves)
        r = ApiClient(self.suite, self.risk.token).call("POST", "/risk/approvals", approval_body(
            f"rpm-{self.run_id}", self.trader.uid))
        self.check("POST /risk/approvals by the risk manager, for the trader", r.status == 201,
                   f"{r.status} decision {r.get('decision_id')}")
        r = api.call("POST", "/execute/multi-leg", pair_body(f"rpm-{self.run_id}"),
                     headers={"Idempotency-Key": f"demo-{self.run_id}-pair"})
        legs = r.get("legs") or []
        self.group_id = r.get("group_id")
        self.check("POST /execute/multi-leg long SPY / short MSFT",
                   r.status == 201 and r.get("status") == "FILLED" and [leg.get("status") for leg in legs] == ["FILLED"] * 2,
                   f"{r.status} {r.get('status')} " + ", ".join(
                       f"{leg.get('symbol')} {leg.get('direction'):+d}×{leg.get('filled_units')}@{leg.get('fill_price')}"
                       for leg in legs if isinstance(leg.get("direction"), int)))

        r = api.call("GET", f"/groups/{self.group_id}")
        self.check("GET /groups/<group_id>", r.status == 200 and r.get("status") == "FILLED",
                   f"{r.status} {r.get('status')} rollback={r.get('rollback_executed')}")

        r = api.call("POST", "/signals", signal_body())
        execution = r.get("execution") or {}
        self.check("POST /signals BUY 2 SPY", r.status == 201 and r.get("executed") is True
                   and execution.get("status") == "placed", f"{r.status} executed={r.get('executed')} "
                   f"{execution.get('status')}")

        r = api.call("GET", "/portfolio/history?limit=10")
        items = r.get("items") or []
        self.check("GET /portfolio/history", r.status == 200 and len(items) >= 2,
                   f"{r.status} {len(items)} items, newest {items[0].get('symbol') if items else '-'}")

        r = api.call("POST", "/execute", execute_body("SPY"), token="not-a-token")
        self.check("POST /execute with a bad token", r.status == 401, f"{r.status} {(r.get('error') or {}).get('code')}")

    # ---- two users, two accounts ----------------------------------------------------------------------
    def accounts_steps(self) -> None:
        """Two traders' trades land in their own accounts: the ledger rows name the account and the
        venue's account, each venue account holds exactly its owner's position, and the admin's
        reconciliation finds ledger = venue for every account."""
        from backend.risk.reconciliation import ledger_net_positions, position_key

        assert self.trader is not None and self.trader2 is not None and self.admin is not None
        api1, api2 = ApiClient(self.suite, self.trader.token), ApiClient(self.suite, self.trader2.token)
        self.out(f"\nTwo users, two accounts ({TRADER_ACCOUNT} of trader, {TRADER2_ACCOUNT} of trader2):")
        placed: list[str] = []

        def trade(api: ApiClient, label: str, body: dict[str, Any], broker: str) -> None:
            r = api.call("POST", "/execute", body)
            if r.get("intent_id"):
                placed.append(r.get("intent_id"))
            self.check(label, r.status == 201 and r.get("status") == "placed" and r.get("broker") == broker,
                       f"{r.status} {r.get('status')} via {r.get('broker')} {_fill(r.body)}")

        trade(api1, "trader: buy 6 SPY, no account named (default)", execute_body("SPY", qty="6", account=None),
              self.broker)
        trade(api2, f"trader2: sell 4 SPY in {TRADER2_ACCOUNT}", execute_body("SPY", side="sell", qty="4",
                                                                                account=TRADER2_ACCOUNT), self.broker)
        for label, account in ((f"trader2 names {TRADER_ACCOUNT} (trader's)", TRADER_ACCOUNT),
                               ("trader2 names an invented account", "acct0")):
            r = api2.call("POST", "/execute", execute_body("SPY", qty="1", account=account))
            error = r.get("error") or {}
            self.check(label, r.status == 403 and error.get("code") == "ACCOUNT_NOT_OWNED"
                       and error.get("field") == "broker_account_id",
                       f"{r.status} {error.get('code')} field={error.get('field')} (nothing written, nothing sent)")
        fx = self.accounts.get(FX_ACCOUNT)
        if fx is not None:
            trade(api1, f"trader: buy 50 GBP/USD in {FX_ACCOUNT}",
                  execute_body("GBP/USD", qty="50", account=FX_ACCOUNT, asset_class="FOREX"), "oanda")

        # the ledger, read with the admin's token: every row names the account and the venue's account
        r, rows = FirestoreRest(self.suite, self.admin.token).list(f"tenants/{TENANT}/ledger_trades")
        mine = [row for _, row in rows if row.get("intent_id") in placed]
        self.out(f"  ledger rows of these trades (tenants/{TENANT}/ledger_trades):")
        for row in mine:
            self.out(f"    {str(row.get('broker_account_id')):13} venue account {str(row.get('venue_account_id')):38} "
                     f"{str(row.get('side')):4} {str(row.get('filled_qty')):>8} {str(row.get('symbol')):8} "
                     f"{row.get('status')}")
        rows_ok = len(mine) == len(placed) and all(
            row.get("venue_account_id") == getattr(self.accounts.get(row.get("broker_account_id")),
                                                  "venue_account_id", None) for row in mine)
        self.check("ledger rows carry broker_account_id + venue_account_id", r.status == 200 and rows_ok,
                   f"{r.status} {len(mine)}/{len(placed)} rows, each with its account's venue account id")

        # per account: the ledger's net position and the venue's (read from the local servers)
        ledger = ledger_net_positions([row for _, row in rows])
        shown = [(TRADER_ACCOUNT, "SPY"), (TRADER2_ACCOUNT, "SPY")] + ([(FX_ACCOUNT, "GBP/USD")] if fx else [])
        self.out(f"  {'account':13} {'owner':8} {'venue':14} {'venue account':38} {'symbol':8} {'ledger':>8} "
                 f"{'venue':>8}")
        agree = True
        for account_id, symbol in shown:
            account = self.accounts[account_id]
            owner = "trader" if self.trader.uid in account.owner_uids else "trader2"
            net = ledger.get(account_id, {}).get(position_key(symbol), Decimal(0))
            venue_qty = self._venue_position(account, symbol)
            agree = agree and (venue_qty is None or venue_qty == net)
            self.out(f"  {account_id:13} {owner:8} {account.connection_id:14} {account.venue_account_id:38} "
                     f"{symbol:8} {_signed(net):>8} {'(inside)' if venue_qty is None else _signed(venue_qty):>8}")
        self.check("each venue account holds its owner's position", agree and bool(ledger.get(TRADER2_ACCOUNT)),
                   "ledger = venue per account" + ("" if self.venues and self.venues.alpaca else
                                                   "; the paper venue is read by the reconciliation below"))

        r = ApiClient(self.suite, self.admin.token).call("POST", f"/tenants/{TENANT}/reconciliation")
        ours = set(self.accounts)
        breaks = [b for b in (r.get("breaks") or []) if b.get("account_id") in ours]
        errors = [e for e in (r.get("errors") or []) if e.get("account_id") in ours]
        self.check(f"POST /tenants/{TENANT}/reconciliation (admin)", r.status == 200 and not breaks and not errors,
                   f"{r.status} {r.get('accounts_checked')} accounts checked, {len(breaks)} breaks and "
                   f"{len(errors)} errors in {', '.join(sorted(ours))}"
                   + (f": {breaks or errors}" if breaks or errors else ""))

    def _venue_position(self, account: Any, symbol: str) -> Decimal | None:
        """The venue's net position of ``account`` read from the local server; None for the paper
        venue (it lives inside the functions)."""
        venues = self.venues
        if venues is None:
            return None
        if account.connection_id == ALPACA_CONNECTION and venues.alpaca is not None:
            return venues.alpaca.venue.net_position(symbol, account_id=account.venue_account_id)
        if account.connection_id == OANDA_CONNECTION and venues.oanda is not None:
            return venues.oanda.venue.net_position(symbol)
        return None

    # ---- through Firestore, as the app would ----------------------------------------------------
    def firestore_steps(self) -> None:
        assert self.trader is not None and self.admin is not None
        fs = FirestoreRest(self.suite, self.trader.token)
        self.intent_id = f"app-{self.run_id}-1"
        path = f"tenants/{TENANT}/order_intents/{self.intent_id}"
        self.out("\nThrough Firestore (REST, trader's token, firestore.rules enforced), the trigger executes:")
        r = fs.create(f"tenants/{TENANT}/order_intents", self.intent_id, intent_document(self.trader.uid))
        self.check(f"create {path}", r.status == 200, f"{r.status} status=new, buy 3 MSFT")
        started = time.monotonic()
        _, doc = wait_for(lambda: fs.get(path), lambda v: (v[1] or {}).get("status") in FINAL_INTENT_STATUSES, 60)
        doc = doc or {}
        result = doc.get("result") or {}
        self.check("on_order_intent_created → result on the document",
                   doc.get("status") == "placed" and result.get("status") == "placed"
                   and bool(doc.get("broker_order_id")),
                   f"status={doc.get('status')} in {time.monotonic() - started:.1f} s {_fill(result)}")

        other = fs.create("tenants/globex/order_intents", f"app-{self.run_id}-x", intent_document(self.trader.uid))
        self.check("create an intent in another tenant (globex)", other.status == 403,
                   f"{other.status} {(other.get('error') or {}).get('status')} (rules)")
        forged = dict(intent_document(self.trader.uid), status="placed")
        r = fs.create(f"tenants/{TENANT}/order_intents", f"app-{self.run_id}-forged", forged)
        self.check("create an intent with a forged status", r.status == 403,
                   f"{r.status} {(r.get('error') or {}).get('status')} (rules)")
        r, _ = fs.list(f"tenants/{TENANT}/ledger_trades")
        self.check("trader lists the tenant ledger", r.status == 403,
                   f"{r.status} {(r.get('error') or {}).get('status')} (rules: tenant admins only)")

    # ---- the scheduler ------------------------------------------------------------------------------
    def scheduler_steps(self) -> None:
        self.out("\nThe scheduled sweeper, invoked as Cloud Scheduler would:")
        before = len([e for e in self.suite.function_logs() if e.get("event") == "exec.sweep"])
        r = invoke_scheduled(self.suite)
        sweeps = wait_for(lambda: [e for e in self.suite.function_logs() if e.get("event") == "exec.sweep"],
                          lambda v: len(v) > before, 10)
        last = sweeps[-1] if len(sweeps) > before else {}
        self.check("POST sweep_stuck_work-0 (X-CloudScheduler-ScheduleTime)",
                   r.status == 200 and bool(last) and not last.get("errors"),
                   f"{r.status} logged exec.sweep groups_found={last.get('groups_found')} "
                   f"intents_found={last.get('intents_found')} working_found={last.get('working_found')}")

    # ---- the ledger -------------------------------------------------------------------------------
    def ledger(self) -> None:
        assert self.admin is not None
        r, rows = FirestoreRest(self.suite, self.admin.token).list(f"tenants/{TENANT}/ledger_trades")
        statuses = sorted({row.get("status") for _, row in rows})
        self.out("")
        self.check("tenant admin lists the tenant ledger",
                   r.status == 200 and {"placed", "downgraded", "rejected"} <= set(statuses)
                   and any(self.intent_id and row.get("intent_id") == self.intent_id for _, row in rows),
                   f"{r.status} {len(rows)} rows: {', '.join(str(s) for s in statuses)}")
        self.out(f"\nTenant ledger tenants/{TENANT}/ledger_trades (read with the admin's token):")
        self.out(f"  {'time':8} {'account':13} {'symbol':7} {'side':4} {'qty':>10} {'status':12} {'price':>10} "
                 f"{'broker':13}  {'intent / trade':34} reason")
        for trade_id, row in sorted(rows, key=lambda item: (str(item[1].get("created_at")), item[0])):
            created = str(row.get("created_at") or "")[11:19]
            reason = row.get("reason_code") or row.get("reason") or ""
            self.out(f"  {created:8} {str(row.get('broker_account_id') or '-'):13} {str(row.get('symbol')):7} "
                     f"{str(row.get('side')):4} {str(row.get('qty')):>10} "
                     f"{str(row.get('status')):12} {str(row.get('filled_avg_price') or '-'):>10} "
                     f"{str(row.get('broker') or '-'):13}  {trade_id[:34]:34} {reason}")


def _signed(qty: Decimal) -> str:
    return f"{qty.normalize():+f}" if qty else "0"


def _fill(body: Any) -> str:
    if not isinstance(body, dict) or body.get("status") != "placed":
        return ""
    return f"order={str(body.get('broker_order_id'))[:8]}… filled {body.get('filled_qty')}@{body.get('filled_avg_price')}"


# ----------------------------------------------------------------- tokens and curl examples

POST_EXAMPLES: dict[str, Callable[[], Any]] = {
    "/execute": lambda: execute_body("SPY", qty="1"),
    "/execute/multi-leg": lambda: pair_body("rpm-curl-1"),
    "/signals": signal_body,
    "/tenants/{tenant_id}/reconciliation": lambda: None,  # takes no body: ledger vs venue per account, now
}


def _query_examples() -> dict[str, str]:
    today = datetime.now(timezone.utc).date()
    return {"/portfolio/history": "?limit=5", "/portfolio/tax-lots/export": f"?year={today.year}",
            "/tenants/{tenant_id}/ledger": "?limit=20", "/tenants/{tenant_id}/metrics": f"?from={today}&to={today}"}


def _api_routes() -> list[tuple[str, str, bool]]:
    """(method, path, needs a token) for every route of the API, from the API's own table."""
    try:
        from backend.api.app import ROUTES

        return [(r.method, r.name, r.auth) for r in ROUTES]
    except Exception:  # noqa: BLE001 - the examples are a convenience; the fixed list is the fallback
        return [("POST", "/execute", True), ("POST", "/execute/multi-leg", True), ("POST", "/signals", True),
                ("GET", "/groups/<group_id>", True), ("GET", "/portfolio/history", True),
                ("GET", "/healthz", False), ("GET", "/openapi.json", False)]


def _q(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def curl_examples(suite: EmulatorSuite, session: Session) -> list[str]:
    lines = []
    main = session.accounts.get(TRADER_ACCOUNT)
    values = {"group_id": session.group_id or "GROUP_ID", "tenant_id": TENANT, "account_id": TRADER_ACCOUNT,
              "uid": session.trader.uid if session.trader is not None else "UID",
              "connection_id": main.connection_id if main is not None else PAPER_CONNECTION,
              "intent_id": session.intent_id or "INTENT_ID"}
    queries = _query_examples()
    for method, route, needs_token in _api_routes():
        path = re.sub(r"<(\w+)>|\{(\w+)\}", lambda m: values.get(m.group(1) or m.group(2), "ID"), route)
        path += queries.get(route, "") if method == "GET" else ""
        admin = route.startswith("/tenants/")
        parts = ["curl -s"]
        if method != "GET":
            parts.append(f"-X {method}")
        parts.append(f'"$API{path}"')
        if needs_token:
            parts.append(f'-H "Authorization: Bearer ${"ADMIN_TOKEN" if admin else "TRADER_TOKEN"}"')
        if method == "POST":
            body = POST_EXAMPLES.get(route, lambda: {})()
            if body is not None:
                parts.append("-H 'Content-Type: application/json'")
            if route.startswith("/execute"):
                parts.append(f"-H 'Idempotency-Key: curl-{uuid.uuid4().hex[:8]}'")
            if body is not None:
                parts.append(f"-d {_q(json.dumps(body, separators=(',', ':')))}")
        lines.append(" ".join(parts))
    doc = {"fields": encode_fields(intent_document("$TRADER_UID"))}
    doc_json = json.dumps(doc, separators=(",", ":")).replace('"$TRADER_UID"', '"\'"$TRADER_UID"\'"')
    def post(token: str, body: dict[str, Any], key: bool = False) -> str:
        idem = f" -H 'Idempotency-Key: curl-{uuid.uuid4().hex[:8]}'" if key else ""
        return (f"curl -s -X POST \"$API/execute\" -H \"Authorization: Bearer ${token}\" "
                f"-H 'Content-Type: application/json'{idem} -d {_q(json.dumps(body, separators=(',', ':')))}")

    account_examples = [
        post("TRADER2_TOKEN", execute_body("SPY", side="sell", qty="1", account=TRADER2_ACCOUNT), True),
        post("TRADER2_TOKEN", execute_body("SPY", qty="1", account=TRADER_ACCOUNT))]
    if FX_ACCOUNT in session.accounts:
        account_examples.append(post("TRADER_TOKEN", execute_body("GBP/USD", qty="10", account=FX_ACCOUNT,
                                                                  asset_class="FOREX"), True))
    lines += [
        f"# accounts: {TRADER_ACCOUNT} is the trader's (and their default: leave broker_account_id out to use it), "
        f"{TRADER2_ACCOUNT} trader2's; naming another user's account is 403 ACCOUNT_NOT_OWNED:",
        *account_examples,
        "# an intent document written as the app would (rules apply), then read back with its result:",
        f"curl -s -X POST \"$FS/tenants/{TENANT}/order_intents?documentId=curl-1\" "
        f"-H \"Authorization: Bearer $TRADER_TOKEN\" -H 'Content-Type: application/json' -d '{doc_json}'",
        f"curl -s \"$FS/tenants/{TENANT}/order_intents/curl-1\" -H \"Authorization: Bearer $TRADER_TOKEN\"",
        f"curl -s \"$FS/tenants/{TENANT}/ledger_trades?pageSize=20\" -H \"Authorization: Bearer $ADMIN_TOKEN\"",
        "# the scheduled sweeper, as Cloud Scheduler calls it:",
        f"curl -s -X POST {suite.function_url('sweep_stuck_work-0')} "
        "-H \"X-CloudScheduler-ScheduleTime: $(date -u +%Y-%m-%dT%H:%M:%SZ)\" -H 'Content-Type: application/json' -d '{}'",
        "# a fresh ID token (they expire after 1 h):",
        f"curl -s -X POST '{suite.auth_url}/identitytoolkit.googleapis.com/v1/accounts:signInWithPassword?key=any' "
        f"-H 'Content-Type: application/json' -d '{{\"email\":\"trader@acme.example\",\"password\":\"{PASSWORD}\","
        "\"returnSecureToken\":true}' | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"idToken\"])'",
    ]
    return lines


def print_console(suite: EmulatorSuite, session: Session, out: Callable[[str], None] = print) -> None:
    """The web console's URL (Hosting emulator) and the demo users to sign in with."""
    out(f"\nWeb console: {suite.console_url}/  (Hosting emulator; /api/** is the api function)")
    out("Sign in with (email / password, Auth emulator):")
    for user in (session.trader, session.trader2, session.admin, session.auditor, session.risk):
        if user is not None:
            out(f"  {user.email:24} {PASSWORD}   {user.claims.get('role')}")


def print_access(suite: EmulatorSuite, session: Session, out: Callable[[str], None] = print) -> None:
    assert session.trader is not None and session.admin is not None
    out("\nReady-to-use ID tokens (Auth emulator; valid 1 h) and the endpoints:")
    out(f"export API={suite.api_url}")
    out(f"export FS='{suite.documents_url}'")
    out(f"export TRADER_UID={session.trader.uid}")
    out(f"export TRADER_TOKEN={session.trader.token}")
    if session.trader2 is not None:
        out(f"export TRADER2_TOKEN={session.trader2.token}")
    out(f"export ADMIN_TOKEN={session.admin.token}")
    out("\ncurl examples (every API route, then Firestore, the scheduler, a token refresh):")
    for line in curl_examples(suite, session):
        out(line)
    print_console(suite, session, out)
