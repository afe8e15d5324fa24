"""A replace that raises a working order's quantity above its unfilled remainder (PATCH /orders/{id}),
through the pre-trade gate (backend/execution/order_replace.py, module docstring).

Two layers:

- **Engine level, the contract way** (``store`` runs each test on the in-memory store and on the
  Firestore adapter over the official emulator, as tests/contract does): the engine and
  ``OrderManager`` trade through the real alpaca-py clients (``AlpacaBroker``) against the local
  Alpaca-compatible server. Two increases racing for the last room under the position limit (both
  pass the gate's first read, both commit their reservation) → exactly one reaches the venue; a
  venue refusal after the reservation releases it once (retried with the same key); a lost answer
  or a dead request keeps the reservation until the retry or the sweeper settles it; fills of the
  new order reach the ledger once.
- **HTTP through the real stack**: ``functions-framework --target api``, the Firestore and Auth
  emulators, equities on the local Alpaca server: an accepted increase, one over the position limit,
  every trading state at every level (operator, tenant, account) refusing an increase and letting a
  decrease through, a venue refusal released exactly once.
"""
from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal as D
from typing import Any

import pytest

from backend.adapters.alpaca_broker import AlpacaBroker
from backend.domain.clock import ManualClock
from backend.execution.engine import ExecutionEngine, OrderIntent, RiskManager, SmartRouter
from backend.execution.intent import ExecutionContext
from backend.execution.order_management import (OrderConflict, OrderManager, ReplaceChanges, ReplaceRefused,
                                                ReplaceRejected, VenueBusy)
from backend.execution.sweeper import Sweeper
from backend.risk.manager import RiskLimits
from backend.settings import ExecSettings
from tests.contract.conftest import _firestore, _memory
from tests.support.alpaca_server import LocalAlpacaServer
from tests.support.api_stack import FunctionsServer, alpaca_equity_env, emulator_env, http_call

TENANT = "acme"
NANO = 10**9


# ============================================================================ engine level
@pytest.fixture(scope="module")
def clock():
    return ManualClock()


@pytest.fixture(scope="module")
def venue_server(clock):
    with LocalAlpacaServer("default", clock=clock) as server:
        yield server


@pytest.fixture(params=["memory", "firestore"])
def store(request):
    """The store under test (tests/contract/conftest.py's harness: raw reads of what a reader sees)."""
    if request.param == "memory":
        return _memory()
    request.node.add_marker(pytest.mark.emulator)
    return _firestore(request.getfixturevalue("db"))


class Rig:
    """The engine on ``store`` trading through alpaca-py against the local server, one fresh user."""

    def __init__(self, h: Any, server: LocalAlpacaServer, clock: ManualClock, limit: str = "12"):
        self.h, self.server, self.clock = h, server, clock
        broker = AlpacaBroker("test-key", "test-secret", url_override=server.url, clock=clock, timeout_seconds=5,
                              time_budget_seconds=30)
        self.engine = ExecutionEngine(broker=broker, router=SmartRouter(max_spread_pct="0.01"),
                                      risk=RiskManager(RiskLimits(max_position_qty=D(limit))), store=h.store,
                                      clock=clock, dry_run=False,
                                      settings=ExecSettings.from_env({"EXEC_FILL_WAIT_SECONDS": "0"}))
        self.manager = OrderManager(self.engine)
        self.uid = f"u{uuid.uuid4().hex[:10]}"
        self.account = f"acct-{self.uid}"

    def place(self, qty: str, symbol: str = "AAPL", n: int = 1) -> str:
        quote = self.server.venue.get_latest_quote(symbol, "EQUITY")
        low = (quote.bid - D("20")).quantize(D("0.01"))  # rests
        intent = OrderIntent("s1", self.account, symbol, "buy", qty, "EQUITY", order_type="limit", limit_price=low,
                             time_in_force="gtc", intent_id=f"{self.uid}-o{n}")
        result = self.engine.execute_intent(intent, ExecutionContext(TENANT, self.uid))
        assert result.status == "placed" and result.order_status == "new", result
        return intent.intent_id

    def replace(self, intent_id: str, qty: str, key: str = "k1") -> Any:
        return self.manager.replace(TENANT, self.uid, intent_id, ReplaceChanges(qty=D(qty)), key)

    def record(self, intent_id: str) -> dict[str, Any]:
        return self.h.raw(f"tenants/{TENANT}/order_intents/{intent_id}")

    def exposure(self, symbol: str = "AAPL") -> dict[str, int]:
        doc = self.h.raw(f"tenants/{TENANT}/exposure/{self.account}__{symbol}") or {}
        return {k: doc.get(k, 0) for k in ("position_nanos", "reserved_long_nanos", "reserved_short_nanos")}

    def venue_order(self, intent_id: str) -> Any:
        return self.server.venue.peek_order(self.record(intent_id)["broker_order_id"])

    def replacements_at_venue(self, old_ids: set[str]) -> list[Any]:
        return [o for o in self.server.venue.orders() if o.replaces in old_ids]

    def ledger(self, intent_id: str) -> dict[str, dict[str, Any]]:
        prefix = f"tenants/{TENANT}/ledger_trades/"
        return {p[len(prefix):]: self.h.raw(p) for p in self.h.paths(f"tenants/{TENANT}/ledger_trades")
                if p[len(prefix):].startswith(intent_id)}


