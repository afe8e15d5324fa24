"""The invariants every load and chaos run must keep, checked on what is stored and what the venue holds.

After a run (and at most one sweep):
    (a) no lost work: every submitted intent / group id has a final stored outcome (an intent record
        placed / rejected / downgraded / dry_run; a group document ``_final``; an app's intent
        document no longer ``new`` / ``accepted`` / ``reserved``);
    (b) no duplicate order: each client order id appears once at the venue, and every venue order is
        referenced by a stored record (an order the store cannot name is an order nobody will reconcile);
    (c) no group left non-final;
    (d) the net position per symbol in the ledger (kinds ``order`` and ``fill`` for single legs,
        ``group_fill`` and ``rollback_fill`` for groups; ``filled_qty``, buy +, sell -) equals the venue's.

``check(...)`` returns a ``Verdict`` listing every breach (so a failing chaos case shows all of them at
once); ``assert_invariants(...)`` fails the test with that list. Both read Firestore (a ``FirestoreStore``,
through collection-group queries, so every tenant counts) or an ``InMemoryStore``; the venue is a
``SimulatedVenue`` (``LocalAlpacaServer.venue`` or ``PaperBroker.venue``).

The module also holds the small vocabulary the load and chaos tests share: a market scenario that the
local Alpaca server can serve (equities and crypto; FX is not on Alpaca) and 2-leg pair requests with a
valid ``rpm_output``.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Iterable, Mapping

LEDGER_KINDS = ("order", "fill", "group_fill", "rollback_fill")
OPEN_INTENT_DOC_STATUSES = ("new", "accepted", "reserved")
FINAL_INTENT_STATUSES = ("placed", "downgraded", "rejected", "dry_run")

# --------------------------------------------------------------------------------------------
# The shared vocabulary: market and requests
# --------------------------------------------------------------------------------------------

SYMBOLS: dict[str, dict[str, Any]] = {
    "AAPL": {"asset_class": "EQUITY", "mid": "190.00", "spread": "0.02"},
    "MSFT": {"asset_class": "EQUITY", "mid": "420.00", "spread": "0.04"},
    "SPY": {"asset_class": "EQUITY", "mid": "520.00", "spread": "0.02"},
    "BTC/USD": {"asset_class": "CRYPTO", "mid": "65000", "spread": "10"},
    "ETH/USD": {"asset_class": "CRYPTO", "mid": "3200.0", "spread": "1.0"},
}

# Long the first leg, short the second; both sides tradable on Alpaca (equities and crypto).
EQUITY_PAIR = (("AAPL", 1, "10", "EQUITY"), ("MSFT", -1, "5", "EQUITY"))
CRYPTO_PAIR = (("BTC/USD", 1, "0.01", "CRYPTO"), ("ETH/USD", -1, "0.2", "CRYPTO"))
PAIRS = (EQUITY_PAIR, CRYPTO_PAIR)


def scenario(symbols: Mapping[str, Mapping[str, Any]] | None = None, *, seed: int = 7) -> dict[str, Any]:
    """Immediate fills and a deep account (a thousand groups never run out of buying power);
    ``symbols`` entries are merged into the defaults (``{"MSFT": {"fill": {"model": "reject"}}}``)."""
    merged = {name: dict(spec) for name, spec in SYMBOLS.items()}
    for name, override in (symbols or {}).items():
        merged.setdefault(name, {}).update(override)
    return {"seed": seed, "account": {"cash": "1000000000", "buying_power": "2000000000", "equity": "1000000000"},
            "default_fill": {"model": "immediate"}, "symbols": merged}


def pair_request(now: datetime, pair: tuple = EQUITY_PAIR, *, strategy_id: str = "stat_arb_01",
                 decision_id: str = "rpm-1") -> dict[str, Any]:
    """The multi-leg request body (seed 000) with an ``rpm_output`` approving each leg for an hour."""
    legs = [{"leg_id": f"leg_{i:03d}", "symbol": symbol, "direction": direction, "units": units,
             "asset_class": klass} for i, (symbol, direction, units, klass) in enumerate(pair, start=1)]
    return {"strategy_id": strategy_id, "legs": legs, "allow_partial_fills": True,
            "rpm_output": {"approved": True, "decision_id": decision_id,
                           "expires_at": (now + timedelta(hours=1)).isoformat(),
                           "approved_legs": {leg["leg_id"]: str(leg["units"]) for leg in legs}}}


def intent_fields(symbol: str = "AAPL", side: str = "buy", qty: str = "3", asset_class: str = "EQUITY",
                  *, strategy_id: str = "s1", account: str = "acct") -> dict[str, Any]:
    """A single-leg intent's fields (the ``intent`` map of an intent document; ``OrderIntent.from_dict``)."""
    return {"strategy_id": strategy_id, "broker_account_id": account, "symbol": symbol, "side": side,
            "qty": qty, "asset_class": asset_class}


