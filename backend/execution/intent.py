"""Order intents and the verified identity they execute under.

``OrderIntent`` keeps the seed's constructor (``strategy_id, broker_account_id, symbol, side, qty,
asset_class, estimated_slippage=None, metadata={}``) and parses everything on the way in: the
symbol is normalized, an omitted asset class is the symbol's own (``BTC/USD`` CRYPTO, ``EUR/USD``
FOREX, a plain ticker EQUITY; the seed's default was EQUITY) and a given one that contradicts the
symbol is refused, ``FX`` is read as FOREX, the side is an enum and the quantity a Decimal
that is an exact multiple of the instrument's lot size. Bad input raises ``InvalidInput`` naming
the field, before anything is written anywhere.
"""
from __future__ import annotations

import copy
import dataclasses
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import Any, Mapping, TypeVar

from backend.domain.assets import AssetClass, AssetSpec, default_registry, normalize_symbol, resolve_asset_class
from backend.domain.capabilities import default_time_in_force
from backend.domain.errors import InvalidInput
from backend.domain.ids import ID, LOT_ID, METADATA_KEY
from backend.domain.money import dec_str, to_decimal
from backend.domain.orders import (OrderClass, OrderSide, OrderType, StopLoss, TakeProfit, TimeInForce,
                                   check_order_class, check_order_prices)
from backend.execution.client_ids import single_client_order_id
from backend.execution.wide_spread import WideSpread, parse_wide_spread

MAX_METADATA_KEYS = 64  # the API allows 32 from the client; a signal adds its own few
MAX_METADATA_TEXT = 500
MAX_LOT_IDS = 100


def validate_id(value: Any, field_name: str) -> str:
    """The one id rule (``backend.domain.ids.ID``): charset, length and no Firestore-reserved name."""
    return ID.check(value, field_name)