@pytest.fixture
def rig(store, venue_server, clock):
    venue_server.clear_faults()
    yield Rig(store, venue_server, clock)
    venue_server.clear_faults()


class ExposureReadsMeet:
    """A store whose first two risk reads (a ``get_all`` naming an exposure document) wait for each other
    once both are read:
    both increases then decide on the same exposure, so both pass the gate's first read and both
    commit — the case only the re-check on the commit's own result can decide. Everything else passes
    through to the real store."""

    def __init__(self, inner: Any):
        self._inner = inner
        self._barrier = threading.Barrier(2)
        self._armed = 2
        self._lock = threading.Lock()

    def get_all(self, paths: Any) -> Any:
        with self._lock:
            wait = self._armed > 0 and any("/exposure/" in p for p in paths)
            self._armed -= int(wait)
        docs = self._inner.get_all(paths)
        if wait:  # both have read before either goes on
            self._barrier.wait(timeout=60)
        return docs

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def lose_the_answer(server: LocalAlpacaServer) -> None:
    """The venue replaces the order but its answer is lost, and it cannot be asked by client id until
    ``clear_faults`` (the adapter's own recovery lookup fails too): the outcome stays unknown."""
    server.inject("PATCH /v2/orders/*", "timeout_after_accept")
    server.inject("GET /v2/orders:by_client_order_id", "503", times=None)


def test_an_increase_works_at_the_venue_with_the_new_qty_and_exposure_follows_it(rig):
    intent_id = rig.place("5")
    old_id = rig.record(intent_id)["broker_order_id"]

    outcome = rig.replace(intent_id, "8")

    record = rig.record(intent_id)
    working = [o for o in rig.server.venue.orders() if not o.state.is_final and o.broker_order_id in
               {old_id, record["broker_order_id"]}]
    assert outcome.status == "replaced" and D(outcome.view["qty"]) == 8
    assert [(o.broker_order_id, o.qty) for o in working] == [(record["broker_order_id"], D("8"))]
    assert rig.exposure() == {"position_nanos": 0, "reserved_long_nanos": 8 * NANO, "reserved_short_nanos": 0}
    assert record["pending_replace"] is None and D(record["intent"]["qty"]) == 8
    assert rig.ledger(intent_id)[f"{intent_id}--r1"]["replaces"]["broker_order_id"] == old_id


def test_an_increase_takes_no_daily_trade_slot_and_is_not_refused_by_the_daily_limit(store, venue_server, clock):
    rig = Rig(store, venue_server, clock)
    rig.engine.risk = rig.engine.gate.risk = RiskManager(RiskLimits(max_position_qty=D("12"), max_daily_trades=1))
    intent_id = rig.place("5")  # the day's only trade
    day = clock.now().date().isoformat()
    slots = store.paths(f"tenants/{TENANT}/risk_days/{day}/trade_slots")

    outcome = rig.replace(intent_id, "8")

    assert outcome.status == "replaced"
    assert store.paths(f"tenants/{TENANT}/risk_days/{day}/trade_slots") == slots


