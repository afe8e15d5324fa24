"""The invariants every load and chaos run must keep, checked on what is stored and what the venue holds.

After a run (and at most one sweep):
    (a) no lost work: every submitted intent / group id has a final stored outcome (an intent record
        placed / rejected / downgraded / dry_run; a group document ``_final``; an app's intent
        document no longer ``new`` / ``accepted`` / ``reserved``);
    (b) no duplicate order: each client order id appears once at the venue, and every venue order is
        referenced by a stored record (an order the store cannot name is an order nobody will reconcile);
    (c) no group left non-final;
    (d) the net position per symbol in the ledger (kinds ``order`` and ``fill`` for single legs,
        ``group_fill`` and ``rollback_fill`` for groups; ``filled_qty``, buy +, sell -) equals the venue's;
    (e) 0 orders adopted from another tenant: every client order id a tenant's group or intent record holds
        is derived from that tenant's namespace (tenant + group + leg [+ seq], tenant + account + intent),
        and every venue order a tenant's ledger row, history row, group leg, rollback order or intent
        record names carries one of that tenant's client ids (issue 10).
    (f) per account (issue 12): the ledger's net position per (venue account, symbol) — rows keyed by
        their ``venue_account_id`` — equals that venue account's holdings; every row names its account
        (``broker_account_id``) and each (tenant, account) maps to one venue account. On a
        single-account venue (deployment accounts trading one ``AlpacaBroker``) rows whose venue
        account id the venue does not hold count for its one (default) account, so (f) is (d) there.

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
                  *, strategy_id: str = "s1", account: str | None = None) -> dict[str, Any]:
    """A single-leg intent's fields (the ``intent`` map of an intent document; ``OrderIntent.from_dict``).
    ``account`` None: none named, the user's default account (the one their groups trade)."""
    fields = {"strategy_id": strategy_id, "symbol": symbol, "side": side, "qty": qty, "asset_class": asset_class}
    return fields if account is None else {**fields, "broker_account_id": account}


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
    foreign_orders: list[str] = field(default_factory=list)  # (e) orders adopted from another tenant
    ledger_net: dict[str, Decimal] = field(default_factory=dict)
    venue_net: dict[str, Decimal] = field(default_factory=dict)
    # (f) (venue account, symbol) -> (ledger, venue); rows without an account or with two venue accounts
    account_position_breaks: dict[tuple[str, str], tuple[Decimal, Decimal]] = field(default_factory=dict)
    account_mapping_problems: list[str] = field(default_factory=list)
    ledger_net_by_account: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    venue_net_by_account: dict[tuple[str, str], Decimal] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicate_orders or self.unrecorded_orders or self.non_final_groups
                    or self.position_breaks or self.foreign_orders or self.account_position_breaks
                    or self.account_mapping_problems)

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
        if self.foreign_orders:
            out.append(f"(e) orders adopted from another tenant: {self.foreign_orders}")
        if self.account_position_breaks:
            out.append(f"(f) ledger vs venue net position per (venue account, symbol): {self.account_position_breaks}")
        if self.account_mapping_problems:
            out.append(f"(f) ledger rows and their accounts: {self.account_mapping_problems}")
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
    """(d) The venue's net position per symbol, summed over its accounts (holdings, cross-checked
    against its fills)."""
    out: dict[str, Decimal] = defaultdict(Decimal)
    for (_, symbol), held in venue_account_net_positions(venue).items():
        out[symbol] += held
    return {s: q for s, q in out.items() if q}


def _venue_accounts(venue: Any) -> list[str | None]:
    """The venue's account ids (a venue without accounts: its one account, None)."""
    ids = getattr(venue, "account_ids", None)
    return list(ids()) if callable(ids) else [None]


def _default_venue_account(venue: Any) -> str | None:
    from backend.adapters.sim.orders import DEFAULT_ACCOUNT_ID

    return DEFAULT_ACCOUNT_ID if callable(getattr(venue, "account_ids", None)) else None


