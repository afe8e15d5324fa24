"""A LotBook's state as a plain document, so the lots of one (user, symbol) can be kept in Firestore
and advanced by one fill at a time in the same commit as the trade's history row.

``apply_fill_to_state(state, fill, method)`` is the whole incremental step: restore the book, apply
the fill, expire pending wash-sale losses whose 30-day window closed before the fill's date, and
return the new state plus the disposals that became final (to be written as documents). Pending
losses stay in the state until a purchase washes them or their window closes; the export treats a
pending loss whose window has closed at export time as final.
"""
from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Mapping, Sequence

from backend.domain.assets import AssetClass
from backend.domain.money import dec_str
from backend.tax import _arith
from backend.tax.book import LotBook, PendingLoss
from backend.tax.holding import Term, resolve_tz, trade_date, wash_window_closes
from backend.tax.model import Disposal, Fill, Lot, LotMethod, Position, Shortfall

STATE_VERSION = 1

# --- the packed lists (issue 17) ----------------------------------------------------------------------
# A book's growing lists are stored as one compact JSON string each, so a book is a handful of
# Firestore values however many lots it holds (one value per lot field was ~15 protobuf values per
# lot to encode, send, store and decode on every fill). Every reader goes through ``book_lots`` /
# ``book_pending`` / ``book_pending_disposals``, which also read the list form written before.
PACKED_FIELDS = {"lots": "lots_packed", "pending": "pending_packed",
                 "pending_disposals": "pending_disposals_packed"}


def pack_list(items: Sequence[Mapping[str, Any]]) -> str:
    """The packed form of a list of plain maps: compact JSON ``{"n": count, "runs": [{"fields": [...],
    "rows": [[...], ...]}, ...]}`` — each run holds consecutive entries with the same keys, named once
    (sorted) and then given positionally, so the list's order is kept and a lot costs its values, not
    its field names. Deterministic bytes; decimals stay the exact strings the maps hold (a float
    field or a Decimal anywhere is refused: never a binary float)."""
    return pack_rows([packed_row(item) for item in items])


def _encoder() -> Any:
    """The one encoder of every packed text: ``json.dumps`` with these options, so a row encoded alone
    and the rows joined by ``pack_rows`` are byte for byte what one ``json.dumps`` of the whole list
    gave. CPython's C encoder is made once (``JSONEncoder.encode`` makes one per call: ~2 µs of a
    ~3.6 µs row); without it, ``JSONEncoder.encode`` (the same bytes)."""
    options = {"separators": (",", ":"), "sort_keys": True, "ensure_ascii": False}
    plain = json.JSONEncoder(**options, default=lambda value: _refuse(value)).encode
    try:
        from json.encoder import c_encode_basestring, c_make_encoder

        made = c_make_encoder(None, lambda value: _refuse(value), c_encode_basestring, None, ":", ",", True, False,
                              True)  # no circular check (a packed row is built from plain maps), NaN as json.dumps

        def fast(value: Any) -> str:
            return "".join(made(value, 0))

        probe = [None, True, 1, "é\"\n", ["x", 2, 0.5], {"b": 1, "a": [False]}]
        return fast if fast(probe) == plain(probe) else plain
    except Exception:  # noqa: BLE001 - another interpreter: the plain encoder, same bytes
        return plain


_ENCODE = _encoder()


def packed_row(item: Mapping[str, Any]) -> tuple[tuple[str, ...], str]:
    """One entry of a packed list: its sorted field names and its row's JSON text (``pack_rows``
    joins them). An entry that never changes can keep its row (``_packed_lots``)."""
    fields = sorted(item)
    row = [item[k] for k in fields]
    for value in row:
        kind = type(value)
        if kind is float:
            _refuse(value)
        if kind is list or kind is dict:  # a float anywhere: ``unpack_list`` would refuse the text
            _refuse_nested_float(value)
    return tuple(fields), _ENCODE(row)


def _refuse_nested_float(value: Any) -> None:
    for item in (value.values() if type(value) is dict else value):
        kind = type(item)
        if kind is float:
            _refuse(item)
        if kind is list or kind is dict:
            _refuse_nested_float(item)