def test_under_reduce_only_a_sell_may_grow_while_it_only_shrinks_the_long_and_not_beyond(rig):
    bought = rig.engine.execute_intent(OrderIntent("s1", rig.account, "AAPL", "buy", "10", "EQUITY",
                                                   intent_id=f"{rig.uid}-buy"), ExecutionContext(TENANT, rig.uid))
    assert bought.status == "placed" and bought.filled_qty == D("10"), bought
    ask = rig.server.venue.get_latest_quote("AAPL", "EQUITY").ask
    sell = OrderIntent("s1", rig.account, "AAPL", "sell", "4", "EQUITY", order_type="limit",
                       limit_price=(ask + D("20")).quantize(D("0.01")), time_in_force="gtc", intent_id=f"{rig.uid}-sell")
    assert rig.engine.execute_intent(sell, ExecutionContext(TENANT, rig.uid)).order_status == "new"
    rig.h.put(f"tenants/{TENANT}/config/risk", {"trading_state": "reduce_only"})

    grown = rig.replace(sell.intent_id, "6", key="to-6")  # 10 long, 6 to sell: still only reduces
    with pytest.raises(ReplaceRejected) as beyond:
        rig.replace(sell.intent_id, "12", key="to-12")  # would cross into a short

    assert grown.status == "replaced" and rig.venue_order(sell.intent_id).qty == D("6")
    assert beyond.value.rejection.code.value == "REDUCE_ONLY" and "tenant is reduce-only" in str(beyond.value)
    assert rig.exposure() == {"position_nanos": 10 * NANO, "reserved_long_nanos": 0, "reserved_short_nanos": 6 * NANO}


def test_two_increases_racing_for_the_last_room_under_the_limit_one_reaches_the_venue(rig):
    first, second = rig.place("5", n=1), rig.place("5", n=2)  # 10 of 12 reserved
    old_ids = {rig.record(first)["broker_order_id"], rig.record(second)["broker_order_id"]}
    rig.manager.store = ExposureReadsMeet(rig.h.store)

    def attempt(intent_id: str) -> Any:
        try:
            return rig.replace(intent_id, "7")  # +2 each: one fits (12), both do not (14)
        except ReplaceRejected as exc:
            return exc.rejection

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(attempt, [first, second]))

    replaced = [r for r in results if getattr(r, "status", None) == "replaced"]
    refused = [r for r in results if getattr(getattr(r, "code", None), "value", None) == "POSITION_LIMIT"]
    assert len(replaced) == 1 and len(refused) == 1, results
    assert len(rig.replacements_at_venue(old_ids)) == 1  # exactly one reached the venue
    working = [o for o in rig.server.venue.orders() if not o.state.is_final
               and o.broker_order_id in {rig.record(first)["broker_order_id"], rig.record(second)["broker_order_id"]}]
    assert sorted(o.qty for o in working) == [D("5"), D("7")]
    assert rig.exposure()["reserved_long_nanos"] == 12 * NANO  # = the venue's working quantity
    assert rig.record(first).get("pending_replace") is None and rig.record(second).get("pending_replace") is None


def test_an_increase_over_the_position_limit_changes_nothing(rig):
    intent_id = rig.place("5")
    record, exposure = rig.record(intent_id), rig.exposure()

    with pytest.raises(ReplaceRejected) as refused:
        rig.replace(intent_id, "13")

    assert refused.value.rejection.code.value == "POSITION_LIMIT"
    assert "limit=12" in refused.value.rejection.detail
    assert rig.record(intent_id) == record and rig.exposure() == exposure
    assert rig.replacements_at_venue({record["broker_order_id"]}) == []
    assert rig.venue_order(intent_id).qty == D("5") and not rig.venue_order(intent_id).state.is_final


