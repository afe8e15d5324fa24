"""Shared helpers for the multi-leg group executor tests (unit: paper broker + InMemoryStore; integration:
Firestore emulator, LocalAlpacaServer). Hand-written, no mocks.

- Requests: :func:`leg`, :data:`SEED_LEGS`, :func:`rpm_output`, :func:`group_request` build the seed's
  POST /execute/multi-leg body with a valid ``rpm_output`` (approving every leg, expiring in an hour).
- Venues: :func:`scenario` is the default paper market with per-symbol overrides (fill model, spread,
  quote age, closes) and an account; :func:`exec_settings` the engine settings the tests use.
- :class:`CrashingBroker` wraps any ``BrokerPort``: it records every call (and every submit that reached
  the inner broker), dies (``SimulatedCrash``, or ``os._exit`` in a child process) before or after the
  N-th call of a method, runs hooks after the N-th call (a market change between two legs), and can age
  quotes or turn rollback orders into resting ones.
- Invariants: :func:`assert_ledger_matches_venue` (the net position per symbol in the ledger rows of kind
  group_fill / rollback_fill, buy + and sell -, equals the venue's) and
  :func:`assert_one_order_per_client_id`.
"""
from __future__ import annotations

import json
import os
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable, Iterable, Mapping, Sequence

from backend.domain.assets import AssetClass
from backend.execution.intent import ExecutionContext
from backend.adapters.sim_venue import LostResponse
from backend.ports.broker import BrokerError, BrokerErrorCode, BrokerOrder, OrderRequest, OrderType, Quote
from backend.settings import ExecSettings

TENANT = "acme"
UID = "u1"
CTX = ExecutionContext(tenant_id=TENANT, uid=UID)
T0 = datetime(2026, 1, 5, 14, 30, tzinfo=timezone.utc)  # ManualClock's default start
LEASE_SECONDS = 120  # ExecSettings default; resume after advancing past it
LEDGER_KINDS = ("group_fill", "rollback_fill")
ROLLBACK_PREFIX = "mlrb-"


# --------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------


def leg(leg_id: str, symbol: str, direction: int, units: Any, asset_class: str) -> dict[str, Any]:
    return {"leg_id": leg_id, "symbol": symbol, "direction": direction, "units": units, "asset_class": asset_class}


# The seed's pair: long EURUSD 100k, short GBPUSD 50k (shorts first: leg_002 is sent before leg_001).
SEED_LEGS = (leg("leg_001", "EURUSD", 1, 100000, "FX"), leg("leg_002", "GBPUSD", -1, 50000, "FX"))
EQUITY_LEGS = (leg("leg_001", "AAPL", 1, 10, "EQUITY"), leg("leg_002", "MSFT", -1, 5, "EQUITY"))


def rpm_output(legs: Iterable[Mapping[str, Any]], now: datetime, *, ttl: timedelta = timedelta(hours=1),
               approved: bool = True, units: Mapping[str, Any] | None = None,
               decision_id: str = "rpm-1") -> dict[str, Any]:
    """An authorization approving each leg for exactly its units (``units`` overrides per leg id)."""
    approved_legs = {x["leg_id"]: str(x["units"]) for x in legs}
    approved_legs.update({k: str(v) for k, v in (units or {}).items()})
    return {"decision_id": decision_id, "approved": approved, "expires_at": (now + ttl).isoformat(),
            "approved_legs": approved_legs}


def approve(store: Any, request: Mapping[str, Any], *, tenant_id: str = TENANT, uid: str = UID,
            issuer_uid: str = "risk-desk") -> dict[str, Any] | None:
    """Play the risk desk: store the backend-issued approval a test request's ``rpm_output`` stands for
    (``tenants/<t>/rpm_approvals/<decision_id>``, what ``POST /risk/approvals`` writes), for ``uid``.
    The request's own rpm_output is never trusted by the executor; tests that probe the RPM gate keep
    writing it as before (approved false, expired, units too high) and get the same stored decision.
    Written directly (test privilege, overwriting), so a decision id can be reused across groups."""
    from backend.execution.groups import parse_rpm_output
    from backend.domain.errors import InvalidInput

    raw = request.get("rpm_output")
    try:
        auth = parse_rpm_output(raw)
    except InvalidInput:
        return None  # a malformed rpm_output: nothing to issue (the gate refuses the group)
    by_id = {x["leg_id"]: x for x in request.get("legs") or () if isinstance(x, Mapping) and "leg_id" in x}
    legs = []
    for leg_id, approval in auth.legs.items():
        leg = by_id.get(leg_id, {})
        legs.append({"leg_id": leg_id, "max_units": str(approval.max_units),
                     "symbol": approval.symbol or leg.get("symbol"),
                     "direction": approval.direction if approval.direction is not None else leg.get("direction")})
    doc = {"decision_id": auth.decision_id, "for_uid": uid, "issuer_uid": issuer_uid, "approved": auth.approved,
           "approved_legs": legs, "expires_at": auth.expires_at.isoformat(), "issued_at": auth.expires_at.isoformat()}
    path = f"tenants/{tenant_id}/rpm_approvals/{auth.decision_id}"
    if hasattr(store, "set_doc"):
        store.set_doc(path, doc)
    else:
        store.db.document(path).set(doc)
    return doc