# --------------------------------------------------------------------------------------------
# Reading the store (Firestore or in memory), across tenants
# --------------------------------------------------------------------------------------------


def _docs(store: Any, collection: str) -> list[tuple[str, dict[str, Any]]]:
    """(path, data) of every document in collections named ``collection``, any parent."""
    if hasattr(store, "docs"):  # InMemoryStore: paths mirror Firestore's
        return [(path, dict(doc)) for path, doc in list(store.docs.items())
                if path.count("/") % 2 == 1 and path.split("/")[-2] == collection]
    db = store.db
    return [(snap.reference.path, snap.to_dict() or {}) for snap in db.collection_group(collection).stream()]


def _doc(store: Any, path: str) -> dict[str, Any] | None:
    if hasattr(store, "docs"):
        doc = store.docs.get(path)
        return None if doc is None else dict(doc)
    snap = store.db.document(path).get()
    return snap.to_dict() if snap.exists else None


def ledger_rows(store: Any) -> list[dict[str, Any]]:
    return [doc for _, doc in _docs(store, "ledger_trades")]


def group_docs(store: Any) -> dict[str, dict[str, Any]]:
    """Group documents by path (``tenants/<t>/execution_groups/<id>``)."""
    return dict(_docs(store, "execution_groups"))


def intent_docs(store: Any) -> dict[str, dict[str, Any]]:
    return dict(_docs(store, "order_intents"))


# --------------------------------------------------------------------------------------------
# The four invariants
# --------------------------------------------------------------------------------------------


@dataclass
class Verdict:
    lost: list[str] = field(default_factory=list)  # (a)
    duplicate_orders: dict[str, int] = field(default_factory=dict)  # (b) client id -> venue orders
    unrecorded_orders: list[str] = field(default_factory=list)  # (b) venue orders no record names
    non_final_groups: list[str] = field(default_factory=list)  # (c)
    position_breaks: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)  # (d) symbol -> (ledger, venue)
    ledger_net: dict[str, Decimal] = field(default_factory=dict)
    venue_net: dict[str, Decimal] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicate_orders or self.unrecorded_orders or self.non_final_groups
                    or self.position_breaks)

    def problems(self) -> list[str]:
        out = []
        if self.lost:
            out.append(f"(a) lost (no final stored outcome): {self.lost}")
        if self.duplicate_orders:
            out.append(f"(b) client order ids with several venue orders: {self.duplicate_orders}")
        if self.unrecorded_orders:
            out.append(f"(b) venue orders no stored record names: {self.unrecorded_orders}")
        if self.non_final_groups:
            out.append(f"(c) groups not final: {self.non_final_groups}")
        if self.position_breaks:
            out.append(f"(d) ledger vs venue net position: {self.position_breaks}")
        return out


def lost_outcomes(store: Any, *, tenant_id: str, group_ids: Iterable[str] = (), intent_ids: Iterable[str] = (),
                  intent_doc_ids: Iterable[str] = ()) -> list[str]:
    """(a) Ids without a final stored outcome. ``intent_ids``: engine intents (HTTP path or trigger);
    ``intent_doc_ids``: app-written intent documents, whose status must have moved past new/accepted."""
    lost = []
    for gid in group_ids:
        doc = _doc(store, f"tenants/{tenant_id}/execution_groups/{gid}")
        if doc is None:
            lost.append(f"group {gid}: no document")
        elif not doc.get("_final"):
            lost.append(f"group {gid}: {doc.get('status')}")
    for iid in intent_ids:
        doc = _doc(store, f"tenants/{tenant_id}/order_intents/{iid}")
        if doc is None:
            lost.append(f"intent {iid}: no record")
        elif doc.get("status") not in FINAL_INTENT_STATUSES:
            lost.append(f"intent {iid}: {doc.get('status')}")
    for iid in intent_doc_ids:
        doc = _doc(store, f"tenants/{tenant_id}/order_intents/{iid}")
        if doc is None or doc.get("status") in OPEN_INTENT_DOC_STATUSES:
            lost.append(f"intent document {iid}: {None if doc is None else doc.get('status')}")
    return lost