def test_a_venue_refusal_after_the_reservation_releases_it_once_and_the_same_key_retries(rig):
    intent_id = rig.place("5")
    old_id = rig.record(intent_id)["broker_order_id"]
    rig.server.inject("PATCH /v2/orders/*", "reject", times=2)

    outcomes = []
    for _ in range(2):  # refused twice with the same key: reserved and released each time, never twice
        with pytest.raises(ReplaceRefused) as refused:
            rig.replace(intent_id, "8", key="same")
        outcomes.append((rig.exposure()["reserved_long_nanos"], rig.record(intent_id)["pending_replace"]))
        assert "the venue refused" in refused.value.reason
    done = rig.replace(intent_id, "8", key="same")

    assert outcomes == [(5 * NANO, None), (5 * NANO, None)]
    assert done.status == "replaced" and rig.exposure()["reserved_long_nanos"] == 8 * NANO
    assert [o.qty for o in rig.replacements_at_venue({old_id})] == [D("8")]


def test_a_lost_answer_keeps_the_reservation_and_the_retry_does_not_add_it_again(rig):
    intent_id = rig.place("5")
    old_id = rig.record(intent_id)["broker_order_id"]
    lose_the_answer(rig.server)

    with pytest.raises(VenueBusy):
        rig.replace(intent_id, "8", key="lost")
    rig.server.clear_faults()
    held = rig.exposure()["reserved_long_nanos"]
    again = rig.replace(intent_id, "8", key="lost")
    replay = rig.replace(intent_id, "8", key="lost")

    assert held == 8 * NANO  # 5 of the order + 3 reserved with the marker, before the venue call
    assert again.status == "replaced" and replay.replayed
    assert rig.exposure()["reserved_long_nanos"] == 8 * NANO  # complete_replacement did not add the 3 again
    assert [o.qty for o in rig.replacements_at_venue({old_id})] == [D("8")]


def test_a_request_that_died_before_the_venue_is_released_by_the_sweeper_after_its_lease(rig, clock):
    intent_id = rig.place("5")
    rig.server.inject("PATCH /v2/orders/*", "drop")  # nothing done at the venue, no answer

    with pytest.raises(VenueBusy):
        rig.replace(intent_id, "8", key="dead")
    held = rig.exposure()["reserved_long_nanos"]
    with pytest.raises(OrderConflict) as other:
        rig.replace(intent_id, "6", key="another")  # the lease still runs: not taken over
    clock.advance(float(rig.engine.settings.lease_seconds) + 1)
    report = Sweeper(rig.engine).sweep()

    assert held == 8 * NANO and other.value.code == "ORDER_REPLACE_PENDING"
    assert report.errors == []
    assert rig.record(intent_id)["pending_replace"] is None
    assert rig.exposure()["reserved_long_nanos"] == 5 * NANO
    assert rig.venue_order(intent_id).qty == D("5") and not rig.venue_order(intent_id).state.is_final


def test_a_dead_requests_marker_is_taken_over_after_its_lease_and_its_reservation_released_in_that_commit(rig, clock):
    intent_id = rig.place("5")
    old_id = rig.record(intent_id)["broker_order_id"]
    rig.server.inject("PATCH /v2/orders/*", "drop")
    with pytest.raises(VenueBusy):
        rig.replace(intent_id, "8", key="dead")  # 3 held with its marker
    clock.advance(float(rig.engine.settings.lease_seconds) + 1)

    outcome = rig.replace(intent_id, "7", key="next")

    assert outcome.status == "replaced"
    assert [o.qty for o in rig.replacements_at_venue({old_id})] == [D("7")]
    assert rig.exposure()["reserved_long_nanos"] == 7 * NANO  # 5 + 3 - 3 + 2, not 5 + 3 + 2
    assert rig.record(intent_id)["pending_replace"] is None


def test_a_replacement_made_at_the_venue_whose_answer_was_lost_is_recorded_by_the_sweeper(rig, clock):
    intent_id = rig.place("5")
    old_id = rig.record(intent_id)["broker_order_id"]
    lose_the_answer(rig.server)

    with pytest.raises(VenueBusy):
        rig.replace(intent_id, "8", key="lost")
    rig.server.clear_faults()
    clock.advance(30)  # the order is due for reconciliation; the marker's lease still runs
    report = Sweeper(rig.engine).sweep()

    (new,) = rig.replacements_at_venue({old_id})
    record = rig.record(intent_id)
    assert report.errors == []
    assert record["broker_order_id"] == new.broker_order_id and record["order_final"] is False
    assert record["pending_replace"] is None and D(record["intent"]["qty"]) == 8
    assert rig.exposure()["reserved_long_nanos"] == 8 * NANO  # = the new order at the venue, not 8 + 3


