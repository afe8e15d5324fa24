"""Open lots as of the end of a past day, reconstructed from the stored records only.

Nothing is replayed (no fills, no prices): the answer is worked backwards from what the stores
keep (``backend/tax/state.py``):

- the current lot books ``users/<uid>/tax_books/<symbol>``: open lots (``lots``), losses still
  pending a wash sale (``pending``, each with its disposal) and the corporate-action history
  (``corporate_actions``, ``backend/tax/corporate.py``: each entry names its kind, ex-date and
  every lot it changed by (book, lot id));
- the final disposals ``users/<uid>/tax_disposals/<id>`` (one per closing fill and lot: lot id,
  opening trade, quantity, basis, dates).

Rule: a lot held at the end of day D (tax time zone) = every piece of it that still existed
after D: the open lot now plus each disposal of it sold after D (their quantities and bases add
back exactly; lots acquired after D are left out), then each event after D is undone:

- **splits** with an ex-date after D: the pieces' quantities are divided by the ratio of every
  such split applied before them (a disposal sold on or after the ex-date, or the open lot now),
  summed as exact fractions. Total basis is unchanged by a split. Check: the pieces of each lot
  the split changed add up, in post-split units, to the ``qty_after`` the history recorded (a
  split recorded before its ex-date with sales in between would not: refused);
- **symbol changes** with an ex-date after D: the lots they carried show the old symbol;
- **wash-sale basis adjustments "as they stood" at the end of D**: an adjustment counts from the
  day the book made it: a replacement bought after the loss is adjusted on its purchase day
  (so, for a lot held at D, always by D), a replacement held before the loss is adjusted on the
  loss's sale day. An adjustment from a loss sold after D is taken out of the basis, the holding
  period starts again at the lot's own acquisition, and a piece split off for it
  (``<lot>-W<n>``) is merged back into its lot. Which loss adjusted a lot is not stored on the lot,
  so it is identified among the washed losses sold within 30 days of the lot's purchase by the
  holding period it tacked on (``acquired − (loss sold − loss holding start)``) and the amount;
  a lot bought 30 or more days before D is decided without looking (any loss that can wash it
  was sold by D). A piece split off for a wash sale whose loss is still in doubt is placed by its
  number ``n``: the book numbers these splits in booking order, so one at or below a split known
  to be made by D was made by D, one at or above a split made after D (e.g. of a lot bought after
  D) was after it. Losses still pending at D that a purchase after D washed change only lots
  bought after D, which are not in the answer.

Refused (``AsOfUnavailable``, the API's 409), never guessed: a ``LOT_BOOK_OVERFLOW`` marker
(``backend/execution/lot_capacity.overflow_marker``: a fill recorded without its lot step because its
book was full) traded on or before D — the book then lacks that fill's lot (a buy) or still holds the
lots it sold (a sell) at the end of D; a marker traded after D changes nothing of D (the book at D was
complete; a later missing buy is acquired after D, a later missing sale left its lots open, and its
wash-sale effects would have been made after D) and is ignored — a book of another state version,
a record missing a field the reconstruction needs (records from before the field existed), a
corporate-action history cut at its cap (``MAX_HISTORY``) before D, pieces that do not add up to
what a split recorded, a quantity that is not a finite decimal once a split is undone, and a
wash adjustment whose loss cannot be told (none found, or candidates on both sides of D).

Order of the answer: by the book key of the symbol at D (the current export pages books by
document id), then by acquisition time, then trade id; pieces split off one purchase for wash
sales before its remainder, in the order they were split (the book's sequence order). Memory:
the lots held at D (the size of the answer), the later pieces of them a later event changed (washed,
split or renamed after D; the others are added up as they are read) and the washed losses of 90 days.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, tzinfo
from decimal import Decimal
from fractions import Fraction
from typing import Any, Iterable, Mapping

from backend.domain.assets import AssetClass
from backend.domain.money import ZERO
from backend.tax import _arith
from backend.tax.corporate import HISTORY_KEY, MAX_HISTORY
from backend.tax.holding import WASH_WINDOW_DAYS, resolve_tz, trade_date
from backend.tax.model import Lot, Position
from backend.tax.state import STATE_VERSION, book_key, book_lots, book_pending, disposal_doc_id, disposal_from_dict

SHORTFALL_CODE = "LOT_SHORTFALL"
OVERFLOW_CODE = "LOT_BOOK_OVERFLOW"  # backend.execution.lot_capacity.OVERFLOW_CODE (the tax core imports no execution)
# Washed losses that can have adjusted a lot held at D were sold within 30 days of a purchase made
# in the 30 days up to D: read disposals from this many days before D.
LOOKBACK_DAYS = 2 * WASH_WINDOW_DAYS
PER_UNIT_TOLERANCE = Fraction(1, 10_000)


class AsOfUnavailable(Exception):
    """The stored records cannot give the lots of that date exactly; ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class _Piece:
    """A part of a lot that existed after D: the open lot now, or a disposal sold after D."""

    symbol: str
    asset_class: AssetClass
    book: str
    source: str
    position: Position
    lot_id: str
    qty: Decimal
    basis: Decimal
    wash: Decimal  # the piece's share of a wash-sale adjustment (in ``basis``)
    holding_start: date
    acquired: date
    acquired_at: datetime
    sold: date | None  # None: still open
    closed_at: datetime | None
    washed: bool  # the piece carries a wash sale (adjustment, tacked holding period or a -W id)
    origin: str  # for messages: "lot" or the disposal's document id

    @property
    def parent_id(self) -> str:
        """The lot id the piece had before any wash split (``<source>-W<n>`` → ``<source>``)."""
        return self.source if self.lot_id != self.source and self.lot_id.startswith(f"{self.source}-W") else self.lot_id