def duplicate_orders(venue: Any) -> dict[str, int]:
    """(b) Client order ids the venue holds more than one order for."""
    return {cid: n for cid, n in Counter(venue.client_order_ids()).items() if n > 1}


def recorded_client_order_ids(store: Any) -> set[str]:
    """Every client order id a stored record names: intent records, group legs, rollback orders."""
    ids: set[str] = set()
    for _, doc in _docs(store, "order_intents"):
        if doc.get("client_order_id"):
            ids.add(doc["client_order_id"])
    for _, doc in _docs(store, "execution_groups"):
        ids.update(leg["client_order_id"] for leg in doc.get("legs") or () if leg.get("client_order_id"))
        ids.update(o["client_order_id"] for o in doc.get("rollback_orders") or () if o.get("client_order_id"))
    return ids


def unrecorded_orders(store: Any, venue: Any) -> list[str]:
    """(b) Venue orders (by client id) that no stored record names."""
    known = recorded_client_order_ids(store)
    return sorted(cid for cid in set(venue.client_order_ids()) if cid not in known)


def non_final_groups(store: Any) -> list[str]:
    """(c) Paths of group documents not final."""
    return sorted(path for path, doc in group_docs(store).items() if not doc.get("_final"))


def ledger_net_positions(store: Any, venue: Any) -> dict[str, Decimal]:
    """(d) Net filled quantity per venue symbol from the ledger rows: buy +, sell -."""
    net: dict[str, Decimal] = defaultdict(Decimal)
    for row in ledger_rows(store):
        if row.get("kind") not in LEDGER_KINDS:
            continue
        filled = Decimal(str(row.get("filled_qty") or "0"))
        if not filled:
            continue
        symbol, _ = venue.market.resolve(row["symbol"], row.get("asset_class"))
        net[symbol] += filled if row["side"] == "buy" else -filled
    return {s: q for s, q in net.items() if q}


def venue_net_positions(venue: Any) -> dict[str, Decimal]:
    """(d) The venue's net position per symbol (holdings, cross-checked against its fills)."""
    from_fills: dict[str, Decimal] = defaultdict(Decimal)
    for fill in venue.fills():
        from_fills[fill.symbol] += fill.side.direction * fill.qty
    out = {}
    for symbol in from_fills:
        held = venue.net_position(symbol)
        assert held == from_fills[symbol], f"venue holdings {held} and fills {from_fills[symbol]} disagree on {symbol}"
        if held:
            out[symbol] = held
    return out


def check(store: Any, venue: Any, *, tenant_id: str, group_ids: Iterable[str] = (),
          intent_ids: Iterable[str] = (), intent_doc_ids: Iterable[str] = ()) -> Verdict:
    ledger = ledger_net_positions(store, venue)
    held = venue_net_positions(venue)
    breaks = {s: (ledger.get(s, Decimal(0)), held.get(s, Decimal(0)))
              for s in set(ledger) | set(held) if ledger.get(s, Decimal(0)) != held.get(s, Decimal(0))}
    return Verdict(
        lost=lost_outcomes(store, tenant_id=tenant_id, group_ids=group_ids, intent_ids=intent_ids,
                           intent_doc_ids=intent_doc_ids),
        duplicate_orders=duplicate_orders(venue),
        unrecorded_orders=unrecorded_orders(store, venue),
        non_final_groups=non_final_groups(store),
        position_breaks=breaks, ledger_net=ledger, venue_net=held)


def assert_invariants(store: Any, venue: Any, *, tenant_id: str, group_ids: Iterable[str] = (),
                      intent_ids: Iterable[str] = (), intent_doc_ids: Iterable[str] = (),
                      context: str = "") -> Verdict:
    verdict = check(store, venue, tenant_id=tenant_id, group_ids=group_ids, intent_ids=intent_ids,
                    intent_doc_ids=intent_doc_ids)
    assert verdict.ok, (f"{context}: " if context else "") + "; ".join(verdict.problems())
    return verdict


__all__ = ["Verdict", "check", "assert_invariants", "lost_outcomes", "duplicate_orders", "unrecorded_orders",
           "non_final_groups", "ledger_net_positions", "venue_net_positions", "recorded_client_order_ids",
           "scenario", "pair_request", "intent_fields", "EQUITY_PAIR", "CRYPTO_PAIR", "PAIRS", "SYMBOLS"]
