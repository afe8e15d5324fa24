"""The one pre-trade gate every venue-bound order passes (single intents, group legs, rollbacks).

Pure decisions over a ``RiskSnapshot`` (and, issue 13, the bound ``Account``) plus one choke point at
the venue:

- :meth:`PreTradeGate.check` — trading states (operator env + ``ops/execution``, tenant
  ``config/risk``, account status: ``active`` / ``reduce_only`` / ``halted``, the most restrictive
  wins), daily trade count (tenant, and the account's own when it has a limit), order notional
  (when a price is known), position limit per asset class (operator ∧ tenant ∧ account, the stricter
  wins) against the exposure including every in-flight reservation. ``purpose="flatten"`` (a group's
  rollback order) skips every one of them — it only ever reduces exposure, so rollbacks of open
  groups proceed under any state; it is never exempt from dry run.
- :attr:`PreTradeGate.dry_run` — decided by the caller *before* any reservation (the engine answers
  ``dry_run``; a group ends ``DRY_RUN``); the venue guard below refuses any submit while it is on.
- :class:`GuardedVenue` wraps every venue the engine and the group executor use: while dry run is
  on, ``submit_order`` raises :class:`DryRunBlocked` and never reaches the venue, whatever path
  (state machine, resume, rollback, a future one) got there. Reads pass through.

Refusal codes of the states: operator/tenant halted → ``KILL_SWITCH`` (as before); account halted →
``ACCOUNT_HALTED``, closed → ``ACCOUNT_CLOSED``; any level reduce-only and the order does not shrink
|position| (in-flight reservations in its direction counted) → ``REDUCE_ONLY`` naming the level.

Exactness under concurrency stays with the store: daily slots are created with create-if-absent,
exposure is reserved with blind increments, and the caller re-checks after its reservation is
visible (``include_own_reservation=True``).

Reads (the group path): :func:`halt_paths` / :func:`halt_flags` let a caller fetch the switch
documents — and with an account id its document (:func:`account_in`) — in the same ``get_all`` as the
exposure documents a step needs. Their staleness budget is zero: they are never cached, and are read
once per validation and once per leg right before it is sent.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Callable, Mapping

from backend.domain.assets import AssetClass
from backend.domain.errors import RejectCode, Rejection
from backend.logs import log_event
from backend.risk.manager import RiskManager, RiskSnapshot, TradingState, snapshot_from_docs

ENTRY = "entry"
_OTHER_VENUE_WRITES = frozenset({"close_position", "submit_multileg_options", "replace_order"})  # replace: a new order
FLATTEN = "flatten"


class DryRunBlocked(Exception):
    """A submit reached the venue guard while dry run is on: nothing was sent."""

    def __init__(self, client_order_id: str, symbol: str):
        super().__init__(f"dry run: order {client_order_id} ({symbol}) not sent")
        self.client_order_id = client_order_id
        self.symbol = symbol


def account_key_for(broker_account_id: str, symbol: str) -> str:
    """The exposure document key of (account label, symbol): one definition for intents and legs."""
    return f"{broker_account_id}__{symbol.replace('/', '-')}"


GLOBAL_SWITCH_PATH = "ops/execution"


def halt_paths(tenant_id: str, account_id: str | None = None) -> tuple[str, ...]:
    """The documents holding the trading states: ``ops/execution`` and the tenant's ``config/risk``
    (what ``store.kill_switches`` reads), and with ``account_id`` the account's document (its status
    and limits), for a caller batching them into one ``get_all``."""
    paths: tuple[str, ...] = (GLOBAL_SWITCH_PATH, f"tenants/{tenant_id}/config/risk")
    if account_id is not None:
        paths += (f"tenants/{tenant_id}/accounts/{account_id}",)
    return paths


def halt_flags(docs: Mapping[str, tuple[Any, Any]], tenant_id: str) -> RiskSnapshot:
    """The switch states from a ``get_all`` answer that includes :func:`halt_paths` (as ``kill_switches``)."""
    ops_path, config_path = halt_paths(tenant_id)
    return snapshot_from_docs(docs[ops_path][0], docs[config_path][0])


def account_in(docs: Mapping[str, tuple[Any, Any]], tenant_id: str, account_id: str) -> Any:
    """The ``Account`` in a ``get_all`` answer that includes ``halt_paths(tenant_id, account_id)``;
    None when its document is absent (a caller starting new work refuses then: ACCOUNT_NOT_FOUND).
    A document the codec refuses raises ``InvalidInput`` (fail closed)."""
    from backend.domain.accounts import Account

    doc = docs[halt_paths(tenant_id, account_id)[2]][0]
    return None if doc is None else Account.from_dict(doc)


def account_state(account: Any) -> TradingState:
    """An account's status as a trading state (``closed`` refuses like ``halted``)."""
    if account is None:
        return TradingState.ACTIVE
    status = getattr(getattr(account, "status", None), "value", getattr(account, "status", None))
    if status == "active":
        return TradingState.ACTIVE
    if status == "reduce_only":
        return TradingState.REDUCE_ONLY
    return TradingState.HALTED  # halted, closed, or anything unreadable: fail closed