def pack_rows(rows: Sequence[tuple[tuple[str, ...], str]]) -> str:
    """``pack_list`` from its entries' ``packed_row``s: consecutive rows with the same field names
    form one run. The text is assembled as ``json.dumps`` (sorted keys, no spaces) writes
    ``{"n": count, "runs": [{"fields": [...], "rows": [...]}, ...]}``:
    ``tests/unit/test_packed_rows.py`` compares the two on random lists."""
    runs: list[tuple[tuple[str, ...], list[str]]] = []  # (field names, row texts) per run
    for names, text in rows:
        if not runs or runs[-1][0] != names:
            runs.append((names, []))
        runs[-1][1].append(text)
    body = ",".join('{"fields":' + _ENCODE(list(names)) + ',"rows":[' + ",".join(texts) + "]}"
                    for names, texts in runs)
    return '{"n":' + str(len(rows)) + ',"runs":[' + body + "]}"


def unpack_list(packed: str) -> list[dict[str, Any]]:
    """``pack_list``'s maps back, in order."""
    data = json.loads(packed, parse_float=_no_float)
    return [dict(zip(run["fields"], row)) for run in data["runs"] for row in run["rows"]]


_COUNT = re.compile(r'\{"n":(\d+),')


def packed_count(packed: str | None) -> int:
    """The number of entries of a packed list, read from its head (no decoding)."""
    if not packed:
        return 0
    found = _COUNT.match(packed)
    return int(found.group(1)) if found else len(unpack_list(packed))


def _refuse(value: Any) -> Any:
    raise TypeError(f"a lot book stores decimals as exact strings, not {type(value).__name__}: {value!r}")


def _no_float(text: str) -> Any:
    raise ValueError(f"a packed lot book holds no binary float ({text})")


def _listed(state: Mapping[str, Any] | None, name: str) -> list[dict[str, Any]]:
    """The list ``name`` of a stored book: the packed field when the document has it, else the list
    form (documents written before issue 17)."""
    if not state:
        return []
    packed = state.get(PACKED_FIELDS[name])
    if packed is not None:
        return unpack_list(packed)
    return [dict(x) for x in state.get(name) or ()]


