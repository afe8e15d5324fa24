"""Client order ids and the check every venue answer passes before we adopt it.

A client order id is the idempotency key of an order at the venue: a second submit with a known id
returns (or refuses with) the order that already exists. The venue's namespace of client ids is
shared by everyone who trades through the same broker account, while the ids we derive them from
(intent ids, group ids, leg ids) are chosen by the app, per tenant. So every id carries every scope
it belongs to — the tenant and the account label — hashed with the app-chosen parts, and two scopes
can never produce the same id even when their users choose the same group and leg ids.

Scheme 2 (current) hashes length-prefixed parts (``len:part``), so no choice of characters in one
part can imitate another split. Scheme 1 (legacy, group and leg only) is kept so that group
documents written before the change still load and resume with the ids their orders carry; a
stored group says which scheme it uses (``client_id_scheme``, absent = 1). Single-leg intents store
their client id in the intent record, so a resume never re-derives an old one.

Ids are deterministic (a retry, a resume or a replanned rollback re-derives the same id) and at
most 48 characters (Alpaca's limit). The prefixes stay ``x-`` (single), ``mleg-`` (leg entry) and
``mlrb-`` (rollback) so logs and tools still tell the kinds apart.

Defence in depth: an order the venue hands back for one of our ids — the answer to a submit that
hit a duplicate, a lookup by client id or by broker id — is adopted only when it is the order we
asked for (:func:`venue_order_mismatch`: same client id, symbol, side and quantity). Anything else
is a ``CLIENT_ORDER_ID_MISMATCH`` refusal and an ALERT (:func:`alert_mismatch`), never a fill of ours.
"""
from __future__ import annotations

import hashlib
from typing import Any

from backend.domain.assets import AssetClass, crypto_pair, normalize_symbol
from backend.domain.errors import InvalidInput, RejectCode, Rejection
from backend.domain.money import dec_str
from backend.domain.orders import BrokerOrder, OrderRequest
from backend.logs import log_event

CLIENT_ID_SCHEME = 2  # tenant (+ account) namespaced
LEGACY_CLIENT_ID_SCHEME = 1  # group + leg only (documents written before scheme 2)
CLIENT_ID_SCHEMES = (LEGACY_CLIENT_ID_SCHEME, CLIENT_ID_SCHEME)
CLIENT_ID_MAX = 48
MISMATCH_EVENT = "exec.client_id_mismatch"


def _digest(*parts: str) -> str:
    """sha256 over length-prefixed parts: ``("a:b", "c")`` and ``("a", "b:c")`` never collide."""
    framed = "".join(f"{len(p)}:{p}" for p in parts)
    return hashlib.sha256(framed.encode("utf-8")).hexdigest()


def _legacy_digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


def _scope(tenant_id: Any, account: Any) -> tuple[str, str]:
    if not isinstance(tenant_id, str) or not tenant_id:
        raise ValueError("a client order id needs the tenant it belongs to")
    if account is not None and (not isinstance(account, str) or not account):
        raise ValueError("account must be a non-empty string or None")
    return tenant_id, account or ""


def _check_seq(seq: Any) -> int:
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= 9999:
        raise ValueError("seq must be an int in 1..9999")
    return seq


def single_client_order_id(tenant_id: str, intent_id: str, *, account: str | None = None,
                           prefix: str = "x") -> str:
    """A single-leg intent's order (``x-`` + 40 hex = 42 chars): tenant, account label, intent id."""
    tenant, acct = _scope(tenant_id, account)
    return f"{prefix}-{_digest('single', tenant, acct, intent_id)[:40]}"


def leg_client_order_id(group_id: str, leg_id: str, *, tenant_id: str, account: str | None = None) -> str:
    """A group leg's entry order (``mleg-`` + 40 hex = 45 chars): tenant, account, group, leg."""
    tenant, acct = _scope(tenant_id, account)
    return "mleg-" + _digest("leg", tenant, acct, group_id, leg_id)[:40]


def rollback_client_order_id(group_id: str, leg_id: str, seq: int, *, tenant_id: str,
                             account: str | None = None) -> str:
    """Rollback order ``seq`` (1-based) of a leg (``mlrb-`` + 38 hex + ``-seq`` <= 48 chars).

    ``seq`` is the order's position among the leg's rollback orders in the stored group, so a resumed
    rollback re-derives the same id and the venue's idempotency returns the existing order."""
    tenant, acct = _scope(tenant_id, account)
    return f"mlrb-{_digest('rollback', tenant, acct, group_id, leg_id)[:38]}-{_check_seq(seq)}"


def leg_stop_client_order_id(group_id: str, leg_id: str, *, tenant_id: str, account: str | None = None) -> str:
    """A group leg's protective stop, placed once the group is FILLED (``mlst-`` + 40 hex = 45 chars):
    tenant, account, group, leg. A resume looks it up by this id before it sends anything."""
    tenant, acct = _scope(tenant_id, account)
    return "mlst-" + _digest("stop", tenant, acct, group_id, leg_id)[:40]


def legacy_leg_client_order_id(group_id: str, leg_id: str) -> str:
    """Scheme 1 (before tenant namespacing): only for group documents stored with it."""
    return "mleg-" + _legacy_digest("leg", group_id, leg_id)[:29]


