"""Open lots of one symbol: closing fills consume lots, opening fills create them, and loss
disposals look for wash-sale replacement shares.

Wash-sale rules implemented (IRC §1091, Treas. Reg. §1.1091-1, Pub. 550 "Wash Sales"), for
EQUITY and OPTIONS only (crypto is property, not "stock or securities", Notice 2014-21; FOREX and
COMMODITY contracts fall under §988 / §1256, outside this core):
- A LONG disposal at a loss is washed by shares of the same symbol bought within 30 days before
  or after the sale date ("substantially identical" = same symbol; a stock and its options are
  not matched against each other).
- Replacement shares are matched to losses chronologically, earliest loss and earliest
  replacement first (Reg. §1.1091-1(b),(c)). Each share absorbs at most one wash
  (``Lot.wash_replacement``); a replacement sold later at a loss can itself be washed (chains).
- Purchases before the sale count only while still held when the loss is realized; shares of the
  same purchase as the shares sold never count (Rev. Rul. 56-602: selling part of a lot is not a
  wash of the rest). A buy that covers a short position is not a replacement purchase.
- Disallowed loss is proportional: for m replacement shares out of q shares sold at loss L, the
  disallowed part is L × m / q (the last match takes the exact remainder). It is added to the
  replacement shares' basis, and their holding period is extended by the sold shares' holding
  period (``holding.tacked_holding_start``); replacement shares are split off into their own lot
  ``<lot_id>-W<n>`` when only part of a lot replaces.

Short sales (when enabled for the asset class): a sell beyond the long lots opens a SHORT lot
whose basis is the net proceeds; later buys cover it and realize proceeds − cost to cover. The
holding period is that of the property delivered to close it, bought at the cover, so it is
always SHORT-term (Pub. 550 "Short Sales"). The exceptions for substantially identical property
held on the short-sale date cannot arise here: a short is only opened once no long lot of the
symbol is open. Wash-sale treatment of short-sale losses is not implemented.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from datetime import date, tzinfo
from decimal import Decimal

from backend.domain.assets import AssetClass
from backend.domain.errors import InvalidInput
from backend.domain.money import ZERO
from backend.tax import _arith
from backend.tax.holding import Term, holding_term, in_wash_window, tacked_holding_start, trade_date
from backend.tax.methods import ordered
from backend.tax.model import Disposal, Fill, Lot, LotMethod, Position, Shortfall, Side

WASH_SALE_CLASSES = frozenset({AssetClass.EQUITY, AssetClass.OPTIONS})


@dataclass(eq=False)
class PendingLoss:
    """A loss disposal whose replacement shares are still being matched (internal, mutable)."""

    disposal: Disposal
    remaining_qty: Decimal
    remaining_loss: Decimal
    sold_holding_start: date
    source_trade_id: str
    disallowed: Decimal = ZERO
    done: bool = False

    @property
    def sale_date(self) -> date:
        return self.disposal.sold

    def snapshot(self, final: bool) -> Disposal:
        return replace(self.disposal, wash_disallowed=self.disallowed, final=final)


@dataclass
class BookStep:
    final: list[Disposal] = field(default_factory=list)
    pending: list[PendingLoss] = field(default_factory=list)
    resolved: list[PendingLoss] = field(default_factory=list)
    shortfall: Shortfall | None = None


class LotBook:
    """The open lots and pending wash-sale losses of one symbol for one taxpayer, across their
    accounts. Each lot carries its account (``Lot.book``); a fill closes lots of its own book only
    (lots are matched within the account that holds them), while wash-sale matching looks at every
    book (IRC §1091 applies to the taxpayer, whichever account bought the replacement shares).
    Each book holds either LONG or SHORT lots, never both: a fill first closes the opposite
    position of its book, and only the excess opens one."""

    def __init__(self, symbol: str, asset_class: AssetClass, *, wash_sales: bool, short_selling: bool,
                 tz: tzinfo):
        self.symbol = symbol
        self.asset_class = asset_class
        self._tz = tz
        self._wash = wash_sales and asset_class in WASH_SALE_CLASSES
        self._short = short_selling
        self._lots: list[Lot] = []
        self._pending: deque[PendingLoss] = deque()
        self._splits = 0

    @property
    def lots(self) -> tuple[Lot, ...]:
        return tuple(sorted(self._lots, key=lambda lot: lot.seq))

    def apply(self, fill: Fill, seq: int, method: LotMethod) -> BookStep:
        step = BookStep()
        fill_date = trade_date(fill.timestamp, self._tz)
        closing = Position.LONG if fill.side is Side.SELL else Position.SHORT
        picks = self._select(fill, closing, method)  # validates before anything changes
        closed = _arith.total(q for _, q in picks)
        excess = _arith.sub(fill.qty, closed)
        parts = [q for _, q in picks] + ([excess] if excess > ZERO else [])
        fee_shares = _arith.allocate(fill.fees, parts, fill.qty)
        amounts = []
        for part, fee in zip(parts, fee_shares):
            gross = _arith.mul(_arith.mul(part, fill.price), fill.multiplier)
            amounts.append(_arith.sub(gross, fee) if fill.side is Side.SELL else _arith.add(gross, fee))

        losses: list[PendingLoss] = []
        for index, ((lot, qty), amount) in enumerate(zip(picks, amounts)):
            taken = self._consume(lot, qty)
            disposal = self._disposal(fill, fill_date, seq, index, taken, amount, method)
            if self._wash and disposal.position is Position.LONG and disposal.gain < ZERO:
                losses.append(PendingLoss(disposal=disposal, remaining_qty=disposal.quantity,
                                          remaining_loss=-disposal.gain,
                                          sold_holding_start=taken.holding_start,
                                          source_trade_id=taken.source_trade_id))
            else:
                step.final.append(disposal)

        for loss in losses:  # chronological: this sale's losses in consumption order
            self._look_back(loss)
            if loss.done:
                step.final.append(loss.snapshot(final=True))
            else:
                self._pending.append(loss)
                step.pending.append(loss)

        if excess > ZERO:
            amount = amounts[-1]
            if fill.side is Side.BUY:
                self._open(fill, fill_date, seq, Position.LONG, excess, amount, step)
            elif self._short:
                self._open(fill, fill_date, seq, Position.SHORT, excess, amount, step)
            else:
                step.shortfall = Shortfall(trade_id=fill.trade_id, symbol=self.symbol, asset_class=self.asset_class,
                                           qty=excess, proceeds=amount, timestamp=fill.timestamp,
                                           trade_date=fill_date, book=fill.book)
        return step

    # -- selection -------------------------------------------------------------------------

    def _select(self, fill: Fill, closing: Position, method: LotMethod) -> list[tuple[Lot, Decimal]]:
        candidates = [lot for lot in self._lots if lot.position is closing and lot.book == fill.book]
        if fill.lot_ids is not None:
            by_id = {lot.lot_id: lot for lot in candidates}
            picks = []
            for lot_id, qty in fill.lot_ids:
                lot = by_id.get(lot_id)
                if lot is None:
                    raise InvalidInput("lot_ids", f"unknown open {closing.value} lot {lot_id!r} for {self.symbol}")
                if qty > lot.qty:
                    raise InvalidInput("lot_ids", f"lot {lot_id!r} of {self.symbol} has {lot.qty} open, "
                                                  f"{qty} requested")
                picks.append((lot, qty))
            return picks
        if not candidates:
            return []
        if method is LotMethod.SPECIFIC:
            raise InvalidInput("lot_ids", f"required: the lot method is SPECIFIC and {self.symbol} has open "
                                          f"{closing.value} lots")
        remaining = fill.qty
        picks = []
        for lot in ordered(candidates, method):
            if remaining == ZERO:
                break
            qty = min(remaining, lot.qty)
            picks.append((lot, qty))
            remaining = _arith.sub(remaining, qty)
        return picks

    # -- lot surgery -----------------------------------------------------------------------

    @staticmethod
    def _split(lot: Lot, qty: Decimal) -> tuple[Lot, Lot]:
        basis = _arith.prorate(lot.basis, qty, lot.qty)
        wash = _arith.prorate(lot.wash_adjustment, qty, lot.qty)
        taken = replace(lot, qty=qty, basis=basis, wash_adjustment=wash)
        rest = replace(lot, qty=_arith.sub(lot.qty, qty), basis=_arith.sub(lot.basis, basis),
                       wash_adjustment=_arith.sub(lot.wash_adjustment, wash))
        return taken, rest

    def _replace(self, old: Lot, new: list[Lot]) -> None:
        for index, lot in enumerate(self._lots):
            if lot is old:
                self._lots[index:index + 1] = new
                return
        raise AssertionError(f"lot {old.lot_id} is not open")

    def _consume(self, lot: Lot, qty: Decimal) -> Lot:
        if qty == lot.qty:
            self._replace(lot, [])
            return lot
        taken, rest = self._split(lot, qty)
        self._replace(lot, [rest])
        return taken

    def _open(self, fill: Fill, fill_date: date, seq: int, position: Position, qty: Decimal, amount: Decimal,
              step: BookStep) -> None:
        lot = Lot(lot_id=fill.trade_id, symbol=self.symbol, asset_class=self.asset_class, position=position,
                  qty=qty, basis=amount, acquired_at=fill.timestamp, acquired=fill_date, holding_start=fill_date,
                  source_trade_id=fill.trade_id, seq=(seq,), book=fill.book)
        self._lots.append(lot)
        if position is Position.LONG and self._wash:
            self._look_forward(lot, fill_date, step)

    # -- disposals -------------------------------------------------------------------------

    def _disposal(self, fill: Fill, fill_date: date, seq: int, index: int, taken: Lot, amount: Decimal,
                  method: LotMethod | None = None) -> Disposal:
        if taken.position is Position.LONG:
            proceeds, cost, acquired, start = amount, taken.basis, taken.acquired, taken.holding_start
            term = holding_term(start, fill_date)
            carried = taken.wash_adjustment
        else:
            proceeds, cost, acquired, start = taken.basis, amount, fill_date, fill_date
            term = Term.SHORT
            carried = ZERO
        return Disposal(disposal_id=f"{fill.trade_id}:{taken.lot_id}", closing_trade_id=fill.trade_id,
                        lot_id=taken.lot_id, opening_trade_id=taken.source_trade_id, symbol=self.symbol,
                        asset_class=self.asset_class, position=taken.position, quantity=taken.qty,
                        opened_at=taken.acquired_at, closed_at=fill.timestamp, acquired=acquired, sold=fill_date,
                        holding_start=start, proceeds=proceeds, cost_basis=cost, gain=_arith.sub(proceeds, cost),
                        term=term, wash_basis_included=carried, seq=(seq, index), book=taken.book,
                        lot_method=("SPECIFIC" if fill.lot_ids is not None
                                    else LotMethod(method).value if method is not None else ""))

    # -- wash sales ------------------------------------------------------------------------

    def _wash_into(self, loss: PendingLoss, lot: Lot) -> list[Lot]:
        """Let ``lot`` replace as much of ``loss`` as it can; returns [washed piece, rest?]."""
        qty = min(loss.remaining_qty, lot.qty)
        if qty == loss.remaining_qty:
            disallowed = loss.remaining_loss
        else:
            disallowed = _arith.prorate(loss.remaining_loss, qty, loss.remaining_qty)
        loss.remaining_loss = _arith.sub(loss.remaining_loss, disallowed)
        loss.remaining_qty = _arith.sub(loss.remaining_qty, qty)
        loss.disallowed = _arith.add(loss.disallowed, disallowed)
        loss.done = loss.remaining_qty == ZERO
        pieces: list[Lot] = []
        if qty < lot.qty:
            washed, rest = self._split(lot, qty)
            self._splits += 1
            washed = replace(washed, lot_id=f"{lot.lot_id}-W{self._splits}", seq=lot.seq + (0,))
            rest = replace(rest, seq=lot.seq + (1,))
        else:
            washed, rest = lot, None
        washed = replace(washed, basis=_arith.add(washed.basis, disallowed),
                         wash_adjustment=_arith.add(washed.wash_adjustment, disallowed), wash_replacement=True,
                         holding_start=tacked_holding_start(washed.acquired, loss.sale_date, loss.sold_holding_start))
        pieces.append(washed)
        if rest is not None:
            pieces.append(rest)
        return pieces

    def _look_back(self, loss: PendingLoss) -> None:
        """Replacement shares bought up to 30 days before the sale and still held, in any book."""
        candidates = sorted((lot for lot in self._lots
                             if lot.position is Position.LONG and not lot.wash_replacement
                             and (lot.source_trade_id, lot.book) != (loss.source_trade_id, loss.disposal.book)
                             and in_wash_window(loss.sale_date, lot.acquired)),
                            key=lambda lot: lot.seq)
        for lot in candidates:
            if loss.done:
                return
            self._replace(lot, self._wash_into(loss, lot))

    def _look_forward(self, lot: Lot, fill_date: date, step: BookStep) -> None:
        """A new purchase replaces pending losses of the last 30 days, earliest loss first."""
        while self._pending and self._pending[0].done:
            self._pending.popleft()
        current: Lot | None = lot
        for loss in self._pending:
            if current is None:
                return
            if loss.done or not in_wash_window(loss.sale_date, fill_date):
                continue
            pieces = self._wash_into(loss, current)
            self._replace(current, pieces)
            current = pieces[1] if len(pieces) > 1 else None
            if loss.done:
                step.resolved.append(loss)

    # -- corporate actions (backend.tax.corporate) ------------------------------------------

    def stock_split(self, ratio: Decimal, effective: date) -> list[tuple[Lot, Lot]]:
        """A split (ratio > 1) or reverse split (ratio < 1): ``ratio`` new units per old unit for
        every open lot acquired before ``effective``. Quantity × ratio, total basis and wash
        adjustment unchanged (so per-unit basis ÷ ratio), dates and holding period unchanged: no
        disposal. Pending losses sold before ``effective`` look for ``ratio`` × their remaining
        units of replacement shares (shares after the split). Returns (before, after) per lot."""
        changed: list[tuple[Lot, Lot]] = []
        for index, lot in enumerate(self._lots):
            if lot.acquired < effective:
                after = replace(lot, qty=_arith.mul(lot.qty, ratio))
                self._lots[index] = after
                changed.append((lot, after))
        for loss in self._pending:
            if not loss.done and loss.sale_date < effective:
                loss.remaining_qty = _arith.mul(loss.remaining_qty, ratio)
        return changed

    def rename(self, new_symbol: str) -> list[tuple[Lot, Lot]]:
        """A symbol change: the same lots (quantity, basis, dates) under the new symbol."""
        changed = [(lot, replace(lot, symbol=new_symbol)) for lot in self._lots]
        self._lots = [after for _, after in changed]
        self.symbol = new_symbol
        return changed

    def expire(self, loss: PendingLoss) -> None:
        """The ledger closed this loss's window; forget it."""
        loss.done = True
        while self._pending and self._pending[0].done:
            self._pending.popleft()
