"""The one pre-trade gate every venue-bound order passes (single intents, group legs, rollbacks).

Pure decisions over a ``RiskSnapshot`` plus one choke point at the venue:

- :meth:`PreTradeGate.check` — kill switches (operator env, ``ops/execution``, tenant config),
  daily trade count, position limit per asset class (``RiskLimits.position_limit``) against the
  exposure including every in-flight reservation. ``purpose="flatten"`` (a group's rollback order)
  skips the limits that would block flattening — kill switch, daily count and position limit — it
  only ever reduces exposure; it is never exempt from dry run.
- :attr:`PreTradeGate.dry_run` — decided by the caller *before* any reservation (the engine answers
  ``dry_run``; a group ends ``DRY_RUN``); the venue guard below refuses any submit while it is on.
- :class:`GuardedVenue` wraps every venue the engine and the group executor use: while dry run is
  on, ``submit_order`` raises :class:`DryRunBlocked` and never reaches the venue, whatever path
  (state machine, resume, rollback, a future one) got there. Reads pass through.

Exactness under concurrency stays with the store: daily slots are created with create-if-absent,
exposure is reserved with blind increments, and the caller re-checks after its reservation is
visible (``include_own_reservation=True``).

Reads (the group path): :func:`halt_paths` / :func:`halt_flags` let a caller fetch the halt flags in the
same ``get_all`` as the exposure documents a step needs. Their staleness budget is zero: they are never
cached, and are read once per validation and once per leg right before it is sent.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Callable, Mapping

from backend.domain.assets import AssetClass
from backend.domain.errors import RejectCode, Rejection
from backend.logs import log_event
from backend.risk.manager import RiskManager, RiskSnapshot

ENTRY = "entry"
_OTHER_VENUE_WRITES = frozenset({"close_position", "submit_multileg_options"})
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


def halt_paths(tenant_id: str) -> tuple[str, str]:
    """The documents holding the halt flags: ``ops/execution`` and the tenant's ``config/risk``
    (what ``store.kill_switches`` reads), for a caller batching them into one ``get_all``."""
    return GLOBAL_SWITCH_PATH, f"tenants/{tenant_id}/config/risk"


def halt_flags(docs: Mapping[str, tuple[Any, Any]], tenant_id: str) -> RiskSnapshot:
    """The halt flags from a ``get_all`` answer that includes :func:`halt_paths` (as ``kill_switches``)."""
    ops_path, config_path = halt_paths(tenant_id)
    ops = docs[ops_path][0] or {}
    return RiskSnapshot(global_kill_switch=bool(ops.get("kill_switch", False)), tenant_overrides=docs[config_path][0])


class PreTradeGate:
    def __init__(self, risk: RiskManager, dry_run: Callable[[], bool], *, env_kill_switch: bool = False):
        self.risk = risk
        self._dry_run = dry_run
        self.env_kill_switch = env_kill_switch

    @property
    def dry_run(self) -> bool:
        return bool(self._dry_run())

    def halted(self, snapshot: RiskSnapshot | None) -> Rejection | None:
        """The kill switches only (operator env, ``ops/execution``, tenant config)."""
        if self.env_kill_switch:
            return Rejection(RejectCode.KILL_SWITCH, "trading halted (global)")
        if snapshot is None:
            return None
        if snapshot.global_kill_switch:
            return Rejection(RejectCode.KILL_SWITCH, "trading halted (global)")
        if (snapshot.tenant_overrides or {}).get("kill_switch"):
            return Rejection(RejectCode.KILL_SWITCH, "trading halted (tenant)")
        if self.risk.effective_limits(snapshot).kill_switch:
            return Rejection(RejectCode.KILL_SWITCH, "trading halted (global)")
        return None

    def check(self, signed_qty: Decimal, snapshot: RiskSnapshot, *, asset_class: AssetClass | None,
              include_own_reservation: bool = False, purpose: str = ENTRY,
              count_daily: bool = True) -> Rejection | None:
        """The first failing rule as a coded rejection, or None. ``count_daily=False``: the daily
        slot is already held (a group leg re-checked at submit)."""
        if purpose == FLATTEN:
            return None  # flattening is never blocked by a limit (it reduces exposure); dry run still holds
        halted = self.halted(snapshot)
        if halted is not None:
            return halted
        if not count_daily:
            include_own_reservation = True
        return self.risk.check(signed_qty, snapshot, include_own_reservation=include_own_reservation,
                               asset_class=asset_class)

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
            if self._dry_run():  # close_position and multi-leg options send orders too
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
