"""Order intents and the verified identity they execute under.

``OrderIntent`` keeps the seed's constructor (``strategy_id, broker_account_id, symbol, side, qty,
asset_class="EQUITY", estimated_slippage=None, metadata={}``) and parses everything on the way in:
the symbol is normalized, ``FX`` is read as FOREX, the side is an enum and the quantity a Decimal
that is an exact multiple of the instrument's lot size. Bad input raises ``InvalidInput`` naming
the field, before anything is written anywhere.
"""
from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Mapping

from backend.domain.assets import AssetClass, AssetSpec, default_registry, normalize_symbol
from backend.domain.errors import InvalidInput
from backend.domain.money import dec_str, to_decimal
from backend.ports.broker import OrderSide, OrderType

_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


def validate_id(value: Any, field_name: str) -> str:
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise InvalidInput(field_name, "must be 1-100 characters of A-Z a-z 0-9 _ -")
    return value


def client_order_id_for(tenant_id: str, key: str, prefix: str = "x") -> str:
    """Deterministic broker client order id (≤ 48 chars) for one side effect.

    Derived from the tenant and the intent/leg/rollback key, so a retry or a resumed group
    produces the same id and the venue refuses a second order; hashed so two tenants sharing a
    broker account can never collide.
    """
    digest = hashlib.sha256(f"{tenant_id}/{key}".encode()).hexdigest()[:40]
    return f"{prefix}-{digest}"


@dataclass(frozen=True)
class ExecutionContext:
    """Who an intent executes for. Built from a verified ID token (HTTP) or the trigger path; never
    from a request body."""

    tenant_id: str
    uid: str
    role: str = "trader"

    def __post_init__(self) -> None:
        validate_id(self.tenant_id, "tenant_id")
        validate_id(self.uid, "uid")


def _parse_side(value: Any) -> OrderSide:
    if isinstance(value, OrderSide):
        return value
    if isinstance(value, str):
        try:
            return OrderSide(value.strip().lower())
        except ValueError:
            pass
    raise InvalidInput("side", f"expected 'buy' or 'sell', got {value!r}")


def _parse_order_type(value: Any) -> OrderType:
    if isinstance(value, OrderType):
        return value
    if isinstance(value, str):
        try:
            return OrderType(value.strip().lower())
        except ValueError:
            pass
    raise InvalidInput("order_type", f"expected 'market' or 'limit', got {value!r}")


@dataclass(frozen=True, init=False)
class OrderIntent:
    strategy_id: str
    broker_account_id: str
    symbol: str
    side: OrderSide
    qty: Decimal
    asset_class: AssetClass
    estimated_slippage: Decimal | None
    metadata: Mapping[str, Any]
    intent_id: str
    order_type: OrderType
    limit_price: Decimal | None
    spec: AssetSpec = field(compare=False, repr=False)

    def __init__(self, strategy_id: str, broker_account_id: str, symbol: str, side: Any, qty: Any,
                 asset_class: Any = "EQUITY", estimated_slippage: Any = None,
                 metadata: Mapping[str, Any] | None = None, *, intent_id: str | None = None,
                 order_type: Any = "market", limit_price: Any = None):
        put = object.__setattr__
        put(self, "strategy_id", validate_id(strategy_id, "strategy_id"))
        put(self, "broker_account_id", validate_id(broker_account_id, "broker_account_id"))
        sym = normalize_symbol(symbol)
        klass = AssetClass.parse(asset_class)
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
        if metadata is not None and not isinstance(metadata, Mapping):
            raise InvalidInput("metadata", "must be an object")
        put(self, "metadata", dict(metadata or {}))
        put(self, "intent_id", validate_id(intent_id, "intent_id") if intent_id is not None
            else f"i-{uuid.uuid4().hex}")
        otype = _parse_order_type(order_type)
        put(self, "order_type", otype)
        if otype is OrderType.LIMIT:
            if limit_price is None:
                raise InvalidInput("limit_price", "is required for limit orders")
            put(self, "limit_price", spec.quantize_price(limit_price, "limit_price"))
        else:
            if limit_price is not None:
                raise InvalidInput("limit_price", "only limit orders take a limit price")
            put(self, "limit_price", None)

    @property
    def signed_qty(self) -> Decimal:
        return self.qty * self.side.direction

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
            "estimated_slippage": dec_str(self.estimated_slippage),
            "metadata": {k: v for k, v in self.metadata.items()
                         if isinstance(v, (str, int, bool)) or v is None
                         or (k == "lot_ids" and isinstance(v, dict))},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "OrderIntent":
        return cls(
            strategy_id=data.get("strategy_id"), broker_account_id=data.get("broker_account_id"),
            symbol=data.get("symbol"), side=data.get("side"), qty=data.get("qty"),
            asset_class=data.get("asset_class", "EQUITY"),
            estimated_slippage=data.get("estimated_slippage"), metadata=data.get("metadata") or {},
            intent_id=data.get("intent_id"), order_type=data.get("order_type", "market"),
            limit_price=data.get("limit_price"),
        )