_DEFAULT = object()


def group_request(legs: Sequence[Mapping[str, Any]] = SEED_LEGS, *, now: datetime = T0, rpm: Any = _DEFAULT,
                  allow_partial_fills: bool = True, max_group_slippage_pips: float | None = 10.0,
                  execution_priority: Sequence[str] | None = None, strategy_id: str = "stat_arb_01") -> dict[str, Any]:
    """The seed's request body; ``rpm=None`` leaves ``rpm_output`` out."""
    body: dict[str, Any] = {"strategy_id": strategy_id, "legs": [dict(x) for x in legs],
                            "allow_partial_fills": allow_partial_fills}
    if max_group_slippage_pips is not None:
        body["max_group_slippage_pips"] = max_group_slippage_pips
    if execution_priority is not None:
        body["execution_priority"] = list(execution_priority)
    if rpm is _DEFAULT:
        body["rpm_output"] = rpm_output(legs, now)
    elif rpm is not None:
        body["rpm_output"] = rpm
    return body


# --------------------------------------------------------------------------------------------
# Venue scenarios and settings
# --------------------------------------------------------------------------------------------

DEFAULT_SYMBOLS: dict[str, dict[str, Any]] = {
    "AAPL": {"asset_class": "EQUITY", "mid": "190.00", "spread": "0.02"},
    "MSFT": {"asset_class": "EQUITY", "mid": "420.00", "spread": "0.04"},
    "SPY": {"asset_class": "EQUITY", "mid": "520.00", "spread": "0.02"},
    "BTC/USD": {"asset_class": "CRYPTO", "mid": "65000", "spread": "10"},
    "EUR/USD": {"asset_class": "FOREX", "mid": "1.0850", "spread": "0.0002"},
    "GBP/USD": {"asset_class": "FOREX", "mid": "1.2700", "spread": "0.0002"},
    "XAU/USD": {"asset_class": "COMMODITY", "mid": "2350.00", "spread": "0.30"},
}


def scenario(symbols: Mapping[str, Mapping[str, Any]] | None = None, *, buying_power: Any = "2000000",
             seed: int = 7) -> dict[str, Any]:
    """The default paper market; ``symbols`` entries are merged into the default ones
    (``{"GBP/USD": {"fill": {"model": "reject"}}}``)."""
    merged = {name: dict(spec) for name, spec in DEFAULT_SYMBOLS.items()}
    for name, override in (symbols or {}).items():
        merged.setdefault(name, {}).update(override)
    return {"seed": seed, "account": {"cash": "1000000", "buying_power": str(buying_power), "equity": "1000000"},
            "default_fill": {"model": "immediate"}, "symbols": merged}


def exec_settings(**env: str) -> ExecSettings:
    """Live (not dry-run) settings; env names as in production (``EXECUTION_ENGINE_ORDER_TIMEOUT_SECONDS``).
    Risk limits are wide (groups pass the same pre-trade gate as single orders: position per class,
    daily count) unless a test narrows them."""
    return ExecSettings.from_env({"EXEC_DRY_RUN": "0", **GROUP_LIMITS_ENV, **env})


# Limits wide enough for the seed's 100k FX legs and a day of test groups.
GROUP_LIMITS_ENV = {"EXEC_MAX_POSITION_QTY": "100000000", "EXEC_MAX_DAILY_TRADES": "10000"}


# --------------------------------------------------------------------------------------------
# The crash-injecting broker wrapper
# --------------------------------------------------------------------------------------------


class SimulatedCrash(Exception):
    """Process death in the middle of a run: not a BrokerError, so nothing in the executor handles it."""


