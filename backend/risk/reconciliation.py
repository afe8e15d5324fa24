"""Daily reconciliation (issue 13 item 7): the ledger's net position per account and symbol against
the venue's positions of that account. A break is reported and alerted, never corrected.

Pure core:

- :func:`ledger_net_positions` — sum of the signed filled quantities of the ledger's fill rows
  (``kind`` ``order`` — its fill at placement —, ``fill``, ``group_fill``, ``rollback_fill``; a
  ``group_decision`` row carries no fill) per (``broker_account_id``, symbol).
- :func:`compare` — one account's ledger positions against its venue positions (``Position``s);
  symbols are matched on :func:`position_key` (``BTC/USD`` at the venue is ``BTCUSD``).
- :func:`build_report` — the report document ``tenants/{t}/reconciliation/{YYYY-MM-DD}``:
  ``status`` ``clean`` | ``breaks`` | ``incomplete`` (a venue could not be read), ``breaks`` [account_id,
  venue_account_id, symbol, ledger_qty, venue_qty, difference, since], ``errors`` [account_id, reason],
  counts and the run time. ``since`` is the first run that saw a break in that (account, symbol) without a
  clean run in between: carried from the previous report (that day's or the day before's).

Service (:func:`reconcile_tenant`, ports only): lists the tenant's accounts
(``tenants/{t}/accounts``), pages through the tenant's ledger once (``store.ledger_page``, newest
first, ``PAGE_SIZE`` rows per query), asks ``venues_for(tenant_id, account)`` for the account's
venues and their ``get_positions()``, writes the report in one commit and logs every break at ERROR
(``recon.break``) — a break, like an unreadable venue, changes nothing else.

Cash (the second half of the comparison): per account, the ledger's cash effect of the day — Σ over
the fill rows of that account whose ``trade_date`` is the day of −side × filled_qty × filled_avg_price ×
multiplier − fees (:func:`ledger_cash_effects`) — against the venue's records of the same UTC day: each
venue's optional ``ActivityProvider.get_activities(day)`` (``backend/ports/activities.py``: Alpaca Broker API
account activities, Alpaca Trading API closed orders, OANDA ``ORDER_FILL`` transactions, the simulated
venue's fills), whose fills and fees give :func:`venue_cash_effects`. Amounts are kept per currency (the
price currency of each fill: ``EUR/USD`` → USD, ``USD/JPY`` → JPY, equities and options USD), exact
Decimals. The report lists per account ``cash`` — [{currency, ledger, venue, difference, ledger_fills,
venue_fills}] (and ``venue_financing``, OANDA's carry, shown beside it, not compared) — or ``"unavailable"`` with ``cash_unavailable_reason`` when a venue lacks the capability or
could not be read (the report is then ``incomplete``, never clean), and ``cash_breaks`` [account_id,
venue_account_id, currency, ledger, venue, difference, since] for every currency whose two sums differ.
A fill the ledger never saw is a position break AND a cash break of its cash effect; a price or fee
mismatch is only a cash break. ``since`` of a cash break is carried only within the same day (a
re-run); another day's cash is another comparison.

Timing: an order filled at the venue whose ledger row is not committed yet (seconds) shows as a
break in a run that falls between the two; the next run clears it (``since`` shows how long a break
has lasted). A fill near midnight UTC whose ledger row is stamped the next day is a cash break of
both days. The scheduled run is daily (23:30 UTC): the day's cash after it is compared only by a
later on-demand run of that day.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Callable, Iterable, Mapping, Sequence

from backend.domain.money import ZERO, dec_str, to_decimal
from backend.domain.orders import quote_currency
from backend.logs import log_event

CASH_UNAVAILABLE = "unavailable"

FILL_KINDS = frozenset({"order", "fill", "group_fill", "rollback_fill"})
PAGE_SIZE = 500
MAX_ACCOUNTS = 5000
COLLECTION = "reconciliation"
CLEAN, BREAKS, INCOMPLETE = "clean", "breaks", "incomplete"


def report_path(tenant_id: str, day: str) -> str:
    return f"tenants/{tenant_id}/{COLLECTION}/{day}"


def position_key(symbol: str) -> str:
    """The symbol as venues spell positions: ``BTC/USD`` and ``BTCUSD`` are one position."""
    return symbol.replace("/", "").replace("-", "").strip().upper()


def ledger_net_positions(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Decimal]]:
    """account id → position key → net filled quantity (buys positive), from ledger rows."""
    out: dict[str, dict[str, Decimal]] = {}
    for row in rows:
        _add_position(out, row)
    return out


def _add_position(out: dict[str, dict[str, Decimal]], row: Mapping[str, Any]) -> None:
    if row.get("kind") not in FILL_KINDS:
        return
    raw = row.get("filled_qty")
    if raw in (None, "", "0"):
        return
    qty = to_decimal(raw, "filled_qty")
    if qty == ZERO:
        return
    side = str(row.get("side") or "").lower()
    if side not in ("buy", "sell"):
        return
    account = str(row.get("broker_account_id") or "default")
    key = position_key(str(row.get("symbol") or ""))
    book = out.setdefault(account, {})
    book[key] = book.get(key, ZERO) + (qty if side == "buy" else -qty)


@dataclass
class CashTally:
    """One account's cash effect in one currency and how many records made it."""

    amount: Decimal = ZERO
    fills: int = 0