@dataclass(frozen=True)
class _Action:
    kind: str
    symbol: str
    new_symbol: str
    effective: date
    ratio: Fraction
    lots: dict[tuple[str, str], Fraction]  # (book, lot id) -> qty after

    def covers(self, piece: _Piece) -> bool:
        """The action changed this piece's lot: its own id is listed, or it was split off (after the
        action) from a listed lot."""
        own = (piece.book, piece.lot_id)
        return own in self.lots or (piece.lot_id != piece.parent_id and (piece.book, piece.parent_id) in self.lots)


@dataclass(frozen=True)
class _Loss:
    symbol: str
    book: str
    source: str  # the purchase the sold shares came from (never its own replacement)
    sold: date
    closed_at: datetime
    holding_start: date
    disallowed: Decimal
    quantity: Decimal
    loss: Decimal  # cost basis − proceeds of the sold shares

    def per_unit_matches(self, piece: _Piece, splits: Iterable[tuple[date, Fraction]]) -> bool:
        """The book prorates a loss by quantity, so a replacement piece carries the sold shares' loss
        per unit: ``wash = loss × qty / (quantity × F)`` up to the 1e-8 rounding of each proration
        (``_arith.prorate``; ``PER_UNIT_TOLERANCE`` covers 10,000 of them). ``F``: the ratios of the
        splits after the sale up to the piece's sale (or now): one before the wash scaled the pending
        loss's quantity, one after it the replacement lot's."""
        factor = Fraction(1)
        for effective, ratio in splits:
            if self.sold < effective and (piece.sold is None or effective <= piece.sold):
                factor *= ratio
        expected = Fraction(self.loss) * Fraction(piece.qty) / (Fraction(self.quantity) * factor)
        return abs(Fraction(piece.wash) - expected) <= PER_UNIT_TOLERANCE

    def can_have_washed(self, piece: _Piece) -> bool:
        """The book's rules, as far as the stored fields show them: the sold shares' holding period
        tacked on (``acquired − (sold − holding start)``), a disallowed loss at least the piece's
        share, another purchase than the sold shares', and the wash made (at the later of the sale
        and the purchase) before the piece was sold."""
        return (abs((self.sold - piece.acquired).days) <= WASH_WINDOW_DAYS
                and piece.acquired - (self.sold - self.holding_start) == piece.holding_start
                and self.disallowed >= piece.wash and (self.source, self.book) != (piece.source, piece.book)
                and (piece.closed_at is None or max(self.closed_at, piece.acquired_at) <= piece.closed_at))


def _day(value: Any, what: str) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise AsOfUnavailable(f"{what}: not a date: {value!r}") from None


def _fraction_to_decimal(value: Fraction, what: str) -> Decimal:
    den = value.denominator
    for prime in (2, 5):
        while den % prime == 0:
            den //= prime
    if den != 1:
        raise AsOfUnavailable(f"{what}: undoing the split gives {value}, not a finite decimal")
    ctx = _arith.EXACT
    return ctx.divide(Decimal(value.numerator), Decimal(value.denominator))