@dataclass(frozen=True)
class CrashPoint:
    method: str  # submit_order | get_order | get_order_by_client_id | cancel_order | ...
    nth: int  # 1-based count of calls of ``method`` through this wrapper
    when: str = "before"  # "before": the call never reaches the broker; "after": it did, the answer is lost

    def __post_init__(self) -> None:
        if self.when not in ("before", "after") or self.nth < 1:
            raise ValueError(f"bad crash point {self}")

    def __str__(self) -> str:
        return f"{self.when}-{self.method}#{self.nth}"


@dataclass
class _Hook:
    method: str
    nth: int
    action: Callable[[], None]


class CrashingBroker:
    """A ``BrokerPort`` wrapper. Records ``calls`` (method, key) and ``submitted`` (client order ids that
    reached the inner broker); raises ``SimulatedCrash`` (or ``os._exit(1)`` with ``exit_process``) at
    ``crash``; runs ``after(method, nth, action)`` hooks once the N-th call returned."""

    def __init__(self, inner: Any, *, crash: CrashPoint | None = None, exit_process: bool = False):
        self.inner = inner
        self.name = getattr(inner, "name", "wrapped")
        self.crash = crash
        self.exit_process = exit_process
        self.calls: list[tuple[str, Any]] = []
        self.submitted: list[str] = []
        self.crashed = False
        self.quote_age = timedelta(0)  # added to every quote's age (a feed that stopped ticking)
        self.resting_rollbacks = False  # rollback orders become far-off limit orders (they never fill)
        self.refuse_rollbacks = False  # rollback orders are refused (non-retryable) before the venue
        # entry orders go out immediate-or-cancel: on a "partial" symbol the venue fills the first ratio
        # and cancels the rest at once (a market order running out of liquidity); rollbacks stay "day"
        self.ioc_entries = False
        # entry orders are never observed by polls (paper venue only): a "partial" symbol's entry keeps
        # its first ratio until our timeout cancels the remainder; rollback orders are observed normally
        self.thin_entries = False
        self._counts: Counter[str] = Counter()
        self._hooks: list[_Hook] = []

    # -- configuration
    def after(self, method: str, nth: int, action: Callable[[], None]) -> "CrashingBroker":
        self._hooks.append(_Hook(method, nth, action))
        return self

    def count(self, method: str) -> int:
        return self._counts[method]

    # -- plumbing
    def _die(self) -> None:
        self.crashed = True
        if self.exit_process:
            sys.stdout.flush()
            os._exit(1)
        raise SimulatedCrash(str(self.crash))

    def _call(self, method: str, key: Any, fn: Callable[[], Any]) -> Any:
        self._counts[method] += 1
        n = self._counts[method]
        self.calls.append((method, key))
        point = self.crash
        if point is not None and point.method == method and point.nth == n and point.when == "before":
            self._die()
        result = fn()
        if point is not None and point.method == method and point.nth == n and point.when == "after":
            self._die()
        for hook in self._hooks:
            if hook.method == method and hook.nth == n:
                hook.action()
        return result

    # -- BrokerPort
    def supports(self, asset_class: AssetClass) -> bool:
        return self.inner.supports(asset_class)

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        def send() -> BrokerOrder:
            sent = request
            if self.refuse_rollbacks and request.client_order_id.startswith(ROLLBACK_PREFIX):
                raise BrokerError(BrokerErrorCode.REJECTED, "rollback refused (test)")
            if self.ioc_entries and not request.client_order_id.startswith(ROLLBACK_PREFIX):
                sent = replace(request, time_in_force="ioc")
            if self.resting_rollbacks and request.client_order_id.startswith(ROLLBACK_PREFIX):
                sent = replace(request, order_type=OrderType.LIMIT, limit_price=_far_limit(self.inner, request))
            try:
                order = self.inner.submit_order(sent)
            except LostResponse:  # the venue acted; only the answer was lost
                self.submitted.append(request.client_order_id)
                raise
            self.submitted.append(request.client_order_id)
            return order

        return self._call("submit_order", request.client_order_id, send)

    def get_order(self, broker_order_id: str) -> BrokerOrder:
        def get() -> BrokerOrder:
            if self.thin_entries:
                peek = self.inner.venue.peek_order(broker_order_id).to_broker_order()
                if not peek.client_order_id.startswith(ROLLBACK_PREFIX):
                    return peek
            return self.inner.get_order(broker_order_id)

        return self._call("get_order", broker_order_id, get)

    def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        def get() -> BrokerOrder | None:
            if self.thin_entries and not client_order_id.startswith(ROLLBACK_PREFIX):
                found = [o for o in self.inner.venue.orders() if o.client_order_id == client_order_id]
                return found[0].to_broker_order() if found else None
            return self.inner.get_order_by_client_id(client_order_id)

        return self._call("get_order_by_client_id", client_order_id, get)

    def cancel_order(self, broker_order_id: str) -> None:
        return self._call("cancel_order", broker_order_id, lambda: self.inner.cancel_order(broker_order_id))

    def close_position(self, symbol: str, asset_class: AssetClass) -> BrokerOrder | None:
        return self._call("close_position", symbol, lambda: self.inner.close_position(symbol, asset_class))

    def get_positions(self) -> Any:
        return self._call("get_positions", None, self.inner.get_positions)

    def get_account(self) -> Any:
        return self._call("get_account", None, self.inner.get_account)

    def get_latest_quote(self, symbol: str, asset_class: AssetClass) -> Quote:
        quote = self._call("get_latest_quote", symbol, lambda: self.inner.get_latest_quote(symbol, asset_class))
        return replace(quote, timestamp=quote.timestamp - self.quote_age) if self.quote_age else quote

    def get_recent_closes(self, symbol: str, asset_class: AssetClass, limit: int) -> Sequence[Decimal]:
        return self._call("get_recent_closes", symbol,
                          lambda: self.inner.get_recent_closes(symbol, asset_class, limit))


