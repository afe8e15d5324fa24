"""Pre-trade risk: trading states, daily trade count, position and notional limits. Pure; never
raises for a "no".

The checks are pure functions of a ``RiskSnapshot`` the store reads. Exactness under concurrency
is the store's job (daily slots are created with a create-if-absent precondition; position
exposure is reserved before the broker call and re-checked) — see docs/ARCHITECTURE.md.

Limits come from the environment (``EXEC_*``, the operator's) and can be tightened per tenant by the
document ``tenants/<tenant>/config/risk`` and per account by ``tenants/<t>/accounts/<a>.limits``
(issue 13): a tenant or an account can lower a limit, never raise it above the operator's — every
level is combined with ``min`` (the stricter wins).

Trading states (issue 13 item 4) — ``active`` < ``reduce_only`` < ``halted`` — exist at three levels:
the operator (``ops/execution``, plus ``EXEC_KILL_SWITCH``), the tenant (``config/risk``) and the
account (its ``status``; ``closed`` counts as halted). The most restrictive wins. Each switch
document carries ``trading_state`` and, for back compatibility, the boolean ``kill_switch``
(``true`` = halted); a document is as restrictive as the stricter of the two, and an unreadable
``trading_state`` is ``halted`` (fail closed). ``trading_state_of`` is the one reader.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import Enum
from typing import Any, Mapping

from backend.domain.assets import AssetClass
from backend.domain.errors import InvalidInput, RejectCode, Rejection
from backend.domain.money import ZERO, to_decimal
from backend.settings import ExecSettings


class TradingState(str, Enum):
    """What a level lets through: everything, only position-reducing orders, nothing new."""

    ACTIVE = "active"
    REDUCE_ONLY = "reduce_only"
    HALTED = "halted"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {TradingState.ACTIVE: 0, TradingState.REDUCE_ONLY: 1, TradingState.HALTED: 2}


def most_restrictive(*states: TradingState | None) -> TradingState:
    """The strictest of ``states`` (None counts as active)."""
    out = TradingState.ACTIVE
    for state in states:
        if state is not None and state.rank > out.rank:
            out = state
    return out


def trading_state_of(doc: Mapping[str, Any] | None) -> TradingState:
    """The state a switch document (``ops/execution``, ``tenants/{t}/config/risk``) sets: the stricter
    of ``trading_state`` and the legacy ``kill_switch`` boolean. A missing document or field is
    active; a ``trading_state`` that is not one of the three values is halted (fail closed: the
    document was written to stop something)."""
    if not doc:
        return TradingState.ACTIVE
    legacy = TradingState.HALTED if doc.get("kill_switch") else TradingState.ACTIVE
    raw = doc.get("trading_state")
    if raw is None:
        return legacy
    try:
        state = TradingState(raw)
    except (ValueError, TypeError):
        state = TradingState.HALTED
    return most_restrictive(legacy, state)


def switch_fields(state: TradingState) -> dict[str, Any]:
    """What a switch document stores for ``state``: ``trading_state`` plus the legacy ``kill_switch``
    (true only for halted), so readers that know only the boolean still stop on a halt."""
    return {"trading_state": state.value, "kill_switch": state is TradingState.HALTED}


def _limit_decimal(value: Any, name: str) -> Decimal:
    dec = to_decimal(value, name)
    if dec < 0:
        raise InvalidInput(name, "must not be negative")
    return dec


@dataclass(frozen=True)
class RiskLimits:
    kill_switch: bool = False
    max_position_qty: Decimal = Decimal("100")
    max_daily_trades: int = 50
    # A unit of FX (1 EUR) and a unit of BTC are not comparable: optional per-class position limits
    # (EXEC_MAX_POSITION_QTY_FOREX, ...) replace the global one for that class.
    max_position_by_class: Mapping[AssetClass, Decimal] = field(default_factory=dict)
    # |qty| x unit price of one order; None: no limit (the operator sets none; a tenant or account may)
    max_order_notional: Decimal | None = None
    # the account's own daily trade limit (counted per account); None: none
    max_daily_trades_account: int | None = None

    def position_limit(self, asset_class: AssetClass | None) -> Decimal:
        if asset_class is not None and asset_class in self.max_position_by_class:
            return self.max_position_by_class[asset_class]
        return self.max_position_qty

    def tightened_by(self, overrides: Mapping[str, Any] | None) -> "RiskLimits":
        """These limits with a tenant's ``config/risk`` applied (each value only ever lowers one)."""
        if not overrides:
            return self
        kill = self.kill_switch or bool(overrides.get("kill_switch", False))
        max_daily = self.max_daily_trades
        if overrides.get("max_daily_trades") is not None:
            value = overrides["max_daily_trades"]
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidInput("max_daily_trades", "must be an integer")
            max_daily = min(max_daily, value)
        limits = replace(self, kill_switch=kill, max_daily_trades=max_daily)
        return limits._tightened_positions(overrides.get("max_position_qty"), overrides.get("max_position_by_class"),
                                           overrides.get("max_order_notional"))

    def tightened_by_account(self, account_limits: Any) -> "RiskLimits":
        """These limits with an account's optional ``AccountLimits`` applied (the stricter wins); the
        account's daily limit is kept apart (``max_daily_trades_account``: its own count)."""
        if account_limits is None:
            return self
        limits = self._tightened_positions(account_limits.max_position_qty, account_limits.max_position_by_class,
                                           account_limits.max_order_notional)
        daily = account_limits.max_daily_trades
        if daily is not None and self.max_daily_trades_account is not None:
            daily = min(daily, self.max_daily_trades_account)
        return replace(limits, max_daily_trades_account=daily if daily is not None else self.max_daily_trades_account)

    def _tightened_positions(self, max_position: Any, by_class: Any, notional: Any) -> "RiskLimits":
        max_pos = self.max_position_qty
        per_class = dict(self.max_position_by_class)
        if max_position is not None:
            max_pos = min(max_pos, _limit_decimal(max_position, "max_position_qty"))
            per_class = {k: min(v, max_pos) for k, v in per_class.items()}
        tightened = replace(self, max_position_qty=max_pos, max_position_by_class=per_class)
        if by_class:
            if not isinstance(by_class, Mapping):
                raise InvalidInput("max_position_by_class", "must be an object of asset class -> decimal")
            for name, value in by_class.items():
                klass = AssetClass.parse(name)
                per_class[klass] = min(tightened.position_limit(klass),
                                       _limit_decimal(value, f"max_position_by_class.{klass.value}"))
            tightened = replace(tightened, max_position_by_class=per_class)
        if notional is not None:
            value = _limit_decimal(notional, "max_order_notional")
            current = tightened.max_order_notional
            tightened = replace(tightened, max_order_notional=value if current is None else min(current, value))
        return tightened