def _multiplier(symbol: str, asset_class: Any) -> Decimal:
    """The contract multiplier of the row's instrument (options ×100) from the spec registry."""
    from backend.domain.assets import AssetClass, default_registry

    klass = None
    if asset_class:
        try:
            klass = AssetClass.parse(asset_class)
        except ValueError:  # an unknown class: detected from the symbol
            klass = None
    try:
        return default_registry().spec_for(symbol, klass).multiplier
    except (ValueError, KeyError):  # a symbol no spec knows has no contract multiplier
        return Decimal(1)


def ledger_cash_effects(rows: Iterable[Mapping[str, Any]], day: str) -> dict[str, dict[str, CashTally]]:
    """account id → currency → cash effect of the fill rows of ``day`` (``trade_date``): Σ −side ×
    filled_qty × filled_avg_price × multiplier − fees (buys take cash, sells bring it)."""
    out: dict[str, dict[str, CashTally]] = {}
    for row in rows:
        _add_cash(out, row, day)
    return out


def _add_cash(out: dict[str, dict[str, CashTally]], row: Mapping[str, Any], day: str) -> None:
    if row.get("kind") not in FILL_KINDS or row.get("trade_date") != day:
        return
    raw_qty, raw_price = row.get("filled_qty"), row.get("filled_avg_price")
    if raw_qty in (None, "") or raw_price in (None, ""):
        return
    qty = to_decimal(raw_qty, "filled_qty")
    side = str(row.get("side") or "").lower()
    if qty == ZERO or side not in ("buy", "sell"):
        return
    symbol = str(row.get("symbol") or "")
    price = to_decimal(raw_price, "filled_avg_price")
    fees = to_decimal(row["fees"], "fees") if row.get("fees") not in (None, "") else ZERO
    notional = qty * price * _multiplier(symbol, row.get("asset_class"))
    tally = out.setdefault(str(row.get("broker_account_id") or "default"), {}).setdefault(
        quote_currency(symbol), CashTally())
    tally.amount += (-notional if side == "buy" else notional) - fees
    tally.fills += 1


def venue_cash_effects(activities: Iterable[Any]) -> dict[str, CashTally]:
    """currency → cash effect of the venue's records (``VenueActivities``: each fill's ``cash_effect``
    plus each fee's signed amount)."""
    out: dict[str, CashTally] = {}
    for day in activities:
        for fill in day.fills:
            tally = out.setdefault(fill.currency, CashTally())
            tally.amount += fill.cash_effect
            tally.fills += 1
        for fee in day.fees:
            out.setdefault(fee.currency, CashTally()).amount += fee.amount
    return out


def venue_financing(activities: Iterable[Any]) -> dict[str, Decimal]:
    """currency → the venue's financing (carry) of the day: reported beside the cash, not compared."""
    out: dict[str, Decimal] = {}
    for day in activities:
        for item in getattr(day, "financing", ()):
            out[item.currency] = out.get(item.currency, ZERO) + item.amount
    return out