def _far_limit(broker: Any, request: OrderRequest) -> Decimal:
    """A limit price 20% through the touch on the passive side: valid, never marketable."""
    quote = broker.get_latest_quote(request.symbol, request.asset_class)
    spec = broker.get_asset_spec(request.symbol, request.asset_class)
    price = quote.bid * Decimal("0.8") if request.side.value == "buy" else quote.ask * Decimal("1.2")
    return spec.round_price(price)


# --------------------------------------------------------------------------------------------
# A world: one venue, one store, one clock; engines built on demand (a new engine = a new process)
# --------------------------------------------------------------------------------------------


class World:
    """``make_inner(**kw)`` builds a fresh broker on the shared venue (``PaperBroker(venue=...)`` or an
    ``AlpacaBroker`` on the local server); every broker is wrapped in a recording ``CrashingBroker``."""

    def __init__(self, store: Any, venue: Any, clock: Any, make_inner: Callable[..., Any],
                 env: Mapping[str, str] | None = None):
        self.store, self.venue, self.clock = store, venue, clock
        self.make_inner = make_inner
        self.env = dict(env or {})
        self.wrappers: list[CrashingBroker] = []

    def broker(self, crash: CrashPoint | None = None, **inner_kw: Any) -> CrashingBroker:
        wrapper = CrashingBroker(self.make_inner(**inner_kw), crash=crash)
        self.wrappers.append(wrapper)
        return wrapper

    def engine(self, broker: Any = None, **env: str) -> Any:
        from backend.execution.engine import ExecutionEngine

        return ExecutionEngine(broker=broker if broker is not None else self.broker(), store=self.store,
                               clock=self.clock, dry_run=False, settings=exec_settings(**{**self.env, **env}))

    def execute(self, request: Mapping[str, Any] | None = None, *, group_id: str = "g1", broker: Any = None,
                **env: str) -> Any:
        body = group_request(now=self.clock.now()) if request is None else request
        approve(self.store, body)
        return self.engine(broker, **env).execute_group(body, CTX, group_id=group_id)

    def resume(self, group_id: str = "g1", *, broker: Any = None, **env: str) -> Any:
        return self.engine(broker, **env).resume_group(TENANT, group_id)

    def stored(self, group_id: str = "g1") -> Any:
        """The group as stored (no broker involved)."""
        from backend.execution.groups import ExecutionGroup

        snap = self.store.load_group(TENANT, group_id)
        return None if snap is None else ExecutionGroup.from_dict(
            {k: v for k, v in snap.doc.items() if not k.startswith("_")})

    def expire_lease(self) -> None:
        self.clock.advance(LEASE_SECONDS + 1)

    def sweep(self, **env: str) -> list[Any]:
        """What the sweeper does: find groups whose lease expired and resume each."""
        return [self.resume(gid, **env) for _, gid in self.store.find_stuck_groups(self.clock.now(), 10)]

    def check_invariants(self) -> None:
        assert_ledger_matches_venue(self.store, self.venue)
        assert_one_order_per_client_id(self.venue, *self.wrappers)


# --------------------------------------------------------------------------------------------
# Invariants
# --------------------------------------------------------------------------------------------


