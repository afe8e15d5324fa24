"""How full may a lot book be before an order that can open lots is refused? A pure rule.

A user's lot book of one symbol (``users/<uid>/tax_books/<symbol>``, ``backend.tax.state``) is one
Firestore document rewritten whole in the commit that records each fill (ledger row, history row,
exposure). Every buy fill increment adds a lot, so the book grows without bound; past Firestore's
1 MiB document limit the finish commit would fail *deterministically, after the order filled*: the
fill would never reach the ledger and the intent would stay RESERVED. So the size is checked before
an order is sent (``check_order`` — the engine, the group executor and a replace that raises the
quantity call it), and the finish keeps a last guard (``overflow_size``, used by
``store_writes._tax_step``) for a book that passes the limit anyway.

Measured, not guessed (``record_size`` is Firestore's documented storage-size estimate; the
emulator refuses exactly above 1,048,576 bytes of it — ``tests/unit/test_lot_book_capacity.py`` and
the emulator tests check both). The book's lists are stored packed (issue 17,
``backend.tax.state.pack_list``: one JSON string per list, the field names once per run of entries,
each entry a row of its values), so a lot costs the bytes of its values:

- a typical lot (36-character intent id ``--f<n>``, ``SPY``, a short tenant:account label, exact
  cents) is a ~227-byte row: ~4,600 such lots fill a document (~355 bytes and ~2,950 lots as a map
  in the list form written before);
- the largest realistic lot (``worst_lot_bytes``): 300-character lot and trade ids (the ``LOT_ID``
  rule), a 64-character symbol, a 100:100-character account label, 64-character decimals (the tax
  core keeps 60 significant digits), 8 ``seq`` entries (wash-sale splits append one each), a wash
  adjustment — a 1,340-byte row, counted as 1,544 bytes: a run of its own that names its fields
  (``packed_entry_bytes``; ~1,410 bytes as a map);
- the fixed part (version, symbol, method, ``next_seq``, ``splits``, ``last_fill_at`` and at most 50
  ``recent_trade_ids`` of up to 503 bytes each) is measured with the book; ``pending`` entries and
  ``pending_disposals`` (a loss sale's wash-sale window) are measured with it too.

The margin (``ORDER_MARGIN_BYTES``): one order adds at most one lot per fill increment (the first
finish, then one per reconcile sweep that saw new fills); a wash-sale split that adds a lot always
resolves a pending loss, whose entry is larger than the lot, so it never grows the book. Per
increment: a worst lot + a worst recent trade id + 256 bytes for the pending loss it partly washes
(longer ``remaining_*`` / ``disallowed`` strings). The margin covers ``MAX_FILL_INCREMENTS`` (64)
increments (~147 KB): an order is admitted only while ``size + n_orders x margin <= BOOK_WRITE_LIMIT``
(a group counts each leg that opens lots in the book; ~900 KB for one order: ~3,950 typical lots).
A book that passes the write limit anyway (an order with more increments, a loss sale of many lots,
a book admitted under an older limit) is handled by the finish: see ``overflow_size`` /
``overflow_marker``.

What is never refused: an order that only closes lots of its book (a sell up to the account's long
lots, a buy up to its short lots: exits, protective stops, rollbacks, resumed or reconciled orders —
they were admitted when they were placed). A sell beyond the long lots in a class that can be sold
short opens a SHORT lot, and a buy beyond the short lots opens a LONG one: both are refused on a full
book. A loss sale closes lots but can grow the book (each lot closed at a loss becomes a pending
wash-sale entry, ~2x a lot's bytes, for 30 days); it is not refused (refusing an exit is the greater
harm) and the finish's overflow handling records it.

Cheap: a packed book is measured exactly from its few fields (the packed strings' lengths; the
lot count is read from the packed list's head, nothing is decoded). A book still in the list form
(written before issue 17) is measured as its next write will store it, packed: first bounded by
``len(lots) x worst_lot_bytes`` (+ the same for the pending entries, + the fixed part measured
exactly: it has at most 50 ids), packed and measured only when that bound passes the limit in
question (~580 lots for the admission limit).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from functools import lru_cache
from typing import Any, Mapping, Sequence

from backend.domain.errors import InvalidInput
from backend.domain.storable import FIRESTORE_MAX_DOC_BYTES, record_size

CODE = "LOT_BOOK_FULL"
OVERFLOW_CODE = "LOT_BOOK_OVERFLOW"

# The finish writes a book only up to this many bytes: 1 KiB under Firestore's limit for what the
# commit adds to the measured state (``updated_server_at``) and the document name.
BOOK_WRITE_LIMIT = FIRESTORE_MAX_DOC_BYTES - 1024
MAX_FILL_INCREMENTS = 64  # fill increments of one order the admission margin covers
PENDING_UPDATE_BYTES = 256  # a partly washed pending loss: its remaining / disallowed strings grow

_ID = 300  # backend.domain.ids LOT_ID: lot and trade ids (``<group>--<leg>--f<n>``, ``…-W<n>``)
_LABEL = 100 + 1 + 100  # ``<tenant>:<account>``
_SYMBOL = 64
_DEC = Decimal("-" + "9" * 31 + "." + "9" * 31)  # 64 characters, exact in the tax core's 60 digits


def _worst_lot() -> dict[str, Any]:
    from backend.domain.assets import AssetClass
    from backend.tax.model import Lot, Position
    from backend.tax.state import _lot_to_dict

    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    lot = Lot(lot_id="L" * _ID, symbol="S" * _SYMBOL, asset_class=AssetClass.COMMODITY, position=Position.SHORT,
              qty=_DEC, basis=_DEC, acquired_at=at, acquired=at.date(), holding_start=at.date(),
              source_trade_id="T" * _ID, seq=tuple(range(2 ** 40, 2 ** 40 + 8)), wash_adjustment=_DEC,
              wash_replacement=True, book="B" * _LABEL)
    doc = _lot_to_dict(lot)
    doc["cost_per_unit"] = str(_DEC)  # 28 significant digits in the book; 64 characters here
    return doc


def _worst_disposal() -> dict[str, Any]:
    from backend.domain.assets import AssetClass
    from backend.tax.holding import Term
    from backend.tax.model import Disposal, Position
    from backend.tax.state import disposal_to_dict

    at, small = datetime(2026, 1, 1, tzinfo=timezone.utc), Decimal("-" + "9" * 20 + "." + "9" * 9)
    disposal = Disposal(disposal_id="D" * (2 * _ID + 1), closing_trade_id="C" * _ID, lot_id="L" * _ID,
                        opening_trade_id="T" * _ID, symbol="S" * _SYMBOL, asset_class=AssetClass.COMMODITY,
                        position=Position.SHORT, quantity=small, opened_at=at, closed_at=at, acquired=at.date(),
                        sold=at.date(), holding_start=at.date(), proceeds=small, cost_basis=small, gain=small,
                        term=Term.SHORT, wash_basis_included=small, wash_disallowed=small, final=False,
                        seq=(2 ** 40, 2 ** 40), book="B" * _LABEL, lot_method="SPECIFIC")
    doc = disposal_to_dict(disposal)
    for key, value in doc.items():  # every decimal at 64 characters
        if isinstance(value, str) and value.lstrip("-").replace(".", "").isdigit():
            doc[key] = str(_DEC)
    return doc


def packed_entry_bytes(entry: Mapping[str, Any]) -> int:
    """The most one entry adds to its packed list's stored bytes: a run of its own (its field names
    and its row; an entry that follows one with the same fields adds its row alone) and one more
    digit of the list's count."""
    from backend.tax.state import pack_list

    return len(pack_list([entry, entry]).encode("utf-8")) - len(pack_list([]).encode("utf-8")) \
        - row_bytes(entry) + 1