def test_fills_of_the_new_order_reach_the_ledger_once(rig, clock):
    intent_id = rig.place("5", symbol="MSFT")
    rig.replace(intent_id, "8")
    limit = D(rig.record(intent_id)["intent"]["limit_price"])
    mid = rig.server.venue.market.mid("MSFT")
    rig.server.venue.market.set_mid("MSFT", limit - D("1"))  # the resting buy becomes marketable
    try:
        clock.advance(30)
        first = Sweeper(rig.engine).sweep()
        clock.advance(30)
        second = Sweeper(rig.engine).sweep()
    finally:
        rig.server.venue.market.set_mid("MSFT", mid)

    rows = rig.ledger(intent_id)
    fills = [r for r in rows.values() if r["kind"] == "fill"]
    assert first.errors == [] and second.errors == []
    assert rig.venue_order(intent_id).filled_qty == D("8")
    assert sum(D(r["filled_qty"]) for r in fills) == D("8") and len(fills) == 1
    assert rig.exposure("MSFT") == {"position_nanos": 8 * NANO, "reserved_long_nanos": 0, "reserved_short_nanos": 0}
    assert rig.record(intent_id)["order_final"] is True


# ============================================================================ HTTP, real stack
@pytest.fixture(scope="module")
def alpaca_venue():
    with LocalAlpacaServer("default") as venue:
        yield venue


@pytest.fixture(scope="module")
def api(firestore_emulator, auth_emulator, alpaca_venue):
    env = emulator_env(firestore_emulator, auth_emulator, **alpaca_equity_env(alpaca_venue), EXEC_MAX_POSITION_QTY="20")
    with FunctionsServer(env) as server:
        yield server
        errors = [line for line in server.log_lines() if line.get("severity") == "ERROR"]
        assert errors == [], f"the function logged errors: {errors}"


@pytest.fixture
def trader(auth, firestore_project, api, alpaca_venue, db):
    """A fresh trader of tenant acme with a resting AAPL buy limit of 5 (their default account)."""
    alpaca_venue.clear_faults()
    name = f"t-{uuid.uuid4().hex[:8]}"
    email = f"{name}@example.com"
    uid, _ = auth.sign_up(email, "secret-pw-1")
    auth.set_claims(uid, {"tenant_id": TENANT, "role": "trader"})
    token = auth.sign_in(email, "secret-pw-1")
    quote = alpaca_venue.venue.get_latest_quote("AAPL", "EQUITY")
    low = (quote.bid - D("20")).quantize(D("0.01"))
    status, _, placed = http_call("POST", api.url + "/execute", {
        "strategy_id": "s1", "symbol": "AAPL", "side": "buy", "qty": "5", "order_type": "limit",
        "limit_price": str(low), "time_in_force": "gtc"}, {"Authorization": f"Bearer {token}",
                                                          "Idempotency-Key": f"place-{name}"})
    assert status == 201 and placed["status"] == "placed" and placed["broker"] == "alpaca", placed
    yield Trader(api, alpaca_venue, db, token, placed["intent_id"], placed["broker_order_id"])
    alpaca_venue.clear_faults()


class Trader:
    def __init__(self, api: Any, venue: LocalAlpacaServer, db: Any, token: str, intent_id: str, order_id: str):
        self.api, self.venue, self.db, self.token = api, venue, db, token
        self.intent_id, self.order_id = intent_id, order_id

    def patch(self, qty: str, key: str) -> tuple[int, dict[str, Any]]:
        status, _, body = http_call("PATCH", self.api.url + f"/orders/{self.intent_id}", {"qty": qty},
                                    {"Authorization": f"Bearer {self.token}", "Idempotency-Key": key})
        return status, body

    def record(self) -> dict[str, Any]:
        return self.db.document(f"tenants/{TENANT}/order_intents/{self.intent_id}").get().to_dict()

    @property
    def account(self) -> str:
        return self.record()["account"]["account_id"]

    def exposure(self) -> dict[str, Any]:
        return self.db.document(f"tenants/{TENANT}/exposure/{self.account}__AAPL").get().to_dict() or {}

    def working_at_venue(self) -> list[tuple[str, D]]:
        ids = {self.order_id, self.record()["broker_order_id"]}
        ids |= {o.broker_order_id for o in self.venue.venue.orders() if o.replaces in ids}
        return sorted((o.broker_order_id, o.qty) for o in self.venue.venue.orders()
                      if o.broker_order_id in ids and not o.state.is_final)

    def replace_rows(self) -> list[str]:
        return [s.id for s in self.db.collection(f"tenants/{TENANT}/ledger_trades").stream()
                if s.id.startswith(f"{self.intent_id}--r")]