def venue_account_net_positions(venue: Any) -> dict[tuple[str | None, str], Decimal]:
    """(f) The venue's net position per (venue account, symbol): each account's holdings, cross-checked
    against that account's fills."""
    from_fills: dict[tuple[str | None, str], Decimal] = defaultdict(Decimal)
    default = _default_venue_account(venue)
    for fill in venue.fills():
        from_fills[(getattr(fill, "account_id", default), fill.symbol)] += fill.side.direction * fill.qty
    out = {}
    for (account, symbol), filled in from_fills.items():
        held = venue.net_position(symbol) if account is None else venue.net_position(symbol, account_id=account)
        assert held == filled, (f"venue holdings {held} and fills {filled} disagree on {symbol} "
                                f"in venue account {account}")
        if held:
            out[(account, symbol)] = held
    return out


def ledger_account_net_positions(store: Any, venue: Any) -> tuple[dict[tuple[str | None, str], Decimal], list[str]]:
    """(f) Net filled quantity per (venue account, venue symbol) from the ledger rows (buy +, sell -),
    keyed by each row's ``venue_account_id`` — or the venue's default account when the venue does not
    hold that id (a single-account venue traded by deployment accounts). Also returns the problems: a
    filled row naming no account (``broker_account_id``), and a (tenant, account) whose rows name more
    than one venue account."""
    accounts = set(_venue_accounts(venue))
    default = _default_venue_account(venue)
    net: dict[tuple[str | None, str], Decimal] = defaultdict(Decimal)
    venue_ids: dict[tuple[str | None, str], set[str]] = defaultdict(set)
    problems: list[str] = []
    for path, row in _docs(store, "ledger_trades"):
        if row.get("kind") not in LEDGER_KINDS:
            continue
        filled = Decimal(str(row.get("filled_qty") or "0"))
        if not filled:
            continue
        account, venue_account = row.get("broker_account_id"), row.get("venue_account_id")
        if not account:
            problems.append(f"{path}: a filled {row.get('kind')} row without broker_account_id")
        venue_ids[(_tenant_of(path), account)].add(str(venue_account))
        key = venue_account if venue_account in accounts else default
        symbol, _ = venue.market.resolve(row["symbol"], row.get("asset_class"))
        net[(key, symbol)] += filled if row["side"] == "buy" else -filled
    problems += [f"tenants/{t}/accounts/{a}: ledger rows name venue accounts {sorted(ids)}"
                 for (t, a), ids in sorted(venue_ids.items(), key=str) if len(ids) > 1]
    return {k: q for k, q in net.items() if q}, problems


def account_position_breaks(store: Any, venue: Any) -> tuple[dict[tuple[str | None, str], tuple[Decimal, Decimal]],
                                                             list[str], dict, dict]:
    """(f) (breaks, mapping problems, ledger net by account, venue net by account)."""
    ledger, problems = ledger_account_net_positions(store, venue)
    held = venue_account_net_positions(venue)
    zero = Decimal(0)
    breaks = {k: (ledger.get(k, zero), held.get(k, zero)) for k in set(ledger) | set(held)
              if ledger.get(k, zero) != held.get(k, zero)}
    return breaks, problems, ledger, held


def _tenant_of(path: str) -> str | None:
    parts = path.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "tenants" else None