class PreTradeGate:
    def __init__(self, risk: RiskManager, dry_run: Callable[[], bool], *, env_kill_switch: bool = False):
        self.risk = risk
        self._dry_run = dry_run
        self.env_kill_switch = env_kill_switch

    @property
    def dry_run(self) -> bool:
        return bool(self._dry_run())

    def halted(self, snapshot: RiskSnapshot | None, account: Any = None) -> Rejection | None:
        """A level in state ``halted`` (operator env, ``ops/execution``, tenant config, account status),
        or None. ``reduce_only`` is not halted: :meth:`check` decides it per order."""
        if self.env_kill_switch:
            return Rejection(RejectCode.KILL_SWITCH, "trading halted (global)")
        if snapshot is not None:
            if snapshot.operator_trading_state is TradingState.HALTED:
                return Rejection(RejectCode.KILL_SWITCH, "trading halted (global)")
            if snapshot.tenant_trading_state is TradingState.HALTED:
                return Rejection(RejectCode.KILL_SWITCH, "trading halted (tenant)")
            if self.risk.effective_limits(snapshot).kill_switch:
                return Rejection(RejectCode.KILL_SWITCH, "trading halted (global)")
        if account_state(account) is TradingState.HALTED:
            status = getattr(getattr(account, "status", None), "value", "halted")
            code = RejectCode.ACCOUNT_CLOSED if status == "closed" else RejectCode.ACCOUNT_HALTED
            return Rejection(code, f"account {getattr(account, 'account_id', '?')} is {status}")
        return None

    def reduce_only_level(self, snapshot: RiskSnapshot | None, account: Any = None) -> str | None:
        """The first level (``operator``, ``tenant``, ``account``) in state ``reduce_only``, or None."""
        if snapshot is not None:
            if snapshot.operator_trading_state is TradingState.REDUCE_ONLY:
                return "operator"
            if snapshot.tenant_trading_state is TradingState.REDUCE_ONLY:
                return "tenant"
        if account_state(account) is TradingState.REDUCE_ONLY:
            return "account"
        return None

    def trading_state(self, snapshot: RiskSnapshot | None, account: Any = None) -> TradingState:
        """The effective state: the most restrictive of every level."""
        if self.halted(snapshot, account) is not None:
            return TradingState.HALTED
        return TradingState.REDUCE_ONLY if self.reduce_only_level(snapshot, account) else TradingState.ACTIVE

    def check(self, signed_qty: Decimal, snapshot: RiskSnapshot, *, asset_class: AssetClass | None,
              include_own_reservation: bool = False, purpose: str = ENTRY,
              count_daily: bool = True, account: Any = None, price: Decimal | None = None) -> Rejection | None:
        """The first failing rule as a coded rejection, or None. ``count_daily=False``: the daily
        slot is already held (a group leg re-checked at submit). ``account``: the bound
        ``backend.domain.accounts.Account`` (None: no account rules, today's behaviour) — its status is
        a trading state and its limits tighten the tenant's. ``price``: one unit's price (price x
        multiplier for contracts) when known; ``max_order_notional`` applies only with it."""
        if purpose == FLATTEN:
            return None  # flattening is never blocked by a state or a limit (it reduces exposure); dry run still holds
        halted = self.halted(snapshot, account)
        if halted is not None:
            return halted
        if not count_daily:
            include_own_reservation = True
        level = self.reduce_only_level(snapshot, account)
        if level is not None and not snapshot.exposure.reduced_by(signed_qty,
                                                                  include_own_reservation=include_own_reservation):
            return Rejection(RejectCode.REDUCE_ONLY, f"{level} is reduce-only: position={snapshot.exposure.position} "
                                                     f"order={signed_qty} does not only reduce it")
        return self.risk.check(signed_qty, snapshot, include_own_reservation=include_own_reservation,
                               asset_class=asset_class, account=account, price=price)

    def guard(self, venue: Any) -> Any:
        if isinstance(venue, GuardedVenue) or isinstance(venue, Rejection):
            return venue
        return GuardedVenue(venue, self._dry_run)

    def route(self, router: Any, asset_class: Any, cache: dict[int, "GuardedVenue"]) -> Any:
        """The class's venue through ``router``, wrapped by this gate's dry-run guard (one wrapper per
        venue, kept in the caller's ``cache``); a ``Rejection`` when no venue trades the class."""
        venue = router.route(asset_class)
        if isinstance(venue, Rejection):
            return venue
        guarded = cache.get(id(venue))
        if guarded is None or guarded.inner is not venue:
            guarded = cache[id(venue)] = self.guard(venue)
        return guarded


class GuardedVenue:
    """A venue whose order-sending calls (``submit_order``, ``close_position``, ``submit_multileg_options``)
    refuse while dry run is on; reads and cancels pass through."""

    def __init__(self, venue: Any, dry_run: Callable[[], bool]):
        self._venue = venue
        self._dry_run = dry_run

    @property
    def inner(self) -> Any:
        return self._venue

    def submit_order(self, request: Any) -> Any:
        if self._dry_run():
            log_event("exec.dry_run_blocked", severity="ALERT", client_order_id=request.client_order_id,
                      symbol=request.symbol, side=getattr(request.side, "value", request.side),
                      qty=request.qty, note="a submit reached the venue guard while dry run is on; nothing sent")
            raise DryRunBlocked(request.client_order_id, request.symbol)
        return self._venue.submit_order(request)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        attr = getattr(self._venue, name)  # AttributeError when the venue has no such call
        if name not in _OTHER_VENUE_WRITES:
            return attr

        def refused_under_dry_run(*args: Any, **kwargs: Any) -> Any:
            if self._dry_run():  # close_position, multi-leg options and a replace send orders too
                log_event("exec.dry_run_blocked", severity="ALERT", call=name,
                          note="a venue write reached the guard while dry run is on; nothing sent")
                raise DryRunBlocked(name, str(args[0]) if args else "")
            return attr(*args, **kwargs)

        return refused_under_dry_run

    def __eq__(self, other: object) -> bool:
        inner = other.inner if isinstance(other, GuardedVenue) else other
        return self._venue is inner

    def __hash__(self) -> int:
        return id(self._venue)