def row_bytes(entry: Mapping[str, Any]) -> int:
    """What one entry adds after an entry with the same fields: its row and a comma."""
    from backend.tax.state import pack_list

    return len(pack_list([entry, entry]).encode("utf-8")) - len(pack_list([entry]).encode("utf-8"))


@lru_cache(maxsize=1)
def worst_sizes() -> tuple[int, int, int]:
    """Stored bytes of the largest realistic (lot, pending entry, pending disposal) in the packed form."""
    disposal = _worst_disposal()
    pending = {"disposal": disposal, "remaining_qty": str(_DEC), "remaining_loss": str(_DEC),
               "sold_holding_start": "2026-01-01", "source_trade_id": "T" * _ID, "disallowed": str(_DEC),
               "done": False}
    return packed_entry_bytes(_worst_lot()), packed_entry_bytes(pending), packed_entry_bytes(disposal)


def worst_lot_bytes() -> int:
    return worst_sizes()[0]


def fill_growth_bytes() -> int:
    """The most one fill increment can add to a book (module docstring)."""
    recent_id = _LABEL + 1 + _ID + 1  # ``<label>|<trade id>`` as stored
    return worst_lot_bytes() + recent_id + PENDING_UPDATE_BYTES


def order_margin_bytes() -> int:
    return MAX_FILL_INCREMENTS * fill_growth_bytes()


