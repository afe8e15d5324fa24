"""The tax ledger: fills in time order → open lots, disposals and shortfalls.

Ordering. ``TaxLedger.apply`` takes fills one at a time and refuses a fill older than the last
one: the streaming path cannot reorder. ``compute_lots`` sorts a whole history by timestamp with
a stable sort, so fills with equal timestamps keep their input order (feed them in the order the
ledger recorded them; sorting by trade id would put a same-second sell before its buy).

Finality. A loss on EQUITY/OPTIONS can be washed by a purchase up to 30 days after the sale, so
such a disposal is held back until (a) replacement shares cover all of it, or (b) a fill dated
more than 30 days after the sale shows that the window has passed. Everything else is emitted as
soon as it is produced, so the ledger keeps only the open lots and at most 30 days of pending
losses, never the disposal history. At the end, ``finish(as_of)`` emits what is still pending:
``final=True`` only if ``as_of`` (the last day the history is complete through) is more than 30
days after the sale; otherwise the disposal is provisional (``final=False``): a purchase made
later could still wash it.

Disposals are emitted in the order they become final (immediately, or when their window closes),
not strictly in sale order; ``compute_lots`` returns them sorted by sale.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from decimal import localcontext
from typing import Any, Iterable

from backend.domain.assets import AssetClass, crypto_pair, detect_asset_class, normalize_symbol
from backend.domain.errors import InvalidInput
from backend.tax import _arith
from backend.tax.book import LotBook, PendingLoss
from backend.tax.holding import WASH_WINDOW_DAYS, resolve_tz, trade_date, wash_window_closes
from backend.tax.model import Disposal, Fill, Lot, LotMethod, Shortfall


@dataclass(frozen=True)
class LedgerStep:
    """What one ``apply`` made final: disposals (possibly of earlier sales) and a shortfall."""

    disposals: tuple[Disposal, ...] = ()
    shortfalls: tuple[Shortfall, ...] = ()


@dataclass(frozen=True)
class TaxReport:
    disposals: tuple[Disposal, ...]
    open_lots: tuple[Lot, ...]
    shortfalls: tuple[Shortfall, ...]
    as_of: date | None

    @property
    def provisional(self) -> bool:
        return any(not d.final for d in self.disposals)


class TaxLedger:
    """Processes fills per symbol with one lot method.

    ``short_selling``: asset classes in which a sell beyond the open lots opens a SHORT lot; in
    the others the excess is a ``Shortfall``. ``wash_sales=False`` turns the wash-sale rule off
    (e.g. to show raw gains). ``tz``: the tax time zone for trade dates (default New York).
    """

    def __init__(self, method: LotMethod | str = LotMethod.FIFO, *, short_selling: Iterable[AssetClass | str] = (),
                 wash_sales: bool = True, tz: tzinfo | str | None = None):
        self.method = LotMethod.parse(method, "method")
        self.short_selling = frozenset(AssetClass.parse(k, "short_selling") for k in short_selling)
        self.wash_sales = wash_sales
        self.tz = resolve_tz(tz)
        self._books: dict[str, LotBook] = {}
        self._pending: deque[tuple[PendingLoss, LotBook]] = deque()
        self._recent_ids: dict[str, date] = {}
        self._recent_order: deque[tuple[date, str]] = deque()
        self._seq = 0
        self._outbox: list[Disposal] = []
        self._last: datetime | None = None
        self._last_date: date | None = None
        self._finished = False

    # -- processing ------------------------------------------------------------------------

    def apply(self, fill: Fill) -> LedgerStep:
        if not isinstance(fill, Fill):
            raise InvalidInput("fill", f"expected a Fill, got {type(fill).__name__}")
        self._check_open()
        if self._last is not None and fill.timestamp < self._last:
            raise InvalidInput("timestamp", f"fill {fill.trade_id} at {fill.timestamp.isoformat()} is older than the "
                                            f"previous fill at {self._last.isoformat()}; apply fills in time order")
        fill_date = trade_date(fill.timestamp, self.tz)
        self._check_duplicate(fill.trade_id, fill_date)
        book = self._book(fill)
        with localcontext(_arith.EXACT):
            # losses whose window closed are moved to the outbox first; if the fill is then
            # refused (a bad lot selection), they are delivered with the next call, not lost
            self._outbox.extend(self._advance(fill_date))
            step = book.apply(fill, self._seq + 1, self.method)
        self._seq += 1
        self._last, self._last_date = fill.timestamp, fill_date
        self._recent_ids[fill.trade_id] = fill_date
        self._recent_order.append((fill_date, fill.trade_id))
        self._outbox.extend(step.final)
        self._outbox.extend(loss.snapshot(final=True) for loss in step.resolved)
        for loss in step.pending:
            self._pending.append((loss, book))
        return LedgerStep(self._take_outbox(), (step.shortfall,) if step.shortfall else ())

    def apply_corporate_action(self, action: Any) -> list[tuple[Lot, Lot]]:
        """A split or symbol change (``backend.tax.corporate.CorporateAction``) in time order with
        the fills: its ``effective`` date must not be before the last fill's trade date. Returns
        (before, after) per changed lot; no disposal."""
        from backend.tax.corporate import ActionKind, CorporateAction

        if not isinstance(action, CorporateAction):
            raise InvalidInput("corporate_action", f"expected a CorporateAction, got {type(action).__name__}")
        self._check_open()
        if self._last_date is not None and action.effective < self._last_date:
            raise InvalidInput("effective", f"{action.effective} is before the last fill date {self._last_date}")
        book = self._books.get(action.symbol)
        if book is None:
            return []
        with localcontext(_arith.EXACT):
            if action.kind is ActionKind.SPLIT:
                return book.stock_split(action.ratio, action.effective)
            target = self._books.get(action.target_symbol)
            if target is not None and (target.lots or any(not loss.done for loss in target._pending)):  # noqa: SLF001
                raise InvalidInput("new_symbol", f"{action.new_symbol} already has lots: a merger, not a symbol change")
            changed = book.rename(action.target_symbol)
            del self._books[action.symbol]
            self._books[action.target_symbol] = book
            return changed

    def _take_outbox(self) -> tuple[Disposal, ...]:
        out, self._outbox = tuple(self._outbox), []
        return out

    def advance_to(self, day: date) -> tuple[Disposal, ...]:
        """Declare the history complete through the day before ``day``'s fills: losses whose
        window closed before ``day`` become final and are returned."""
        self._check_open()
        if self._last_date is not None and day < self._last_date:
            raise InvalidInput("as_of", f"{day} is before the last fill date {self._last_date}")
        self._outbox.extend(self._advance(day))
        return self._take_outbox()

    def _advance(self, day: date) -> list[Disposal]:
        out: list[Disposal] = []
        while self._pending:
            loss, book = self._pending[0]
            if not loss.done and wash_window_closes(loss.sale_date) >= day:
                break
            self._pending.popleft()
            if not loss.done:
                book.expire(loss)
                out.append(loss.snapshot(final=True))
        cutoff = day - timedelta(days=WASH_WINDOW_DAYS + 1)
        while self._recent_order and self._recent_order[0][0] < cutoff:
            old_day, trade_id = self._recent_order.popleft()
            if self._recent_ids.get(trade_id) == old_day:
                del self._recent_ids[trade_id]
        return out

    def pending(self, as_of: date | None = None) -> tuple[Disposal, ...]:
        """Snapshot of the losses still waiting for their window (does not change the ledger)."""
        return tuple(loss.snapshot(final=self._final_as_of(loss, as_of))
                     for loss, _ in self._pending if not loss.done)

    def finish(self, as_of: date | None = None) -> tuple[Disposal, ...]:
        """End of input: emit every pending loss, final only if its window closed before ``as_of``.
        The ledger accepts no fills afterwards."""
        self._check_open()
        if as_of is not None and self._last_date is not None and as_of < self._last_date:
            raise InvalidInput("as_of", f"{as_of} is before the last fill date {self._last_date}")
        self._outbox.extend(self.pending(as_of))
        self._pending.clear()
        self._finished = True
        return self._take_outbox()

    # -- queries ---------------------------------------------------------------------------

    def open_lots(self, symbol: str | None = None) -> tuple[Lot, ...]:
        if symbol is not None:
            book = self._books.get(_symbol_key(symbol))
            return book.lots if book else ()
        return tuple(lot for key in sorted(self._books) for lot in self._books[key].lots)

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(sorted(self._books))

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _final_as_of(loss: PendingLoss, as_of: date | None) -> bool:
        return as_of is not None and as_of > wash_window_closes(loss.sale_date)

    def _check_open(self) -> None:
        if self._finished:
            raise InvalidInput("ledger", "finished; start a new TaxLedger to process more fills")

    def _check_duplicate(self, trade_id: str, day: date) -> None:
        # Streaming keeps only ~31 days of trade ids; ``compute_lots`` checks the whole history.
        if trade_id in self._recent_ids:
            raise InvalidInput("trade_id", f"duplicate fill {trade_id!r}")

    def _book(self, fill: Fill) -> LotBook:
        book = self._books.get(fill.symbol)
        if book is None:
            book = LotBook(fill.symbol, fill.asset_class, wash_sales=self.wash_sales,
                           short_selling=fill.asset_class in self.short_selling, tz=self.tz)
            self._books[fill.symbol] = book
        elif book.asset_class is not fill.asset_class:
            raise InvalidInput("asset_class", f"{fill.symbol} was {book.asset_class.value}, fill {fill.trade_id} "
                                              f"says {fill.asset_class.value}")
        return book


def _symbol_key(symbol: str) -> str:
    text = normalize_symbol(symbol)
    return crypto_pair(text) if detect_asset_class(text) is AssetClass.CRYPTO else text


def compute_lots(fills: Iterable[Fill], method: LotMethod | str = LotMethod.FIFO, *, as_of: date | None = None,
                 short_selling: Iterable[AssetClass | str] = (), wash_sales: bool = True,
                 tz: tzinfo | str | None = None) -> TaxReport:
    """Whole-history batch: sort (stable), process, finish. Disposals sorted by sale."""
    ordered_fills = sorted(fills, key=lambda f: f.timestamp)
    seen: set[str] = set()
    for fill in ordered_fills:
        if fill.trade_id in seen:
            raise InvalidInput("trade_id", f"duplicate fill {fill.trade_id!r}")
        seen.add(fill.trade_id)
    ledger = TaxLedger(method, short_selling=short_selling, wash_sales=wash_sales, tz=tz)
    disposals: list[Disposal] = []
    shortfalls: list[Shortfall] = []
    for fill in ordered_fills:
        step = ledger.apply(fill)
        disposals.extend(step.disposals)
        shortfalls.extend(step.shortfalls)
    disposals.extend(ledger.finish(as_of))
    disposals.sort(key=lambda d: d.seq)
    return TaxReport(disposals=tuple(disposals), open_lots=ledger.open_lots(), shortfalls=tuple(shortfalls),
                     as_of=as_of)