class _Reader:
    def __init__(self, as_of: date, tz: tzinfo):
        self.as_of = as_of
        self.tz = tz
        self.pieces: list[_Piece] = []  # pieces a later event changed: kept one by one
        self.plain: dict[tuple[str, str, str, str], _Piece] = {}  # the others, added up per lot
        self.pending: dict[str, _Piece] = {}  # disposal doc id -> piece (a final document replaces it)
        self.actions: list[_Action] = []
        self.losses: dict[str, _Loss] = {}  # disposal doc id -> washed loss (a final document wins)
        # wash-split numbers (``<lot>-W<n>``: the book's counter, in booking order) known to be after D
        # (lowest) and by D (highest), per symbol
        self.split_after: dict[str, int] = {}
        self.split_by: dict[str, int] = {}

    def _split_after(self, symbol: str, source: str, lot_id: str) -> None:
        """A piece of a lot bought after D: if it was split off for a wash sale, that was after D."""
        number = _wash_split_number(source, lot_id)
        if number is not None:
            self.split_after[symbol] = min(number, self.split_after.get(symbol, number))

    # --- books ---------------------------------------------------------------------------------
    def book(self, doc_id: str, doc: Mapping[str, Any]) -> None:
        version = doc.get("version", STATE_VERSION)
        if version != STATE_VERSION:
            raise AsOfUnavailable(f"lot book {doc_id}: state version {version!r}, this reader knows {STATE_VERSION}")
        history = list(doc.get(HISTORY_KEY) or ())
        if len(history) >= MAX_HISTORY:
            latest = max(_day(item.get("effective"), f"lot book {doc_id}") for item in history)
            if self.as_of < latest:
                raise AsOfUnavailable(f"lot book {doc_id}: its corporate-action history is cut at {MAX_HISTORY} "
                                      "entries; older actions after the date may be missing")
        for item in history:
            self.actions.append(self._action(doc_id, item))
        try:
            asset_class = AssetClass(doc["asset_class"])
            for lot in book_lots(doc):
                self._open_lot(lot, asset_class)
            for loss in book_pending(doc):
                disposal = loss["disposal"]
                self._disposal(disposal_doc_id(disposal_from_dict(disposal)), disposal,
                               disallowed=Decimal(str(loss["disallowed"])), pending=True)
        except KeyError as missing:
            raise AsOfUnavailable(f"lot book {doc_id}: a record has no {missing} (written before that field "
                                  "existed)") from None

    def _action(self, doc_id: str, item: Mapping[str, Any]) -> _Action:
        try:
            lots = {(str(x.get("book") or ""), str(x["lot_id"])): Fraction(str(x["qty_after"]))
                    for x in item.get("lots") or ()}
            kind = str(item["kind"])
            return _Action(kind=kind, symbol=str(item["symbol"]), new_symbol=str(item.get("new_symbol") or ""),
                           effective=_day(item["effective"], f"lot book {doc_id}"),
                           ratio=Fraction(str(item["ratio"])) if kind == "SPLIT" else Fraction(1), lots=lots)
        except KeyError as missing:
            raise AsOfUnavailable(f"lot book {doc_id}: corporate action {item.get('action_id')!r} has no "
                                  f"{missing}") from None

    def _open_lot(self, lot: Mapping[str, Any], asset_class: AssetClass) -> None:
        acquired = _day(lot["acquired"], f"lot {lot['lot_id']}")
        if acquired > self.as_of:
            self._split_after(str(lot["symbol"]), str(lot["source_trade_id"]), str(lot["lot_id"]))
            return
        wash = Decimal(str(lot.get("wash_adjustment", "0")))
        holding = _day(lot["holding_start"], f"lot {lot['lot_id']}")
        self.pieces.append(_Piece(
            symbol=str(lot["symbol"]), asset_class=AssetClass(lot.get("asset_class") or asset_class),
            book=str(lot.get("book") or ""), source=str(lot["source_trade_id"]), position=Position(lot["position"]),
            lot_id=str(lot["lot_id"]), qty=Decimal(str(lot["qty"])), basis=Decimal(str(lot["basis"])), wash=wash,
            holding_start=holding, acquired=acquired, acquired_at=datetime.fromisoformat(lot["acquired_at"]),
            sold=None, closed_at=None, washed=bool(lot.get("wash_replacement")) or wash > ZERO or holding != acquired, origin="lot"))

    # --- disposals -----------------------------------------------------------------------------
    def marker(self, doc_id: str, doc: Mapping[str, Any]) -> None:
        """A LOT_BOOK_OVERFLOW marker traded on or before D: its book's lots of D are not known."""
        day = _day(doc.get("trade_date"), f"{OVERFLOW_CODE} marker {doc_id}")
        if day > self.as_of:
            return
        raise AsOfUnavailable(
            f"{OVERFLOW_CODE} marker {doc_id}: fill {doc.get('trade_id')} ({doc.get('side')} {doc.get('qty')} "
            f"{doc.get('symbol')}, traded {day.isoformat()}) was recorded without its lot step (lot book "
            f"{doc.get('book_key') or doc.get('symbol')} was full): its lots at the end of "
            f"{self.as_of.isoformat()} are not known exactly")

    def disposal(self, doc_id: str, doc: Mapping[str, Any]) -> None:
        if doc.get("code") == SHORTFALL_CODE:
            return
        if doc.get("code") == OVERFLOW_CODE:
            self.marker(doc_id, doc)
            return
        try:
            self._disposal(doc_id, doc, disallowed=Decimal(str(doc.get("wash_disallowed", "0"))), pending=False)
        except KeyError as missing:
            raise AsOfUnavailable(f"disposal {doc_id}: no {missing} (written before that field existed)") from None

    def _disposal(self, doc_id: str, doc: Mapping[str, Any], *, disallowed: Decimal, pending: bool) -> None:
        sold = _day(doc["sold"], f"disposal {doc_id}")
        position = Position(doc["position"])
        if disallowed > ZERO and position is Position.LONG and not (pending and doc_id in self.losses):
            self.losses[doc_id] = _Loss(
                symbol=str(doc["symbol"]), book=str(doc.get("book") or ""), source=str(doc["opening_trade_id"]),
                sold=sold, closed_at=datetime.fromisoformat(doc["closed_at"]),
                holding_start=_day(doc["holding_start"], doc_id), disallowed=disallowed,
                quantity=Decimal(str(doc["quantity"])),
                loss=_arith.sub(Decimal(str(doc["cost_basis"])), Decimal(str(doc["proceeds"]))))
        if not pending:
            self.pending.pop(doc_id, None)  # became final: the document wins
        if sold <= self.as_of:
            return
        opened_at = datetime.fromisoformat(doc["opened_at"])
        if position is Position.LONG:
            acquired, holding = _day(doc["acquired"], doc_id), _day(doc["holding_start"], doc_id)
            basis = Decimal(str(doc["cost_basis"]))
        else:  # a short lot's basis is the short sale's proceeds; its dates are the cover's
            acquired = trade_date(opened_at, self.tz)
            holding, basis = acquired, Decimal(str(doc["proceeds"]))
        if acquired > self.as_of:
            self._split_after(str(doc["symbol"]), str(doc["opening_trade_id"]), str(doc["lot_id"]))
            return
        source, lot_id = str(doc["opening_trade_id"]), str(doc["lot_id"])
        marked = lot_id != source or holding != acquired
        if position is Position.LONG and "wash_basis_included" not in doc and marked:
            raise AsOfUnavailable(f"disposal {doc_id}: a wash-sale replacement without wash_basis_included "
                                  "(written before that field existed)")
        wash = Decimal(str(doc.get("wash_basis_included", "0")))
        piece = _Piece(symbol=str(doc["symbol"]), asset_class=AssetClass(doc["asset_class"]),
                       book=str(doc.get("book") or ""), source=source, position=position, lot_id=lot_id,
                       qty=Decimal(str(doc["quantity"])), basis=basis, wash=wash, holding_start=holding,
                       acquired=acquired, acquired_at=opened_at, sold=sold,
                       closed_at=datetime.fromisoformat(doc["closed_at"]), washed=marked or wash > ZERO,
                       origin=f"disposal {doc_id}")
        if pending:
            self.pending[doc_id] = piece
        elif piece.washed or any(a.effective > self.as_of and a.covers(piece) for a in self.actions):
            self.pieces.append(piece)
        else:  # no later event touched it: only its quantity and basis are needed
            key = (piece.symbol, piece.book, piece.position.value, piece.lot_id)
            seen = self.plain.get(key)
            self.plain[key] = piece if seen is None else replace(
                seen, qty=_arith.add(seen.qty, piece.qty), basis=_arith.add(seen.basis, piece.basis))

    # --- the answer ----------------------------------------------------------------------------
    def lots(self) -> list[Lot]:
        after = sorted((a for a in self.actions if a.effective > self.as_of), key=lambda a: a.effective)
        renames = [a for a in after if a.kind == "SYMBOL_CHANGE"]
        splits = [a for a in after if a.kind == "SPLIT"]
        groups: dict[tuple[str, str, str, str, str], list[_Piece]] = {}
        self._learn_split_numbers([*self.pieces, *self.pending.values()], renames)
        for piece in [*self.pieces, *self.plain.values(), *self.pending.values()]:
            symbol = self._symbol_at(piece, renames)
            stood = self._wash_stood(piece, renames)
            lot_id = piece.lot_id if stood is not False else piece.parent_id
            groups.setdefault((symbol, piece.book, piece.source, piece.position.value, lot_id), []).append(piece)
        self._check_splits(splits)
        out = []
        for (symbol, book, source, position, lot_id), pieces in groups.items():
            out.append(self._lot(symbol, book, source, Position(position), lot_id, pieces, splits, renames))
        out.sort(key=_order)
        return out

    def _symbol_at(self, piece: _Piece, renames: list[_Action]) -> str:
        symbol = piece.symbol
        for action in reversed(renames):  # latest first: a chain A -> B -> C walks back to A
            if (action.new_symbol == symbol and (piece.sold is None or action.effective <= piece.sold)
                    and action.covers(piece)):
                symbol = action.symbol
        return symbol

    def _names(self, piece: _Piece, renames: list[_Action]) -> set[str]:
        """Every symbol the piece's lot went by (its losses were booked under the name of their day)."""
        names = {piece.symbol, self._symbol_at(piece, renames)}
        changes = [a for a in self.actions if a.kind == "SYMBOL_CHANGE"]
        grown = True
        while grown:
            before = len(names)
            for action in changes:
                if action.symbol in names or action.new_symbol in names:
                    names |= {action.symbol, action.new_symbol}
            grown = len(names) > before
        return names

    def _wash_stood(self, piece: _Piece, renames: list[_Action]) -> bool | None:
        """None: the piece carries no wash sale; True: its adjustment stood at the end of D."""
        if not piece.washed:
            return None
        if self.as_of >= piece.acquired + timedelta(days=WASH_WINDOW_DAYS):
            return True  # every loss that can wash it was sold by D
        names = self._names(piece, renames)
        splits = [(a.effective, a.ratio) for a in self.actions if a.kind == "SPLIT" and a.symbol in names]
        found = {loss.sold <= self.as_of for loss in self.losses.values()
                 if loss.symbol in names and loss.can_have_washed(piece) and loss.per_unit_matches(piece, splits)}
        if len(found) == 2:
            ordered = self._by_split_number(piece, names)
            if ordered is not None:
                return ordered
        if len(found) != 1:
            what = "no washed loss matches it" if not found else "washed losses before and after the date match it"
            raise AsOfUnavailable(f"{piece.origin}: lot {piece.lot_id} of {piece.symbol} carries a wash-sale "
                                  f"adjustment and {what}: cannot tell whether it stood on {self.as_of.isoformat()}")
        return found.pop()

    def _by_split_number(self, piece: _Piece, names: set[str]) -> bool | None:
        """A piece split off for a wash sale (``<lot>-W<n>``) is ordered by its number among the book's
        other wash splits: at or below one made by D it was made by D, at or above one made after D it
        was after. Only for a symbol that never changed (one book document, one counter)."""
        number = _wash_split_number(piece.source, piece.lot_id)
        if number is None or len(names) != 1 or any(a.kind == "SYMBOL_CHANGE" and {a.symbol, a.new_symbol} & names
                                                     for a in self.actions):
            return None
        if number <= self.split_by.get(piece.symbol, 0):
            return True
        if number >= self.split_after.get(piece.symbol, number + 1):
            return False
        return None

    def _learn_split_numbers(self, pieces: list[_Piece], renames: list[_Action]) -> None:
        """The highest wash-split number made by D: pieces decided without the numbers."""
        for piece in pieces:
            number = _wash_split_number(piece.source, piece.lot_id)
            if number is None:
                continue
            try:
                stood = self._wash_stood(piece, renames)
            except AsOfUnavailable:
                continue
            if stood:
                self.split_by[piece.symbol] = max(number, self.split_by.get(piece.symbol, 0))
            elif stood is False:
                self.split_after[piece.symbol] = min(number, self.split_after.get(piece.symbol, number))

    def _factor(self, piece: _Piece, splits: list[_Action], since: date | None = None) -> Fraction:
        """The product of the ratios of the splits after D (after ``since``) applied to the piece."""
        factor = Fraction(1)
        for action in splits:
            if since is not None and action.effective <= since:
                continue
            if (piece.sold is None or action.effective <= piece.sold) and action.covers(piece):
                factor *= action.ratio
        return factor

    def _check_splits(self, splits: list[_Action]) -> None:
        pieces = [*self.pieces, *self.pending.values()]
        for action in splits:
            for (book, lot_id), qty_after in action.lots.items():
                lineage = [p for p in pieces if p.book == book and (p.sold is None or p.sold >= action.effective)
                           and (p.lot_id == lot_id or (p.parent_id == lot_id and (book, p.lot_id) not in action.lots))
                           and action.covers(p)]
                if not lineage:
                    continue  # acquired after D (not collected) or gone before the ex-date
                found = sum((Fraction(p.qty) / self._factor(p, splits, since=action.effective) for p in lineage),
                            Fraction(0))
                if found != qty_after:
                    raise AsOfUnavailable(f"split of {action.symbol} effective {action.effective.isoformat()}: the "
                                          f"stored pieces of lot {lot_id} add up to {found} after it, the split "
                                          f"recorded {qty_after} (sales between its recording and its ex-date?)")

    def _lot(self, symbol: str, book: str, source: str, position: Position, lot_id: str, pieces: list[_Piece],
             splits: list[_Action], renames: list[_Action]) -> Lot:
        qty = sum((Fraction(p.qty) / self._factor(p, splits) for p in pieces), Fraction(0))
        basis = wash = ZERO
        starts = set()
        for piece in pieces:
            stood = self._wash_stood(piece, renames)
            basis = _arith.add(basis, piece.basis if stood is not False else _arith.sub(piece.basis, piece.wash))
            if stood:
                wash = _arith.add(wash, piece.wash)
                starts.add(piece.holding_start)
        first = min(pieces, key=lambda p: p.acquired_at)
        replacement = bool(starts)
        if len(starts) > 1:
            raise AsOfUnavailable(f"lot {lot_id} of {symbol}: its pieces disagree on the holding period start")
        if qty <= 0:
            raise AsOfUnavailable(f"lot {lot_id} of {symbol}: its pieces add up to {qty}")
        return Lot(lot_id=lot_id, symbol=symbol, asset_class=first.asset_class, position=position,
                   qty=_fraction_to_decimal(qty, f"lot {lot_id} of {symbol}"), basis=basis,
                   acquired_at=first.acquired_at, acquired=first.acquired,
                   holding_start=starts.pop() if starts else first.acquired, source_trade_id=source, seq=(),
                   wash_adjustment=wash, wash_replacement=replacement, book=book)