def book_lots(state: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The open lots of a stored book (maps as ``Lot.to_dict`` plus ``seq``), either form."""
    return _listed(state, "lots")


def book_pending(state: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The pending wash-sale losses of a stored book (``disposal`` + remaining amounts), either form."""
    return _listed(state, "pending")


def book_pending_disposals(state: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The snapshots of a book's pending losses the export reads (``Disposal.to_dict``), either form."""
    return _listed(state, "pending_disposals")


def packed_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """``state`` with every list in its packed field and no list field (a packed field present wins,
    as for the readers); other fields unchanged."""
    out = {k: v for k, v in state.items() if k not in PACKED_FIELDS}
    for name, packed in PACKED_FIELDS.items():
        if state.get(packed) is not None:
            out[packed] = state[packed]
        elif name in state:
            out[packed] = pack_list(state.get(name) or ())
    return out


def book_write_fields(state: Mapping[str, Any], stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """The fields an update of the stored book ``stored`` writes for the new ``state``: packed, and
    the list fields an older document still has cleared (an update keeps fields it does not name)."""
    out = packed_state(state)
    for name in PACKED_FIELDS:
        if stored is not None and stored.get(name) is not None:
            out[name] = None
    return out


def _d(value: Any) -> Decimal:
    return Decimal(str(value))


def lot_from_dict(data: Mapping[str, Any]) -> Lot:
    return Lot(lot_id=data["lot_id"], symbol=data["symbol"], asset_class=AssetClass(data["asset_class"]),
               position=Position(data["position"]), qty=_d(data["qty"]), basis=_d(data["basis"]),
               acquired_at=datetime.fromisoformat(data["acquired_at"]), acquired=date.fromisoformat(data["acquired"]),
               holding_start=date.fromisoformat(data["holding_start"]), source_trade_id=data["source_trade_id"],
               seq=tuple(data["seq"]), wash_adjustment=_d(data.get("wash_adjustment", "0")),
               wash_replacement=bool(data.get("wash_replacement", False)), book=str(data.get("book") or ""))


def _lot_to_dict(lot: Lot) -> dict[str, Any]:
    return {**lot.to_dict(), "seq": list(lot.seq)}


def disposal_from_dict(data: Mapping[str, Any]) -> Disposal:
    return Disposal(disposal_id=data["disposal_id"], closing_trade_id=data["closing_trade_id"], lot_id=data["lot_id"],
                    opening_trade_id=data["opening_trade_id"], symbol=data["symbol"],
                    asset_class=AssetClass(data["asset_class"]), position=Position(data["position"]),
                    quantity=_d(data["quantity"]), opened_at=datetime.fromisoformat(data["opened_at"]),
                    closed_at=datetime.fromisoformat(data["closed_at"]), acquired=date.fromisoformat(data["acquired"]),
                    sold=date.fromisoformat(data["sold"]), holding_start=date.fromisoformat(data["holding_start"]),
                    proceeds=_d(data["proceeds"]), cost_basis=_d(data["cost_basis"]), gain=_d(data["gain"]),
                    term=Term(data["term"]), wash_basis_included=_d(data.get("wash_basis_included", "0")),
                    wash_disallowed=_d(data.get("wash_disallowed", "0")), final=bool(data.get("final", True)),
                    seq=tuple(data.get("seq", (0, 0))), book=str(data.get("book") or ""),
                    lot_method=str(data.get("lot_method") or ""))


def disposal_to_dict(disposal: Disposal) -> dict[str, Any]:
    return {**disposal.to_dict(), "seq": list(disposal.seq)}


def _pending_to_dict(loss: PendingLoss) -> dict[str, Any]:
    return {"disposal": disposal_to_dict(loss.disposal), "remaining_qty": dec_str(loss.remaining_qty),
            "remaining_loss": dec_str(loss.remaining_loss), "sold_holding_start": loss.sold_holding_start.isoformat(),
            "source_trade_id": loss.source_trade_id, "disallowed": dec_str(loss.disallowed), "done": loss.done}


def _pending_from_dict(data: Mapping[str, Any]) -> PendingLoss:
    return PendingLoss(disposal=disposal_from_dict(data["disposal"]), remaining_qty=_d(data["remaining_qty"]),
                       remaining_loss=_d(data["remaining_loss"]),
                       sold_holding_start=date.fromisoformat(data["sold_holding_start"]),
                       source_trade_id=data["source_trade_id"], disallowed=_d(data["disallowed"]),
                       done=bool(data["done"]))


class _PackedLots:
    """The lots behind the ``lots_packed`` strings this process wrote last (issue 17): the next fill
    of the same book — read back unchanged — takes its lots and their maps from here instead of
    parsing every lot and formatting it again (~2.5 ms of a fill's CPU at 60–100 lots, growing with
    the book). ``Lot`` is frozen and the maps are never changed after they are made, so an entry is
    exactly what parsing the string would give; a string not in here is parsed, each lot keeping its
    map as stored (``book_from_state``). Each lot's packed row (``packed_row``) is kept beside its map,
    so the next fill encodes only the lots it made or changed (~0.9 → ~0.2 ms per fill at 60 lots,
    ~1.5 → ~0.3 ms at 300). Bounded by ``max_chars``
    of packed text and ``max_entries`` books (least recently used goes first); the rows hold about as
    many characters again as the packed text they make up."""

    def __init__(self, max_entries: int = 256, max_chars: int = 4_000_000):
        self.max_entries, self.max_chars = max_entries, max_chars
        self._entries: OrderedDict[str, tuple[tuple[Lot, ...], tuple[dict[str, Any], ...],
                                              tuple[tuple[tuple[str, ...], str], ...]]] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    def get(self, packed: Any) -> tuple[tuple[Lot, ...], tuple[dict[str, Any], ...],
                                        tuple[tuple[tuple[str, ...], str], ...]] | None:
        if not isinstance(packed, str):
            return None
        with self._lock:
            entry = self._entries.get(packed)
            if entry is not None:
                self._entries.move_to_end(packed)
            return entry

    def put(self, packed: str, lots: tuple[Lot, ...], maps: tuple[dict[str, Any], ...],
            rows: tuple[tuple[tuple[str, ...], str], ...] | None = None) -> None:
        if len(packed) > self.max_chars:
            return
        with self._lock:
            if packed in self._entries:
                self._entries.move_to_end(packed)
                return
            self._entries[packed] = (lots, maps, rows if rows is not None else tuple(packed_row(m) for m in maps))
            self._chars += len(packed)
            while self._entries and (len(self._entries) > self.max_entries or self._chars > self.max_chars):
                old, _ = self._entries.popitem(last=False)
                self._chars -= len(old)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._chars = 0


PACKED_LOTS = _PackedLots()


def _packed_lots(book: LotBook) -> str:
    """``pack_list`` of the book's lots, reusing the maps and the packed rows of lots it was restored
    with unchanged: a fill formats and encodes only the lots it made or changed."""
    known: Mapping[int, tuple[Lot, dict[str, Any], tuple[tuple[str, ...], str]]] = \
        getattr(book, "_known_lot_maps", None) or {}
    lots = book.lots
    maps, rows = [], []
    for lot in lots:
        hit = known.get(id(lot))
        if hit is not None and hit[0] is lot:
            maps.append(hit[1])
            rows.append(hit[2])
        else:
            made = _lot_to_dict(lot)
            maps.append(made)
            rows.append(packed_row(made))
    packed = pack_rows(rows)
    PACKED_LOTS.put(packed, lots, tuple(maps), tuple(rows))
    return packed


def book_to_state(book: LotBook, *, next_seq: int, last_fill_at: datetime | None, trade_ids: list[str]
                  ) -> dict[str, Any]:
    return {"version": STATE_VERSION, "symbol": book.symbol, "asset_class": book.asset_class.value,
            "lots_packed": _packed_lots(book),
            "pending_packed": pack_list([_pending_to_dict(loss) for loss in book._pending  # noqa: SLF001
                                         if not loss.done]),
            "splits": book._splits, "next_seq": next_seq,  # noqa: SLF001
            "last_fill_at": last_fill_at.isoformat() if last_fill_at else None,
            "recent_trade_ids": trade_ids[-50:]}


def book_from_state(state: Mapping[str, Any] | None, symbol: str, asset_class: AssetClass, *,
                    short_selling: bool = False, wash_sales: bool = True, tz: Any = None) -> LotBook:
    book = LotBook(symbol, asset_class, wash_sales=wash_sales, short_selling=short_selling, tz=resolve_tz(tz))
    if state:
        known = PACKED_LOTS.get(state.get(PACKED_FIELDS["lots"]))
        if known is not None:  # a book this process packed, read back unchanged (issue 17)
            book._lots = list(known[0])  # noqa: SLF001
            book._known_lot_maps = {id(lot): (lot, m, r)  # type: ignore[attr-defined]
                                    for lot, m, r in zip(*known)}
        else:
            maps = book_lots(state)
            book._lots = [lot_from_dict(x) for x in maps]  # noqa: SLF001
            if state.get(PACKED_FIELDS["lots"]) is not None:
                # each lot of a packed book keeps its map as stored (with its packed row), as a book read
                # back from the memo does: the state written next formats only the lots the fill made or
                # changed, not every lot again (issue 17: a new instance's first fill of a 100-lot book,
                # ~45 % of its lot step). A kept map parses to its lot by construction (the lot was parsed
                # from it) and holds no float (``unpack_list`` refuses one). A book still in the list form
                # (written before issue 17) is formatted whole, once, as before.
                book._known_lot_maps = {id(lot): (lot, m, packed_row(m))  # type: ignore[attr-defined]
                                        for lot, m in zip(book._lots, maps)}  # noqa: SLF001
        book._pending = deque(_pending_from_dict(x) for x in book_pending(state))  # noqa: SLF001
        book._splits = int(state.get("splits", 0))  # noqa: SLF001
    return book


@dataclass(frozen=True)
class StateStep:
    state: dict[str, Any]
    final: tuple[Disposal, ...]
    pending: tuple[Disposal, ...]
    shortfall: Shortfall | None
    duplicate: bool = False


def apply_fill_to_state(state: Mapping[str, Any] | None, fill: Fill, method: LotMethod | str = LotMethod.FIFO, *,
                        short_selling: bool = False, tz: Any = None) -> StateStep:
    """One fill → the next book state and the disposals it made final. A trade id already applied
    is a no-op (duplicate delivery); a fill older than the book's last fill is applied at that time."""
    method = LotMethod(method)
    recent = list((state or {}).get("recent_trade_ids", []))
    applied_id = fill_key(fill)
    if applied_id in recent:
        return StateStep(dict(state or {}), (), (), None, duplicate=True)
    last = (state or {}).get("last_fill_at")
    if last and fill.timestamp < datetime.fromisoformat(last):
        # Two invocations of one user can commit their fills out of timestamp order (they are
        # stamped at record time, a few milliseconds apart). The book applies fills in commit
        # order, so a late-committing fill takes the book's last time: its lot and holding period
        # move by at most the commit skew (a trade date only if the skew crosses midnight in New
        # York), and nothing is refused or lost.
        fill = replace(fill, timestamp=datetime.fromisoformat(last))
    book = book_from_state(state, fill.symbol, fill.asset_class, short_selling=short_selling, tz=tz)
    zone = resolve_tz(tz)
    day = trade_date(fill.timestamp, zone)
    final: list[Disposal] = []
    for loss in list(book._pending):  # noqa: SLF001 - windows that closed before this fill's date
        if not loss.done and wash_window_closes(loss.sale_date) < day:
            final.append(loss.snapshot(final=True))
            book.expire(loss)
    seq = int((state or {}).get("next_seq", 0))
    step = book.apply(fill, seq, method)
    final.extend(step.final)
    final.extend(loss.snapshot(final=True) for loss in step.resolved)  # washed completely by this fill
    new_state = book_to_state(book, next_seq=seq + 1, last_fill_at=fill.timestamp, trade_ids=recent + [applied_id])
    if (state or {}).get("corporate_actions"):  # the book's history (backend.tax.corporate) stays
        new_state["corporate_actions"] = list(state["corporate_actions"])  # type: ignore[index]
    pending = tuple(loss.snapshot(final=False) for loss in book._pending if not loss.done)  # noqa: SLF001
    return StateStep(new_state, tuple(final), pending, step.shortfall)


def book_key(symbol: str) -> str:
    """The document id of a user's lot book of ``symbol`` (``users/<uid>/tax_books/<key>``). One
    document per (user, symbol) holds the lots of every account (``Lot.book``): lots are matched
    within their account, and the wash-sale rule, which applies to the taxpayer, sees them all in
    one read and one commit."""
    return symbol.replace("/", "-")


DEFAULT_ACCOUNT = "default"  # the account label of a fill whose record names none (groups, for now)


def book_label(tenant_id: str, account: str | None) -> str:
    """``<tenant>:<account>``: ids are ``[A-Za-z0-9_-]``, so ``:`` cannot be ambiguous."""
    return f"{tenant_id}:{account or DEFAULT_ACCOUNT}"


def fill_key(fill: Fill) -> str:
    """The id a book remembers an applied fill by (duplicate deliveries): trade ids are unique per
    tenant only, so a named book prefixes its label."""
    return f"{fill.book}|{fill.trade_id}" if fill.book else fill.trade_id


def disposal_doc_id(disposal: Disposal) -> str:
    prefix = f"{disposal.book}--" if disposal.book else ""
    return f"{prefix}{book_key(disposal.symbol)}--{disposal.disposal_id}".replace("/", "-")


def scoped_fills(items: Sequence[tuple[Any, ...]]) -> list[tuple[str, Fill]]:
    """``(uid, fill)`` or ``(uid, fill, record)`` → ``(uid, fill in its book)``: the record (the
    ledger row written with the fill) names the tenant and the account (``broker_account_id``,
    the default label when it has none). Fills without a record keep their own book."""
    out: list[tuple[str, Fill]] = []
    for item in items:
        uid, fill = item[0], item[1]
        if fill is None:
            continue
        record = item[2] if len(item) > 2 else None
        if record and not fill.book and record.get("tenant_id"):
            fill = replace(fill, book=book_label(str(record["tenant_id"]), record.get("broker_account_id")))
        out.append((uid, fill))
    return out


@dataclass(frozen=True)
class BooksPlan:
    """New lot-book states per (uid, book key) and the disposal documents that became final."""

    states: dict[tuple[str, str], dict[str, Any]]
    disposals: list[tuple[str, str, dict[str, Any]]]  # (uid, doc id, doc)
    shortfalls: list[tuple[str, Shortfall]]
    # trade id -> the lot method applied to that fill (issue 11: the history row carries it)
    applied_methods: dict[str, str] = field(default_factory=dict)
    # trade id -> what the fill closed (issue 19: the history row carries it): ``cost_basis`` of the
    # LONG lots a sell consumed, ``proceeds`` of the SHORT lots a buy covered (totals, exact strings)
    closed: dict[str, dict[str, str]] = field(default_factory=dict)


# Asset classes in which the product can hold a net short position, so a sell beyond the long lots
# opens a SHORT lot (backend/tax/README.md "Short positions"): equities and options (single orders
# and group legs sell them short), crypto (Alpaca crypto perpetuals, group legs), FX and
# commodities (symmetric OANDA/paper instruments). A class left out books such a sell as a
# ``Shortfall`` (a gap in the history).
SHORT_SELLING_CLASSES = frozenset({AssetClass.EQUITY, AssetClass.OPTIONS, AssetClass.CRYPTO, AssetClass.FOREX,
                                   AssetClass.COMMODITY})


def closed_by_fill(fill: Fill, step: StateStep) -> dict[str, str]:
    """The totals of the lots ``fill`` itself closed (its own disposals, final or pending): the
    consumed LONG lots' ``cost_basis`` and, for a cover, the SHORT lots' ``proceeds``."""
    own = {d.disposal_id: d for d in (*step.final, *step.pending)
           if d.closing_trade_id == fill.trade_id and d.book == fill.book}
    out: dict[str, str] = {}
    longs = [d.cost_basis for d in own.values() if d.position is Position.LONG]
    shorts = [d.proceeds for d in own.values() if d.position is Position.SHORT]
    if longs:
        out["cost_basis"] = dec_str(_arith.total(longs))
    if shorts:
        out["proceeds"] = dec_str(_arith.total(shorts))
    return out


def applied_method(configured: str | Mapping[str, Any] | None, fill: Fill) -> LotMethod:
    """The method a fill is booked with: the user's configured one (FIFO when none), except that
    SPECIFIC without named lots falls back to FIFO. ``configured`` may also be the whole
    ``config/tax`` document: then the election in force at the fill's time for its account
    applies (``backend.tax.election``), SPECIFIC falling back to the election's default rule."""
    from backend.tax.election import method_for_fill

    # The trade happened; a sale that names no lots must still be booked. FIFO is the IRS
    # default when specific shares are not identified (Pub. 550, "Identifying the shares").
    return method_for_fill(configured, fill)


def _configured_method(configured: str | Mapping[str, Any] | None, fill: Fill) -> str:
    """The book state's ``method`` field: the method in force (before any SPECIFIC fallback)."""
    from backend.tax.election import method_in_force

    if configured is None or isinstance(configured, str):
        return LotMethod(configured or LotMethod.FIFO).value
    return method_in_force(configured, fill.timestamp, fill.book)[0].value


def plan_books(current: Mapping[tuple[str, str], Mapping[str, Any] | None], fills: list[tuple[str, Fill]],
               methods: Mapping[str, Any], *,
               short_selling: frozenset[AssetClass] | set[AssetClass] = SHORT_SELLING_CLASSES) -> BooksPlan:
    """Advance the users' books by their new fills (in the given order). Pure. ``short_selling``:
    the classes in which a sell beyond the long lots opens a SHORT lot (the others: a shortfall)."""
    states: dict[tuple[str, str], Any] = {k: (dict(v) if v else None) for k, v in current.items()}
    disposals: list[tuple[str, str, dict[str, Any]]] = []
    shortfalls: list[tuple[str, Shortfall]] = []
    applied: dict[str, str] = {}
    closed: dict[str, dict[str, str]] = {}
    for uid, fill in fills:
        key = (uid, book_key(fill.symbol))
        method = applied_method(methods.get(uid), fill)
        applied[fill.trade_id] = method.value
        step = apply_fill_to_state(states.get(key), fill, method,
                                   short_selling=fill.asset_class in short_selling)
        if not step.duplicate:
            closed[fill.trade_id] = closed_by_fill(fill, step)
        states[key] = {**step.state, "method": _configured_method(methods.get(uid), fill),
                       "pending_disposals_packed": pack_list([disposal_to_dict(d) for d in step.pending])}
        disposals.extend((uid, disposal_doc_id(d), disposal_to_dict(d)) for d in step.final)
        if step.shortfall is not None:
            shortfalls.append((uid, step.shortfall))
            prefix = f"{fill.book}--" if fill.book else ""
            disposals.append((uid, f"{prefix}{book_key(fill.symbol)}--shortfall-{fill.trade_id}",
                              step.shortfall.to_dict()))
    return BooksPlan(states, disposals, shortfalls, applied, closed)