@dataclass(frozen=True)
class Exposure:
    """Position and in-flight reservations for one (tenant, account, symbol)."""

    position: Decimal = ZERO
    reserved_long: Decimal = ZERO  # buys reserved but not yet settled
    reserved_short: Decimal = ZERO  # sells reserved but not yet settled (positive number)

    def worst_case_after(self) -> tuple[Decimal, Decimal]:
        """Highest and lowest position reachable if every reservation fills."""
        return self.position + self.reserved_long, self.position - self.reserved_short

    def reduced_by(self, signed_qty: Decimal, *, include_own_reservation: bool = False) -> bool:
        """Whether an order of ``signed_qty`` only shrinks |position|: it is against the position and,
        with every in-flight reservation in its direction filled too, the position does not cross
        zero. ``include_own_reservation``: the order's own reservation is already in ``reserved_*``."""
        extra = ZERO if include_own_reservation else signed_qty
        if signed_qty < 0:
            return self.position > 0 and self.position - self.reserved_short + extra >= 0
        if signed_qty > 0:
            return self.position < 0 and self.position + self.reserved_long + extra <= 0
        return False


@dataclass(frozen=True)
class RiskSnapshot:
    """What the gate decides on. Stores build it with ``snapshot_from_docs`` (issue 13 fields:
    ``operator_state`` from ``ops/execution``, ``account_trades_today`` = the count of
    ``tenants/{t}/risk_days/{day}/accounts/{account_id}/trade_slots``; None = not read)."""

    global_kill_switch: bool = False
    tenant_overrides: Mapping[str, Any] | None = None
    trades_today: int = 0
    exposure: Exposure = Exposure()
    operator_state: TradingState | None = None
    account_trades_today: int | None = None
    # issue 17: the counts are the day's tally (a hint: ``store_rules.counts_near_limit`` decides when
    # they are counted exactly before a refusal), not count aggregations
    counts_are_hints: bool = False

    @property
    def operator_trading_state(self) -> TradingState:
        return most_restrictive(TradingState.HALTED if self.global_kill_switch else None, self.operator_state)

    @property
    def tenant_trading_state(self) -> TradingState:
        return trading_state_of(self.tenant_overrides)

    def with_counts(self, *, trades_today: int | None = None, exposure: Exposure | None = None,
                    account_trades_today: int | None = None) -> "RiskSnapshot":
        """This snapshot with fresher counts/exposure (keeps the switch fields: use this instead of
        building a new ``RiskSnapshot`` from some of the fields)."""
        return replace(self, trades_today=self.trades_today if trades_today is None else trades_today,
                       exposure=self.exposure if exposure is None else exposure,
                       account_trades_today=(self.account_trades_today if account_trades_today is None
                                             else account_trades_today))