def admission_limit(orders: int = 1) -> int:
    """The largest book that may receive ``orders`` more orders that open lots."""
    return BOOK_WRITE_LIMIT - max(1, orders) * order_margin_bytes()


# --- measuring a book -------------------------------------------------------------------------------
@dataclass(frozen=True)
class BookSize:
    lots: int
    pending: int
    size: int  # exact when ``measured``, else an upper bound
    measured: bool


def measure(state: Mapping[str, Any] | None, path: str = "", *, limit: int) -> BookSize:
    """The size the book takes once written (``backend.tax.state`` always writes the packed form), or
    an upper bound of it when that bound is already ``<= limit``. A packed book is measured exactly at
    the cost of its fixed part (its lists are a few strings); a book still in the list form (written
    before issue 17) is bounded by ``len(list) x worst entry`` and packed only when that bound passes
    ``limit``."""
    from backend.tax.state import PACKED_FIELDS, pack_list, packed_count, packed_state

    if not state:
        return BookSize(0, 0, 0, True)
    listed = [name for name, packed in PACKED_FIELDS.items() if state.get(packed) is None and state.get(name)]
    if not listed:
        written = packed_state({k: v for k, v in state.items() if not _sentinel(v)})
        return BookSize(packed_count(written.get("lots_packed")), packed_count(written.get("pending_packed")),
                        record_size(written, path), True)
    lot_b, pending_b, disposal_b = worst_sizes()
    worst = {"lots": lot_b, "pending": pending_b, "pending_disposals": disposal_b}
    fixed = record_size(packed_state({k: v for k, v in state.items() if k not in listed and not _sentinel(v)}), path)
    empty = len(pack_list([])) + 1  # a packed list's head and the string's stored byte
    bound = fixed + sum(len(PACKED_FIELDS[name]) + 1 + empty + len(state[name]) * worst[name] for name in listed)
    lots = len(state["lots"]) if "lots" in listed else packed_count(state.get("lots_packed"))
    pending = len(state["pending"]) if "pending" in listed else packed_count(state.get("pending_packed"))
    if bound <= limit:
        return BookSize(lots, pending, bound, False)
    written = packed_state({k: v for k, v in state.items() if not _sentinel(v)})
    return BookSize(lots, pending, record_size(written, path), True)