def compare_cash(ledger: Mapping[str, CashTally], venue: Mapping[str, CashTally]) -> list[dict[str, Any]]:
    """Per currency seen on either side (sorted): {currency, ledger, venue, difference (venue − ledger),
    ledger_fills, venue_fills}; Decimals."""
    out = []
    for currency in sorted(set(ledger) | set(venue)):
        booked, held = ledger.get(currency, CashTally()), venue.get(currency, CashTally())
        out.append({"currency": currency, "ledger": booked.amount, "venue": held.amount,
                    "difference": held.amount - booked.amount, "ledger_fills": booked.fills,
                    "venue_fills": held.fills})
    return out


@dataclass(frozen=True)
class Break:
    account_id: str
    venue_account_id: str | None
    symbol: str
    ledger_qty: Decimal
    venue_qty: Decimal
    since: str

    @property
    def difference(self) -> Decimal:
        return self.venue_qty - self.ledger_qty

    def to_dict(self) -> dict[str, Any]:
        return {"account_id": self.account_id, "venue_account_id": self.venue_account_id, "symbol": self.symbol,
                "ledger_qty": dec_str(self.ledger_qty), "venue_qty": dec_str(self.venue_qty),
                "difference": dec_str(self.difference), "since": self.since}


def compare(ledger: Mapping[str, Decimal], venue_positions: Iterable[Any]) -> list[tuple[str, Decimal, Decimal]]:
    """(symbol key, ledger qty, venue qty) for every symbol where the two differ, sorted by symbol.
    ``venue_positions``: ``Position``-like objects (``symbol``, signed ``qty``)."""
    venue: dict[str, Decimal] = {}
    for position in venue_positions:
        key = position_key(str(position.symbol))
        venue[key] = venue.get(key, ZERO) + Decimal(position.qty)
    out = []
    for key in sorted(set(ledger) | set(venue)):
        held, booked = venue.get(key, ZERO), ledger.get(key, ZERO)
        if held != booked:
            out.append((key, booked, held))
    return out


def _previous_since(previous: Iterable[Mapping[str, Any] | None]) -> dict[tuple[str, str], str]:
    """(account, symbol) → since, from earlier reports (earliest wins)."""
    out: dict[tuple[str, str], str] = {}
    for report in previous:
        for item in (report or {}).get("breaks") or ():
            key = (item.get("account_id"), item.get("symbol"))
            since = item.get("since")
            if isinstance(since, str) and (key not in out or since < out[key]):
                out[key] = since
    return out


def _previous_cash_since(previous: Iterable[Mapping[str, Any] | None], day: str) -> dict[tuple[str, str], str]:
    """(account, currency) → since, from earlier reports of the same ``day`` only."""
    out: dict[tuple[str, str], str] = {}
    for report in previous:
        if not report or report.get("day") != day:
            continue
        for item in report.get("cash_breaks") or ():
            key = (item.get("account_id"), item.get("currency"))
            since = item.get("since")
            if isinstance(since, str) and (key not in out or since < out[key]):
                out[key] = since
    return out


def _cash_json(line: Mapping[str, Any]) -> dict[str, Any]:
    return {"currency": line["currency"], "ledger": dec_str(line["ledger"]), "venue": dec_str(line["venue"]),
            "difference": dec_str(line["difference"]), "ledger_fills": line["ledger_fills"],
            "venue_fills": line["venue_fills"]}