def _wash_split_number(source: str, lot_id: str) -> int | None:
    """``n`` of a piece split off lot ``source`` for a wash sale (``<source>-W<n>``), else None."""
    suffix = lot_id[len(source) + 2:]
    return int(suffix) if lot_id != source and lot_id.startswith(f"{source}-W") and suffix.isdigit() else None


def _order(lot: Lot) -> tuple[Any, ...]:
    number = _wash_split_number(lot.source_trade_id, lot.lot_id)
    split_order = (1, 0) if number is None else (0, number)
    return (book_key(lot.symbol), lot.acquired_at, lot.source_trade_id, lot.book, split_order, lot.lot_id)


def open_lots_as_of(books: Iterable[tuple[str, Mapping[str, Any]]],
                    disposals: Iterable[tuple[str, Mapping[str, Any]]], as_of: date, tz: tzinfo | str | None = None,
                    *, markers: Iterable[tuple[str, Mapping[str, Any]]] = ()) -> list[Lot]:
    """The lots held at the end of ``as_of`` (tax time zone). ``books``: every current lot-book
    document of the user; ``disposals``: every final disposal document sold from
    ``disposals_from(as_of)`` on (earlier ones are not needed); ``markers``: the user's
    ``LOT_BOOK_OVERFLOW`` markers with a trade date up to ``as_of`` (later ones and other records are
    ignored; they have no ``sold``, so the disposals' query does not return them). Raises
    ``AsOfUnavailable`` (first for a marker, before any book is read)."""
    reader = _Reader(as_of, resolve_tz(tz))
    for doc_id, doc in markers:
        if doc.get("code") == OVERFLOW_CODE:
            reader.marker(doc_id, doc)
    for doc_id, doc in books:
        reader.book(doc_id, doc)
    for doc_id, doc in disposals:
        reader.disposal(doc_id, doc)
    return reader.lots()


def disposals_from(as_of: date) -> date:
    """The first sale date whose disposals ``open_lots_as_of`` reads."""
    return as_of - timedelta(days=LOOKBACK_DAYS)