def legacy_rollback_client_order_id(group_id: str, leg_id: str, seq: int) -> str:
    """Scheme 1 (before tenant namespacing): only for group documents stored with it."""
    return f"mlrb-{_legacy_digest('rollback', group_id, leg_id)[:32]}-{_check_seq(seq)}"


def group_leg_client_order_id(scheme: int, tenant_id: str, group_id: str, leg_id: str) -> str:
    """The leg id a stored group of ``scheme`` uses."""
    if scheme == CLIENT_ID_SCHEME:
        return leg_client_order_id(group_id, leg_id, tenant_id=tenant_id)
    if scheme == LEGACY_CLIENT_ID_SCHEME:
        return legacy_leg_client_order_id(group_id, leg_id)
    raise InvalidInput("client_id_scheme", f"unknown scheme {scheme!r}")


def group_rollback_client_order_id(scheme: int, tenant_id: str, group_id: str, leg_id: str, seq: int) -> str:
    """The rollback id a stored group of ``scheme`` uses."""
    if scheme == CLIENT_ID_SCHEME:
        return rollback_client_order_id(group_id, leg_id, seq, tenant_id=tenant_id)
    if scheme == LEGACY_CLIENT_ID_SCHEME:
        return legacy_rollback_client_order_id(group_id, leg_id, seq)
    raise InvalidInput("client_id_scheme", f"unknown scheme {scheme!r}")


# --------------------------------------------------------------------------------------------
# The check on every order a venue hands back
# --------------------------------------------------------------------------------------------

_PAIR_CLASSES = (AssetClass.CRYPTO, AssetClass.FOREX, AssetClass.COMMODITY)


def _symbol_key(symbol: Any, asset_class: AssetClass) -> str | None:
    """The comparable form of a symbol: pairs as ``BASE/QUOTE`` (venues answer ``EUR/USD`` for our
    ``EURUSD``), others normalized. None when the venue's symbol is not a symbol at all."""
    try:
        text = normalize_symbol(symbol)
        return crypto_pair(text) if asset_class in _PAIR_CLASSES else text
    except InvalidInput:
        return None


def venue_order_mismatch(request: OrderRequest, order: BrokerOrder) -> Rejection | None:
    """None when ``order`` is the order ``request`` asked for; otherwise a CLIENT_ORDER_ID_MISMATCH
    rejection naming the fields that differ (client id, symbol, side, quantity).

    The detail names the fields only, never the other order's values or ids: the rejection is stored
    on the caller's own records (ledger row, intent document, group), which the caller can read, and
    the other order may belong to another tenant. The values go to the ALERT log (:func:`alert_mismatch`).

    Pure. The venue's account is not compared: a ``BrokerOrder`` does not carry one, and each broker
    adapter is bound to exactly one account (the account label is part of the client id instead)."""
    differs = []
    if order.client_order_id != request.client_order_id:
        differs.append("client_order_id")
    got_symbol = _symbol_key(order.symbol, request.asset_class)
    if got_symbol is None or got_symbol != _symbol_key(request.symbol, request.asset_class):
        differs.append("symbol")
    if order.side is not request.side:
        differs.append("side")
    if order.qty != request.qty:
        differs.append("qty")
    if not differs:
        return None
    return Rejection(RejectCode.CLIENT_ORDER_ID_MISMATCH,
                     f"the venue answered client id {request.client_order_id} with an order that is not the one "
                     f"sent (differs in {', '.join(differs)}); refused, not adopted")


def describe_request(request: OrderRequest) -> dict[str, Any]:
    return {"client_order_id": request.client_order_id, "symbol": request.symbol, "side": request.side.value,
            "qty": dec_str(request.qty)}


def describe_order(order: BrokerOrder) -> dict[str, Any]:
    return {"client_order_id": order.client_order_id, "broker_order_id": order.broker_order_id,
            "symbol": order.symbol, "side": getattr(order.side, "value", order.side), "qty": dec_str(order.qty),
            "state": getattr(order.state, "value", order.state)}


def alert_mismatch(rejection: Rejection, request: OrderRequest, order: BrokerOrder, *, tenant_id: str,
                   where: str, **ids: Any) -> None:
    """The ALERT for a venue order that is not ours (``exec.client_id_mismatch``). Deliberately no
    fill fields: the foreign order's fill sizes and prices stay out of our logs as well."""
    log_event(MISMATCH_EVENT, severity="ALERT", tenant_id=tenant_id, where=where, **ids,
              client_order_id=request.client_order_id, broker_order_id=order.broker_order_id,
              expected=describe_request(request), got=describe_order(order), rejection=rejection)


def checked_order(request: OrderRequest, order: BrokerOrder, *, tenant_id: str, where: str,
                  **ids: Any) -> Rejection | None:
    """:func:`venue_order_mismatch`, raising the ALERT when it finds one."""
    rejection = venue_order_mismatch(request, order)
    if rejection is not None:
        alert_mismatch(rejection, request, order, tenant_id=tenant_id, where=where, **ids)
    return rejection


__all__ = ["CLIENT_ID_SCHEME", "LEGACY_CLIENT_ID_SCHEME", "CLIENT_ID_SCHEMES", "MISMATCH_EVENT",
           "single_client_order_id", "leg_client_order_id", "rollback_client_order_id", "leg_stop_client_order_id",
           "legacy_leg_client_order_id", "legacy_rollback_client_order_id", "group_leg_client_order_id",
           "group_rollback_client_order_id", "venue_order_mismatch", "checked_order", "alert_mismatch"]