def build_report(tenant_id: str, day: str, now: datetime, results: Sequence[Mapping[str, Any]],
                 previous: Iterable[Mapping[str, Any] | None] = ()) -> dict[str, Any]:
    """The report document. ``results``: per account ``{account_id, venue_account_id, diffs, cash}`` (diffs
    from :func:`compare`; ``cash`` from :func:`compare_cash`, or ``None`` with ``cash_unavailable`` = the
    reason) or ``{account_id, error}``; ``previous``: earlier report documents. A result without a ``cash``
    key (positions only) reports its cash unavailable."""
    previous = list(previous)
    carried = _previous_since(previous)
    carried_cash = _previous_cash_since(previous, day)
    stamp = now.isoformat()
    breaks: list[Break] = []
    cash_breaks: list[dict[str, Any]] = []
    accounts: list[dict[str, Any]] = []
    unavailable: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for result in results:
        if result.get("error") is not None:
            errors.append({"account_id": result["account_id"], "reason": str(result["error"])[:300]})
            continue
        account_id, venue_account_id = result["account_id"], result.get("venue_account_id")
        for symbol, ledger_qty, venue_qty in result["diffs"]:
            key = (account_id, symbol)
            breaks.append(Break(account_id, venue_account_id, symbol, ledger_qty, venue_qty,
                                carried.get(key, stamp)))
        cash = result.get("cash")
        entry: dict[str, Any] = {"account_id": account_id, "venue_account_id": venue_account_id}
        if cash is None:
            reason = str(result.get("cash_unavailable") or "the venue reports no activities")[:300]
            entry.update(cash=CASH_UNAVAILABLE, cash_unavailable_reason=reason)
            unavailable.append({"account_id": account_id, "reason": reason})
        else:
            entry["cash"] = [_cash_json(line) for line in cash]
            if result.get("financing"):
                entry["venue_financing"] = [{"currency": c, "amount": dec_str(a)}
                                            for c, a in sorted(result["financing"].items())]
            for line in cash:
                if line["difference"] != ZERO:
                    cash_breaks.append({"account_id": account_id, "venue_account_id": venue_account_id,
                                        **{k: v for k, v in _cash_json(line).items()
                                           if k in ("currency", "ledger", "venue", "difference")},
                                        "since": carried_cash.get((account_id, line["currency"]), stamp)})
        accounts.append(entry)
    if errors or unavailable:
        status = INCOMPLETE
    else:
        status = BREAKS if breaks or cash_breaks else CLEAN
    return {"tenant_id": tenant_id, "day": day, "status": status, "run_at": stamp,
            "accounts_checked": len(results) - len(errors), "break_count": len(breaks),
            "breaks": [b.to_dict() for b in breaks], "cash_break_count": len(cash_breaks),
            "cash_breaks": cash_breaks, "accounts": accounts, "cash_unavailable": unavailable, "errors": errors}


# ------------------------------------------------------------------------------------- service


def ledger_rows(store: Any, tenant_id: str) -> Iterable[Mapping[str, Any]]:
    """Every ledger row of the tenant, page by page (``store.ledger_page``, no filter)."""
    after = None
    while True:
        rows = store.ledger_page(tenant_id, equals={}, created_from=None, created_before=None, after=after,
                                 limit=PAGE_SIZE)
        for _, row in rows:
            yield row
        if len(rows) < PAGE_SIZE:
            return
        last_id, last = rows[-1]
        after = (str(last.get("created_at")), last_id)


def tenant_accounts(store: Any, tenant_id: str) -> list[Any]:
    """The tenant's account documents, parsed (``Account``); one the codec refuses is skipped with an
    ERROR line (it is reported, not guessed at)."""
    from backend.domain.accounts import Account

    ids = store.list_ids(f"tenants/{tenant_id}/accounts", MAX_ACCOUNTS)
    paths = [f"tenants/{tenant_id}/accounts/{i}" for i in ids]
    docs = store.get_all(paths) if paths else {}
    out = []
    for path in paths:
        doc = docs[path][0]
        if doc is None:
            continue
        try:
            out.append(Account.from_dict(doc))
        except Exception as exc:  # noqa: BLE001 - a malformed admin document must not stop the others
            log_event("recon.account_unreadable", severity="ERROR", tenant_id=tenant_id, path=path,
                      error=str(exc)[:300])
    return out


def _ledger_books(store: Any, tenant_id: str, day: str) -> tuple[dict[str, dict[str, Decimal]],
                                                                  dict[str, dict[str, CashTally]]]:
    """One pass over the tenant's ledger: net positions (all time) and the cash effects of ``day``."""
    positions: dict[str, dict[str, Decimal]] = {}
    cash: dict[str, dict[str, CashTally]] = {}
    for row in ledger_rows(store, tenant_id):
        _add_position(positions, row)
        _add_cash(cash, row, day)
    return positions, cash


