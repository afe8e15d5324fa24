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

Timing: an order filled at the venue whose ledger row is not committed yet (seconds) shows as a
break in a run that falls between the two; the next run clears it (``since`` shows how long a break
has lasted). The scheduled run is daily.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Callable, Iterable, Mapping, Sequence

from backend.domain.money import ZERO, dec_str, to_decimal
from backend.logs import log_event

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
        if row.get("kind") not in FILL_KINDS:
            continue
        raw = row.get("filled_qty")
        if raw in (None, "", "0"):
            continue
        qty = to_decimal(raw, "filled_qty")
        if qty == ZERO:
            continue
        side = str(row.get("side") or "").lower()
        if side not in ("buy", "sell"):
            continue
        account = str(row.get("broker_account_id") or "default")
        key = position_key(str(row.get("symbol") or ""))
        book = out.setdefault(account, {})
        book[key] = book.get(key, ZERO) + (qty if side == "buy" else -qty)
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


def build_report(tenant_id: str, day: str, now: datetime, results: Sequence[Mapping[str, Any]],
                 previous: Iterable[Mapping[str, Any] | None] = ()) -> dict[str, Any]:
    """The report document. ``results``: per account ``{account_id, venue_account_id, diffs}`` (diffs
    from :func:`compare`) or ``{account_id, error}``; ``previous``: earlier report documents."""
    carried = _previous_since(previous)
    stamp = now.isoformat()
    breaks: list[Break] = []
    errors: list[dict[str, Any]] = []
    for result in results:
        if result.get("error") is not None:
            errors.append({"account_id": result["account_id"], "reason": str(result["error"])[:300]})
            continue
        for symbol, ledger_qty, venue_qty in result["diffs"]:
            key = (result["account_id"], symbol)
            breaks.append(Break(result["account_id"], result.get("venue_account_id"), symbol, ledger_qty, venue_qty,
                                carried.get(key, stamp)))
    status = INCOMPLETE if errors else (BREAKS if breaks else CLEAN)
    return {"tenant_id": tenant_id, "day": day, "status": status, "run_at": stamp,
            "accounts_checked": len(results) - len(errors), "break_count": len(breaks),
            "breaks": [b.to_dict() for b in breaks], "errors": errors}


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


def reconcile_tenant(store: Any, venues_for: Callable[[str, Any], Sequence[Any]], tenant_id: str,
                     now: datetime) -> dict[str, Any]:
    """Compare every account of ``tenant_id``, write ``tenants/{t}/reconciliation/{day}`` and return it.
    ``venues_for(tenant_id, account)``: the account's venues (each with ``get_positions()``)."""
    from backend.execution.unit_of_work import Commit, Set

    day = now.date().isoformat()
    accounts = tenant_accounts(store, tenant_id)
    books = ledger_net_positions(ledger_rows(store, tenant_id)) if accounts else {}
    results: list[dict[str, Any]] = []
    for account in accounts:
        if getattr(account.status, "value", account.status) == "closed" and not books.get(account.account_id):
            continue  # a closed account with nothing booked has nothing to hold
        try:
            positions = [p for venue in venues_for(tenant_id, account) for p in venue.get_positions()]
        except Exception as exc:  # noqa: BLE001 - an unreachable venue is reported as incomplete, not a break
            log_event("recon.venue_unavailable", severity="ERROR", tenant_id=tenant_id,
                      account_id=account.account_id, error_type=type(exc).__name__, error=str(exc)[:300])
            results.append({"account_id": account.account_id, "error": type(exc).__name__})
            continue
        results.append({"account_id": account.account_id, "venue_account_id": account.venue_account_id,
                        "diffs": compare(books.get(account.account_id, {}), positions)})
    yesterday = (date.fromisoformat(day) - timedelta(days=1)).isoformat()
    previous_paths = [report_path(tenant_id, day), report_path(tenant_id, yesterday)]
    previous = store.get_all(previous_paths)
    report = build_report(tenant_id, day, now, results, [previous[p][0] for p in previous_paths])
    store.commit(Commit([Set(report_path(tenant_id, day), report)]))
    for item in report["breaks"]:
        log_event("recon.break", severity="ERROR", tenant_id=tenant_id, **item)
    log_event("recon.report", severity="ERROR" if report["status"] != CLEAN else "INFO", tenant_id=tenant_id,
              day=day, status=report["status"], breaks=report["break_count"], accounts=report["accounts_checked"])
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