def tenant_client_order_ids(store: Any) -> tuple[dict[str, set[str]], list[str]]:
    """(e) Per tenant, the client order ids its stored groups and intent records hold, each checked
    against the tenant's namespace (a group's own ``client_id_scheme``; absent = the legacy scheme 1).
    Returns (ids by tenant, problems)."""
    from backend.execution import client_ids
    from backend.execution.intent import client_order_id_for

    ids: dict[str, set[str]] = defaultdict(set)
    problems: list[str] = []
    for path, doc in _docs(store, "execution_groups"):
        tenant, gid = _tenant_of(path), path.split("/")[-1]
        if tenant is None:
            continue
        if doc.get("tenant_id") != tenant:
            problems.append(f"{path}: tenant_id {doc.get('tenant_id')!r}")
        scheme = doc.get("client_id_scheme", client_ids.LEGACY_CLIENT_ID_SCHEME)
        for leg in doc.get("legs") or ():
            expected = client_ids.group_leg_client_order_id(scheme, tenant, gid, leg["leg_id"])
            if leg.get("client_order_id") != expected:
                problems.append(f"{path} leg {leg['leg_id']}: client id {leg.get('client_order_id')} is not "
                                f"{tenant}'s ({expected})")
            ids[tenant].add(expected)
        for order in doc.get("rollback_orders") or ():
            expected = client_ids.group_rollback_client_order_id(scheme, tenant, gid, order["leg_id"], order["seq"])
            if order.get("client_order_id") != expected:
                problems.append(f"{path} rollback {order['leg_id']}#{order['seq']}: client id "
                                f"{order.get('client_order_id')} is not {tenant}'s ({expected})")
            ids[tenant].add(expected)
    for path, doc in _docs(store, "order_intents"):
        tenant, intent_id = _tenant_of(path), path.split("/")[-1]
        coid = doc.get("client_order_id")
        if tenant is None or not coid or doc.get("kind", "single") != "single":
            continue
        account = (doc.get("intent") or {}).get("broker_account_id")
        expected = client_order_id_for(tenant, intent_id, account=account)
        if coid != expected:
            problems.append(f"{path}: client id {coid} is not {tenant}'s ({expected})")
        ids[tenant].add(expected)
    return ids, problems


def foreign_adoptions(store: Any, venue: Any) -> list[str]:
    """(e) Orders adopted from another tenant: a stored record of one tenant that names a venue order
    (by broker order id) whose client id is not one of that tenant's, or a record whose client id is not
    derived from its tenant's namespace. Empty when every tenant holds only its own orders."""
    ids, problems = tenant_client_order_ids(store)
    by_broker_id = {o.broker_order_id: o for o in venue.orders()}

    def named(tenant: str | None, where: str, broker_order_id: Any) -> None:
        if tenant is None or not broker_order_id:
            return
        order = by_broker_id.get(broker_order_id)
        if order is None:
            problems.append(f"{where}: names {broker_order_id}, which the venue does not hold")
        elif order.client_order_id not in ids.get(tenant, set()):
            problems.append(f"{where}: {tenant} holds venue order {broker_order_id} of client id "
                            f"{order.client_order_id}, not one of {tenant}'s")

    for path, doc in _docs(store, "ledger_trades"):
        named(_tenant_of(path), path, doc.get("broker_order_id"))
    for path, doc in _docs(store, "trades"):  # users/{uid}/portfolio/history/trades/{id}
        if path.startswith("users/"):
            named(doc.get("tenant_id"), path, (doc.get("execution") or {}).get("broker_order_id"))
    for path, doc in _docs(store, "execution_groups"):
        tenant = _tenant_of(path)
        for leg in doc.get("legs") or ():
            named(tenant, f"{path} leg {leg['leg_id']}", leg.get("broker_order_id"))
        for order in doc.get("rollback_orders") or ():
            named(tenant, f"{path} rollback {order['leg_id']}#{order['seq']}", order.get("broker_order_id"))
    for path, doc in _docs(store, "order_intents"):
        named(_tenant_of(path), path, doc.get("broker_order_id"))
    return sorted(problems)


def check(store: Any, venue: Any, *, tenant_id: str, group_ids: Iterable[str] = (),
          intent_ids: Iterable[str] = (), intent_doc_ids: Iterable[str] = ()) -> Verdict:
    ledger = ledger_net_positions(store, venue)
    held = venue_net_positions(venue)
    breaks = {s: (ledger.get(s, Decimal(0)), held.get(s, Decimal(0)))
              for s in set(ledger) | set(held) if ledger.get(s, Decimal(0)) != held.get(s, Decimal(0))}
    by_account, mapping, ledger_by_account, venue_by_account = account_position_breaks(store, venue)
    return Verdict(
        account_position_breaks=by_account, account_mapping_problems=mapping,
        ledger_net_by_account=ledger_by_account, venue_net_by_account=venue_by_account,
        lost=lost_outcomes(store, tenant_id=tenant_id, group_ids=group_ids, intent_ids=intent_ids,
                           intent_doc_ids=intent_doc_ids),
        duplicate_orders=duplicate_orders(venue),
        unrecorded_orders=unrecorded_orders(store, venue),
        non_final_groups=non_final_groups(store),
        position_breaks=breaks, ledger_net=ledger, venue_net=held,
        foreign_orders=foreign_adoptions(store, venue))