def snapshot_from_docs(ops: Mapping[str, Any] | None, tenant_config: Mapping[str, Any] | None, *,
                       trades_today: int = 0, exposure: Exposure = Exposure(),
                       account_trades_today: int | None = None, counts_are_hints: bool = False) -> RiskSnapshot:
    """The one way a store turns ``ops/execution`` and ``tenants/{t}/config/risk`` (as stored; None when
    absent) into a snapshot."""
    state = trading_state_of(ops)
    return RiskSnapshot(global_kill_switch=state is TradingState.HALTED, tenant_overrides=tenant_config,
                        trades_today=trades_today, exposure=exposure, operator_state=state,
                        account_trades_today=account_trades_today, counts_are_hints=counts_are_hints)


class RiskManager:
    """``RiskManager()`` reads limits from the environment, as in the seed."""

    def __init__(self, limits: RiskLimits | None = None, settings: ExecSettings | None = None):
        if limits is None:
            s = settings or ExecSettings.from_env()
            limits = RiskLimits(s.kill_switch, s.max_position_qty, s.max_daily_trades, dict(s.max_position_by_class))
        self.limits = limits

    def effective_limits(self, snapshot: RiskSnapshot, account: Any = None) -> RiskLimits:
        """The operator's limits tightened by the tenant's overrides and, with ``account`` (a
        ``backend.domain.accounts.Account``), by its limits."""
        limits = self.limits.tightened_by(snapshot.tenant_overrides)
        if snapshot.global_kill_switch and not limits.kill_switch:
            limits = replace(limits, kill_switch=True)
        if account is not None:
            limits = limits.tightened_by_account(getattr(account, "limits", None))
        return limits

    def check(self, signed_qty: Decimal, snapshot: RiskSnapshot, *, include_own_reservation: bool = False,
              asset_class: AssetClass | None = None, account: Any = None,
              price: Decimal | None = None) -> Rejection | None:
        """First failing rule as a coded rejection, or None.

        ``include_own_reservation``: the snapshot already contains this intent's reservation
        (the post-reservation re-check), so it must not be added twice and the daily counts are not
        checked again (the slots are held). ``account``: its limits apply too (the stricter wins);
        its daily limit needs ``snapshot.account_trades_today`` (None → ``RISK_DATA_UNAVAILABLE``:
        no count, no trade). ``price``: the price of one unit of ``signed_qty`` (price x multiplier
        for contracts); with it, ``max_order_notional`` applies.
        """
        limits = self.effective_limits(snapshot, account)
        if limits.kill_switch:
            scope = "tenant" if (snapshot.tenant_overrides or {}).get("kill_switch") else "global"
            return Rejection(RejectCode.KILL_SWITCH, f"trading halted ({scope})")
        if not include_own_reservation and snapshot.trades_today >= limits.max_daily_trades:
            return Rejection(RejectCode.DAILY_TRADE_LIMIT,
                             f"count={snapshot.trades_today} limit={limits.max_daily_trades}")
        if not include_own_reservation and limits.max_daily_trades_account is not None:
            if snapshot.account_trades_today is None:
                return Rejection(RejectCode.RISK_DATA_UNAVAILABLE, "the account's daily trade count was not read")
            if snapshot.account_trades_today >= limits.max_daily_trades_account:
                return Rejection(RejectCode.DAILY_TRADE_LIMIT,
                                 f"account {getattr(account, 'account_id', '?')} count={snapshot.account_trades_today} "
                                 f"limit={limits.max_daily_trades_account}")
        if price is not None and limits.max_order_notional is not None:
            notional = abs(signed_qty) * price
            if notional > limits.max_order_notional:
                return Rejection(RejectCode.POSITION_LIMIT, f"order notional={notional} "
                                                            f"max_order_notional={limits.max_order_notional}")
        # Only the extreme this order pushes is checked, so an order that reduces a position
        # (even one already above the limit) is always allowed.
        high, low = snapshot.exposure.worst_case_after()
        extra = ZERO if include_own_reservation else signed_qty
        worst = high + extra if signed_qty > 0 else low + extra
        limit = limits.position_limit(asset_class)
        if abs(worst) > limit and (worst > 0) == (signed_qty > 0):
            return Rejection(RejectCode.POSITION_LIMIT,
                             f"position={snapshot.exposure.position} order={signed_qty} "
                             f"worst_case={worst} limit={limit}")
        return None