def _sentinel(value: Any) -> bool:
    """A server-timestamp placeholder of a state about to be written (sized as a timestamp, 8 bytes,
    well inside the write limit's slack)."""
    return not isinstance(value, (type(None), bool, int, float, str, bytes, datetime, date, Mapping, list, tuple))


# --- which orders open lots ---------------------------------------------------------------------------
def opens_lots(state: Mapping[str, Any] | None, *, side: str, qty: Decimal, book: str,
               can_short: bool = True) -> bool:
    """Whether a fill of ``qty`` on ``side`` in the account ``book`` (``<tenant>:<account>``) can open
    a lot: a buy beyond the book's SHORT lots, a sell beyond its LONG lots (when the class can be
    sold short; otherwise a shortfall record, no lot). Walks the lots: call it only on a full book."""
    buy = str(getattr(side, "value", side)).lower() == "buy"
    closing = "SHORT" if buy else "LONG"
    if not buy and not can_short:
        return False
    from backend.tax.state import book_lots

    held = sum((Decimal(str(lot.get("qty") or "0")) for lot in book_lots(state)
                if lot.get("position") == closing and str(lot.get("book") or "") == book), Decimal(0))
    return qty > held


class LotBookFull(InvalidInput):
    """An order that can open lots refused because its lot book is full: nothing written, nothing
    sent. An ``InvalidInput`` (HTTP 400, a rejected intent document) whose reason starts with the
    code ``LOT_BOOK_FULL``."""

    code = CODE

    def __init__(self, reason: str, *, symbol: str, lots: int, size: int, limit: int):
        super().__init__("qty", reason)
        self.symbol, self.lots, self.size, self.limit = symbol, lots, size, limit


def refusal(state: Mapping[str, Any] | None, path: str, *, symbol: str, side: str, qty: Decimal, book: str,
            can_short: bool = True, orders: int = 1) -> LotBookFull | None:
    """``LotBookFull`` when the book at ``path`` has no room for ``orders`` more orders and this one
    can open a lot (``opens_lots``); None otherwise. Pure: the caller read ``state``."""
    limit = admission_limit(orders)
    size = measure(state, path, limit=limit)
    if size.size <= limit:
        return None
    if not opens_lots(state, side=side, qty=qty, book=book, can_short=can_short):
        return None  # it only closes lots: never refused
    reason = (f"{CODE}: {size.lots:,} open lots of {symbol} in this tax book (about {size.size:,} bytes; "
              f"orders that open lots are accepted up to {limit:,} bytes, Firestore's document limit is "
              f"{FIRESTORE_MAX_DOC_BYTES:,}); close lots of {symbol} (sell) or ask an administrator to "
              f"archive the book before opening more")
    return LotBookFull(reason, symbol=symbol, lots=size.lots, size=size.size, limit=limit)


def check_order(state: Mapping[str, Any] | None, path: str, *, symbol: str, side: str, qty: Decimal, book: str,
                can_short: bool = True, orders: int = 1) -> None:
    """Raise ``LotBookFull`` (see ``refusal``)."""
    refused = refusal(state, path, symbol=symbol, side=side, qty=qty, book=book, can_short=can_short,
                      orders=orders)
    if refused is not None:
        raise refused


def check_books(docs: Mapping[str, tuple[Any, Any]], orders: Sequence[Mapping[str, Any]]) -> None:
    """Several orders at once (a group's legs): ``orders`` are dicts with ``path``, ``symbol``,
    ``side``, ``qty``, ``book``, ``can_short``; ``docs`` the batched read of their paths. Each book must
    have room for every order of it that can open lots."""
    per_path: dict[str, int] = {}
    for order in orders:
        per_path[order["path"]] = per_path.get(order["path"], 0) + 1
    for order in orders:
        state = (docs.get(order["path"]) or (None, None))[0]
        check_order(state, order["path"], symbol=order["symbol"], side=order["side"], qty=order["qty"],
                    book=order["book"], can_short=order.get("can_short", True), orders=per_path[order["path"]])