def assert_invariants(store: Any, venue: Any, *, tenant_id: str, group_ids: Iterable[str] = (),
                      intent_ids: Iterable[str] = (), intent_doc_ids: Iterable[str] = (),
                      context: str = "") -> Verdict:
    verdict = check(store, venue, tenant_id=tenant_id, group_ids=group_ids, intent_ids=intent_ids,
                    intent_doc_ids=intent_doc_ids)
    assert verdict.ok, (f"{context}: " if context else "") + "; ".join(verdict.problems())
    return verdict


__all__ = ["Verdict", "check", "assert_invariants", "lost_outcomes", "duplicate_orders", "unrecorded_orders",
           "non_final_groups", "ledger_net_positions", "venue_net_positions", "recorded_client_order_ids",
           "foreign_adoptions", "tenant_client_order_ids", "venue_account_net_positions",
           "ledger_account_net_positions", "account_position_breaks",
           "scenario", "pair_request", "intent_fields", "EQUITY_PAIR", "CRYPTO_PAIR", "PAIRS", "SYMBOLS"]


# --------------------------------------------------------------------------------------------
# Issue 10 (pre-trade gate): 0 venue orders while dry run is on; 0 group fills beyond the limits
# --------------------------------------------------------------------------------------------


def venue_orders_while_dry_run(orders: Iterable[Any]) -> list[str]:
    """Client order ids of the venue orders given (``venue.orders()`` of a run made under dry run,
    or the orders created after dry run was switched on): every one is a breach."""
    return sorted(str(getattr(o, "client_order_id", o)) for o in orders)


def assert_no_venue_orders(orders: Iterable[Any], context: str = "") -> None:
    """0 venue orders while dry run is on."""
    found = venue_orders_while_dry_run(orders)
    assert found == [], (f"{context}: " if context else "") + f"venue orders sent under dry run: {found}"


def group_fills_beyond_limits(store: Any, *, tenant_id: str | None = None, position_limit: Decimal,
                              daily_limit: int) -> list[str]:
    """Breaches of the limits in the ledger: the net filled position per (tenant, symbol) above the
    position limit (entry and rollback fills of groups and single orders, buy +, sell -), and more
    filled entries (single orders and group legs; rollback orders are exempt) per tenant and trade
    date than the daily trade count."""
    net: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    entries: Counter = Counter()
    for path, row in _docs(store, "ledger_trades"):
        tenant = _tenant_of(path)
        if tenant_id is not None and tenant != tenant_id:
            continue
        if row.get("kind") not in LEDGER_KINDS:
            continue
        filled = Decimal(str(row.get("filled_qty") or "0"))
        if not filled:
            continue
        net[(tenant, row["symbol"])] += filled if row["side"] == "buy" else -filled
        if row["kind"] in ("order", "group_fill"):
            entries[(tenant, row.get("trade_date"))] += 1
    problems = [f"{t}/{s}: net position {q} beyond the limit {position_limit}"
                for (t, s), q in sorted(net.items()) if abs(q) > position_limit]
    problems += [f"{t} {day}: {n} filled entries beyond the daily limit {daily_limit}"
                 for (t, day), n in sorted(entries.items(), key=str) if n > daily_limit]
    return problems


def assert_no_group_fills_beyond_limits(store: Any, tenant_id: str | None = None, *, position_limit: Decimal,
                                        daily_limit: int, context: str = "") -> None:
    """0 group fills beyond the limits (position per symbol, daily trade count)."""
    found = group_fills_beyond_limits(store, tenant_id=tenant_id, position_limit=Decimal(position_limit),
                                      daily_limit=daily_limit)
    assert found == [], (f"{context}: " if context else "") + "; ".join(found)


__all__ += ["venue_orders_while_dry_run", "assert_no_venue_orders", "group_fills_beyond_limits",
            "assert_no_group_fills_beyond_limits"]