def venue_activities(venues: Sequence[Any], day: date) -> tuple[list[Any] | None, str | None]:
    """Every venue's ``get_activities(day)``; (None, reason) when one lacks the capability or fails."""
    from backend.ports.activities import ActivityProvider

    out = []
    for venue in venues:
        if not isinstance(venue, ActivityProvider):
            return None, f"{getattr(venue, 'name', type(venue).__name__)}: the venue reports no account activities"
        try:
            out.append(venue.get_activities(day))
        except Exception as exc:  # noqa: BLE001 - an unreadable activity feed leaves the cash unchecked, reported
            return None, f"{getattr(venue, 'name', type(venue).__name__)}: {type(exc).__name__}: {str(exc)[:200]}"
    return out, None


def reconcile_tenant(store: Any, venues_for: Callable[[str, Any], Sequence[Any]], tenant_id: str,
                     now: datetime) -> dict[str, Any]:
    """Compare every account of ``tenant_id``, write ``tenants/{t}/reconciliation/{day}`` and return it.
    ``venues_for(tenant_id, account)``: the account's venues (each with ``get_positions()`` and, when it
    has the capability, ``get_activities(day)``)."""
    from backend.execution.unit_of_work import Commit, Set

    day = now.date().isoformat()
    accounts = tenant_accounts(store, tenant_id)
    books, cash_books = _ledger_books(store, tenant_id, day) if accounts else ({}, {})
    results: list[dict[str, Any]] = []
    for account in accounts:
        booked_cash = cash_books.get(account.account_id, {})
        if getattr(account.status, "value", account.status) == "closed" and not books.get(account.account_id) \
                and not booked_cash:
            continue  # a closed account with nothing booked has nothing to hold
        try:
            venues = list(venues_for(tenant_id, account))
            positions = [p for venue in venues for p in venue.get_positions()]
        except Exception as exc:  # noqa: BLE001 - an unreachable venue is reported as incomplete, not a break
            log_event("recon.venue_unavailable", severity="ERROR", tenant_id=tenant_id,
                      account_id=account.account_id, error_type=type(exc).__name__, error=str(exc)[:300])
            results.append({"account_id": account.account_id, "error": type(exc).__name__})
            continue
        activities, missing = venue_activities(venues, now.date())
        if missing is not None:
            log_event("recon.cash_unavailable", severity="ERROR", tenant_id=tenant_id,
                      account_id=account.account_id, reason=missing)
        results.append({"account_id": account.account_id, "venue_account_id": account.venue_account_id,
                        "diffs": compare(books.get(account.account_id, {}), positions),
                        "cash": None if activities is None else compare_cash(booked_cash,
                                                                             venue_cash_effects(activities)),
                        "cash_unavailable": missing,
                        "financing": venue_financing(activities) if activities is not None else {}})
    yesterday = (date.fromisoformat(day) - timedelta(days=1)).isoformat()
    previous_paths = [report_path(tenant_id, day), report_path(tenant_id, yesterday)]
    previous = store.get_all(previous_paths)
    report = build_report(tenant_id, day, now, results, [previous[p][0] for p in previous_paths])
    store.commit(Commit([Set(report_path(tenant_id, day), report)]))
    for item in report["breaks"]:
        log_event("recon.break", severity="ERROR", tenant_id=tenant_id, **item)
    for item in report["cash_breaks"]:
        log_event("recon.cash_break", severity="ERROR", tenant_id=tenant_id, **item)
    log_event("recon.report", severity="ERROR" if report["status"] != CLEAN else "INFO", tenant_id=tenant_id,
              day=day, status=report["status"], breaks=report["break_count"],
              cash_breaks=report["cash_break_count"], accounts=report["accounts_checked"])
    return report


def reconcile_all(store: Any, venues_for: Callable[[str, Any], Sequence[Any]], now: datetime,
                  tenant_ids: Iterable[str]) -> dict[str, str]:
    """The scheduled run: every tenant in ``tenant_ids``; tenant → status (``error`` when the run of
    that tenant failed: logged at ERROR, the others still run)."""
    out: dict[str, str] = {}
    for tenant_id in tenant_ids:
        try:
            out[tenant_id] = reconcile_tenant(store, venues_for, tenant_id, now)["status"]
        except Exception as exc:  # noqa: BLE001 - one tenant's failure must not stop the others
            log_event("recon.tenant_failed", severity="ERROR", tenant_id=tenant_id, error_type=type(exc).__name__,
                      error=str(exc)[:300])
            out[tenant_id] = "error"
    return out