def validate_metadata(value: Any) -> dict[str, Any]:
    """Keys become Firestore field names: each must pass ``METADATA_KEY`` (no ``__x__``, ``.``).
    Values are scalars (strings at most 500 characters), except ``lot_ids``: a flat map of lot id →
    quantity (string or number), at most 100 entries. Anything deeper is refused, not dropped."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInput("metadata", "must be an object")
    if len(value) > MAX_METADATA_KEYS:
        raise InvalidInput("metadata", f"at most {MAX_METADATA_KEYS} keys")
    out: dict[str, Any] = {}
    for key, item in value.items():
        METADATA_KEY.check(key, "metadata" if not isinstance(key, str) else f"metadata.{key[:64]}")
        where = f"metadata.{key}"
        if key == "lot_ids" and isinstance(item, Mapping):
            if len(item) > MAX_LOT_IDS:
                raise InvalidInput(where, f"at most {MAX_LOT_IDS} lots")
            lots: dict[str, str] = {}
            for lot_id, qty in item.items():
                LOT_ID.check(lot_id, where)
                if isinstance(qty, str) and len(qty) > 64:
                    raise InvalidInput(f"{where}.{lot_id}", "must be a quantity (a decimal string or number)")
                lots[lot_id] = dec_str(to_decimal(qty, f"{where}.{lot_id}"))  # stored exact, never a Decimal
            out[key] = lots
            continue
        if isinstance(item, str) and len(item) > MAX_METADATA_TEXT:
            raise InvalidInput(where, f"strings are at most {MAX_METADATA_TEXT} characters")
        if isinstance(item, (Mapping, list, tuple, set)):
            raise InvalidInput(where, "values must be a string, a number, a boolean or null")
        out[key] = item
    return out


def client_order_id_for(tenant_id: str, key: str, prefix: str = "x", *, account: str | None = None) -> str:
    """Deterministic broker client order id (≤ 48 chars) for one single-leg intent.

    Derived from the tenant, the account label (``broker_account_id``) and the intent id, so a
    retry or a resume produces the same id and the venue refuses a second order, while two tenants
    (or two accounts) sharing a broker account can never collide. See backend/execution/client_ids.py.
    """
    return single_client_order_id(tenant_id, key, account=account, prefix=prefix)


@dataclass(frozen=True)
class ExecutionContext:
    """Who an intent executes for. Built from a verified ID token (HTTP) or the trigger path; never
    from a request body."""

    tenant_id: str
    uid: str
    role: str = "trader"
    # the account binding (``backend.ports.accounts.AccountBinding``) once the engine has bound the
    # request to an account (issue 12); None before, and for records written before accounts existed
    account: Any = None
    # issue 17, set by the HTTP API for one request: blind writes that ride the engine's first commit
    # (``unit_of_work.SideWrites``: the rate limiter's counters) and a check of the intent record the
    # engine's batched read answered (a client-chosen id must name this very request) — run before
    # anything else, so the API needs no read of its own
    side_writes: Any = field(default=None, compare=False)
    record_check: Any = field(default=None, compare=False)
    # the rate limiter's shared line when its counts are due a read: ``paths`` join the batched read,
    # calling it with the documents read refuses (429) before anything else
    rate_check: Any = field(default=None, compare=False)
    # the caller's account check (disabled, revoked, claims changed) still running: called right after
    # the batched read, before anything is written; it raises the API's 401
    identity_check: Any = field(default=None, compare=False)

    def __post_init__(self) -> None:
        validate_id(self.tenant_id, "tenant_id")
        validate_id(self.uid, "uid")


_E = TypeVar("_E", bound=Enum)


def _parse_choice(kind: type[_E], value: Any, field_name: str, expected: str) -> _E:
    """The member itself, or its lower-case value in any case; otherwise ``InvalidInput`` naming the field."""
    if isinstance(value, kind):
        return value
    if isinstance(value, str):
        try:
            return kind(value.strip().lower())
        except ValueError:
            pass
    raise InvalidInput(field_name, f"expected {expected}, got {value!r}")


def _parse_side(value: Any) -> OrderSide:
    return _parse_choice(OrderSide, value, "side", "'buy' or 'sell'")


def _parse_order_type(value: Any) -> OrderType:
    return _parse_choice(OrderType, value, "order_type", " / ".join(repr(t.value) for t in OrderType))


def _parse_time_in_force(value: Any) -> TimeInForce | None:
    if value is None:
        return None
    return _parse_choice(TimeInForce, value, "time_in_force", " / ".join(repr(t.value) for t in TimeInForce))


def _parse_order_class(value: Any, take_profit: Any, stop_loss: Any) -> OrderClass:
    """Omitted: BRACKET with both exits, OTO with one, SIMPLE with none (OCO is always explicit)."""
    if value is None:
        if take_profit is not None and stop_loss is not None:
            return OrderClass.BRACKET
        return OrderClass.OTO if take_profit is not None or stop_loss is not None else OrderClass.SIMPLE
    return _parse_choice(OrderClass, value, "order_class", " / ".join(repr(c.value) for c in OrderClass))


def _price(spec: AssetSpec, value: Any, field_name: str) -> Decimal | None:
    """A tick-aligned positive price; one off the tick is refused, never rounded."""
    return None if value is None else spec.quantize_price(value, field_name)


def _parse_take_profit(spec: AssetSpec, value: Any) -> TakeProfit | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidInput("take_profit", "must be an object {limit_price}")
    extra = set(value) - {"limit_price"}
    if extra:
        raise InvalidInput(f"take_profit.{sorted(extra)[0]}", "unknown field")
    if value.get("limit_price") is None:
        raise InvalidInput("take_profit.limit_price", "is required")
    return TakeProfit(limit_price=spec.quantize_price(value["limit_price"], "take_profit.limit_price"))


def _parse_stop_loss(spec: AssetSpec, value: Any) -> StopLoss | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidInput("stop_loss", "must be an object {stop_price, limit_price?} or {trail_price}")
    extra = set(value) - {"stop_price", "limit_price", "trail_price"}
    if extra:
        raise InvalidInput(f"stop_loss.{sorted(extra)[0]}", "unknown field")
    stop = _price(spec, value.get("stop_price"), "stop_loss.stop_price")
    limit = _price(spec, value.get("limit_price"), "stop_loss.limit_price")
    trail = _price(spec, value.get("trail_price"), "stop_loss.trail_price")
    try:
        return StopLoss(stop_price=stop, limit_price=limit, trail_price=trail)
    except ValueError as exc:
        raise InvalidInput("stop_loss", str(exc).removeprefix("stop_loss ")) from None


@dataclass(frozen=True, init=False)
class OrderIntent:
    strategy_id: str
    broker_account_id: str | None
    symbol: str
    side: OrderSide
    qty: Decimal
    asset_class: AssetClass
    estimated_slippage: Decimal | None
    metadata: Mapping[str, Any]
    intent_id: str
    order_type: OrderType
    limit_price: Decimal | None
    time_in_force: TimeInForce | None  # None: the class default (``effective_time_in_force``)
    stop_price: Decimal | None
    trail_price: Decimal | None
    trail_percent: Decimal | None
    order_class: OrderClass
    take_profit: TakeProfit | None
    stop_loss: StopLoss | None
    spec: AssetSpec = field(compare=False, repr=False)
    # issue 15 item 5 (backend/execution/wide_spread.py): what a cost downgrade does — WAIT, or a limit
    # at the touch / mid canceled after ``limit_timeout_seconds``; ``wide_spread_fallback`` is set on
    # the limit intent the engine placed instead of a WAIT (its record keeps the deadline)
    wide_spread: WideSpread = WideSpread.WAIT
    limit_timeout_seconds: int | None = None
    wide_spread_fallback: Any = field(default=None, compare=False, repr=False)

    def __init__(self, strategy_id: str, broker_account_id: str, symbol: str, side: Any, qty: Any,
                 asset_class: Any = None, estimated_slippage: Any = None,
                 metadata: Mapping[str, Any] | None = None, *, intent_id: str | None = None,
                 order_type: Any = "market", limit_price: Any = None, time_in_force: Any = None,
                 stop_price: Any = None, trail_price: Any = None, trail_percent: Any = None,
                 order_class: Any = None, take_profit: Any = None, stop_loss: Any = None,
                 wide_spread: Any = None, limit_timeout_seconds: Any = None):
        put = object.__setattr__
        put(self, "strategy_id", validate_id(strategy_id, "strategy_id"))
        # the tenant's account id (issue 12); None = the caller's default account, bound by the engine
        put(self, "broker_account_id", None if broker_account_id is None
            else validate_id(broker_account_id, "broker_account_id"))
        sym = normalize_symbol(symbol)
        klass = resolve_asset_class(sym, asset_class)  # omitted: the symbol's class; contradicted: 400
        spec = default_registry().spec_for(sym, klass)
        put(self, "symbol", sym)
        put(self, "asset_class", klass)
        put(self, "spec", spec)
        put(self, "side", _parse_side(side))
        put(self, "qty", spec.quantize_qty(qty, "qty"))
        if estimated_slippage is not None:
            est = to_decimal(estimated_slippage, "estimated_slippage")
            if est < 0 or est >= 1:
                raise InvalidInput("estimated_slippage", f"must be a fraction in [0, 1), got {est}")
            estimated_slippage = est
        put(self, "estimated_slippage", estimated_slippage)
        put(self, "metadata", validate_metadata(metadata))
        put(self, "intent_id", validate_id(intent_id, "intent_id") if intent_id is not None
            else f"i-{uuid.uuid4().hex}")
        otype = _parse_order_type(order_type)
        put(self, "order_type", otype)
        put(self, "time_in_force", _parse_time_in_force(time_in_force))
        klass_of_order = _parse_order_class(order_class, take_profit, stop_loss)
        put(self, "order_class", klass_of_order)
        # which price fields the type takes is checked first, so a stray field is named as such
        present = {name: (None if value is None else Decimal(1)) for name, value in
                   (("limit_price", limit_price), ("stop_price", stop_price), ("trail_price", trail_price),
                    ("trail_percent", trail_percent))}
        shape = check_order_prices(otype, present["limit_price"], present["stop_price"], present["trail_price"],
                                   present["trail_percent"], klass_of_order)
        if shape is not None:
            raise InvalidInput(*shape)
        put(self, "limit_price", _price(spec, limit_price, "limit_price"))
        put(self, "stop_price", _price(spec, stop_price, "stop_price"))
        put(self, "trail_price", _price(spec, trail_price, "trail_price"))
        percent = None
        if trail_percent is not None:
            percent = to_decimal(trail_percent, "trail_percent")
            if not Decimal(0) < percent < Decimal(100):
                raise InvalidInput("trail_percent", f"must be a percent in (0, 100), got {percent}")
        put(self, "trail_percent", percent)
        tp = _parse_take_profit(spec, take_profit)
        sl = _parse_stop_loss(spec, stop_loss)
        put(self, "take_profit", tp)
        put(self, "stop_loss", sl)
        problem = check_order_class(klass_of_order, otype, self.side, self.limit_price, tp, sl)
        if problem is not None:
            raise InvalidInput(*problem)
        mode, timeout = parse_wide_spread(wide_spread, limit_timeout_seconds, order_type=otype,
                                          order_class=klass_of_order, time_in_force=self.time_in_force)
        put(self, "wide_spread", mode)
        put(self, "limit_timeout_seconds", timeout)
        put(self, "wide_spread_fallback", None)

    @property
    def effective_time_in_force(self) -> TimeInForce:
        """The time in force sent to the venue: the caller's, or the asset class's default."""
        return self.time_in_force or default_time_in_force(self.asset_class)

    def order_fields(self) -> dict[str, Any]:
        """The ``OrderRequest`` keyword arguments this intent decides (all but the client order id)."""
        return dict(symbol=self.symbol, asset_class=self.asset_class, side=self.side, qty=self.qty,
                    order_type=self.order_type, limit_price=self.limit_price,
                    time_in_force=self.effective_time_in_force.value, stop_price=self.stop_price,
                    trail_price=self.trail_price, trail_percent=self.trail_percent, order_class=self.order_class,
                    take_profit=self.take_profit, stop_loss=self.stop_loss)

    @property
    def signed_qty(self) -> Decimal:
        return self.qty * self.side.direction

    def with_account(self, account_id: str) -> "OrderIntent":
        """This intent bound to ``account_id`` (the engine's account binding; same intent id)."""
        bound = copy.copy(self)
        object.__setattr__(bound, "broker_account_id", validate_id(account_id, "broker_account_id"))
        return bound

    def as_wide_spread_limit(self, fallback: Any) -> "OrderIntent":
        """This market intent as the limit order placed instead of a WAIT (same intent id):
        ``fallback`` is a ``wide_spread.LimitFallback``; the result stores as a plain limit order."""
        if fallback.requested_intent is None:
            fallback = dataclasses.replace(fallback, requested_intent=self.to_dict())
        limit = copy.copy(self)
        put = object.__setattr__
        put(limit, "order_type", OrderType.LIMIT)
        put(limit, "limit_price", self.spec.quantize_price(fallback.limit_price, "limit_price"))
        put(limit, "time_in_force", fallback.time_in_force)
        put(limit, "wide_spread", WideSpread.WAIT)
        put(limit, "limit_timeout_seconds", None)
        put(limit, "wide_spread_fallback", fallback)
        return limit

    def resolve_context(self, context: ExecutionContext | None, settings_tenant: str | None = None,
                        settings_uid: str | None = None) -> ExecutionContext:
        """The identity to execute under.

        With a verified ``context`` (HTTP, trigger), tenant/uid in ``metadata`` must match it or be
        absent. Without one (library use, the seed's examples), metadata and then the
        ``EXEC_TENANT_ID`` / ``EXEC_UID`` settings are used.
        """
        meta_tenant = self.metadata.get("tenant_id")
        meta_uid = self.metadata.get("uid")
        if context is not None:
            if meta_tenant is not None and meta_tenant != context.tenant_id:
                raise InvalidInput("metadata.tenant_id", "does not match the authenticated tenant")
            if meta_uid is not None and meta_uid != context.uid:
                raise InvalidInput("metadata.uid", "does not match the authenticated user")
            return context
        tenant = meta_tenant or settings_tenant
        uid = meta_uid or settings_uid
        if not tenant:
            raise InvalidInput("metadata.tenant_id", "no tenant: pass metadata.tenant_id or set EXEC_TENANT_ID")
        if not uid:
            raise InvalidInput("metadata.uid", "no user: pass metadata.uid or set EXEC_UID")
        return ExecutionContext(tenant_id=str(tenant), uid=str(uid))

    def to_dict(self) -> dict[str, Any]:
        return {
            "intent_id": self.intent_id,
            "strategy_id": self.strategy_id,
            "broker_account_id": self.broker_account_id,
            "symbol": self.symbol,
            "side": self.side.value,
            "qty": dec_str(self.qty),
            "asset_class": self.asset_class.value,
            "order_type": self.order_type.value,
            "limit_price": dec_str(self.limit_price),
            **self._order_detail_dict(),
            "estimated_slippage": dec_str(self.estimated_slippage),
            "metadata": {k: v for k, v in self.metadata.items()
                         if isinstance(v, (str, int, bool)) or v is None
                         or (k == "lot_ids" and isinstance(v, dict))},
        }

    def _order_detail_dict(self) -> dict[str, Any]:
        """Issue 15's fields, present only when they say something: a market/limit day order's
        document is exactly what it was before (stored intents, rules and replays stay unchanged)."""
        out: dict[str, Any] = {}
        if self.time_in_force is not None:
            out["time_in_force"] = self.time_in_force.value
        for name in ("stop_price", "trail_price", "trail_percent"):
            value = getattr(self, name)
            if value is not None:
                out[name] = dec_str(value)
        if self.order_class is not OrderClass.SIMPLE:
            out["order_class"] = self.order_class.value
        if self.take_profit is not None:
            out["take_profit"] = {"limit_price": dec_str(self.take_profit.limit_price)}
        if self.stop_loss is not None:
            out["stop_loss"] = {k: dec_str(v) for k, v in (("stop_price", self.stop_loss.stop_price),
                                                            ("limit_price", self.stop_loss.limit_price),
                                                            ("trail_price", self.stop_loss.trail_price))
                                if v is not None}
        if self.wide_spread is not WideSpread.WAIT:
            out["wide_spread"] = self.wide_spread.value
            out["limit_timeout_seconds"] = self.limit_timeout_seconds
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "OrderIntent":
        return cls(
            strategy_id=data.get("strategy_id"), broker_account_id=data.get("broker_account_id"),
            symbol=data.get("symbol"), side=data.get("side"), qty=data.get("qty"),
            asset_class=data.get("asset_class"),
            estimated_slippage=data.get("estimated_slippage"), metadata=data.get("metadata") or {},
            intent_id=data.get("intent_id"), order_type=data.get("order_type", "market"),
            limit_price=data.get("limit_price"), time_in_force=data.get("time_in_force"),
            stop_price=data.get("stop_price"), trail_price=data.get("trail_price"),
            trail_percent=data.get("trail_percent"), order_class=data.get("order_class"),
            take_profit=data.get("take_profit"), stop_loss=data.get("stop_loss"),
            wide_spread=data.get("wide_spread"), limit_timeout_seconds=data.get("limit_timeout_seconds"),
        )