@pytest.mark.slow
def test_http_an_increase_is_one_working_order_with_the_new_qty_and_exposure_equals_the_venue(trader):
    status, body = trader.patch("8", "up-1")

    assert status == 200 and body["outcome"] == "replaced", body
    new_id = body["order"]["broker_order_id"]
    assert trader.working_at_venue() == [(new_id, D("8"))]
    assert trader.exposure()["reserved_long_nanos"] == 8 * NANO
    assert trader.replace_rows() == [f"{trader.intent_id}--r1"]


@pytest.mark.slow
def test_http_an_increase_over_the_position_limit_is_409_and_nothing_changes(trader):
    record, exposure = trader.record(), trader.exposure()

    status, body = trader.patch("21", "too-big")

    assert status == 409 and body["error"]["code"] == "POSITION_LIMIT", body
    assert "limit=20" in body["error"]["message"] and D(body["order"]["qty"]) == 5
    assert trader.record() == record and trader.exposure() == exposure  # not even updated_server_at moved
    assert trader.working_at_venue() == [(trader.order_id, D("5"))] and trader.replace_rows() == []


LEVELS = [("operator", "halted", 409, "KILL_SWITCH"), ("tenant", "halted", 409, "KILL_SWITCH"),
          ("account", "halted", 400, "ACCOUNT_HALTED"), ("operator", "reduce_only", 409, "REDUCE_ONLY"),
          ("tenant", "reduce_only", 409, "REDUCE_ONLY"), ("account", "reduce_only", 409, "REDUCE_ONLY")]


@pytest.mark.slow
@pytest.mark.parametrize("level,state,http,code", LEVELS, ids=[f"{lv}-{st}" for lv, st, _, _ in LEVELS])
def test_http_a_trading_state_refuses_an_increase_and_lets_a_decrease_through(trader, level, state, http, code):
    if level == "operator":
        trader.db.document("ops/execution").set({"trading_state": state})
    elif level == "tenant":
        trader.db.document(f"tenants/{TENANT}/config/risk").set({"trading_state": state}, merge=True)
    else:
        trader.db.document(f"tenants/{TENANT}/accounts/{trader.account}").update({"status": state})
    record, exposure = trader.record(), trader.exposure()

    up_status, up = trader.patch("8", "up")
    assert (up_status, up["error"]["code"]) == (http, code), up
    assert trader.record() == record and trader.exposure() == exposure
    assert trader.working_at_venue() == [(trader.order_id, D("5"))]

    down_status, down = trader.patch("3", "down")
    assert down_status == 200 and down["outcome"] == "replaced", down
    assert trader.working_at_venue() == [(down["order"]["broker_order_id"], D("3"))]
    assert trader.exposure()["reserved_long_nanos"] == 3 * NANO


@pytest.mark.slow
def test_http_a_venue_refusal_after_the_reservation_is_released_exactly_once(trader):
    trader.venue.inject("PATCH /v2/orders/*", "reject", times=2)

    first = trader.patch("8", "same")
    after_first = trader.exposure()["reserved_long_nanos"]
    second = trader.patch("8", "same")
    after_second = trader.exposure()["reserved_long_nanos"]
    third = trader.patch("8", "same")

    assert [first[0], second[0], third[0]] == [400, 400, 200], (first, second, third)
    assert "the venue refused" in first[1]["error"]["message"]
    assert after_first == after_second == 5 * NANO and trader.record()["pending_replace"] is None
    assert trader.exposure()["reserved_long_nanos"] == 8 * NANO
    assert trader.working_at_venue() == [(third[1]["order"]["broker_order_id"], D("8"))]