def ledger_rows(store: Any, tenant_id: str = TENANT) -> list[dict[str, Any]]:
    """Every ledger row of the tenant, from an InMemoryStore or a FirestoreStore."""
    if hasattr(store, "docs"):
        return list(store.collection(f"tenants/{tenant_id}/ledger_trades").values())
    collection = store.db.collection("tenants").document(tenant_id).collection("ledger_trades")
    return [snap.to_dict() for snap in collection.stream()]


def group_ledger_rows(store: Any, tenant_id: str = TENANT) -> list[dict[str, Any]]:
    return [row for row in ledger_rows(store, tenant_id) if row.get("kind") in LEDGER_KINDS]


def ledger_net_positions(rows: Iterable[Mapping[str, Any]], venue: Any) -> dict[str, Decimal]:
    """Net position per venue symbol from group_fill / rollback_fill rows: buy +, sell -."""
    net: dict[str, Decimal] = defaultdict(Decimal)
    for row in rows:
        if row.get("kind") not in LEDGER_KINDS:
            continue
        symbol, _ = venue.market.resolve(row["symbol"], row["asset_class"])
        sign = 1 if row["side"] == "buy" else -1
        net[symbol] += sign * Decimal(row["filled_qty"])
    return {s: q for s, q in net.items() if q != 0}


def venue_net_positions(venue: Any) -> dict[str, Decimal]:
    """Net position per symbol at the venue, from its fills (checked against its holdings)."""
    net: dict[str, Decimal] = defaultdict(Decimal)
    for fill in venue.fills():
        net[fill.symbol] += fill.side.direction * fill.qty
    out = {s: q for s, q in net.items() if q != 0}
    for symbol, qty in out.items():
        assert venue.net_position(symbol) == qty, f"venue fills and holdings disagree on {symbol}"
    return out


def assert_ledger_matches_venue(store: Any, venue: Any, tenant_id: str = TENANT) -> None:
    rows = group_ledger_rows(store, tenant_id)
    ids = [row["trade_id"] for row in rows]
    assert len(ids) == len(set(ids)), f"a ledger row is doubled: {ids}"
    assert ledger_net_positions(rows, venue) == venue_net_positions(venue), "ledger and venue positions differ"


def orders_per_client_id(venue: Any) -> Counter[str]:
    return Counter(order.client_order_id for order in venue.orders())


def assert_one_order_per_client_id(venue: Any, *wrappers: CrashingBroker) -> None:
    """No client order id is used twice at the venue, and no submit with it reached the venue twice."""
    doubled = {cid: n for cid, n in orders_per_client_id(venue).items() if n > 1}
    assert not doubled, f"client order ids with several venue orders: {doubled}"
    sent = Counter(cid for w in wrappers for cid in w.submitted)
    resent = {cid: n for cid, n in sent.items() if n > 1}
    assert not resent, f"client order ids submitted more than once: {resent}"


def assert_flat(venue: Any) -> None:
    assert venue_net_positions(venue) == {}, f"open position left: {venue_net_positions(venue)}"


# --------------------------------------------------------------------------------------------
# Child process for the real process-kill test (integration)
# --------------------------------------------------------------------------------------------

CHILD_CODE = "from tests.support.group_harness import crash_child_main; crash_child_main()"


def crash_child_main() -> None:
    """Run one group against a LocalAlpacaServer (URL in argv) and the Firestore emulator (env), dying
    with ``os._exit(1)`` at the crash point. argv: url, group_id, request JSON, method, nth, when."""
    from backend.adapters.alpaca_broker import AlpacaBroker
    from backend.adapters.firestore_store import FirestoreStore
    from backend.domain.clock import ManualClock
    from backend.execution.engine import ExecutionEngine

    url, group_id, body, method, nth, when = sys.argv[1:7]
    clock = ManualClock()  # T0, the same start as the venue's clock in the test process
    broker = CrashingBroker(AlpacaBroker("k", "s", url_override=url, clock=clock, timeout_seconds=5),
                            crash=CrashPoint(method, int(nth), when), exit_process=True)
    store = FirestoreStore.from_env()
    engine = ExecutionEngine(broker=broker, store=store, clock=clock, dry_run=False, settings=exec_settings())
    request = json.loads(body)
    approve(store, request)  # the risk desk's approval the request references
    group = engine.execute_group(request, CTX, group_id=group_id)
    print(f"child finished without crashing: {group.status.value}")
    sys.exit(3)