# --- the finish's last guard ----------------------------------------------------------------------------
def overflow_size(state: Mapping[str, Any], path: str) -> int | None:
    """The new state's size when it cannot be written (over ``BOOK_WRITE_LIMIT``), else None."""
    size = measure(state, path, limit=BOOK_WRITE_LIMIT)
    return size.size if size.size > BOOK_WRITE_LIMIT else None


def overflow_doc_id(fill: Any, key: str) -> str:
    """The ``tax_disposals`` document id of an overflowed fill's marker (beside its book's shortfalls)."""
    prefix = f"{fill.book}--" if fill.book else ""
    return f"{prefix}{key}--overflow-{fill.trade_id}".replace("/", "-")


def overflow_marker(fill: Any, key: str, size: int) -> dict[str, Any]:
    """A fill whose lot step was refused because its book is full: everything needed to apply it later
    (the book's fills replay in trade order), stored in ``users/<uid>/tax_disposals`` with a
    ``trade_date`` like a ``LOT_SHORTFALL`` record, so the export's query of the year finds it."""
    from backend.domain.money import dec_str
    from backend.tax.holding import resolve_tz, trade_date

    return {"code": OVERFLOW_CODE, "trade_id": fill.trade_id, "symbol": fill.symbol, "book_key": key,
            "asset_class": fill.asset_class.value, "side": fill.side.value, "qty": dec_str(fill.qty),
            "price": dec_str(fill.price), "fees": dec_str(fill.fees),
            "multiplier": dec_str(fill.multiplier) if fill.multiplier is not None else None,
            "lot_ids": ([{"lot_id": k, "qty": dec_str(v)} for k, v in fill.lot_ids]  # no arrays in arrays
                        if fill.lot_ids else None),
            "timestamp": fill.timestamp.isoformat(),
            "trade_date": trade_date(fill.timestamp, resolve_tz(None)).isoformat(),
            "book": fill.book, "book_bytes": size, "limit": BOOK_WRITE_LIMIT,
            "text": f"{OVERFLOW_CODE}: trade={fill.trade_id} symbol={fill.symbol}: the lot book is full "
                    f"(about {size:,} bytes); this fill is not in the book's lots"}


# --- a group's legs -------------------------------------------------------------------------------------
def group_book_paths(uid: str, legs: Sequence[Any]) -> list[str]:
    """The lot books of a group's legs (one per symbol), read with the validation's batched read."""
    from backend.execution.store_rules import book_path
    from backend.tax.state import book_key

    return list(dict.fromkeys(book_path(uid, book_key(leg.symbol)) for leg in legs))


def group_refusal(legs: Sequence[Any], docs: Mapping[str, tuple[Any, Any]], *, tenant_id: str, uid: str,
                  account: str) -> Any:
    """A ``Rejection`` (``LOT_BOOK_FULL``, naming the leg) when a leg that can open lots meets a full
    book — every leg of one book counts against its room — else None. ``docs``: the batched read of
    ``group_book_paths``. Before any leg is sent."""
    from backend.domain.errors import RejectCode, Rejection
    from backend.execution.store_rules import book_path
    from backend.tax.state import SHORT_SELLING_CLASSES, book_key, book_label

    label = book_label(tenant_id, account)
    orders = [{"path": book_path(uid, book_key(leg.symbol)), "symbol": leg.symbol,
               "side": "buy" if leg.direction > 0 else "sell", "qty": leg.units, "book": label,
               "can_short": leg.asset_class in SHORT_SELLING_CLASSES, "leg_id": leg.leg_id} for leg in legs]
    try:
        check_books(docs, orders)
    except LotBookFull as full:
        leg_id = next(o["leg_id"] for o in orders if o["symbol"] == full.symbol)
        return Rejection(RejectCode.LOT_BOOK_FULL, f"{leg_id} {full.reason.removeprefix(CODE + ': ')}")
    return None
