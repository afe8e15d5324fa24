"""Read model: the caller's tax-lot export, ``GET /portfolio/tax-lots/export``.

Query: ``year=YYYY`` (required), ``format=json|csv|txf`` (default json), ``section=disposals|open_lots``
(CSV only, default disposals). Only the caller's data: the uid comes from the token and nothing in
the query names a user.

Sources: the documents the stores write in the same commit as each history row
(``backend/tax/state.py``):

- final disposals ``users/<uid>/tax_disposals/<id>`` sold in the year: a range query on ``sold``
  ordered by (``sold``, document id), which single-field indexes serve (no composite index);
- the lot books' ``pending_disposals`` (``users/<uid>/tax_books/<symbol>``): losses a purchase could
  still wash. One whose 30-day window closed before today (in the tax time zone, America/New_York)
  is final: no purchase can wash it any more, the book only writes it out at its next fill. Any
  other is ``PROVISIONAL``. A pending disposal that is also found final (a fill landed between the
  two reads) is reported once, as the final document;
- ``LOT_SHORTFALL`` records (same collection, range query on ``trade_date`` in the year): sells
  that found no lot. Reported, never dropped: their basis is unknown;
- ``LOT_BOOK_OVERFLOW`` markers (same query: ``backend/execution/lot_capacity.overflow_marker``): fills
  recorded without their lot step because their lot book was full. Reported as gaps, never dropped:
  a missing buy lacks its lot, a missing sell its disposals, and the lots later sales matched differ;
- open lots: every lot of the books now, as of today (not filtered by year); with ``as_of=YYYY-MM-DD``
  (a day up to today, tax time zone) the lots held at the end of that day, reconstructed from these
  same documents (``backend/tax/as_of.py``: the books, their corporate-action history and the final
  disposals sold from 60 days before it, and the ``LOT_BOOK_OVERFLOW`` markers up to it): JSON and
  ``section=open_lots`` only. Records that cannot give that day exactly (among them a marker traded on
  or before it) are a 409 ``AS_OF_NOT_RECONSTRUCTIBLE`` naming why, before any byte is sent.

Rows are ``Form8949Row.from_disposal``: the tax core's formatting (money half-up to cents, dates
MM/DD/YYYY, column (h) computed from the rounded columns), in order of date sold then document id,
the pending losses merged into that order.

Every Form 8949 row carries its ``part`` (I short-term / II long-term) and ``box`` (A–L,
``backend/tax/boxes.py``), decided from the disposal's account (lot book) and lot with the caller's
``ReportingProfile``: the store hook ``tax_reporting_settings(uid)`` when the store has one
(per ``<tenant>:<account>`` and asset class: BROKER / PROCEEDS_ONLY / NONE), else the documented
defaults.

Formats:
- ``json``: ``{"year", "as_of", "disposals": [...], "shortfalls": [...], "open_lots": [...],
  "totals": {...}, "provisional": bool}`` (``models.TaxExport``; ``"open_lots_as_of"`` before
  ``open_lots`` when ``as_of`` was given: ``as_of`` stays today, which decides PROVISIONAL). Totals add the rounded columns,
  so they are what the rows add up to, overall, per term and per box (``totals.boxes``, what
  Schedule D lines 1b–3 / 8b–10 take); ``provisional`` is true when any row is.
  ``shortfalls`` lists the LOT_SHORTFALL records, then the year's LOT_BOOK_OVERFLOW markers (each by
  trade date, document id) as ``{"code": "LOT_BOOK_OVERFLOW", trade_id, symbol, side (BUY/SELL),
  quantity, date_sold (a sell) or date_acquired (a buy: the day the missing lot was bought), proceeds
  (a sell: qty x price x multiplier - fees, rounded as every money column; a buy: null), text,
  account}``. ``totals.shortfalls`` counts the LOT_SHORTFALL records only; ``totals.lot_book_overflows``
  counts the markers and is present only when there are any (so a year without markers exports byte
  for byte as before the markers existed).
- ``csv`` + ``section=disposals``: ``FORM_8949_HEADER``, one row per disposal (Status FINAL or
  PROVISIONAL), then one row per shortfall (Status ``SHORTFALL``; description, date sold and
  proceeds given, the basis columns empty), then one row per LOT_BOOK_OVERFLOW marker (Status
  ``LOT_BOOK_OVERFLOW``; a sell: date sold and proceeds, a buy: date acquired; nothing else). No
  totals row: the file stays one uniform table.
- ``csv`` + ``section=open_lots``: ``OPEN_LOTS_HEADER``, one row per open lot.
- ``txf``: TXF V042 (``backend/tax/txf.py``), one record per Form 8949 row (shortfalls have no
  basis and are left out: the JSON/CSV export lists them). V042 has no reference number for the
  digital-asset boxes G–L: for a year from 2025 the rows are counted first (one more paged pass),
  and a year with G–L rows is a 400 naming the count, unless ``digital_assets=omit`` asks for the
  A–F rows alone (header ``X-Omitted-Digital-Asset-Rows``). A TXF file cannot be right when a fill
  is missing from a lot book (a missing lot changes which lots later sales match and their bases; a
  missing buy in the 30 days after the year could have washed a December loss): when any
  LOT_BOOK_OVERFLOW marker has a trade date up to 30 days after the year ends, the answer is a 409
  ``LOT_BOOK_INCOMPLETE`` naming the count (counted first, one paged pass of the markers, before any
  byte is sent; ``digital_assets=omit`` does not lift it). The JSON/CSV export of each marker's year
  lists it.

Streaming and paging: the handler returns a ``StreamingResponse`` whose body is produced while it
is sent. Every read is a page of ``PAGE_SIZE`` documents (one query, ``start_after`` the last
(sold, id)); in memory at any time: one page of disposals, one chunk of output and the pending
losses (at most 30 days of losses per symbol). The books are read twice, paged: before the
response starts (the pending losses, so a store failure there is still a clean 500) and again
for the open lots.
"""
from __future__ import annotations

import csv
import io
from collections import deque
from itertools import chain
from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Callable, Iterable, Iterator, Mapping

from backend.api.auth import Identity
from backend.api.http import ApiError, ApiRequest, ApiResponse, StreamingResponse, bad_request, dumps
from backend.api.ledger_review import single_valued
from backend.domain.assets import AssetClass
from backend.domain.money import dec_str
from backend.execution.lot_capacity import OVERFLOW_CODE
from backend.tax import (
    _arith,
    Disposal,
    Form8949Row,
    OpenLotRow,
    Term,
    describe,
    format_date,
    format_money,
    open_lot_rows,
    write_form_8949_csv,
    write_open_lots_csv,
)
from backend.tax.boxes import BOX_PART, DEFAULT_PROFILE, DIGITAL_ASSET_BOXES_FROM, ReportingProfile
from backend.tax.holding import WASH_WINDOW_DAYS, resolve_tz, trade_date, wash_window_closes
from backend.tax.state import book_lots, book_pending_disposals, disposal_doc_id, disposal_from_dict, lot_from_dict
from backend.tax.txf import DIGITAL_ASSET_BOXES

PAGE_SIZE = 500
CHUNK_ROWS = 500
SHORTFALL_CODE = "LOT_SHORTFALL"
INCOMPLETE_CODE = "LOT_BOOK_INCOMPLETE"  # the TXF refusal of a year a LOT_BOOK_OVERFLOW marker can change
FIRST_DAY = "0001-01-01"  # the trade-date query's lower bound when every earlier marker counts
ROW_KEYS = ("description", "date_acquired", "date_sold", "proceeds", "cost_basis", "adjustment_code",
            "adjustment_amount", "gain_or_loss", "term", "status", "part", "box")
OPEN_LOT_KEYS = ("symbol", "lot_id", "position", "quantity", "date_acquired", "holding_start", "cost_basis",
                 "cost_per_unit", "wash_adjustment", "long_term_from", "term_if_sold")
_MONEY_COLUMNS = ("proceeds", "cost_basis", "adjustment_amount", "gain_or_loss")


def handle(request: ApiRequest, identity: Identity, store: Any, now: datetime) -> ApiResponse:
    from backend.api.app import parse_model
    from backend.api.models import TaxExportQuery

    query = parse_model(TaxExportQuery, single_valued(request.query))
    export = TaxExport(store, identity.uid, query.year, trade_date(now, resolve_tz(None)),
                       profile=reporting_profile(store, identity.uid))
    export.load_pending()
    if query.as_of is not None:
        export.reconstruct_open_lots(_as_of_day(query.as_of, export.today))
    if query.format == "txf":
        from backend.tax.txf import write_txf

        name = f"form-8949-{query.year}.txf"
        headers = {"Content-Disposition": f'attachment; filename="{name}"'}
        export.refuse_incomplete_txf()
        omitted = export.digital_asset_rows() if query.year >= DIGITAL_ASSET_BOXES_FROM else 0
        if omitted and query.digital_assets != "omit":
            raise bad_request("format", f"TXF V042 has no reference number for the Form 8949 digital-asset boxes "
                                        f"G-L (tax year 2025 on), and {omitted} row(s) of {query.year} are in them: "
                                        "use format=csv or json, or add digital_assets=omit for a TXF of the "
                                        "other rows")
        if omitted:
            headers["X-Omitted-Digital-Asset-Rows"] = str(omitted)
        return StreamingResponse(200, headers=headers, chunks=export.txf_chunks(write_txf),
                                 media_type="text/plain; charset=utf-8")
    if query.format == "json":
        return StreamingResponse(200, chunks=export.json_chunks(), media_type="application/json")
    if query.section == "open_lots":
        name, chunks = f"open-lots-{export.lots_day.isoformat()}.csv", export.open_lots_csv()
    else:
        name, chunks = f"form-8949-{query.year}.csv", export.disposals_csv()
    return StreamingResponse(200, headers={"Content-Disposition": f'attachment; filename="{name}"'},
                             chunks=chunks, media_type="text/csv; charset=utf-8")


def _as_of_day(text: str, today: date) -> date:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise bad_request("as_of", f"not a calendar date: {text!r}") from None
    if day > today:
        raise bad_request("as_of", f"after today ({today.isoformat()} in the tax time zone): the records do not "
                                   "reach it yet")
    return day


def reporting_profile(store: Any, uid: str) -> ReportingProfile:
    """The caller's per-account 1099 settings (``backend.tax.boxes``): the store hook
    ``tax_reporting_settings(uid)`` → ``{"<tenant>:<account>": {asset_class: issuer}}`` when the
    store has one, else the documented defaults."""
    hook = getattr(store, "tax_reporting_settings", None)
    return ReportingProfile(hook(uid) if callable(hook) else None)


def paged(fetch: Callable[..., list[tuple[str, dict[str, Any]]]], field: str | None, page_size: int,
          **kw: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """Walk a store's page method: ``after`` = (doc[field], doc id), or the doc id when ``field``
    is None; stops at the first short page."""
    after: Any = None
    while True:
        rows = fetch(after=after, limit=page_size, **kw)
        yield from rows
        if len(rows) < page_size:
            return
        doc_id, doc = rows[-1]
        after = doc_id if field is None else (str(doc[field]), doc_id)


class Totals:
    """Sums of the rounded Form 8949 columns (exact: two decimals), overall and per term."""

    def __init__(self) -> None:
        self.disposals = 0
        self.provisional = 0
        self.sums = {key: Decimal(0) for key in _MONEY_COLUMNS}
        self.terms = {term: {"count": 0, **{key: Decimal(0) for key in _MONEY_COLUMNS}} for term in Term}
        self.boxes: dict[str, dict[str, Any]] = {}
        self.shortfalls = 0
        self.shortfall_proceeds = Decimal(0)
        self.lot_book_overflows = 0
        self.open_lots = 0

    def add(self, row: Form8949Row) -> None:
        self.disposals += 1
        self.provisional += row.provisional
        per_term = self.terms[row.term]
        per_box = self.boxes.setdefault(row.box, {"count": 0, **{key: Decimal(0) for key in _MONEY_COLUMNS}})
        per_term["count"] += 1
        per_box["count"] += 1
        for key in _MONEY_COLUMNS:
            value = getattr(row, key)
            self.sums[key] += value
            per_term[key] += value
            per_box[key] += value

    def add_shortfall(self, proceeds: Decimal) -> None:
        self.shortfalls += 1
        self.shortfall_proceeds += proceeds

    def to_json(self) -> dict[str, Any]:
        def money(values: Mapping[str, Any]) -> dict[str, str]:
            return {key: format_money(values[key]) for key in _MONEY_COLUMNS}

        return {"disposals": self.disposals, "provisional": self.provisional, **money(self.sums),
                "short_term": {"count": self.terms[Term.SHORT]["count"], **money(self.terms[Term.SHORT])},
                "long_term": {"count": self.terms[Term.LONG]["count"], **money(self.terms[Term.LONG])},
                "boxes": {box: {"part": BOX_PART.get(box, ""), "count": values["count"], **money(values)}
                          for box, values in sorted(self.boxes.items())},
                "shortfalls": self.shortfalls, "shortfall_proceeds": format_money(self.shortfall_proceeds),
                # only when there are markers: a year without them exports as before they existed
                **({"lot_book_overflows": self.lot_book_overflows} if self.lot_book_overflows else {}),
                "open_lots": self.open_lots}


class TaxExport:
    """One export of one user's year. ``load_pending`` first; then one of the chunk generators."""

    def __init__(self, store: Any, uid: str, year: int, today: date, page_size: int | None = None,
                 profile: ReportingProfile | None = None):
        self.store = store
        self.profile = profile or DEFAULT_PROFILE
        self.uid = uid
        self.year = year
        self.today = today
        self.page_size = page_size or PAGE_SIZE
        self.first, self.last = f"{year:04d}-01-01", f"{year:04d}-12-31"
        self.pending: list[tuple[tuple[str, str], Disposal]] = []
        self.lots_day = today  # the day the open lots are of
        self.lots_as_of: list[OpenLotRow] | None = None  # reconstructed (``as_of``), else read now

    def reconstruct_open_lots(self, day: date) -> None:
        """The lots held at the end of ``day`` (``backend.tax.as_of``), before the response starts: a
        refusal is a clean 409."""
        from backend.tax.as_of import AsOfUnavailable, disposals_from, open_lots_as_of

        disposals = paged(self.store.tax_disposals_page, "sold", self.page_size, uid=self.uid,
                          sold_from=disposals_from(day).isoformat(), sold_to="9999-12-31")
        markers = self._trade_date_records(OVERFLOW_CODE, FIRST_DAY, day.isoformat())
        try:
            lots = open_lots_as_of(paged(self.store.tax_books_page, None, self.page_size, uid=self.uid),
                                   disposals, day, markers=markers)
        except AsOfUnavailable as refused:
            raise ApiError(409, "AS_OF_NOT_RECONSTRUCTIBLE", f"as_of: {refused.reason}", field="as_of",
                           reason=refused.reason) from None
        self.lots_day = day
        self.lots_as_of = list(open_lot_rows(lots, day))

    # --- reads ---------------------------------------------------------------------------------
    def books(self) -> Iterator[dict[str, Any]]:
        for _, book in paged(self.store.tax_books_page, None, self.page_size, uid=self.uid):
            yield book

    def load_pending(self) -> None:
        found = []
        for book in self.books():
            for data in book_pending_disposals(book):
                disposal = disposal_from_dict(data)
                if disposal.sold.year != self.year:
                    continue
                closed = wash_window_closes(disposal.sold) < self.today
                found.append(((disposal.sold.isoformat(), disposal_doc_id(disposal)), replace(disposal, final=closed)))
        self.pending = sorted(found, key=lambda item: item[0])

    def disposals(self) -> Iterator[tuple[str, Disposal]]:
        """(doc id, disposal) by (date sold, doc id): the final documents merged with the pending."""
        pending = deque(self.pending)
        for doc_id, doc in paged(self.store.tax_disposals_page, "sold", self.page_size, uid=self.uid,
                                 sold_from=self.first, sold_to=self.last):
            if doc.get("code") == SHORTFALL_CODE:
                continue
            key = (str(doc["sold"]), doc_id)
            while pending and pending[0][0] < key:
                item = pending.popleft()
                yield item[0][1], item[1]
            if pending and pending[0][0] == key:
                pending.popleft()  # became final meanwhile: the final document wins
            yield doc_id, disposal_from_dict(doc)
        for (_, doc_id), disposal in pending:
            yield doc_id, disposal

    def _trade_date_records(self, code: str, day_from: str, day_to: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(doc id, record) of ``code`` (LOT_SHORTFALL or LOT_BOOK_OVERFLOW) with a trade date in
        [day_from, day_to], by (trade date, doc id): one paged range query on ``trade_date``."""
        for doc_id, doc in paged(self.store.tax_shortfalls_page, "trade_date", self.page_size, uid=self.uid,
                                 day_from=day_from, day_to=day_to):
            if doc.get("code") == code:
                yield doc_id, doc

    def shortfalls(self) -> Iterator[dict[str, Any]]:
        for _, doc in self._trade_date_records(SHORTFALL_CODE, self.first, self.last):
            yield doc

    def overflows(self) -> Iterator[dict[str, Any]]:
        """The year's LOT_BOOK_OVERFLOW markers: fills recorded without their lot step."""
        for _, doc in self._trade_date_records(OVERFLOW_CODE, self.first, self.last):
            yield doc

    def refuse_incomplete_txf(self) -> None:
        """409 ``LOT_BOOK_INCOMPLETE`` when a LOT_BOOK_OVERFLOW marker can change the year's rows: one
        traded up to 30 days after the year ends (the wash-sale window of a December loss). Counted
        before the response starts."""
        through = (date(self.year, 12, 31) + timedelta(days=WASH_WINDOW_DAYS)).isoformat()
        found = in_year = 0
        for _, doc in self._trade_date_records(OVERFLOW_CODE, FIRST_DAY, through):
            found += 1
            in_year += self.first <= str(doc["trade_date"]) <= self.last
        if not found:
            return
        reason = (f"{found} fill(s) traded up to {through} were recorded without their lot step "
                  f"({OVERFLOW_CODE}: the lot book was full), {in_year} of them in {self.year}: the lots the "
                  f"year's sales matched and their bases cannot be known, so a TXF file would be wrong. The "
                  f"JSON and CSV exports of each fill's year list them (shortfalls; Status {OVERFLOW_CODE})")
        raise ApiError(409, INCOMPLETE_CODE, f"format: {reason}", field="format", reason=reason)

    def open_lots(self) -> Iterator[OpenLotRow]:
        if self.lots_as_of is not None:
            yield from self.lots_as_of
            return
        for book in self.books():
            yield from open_lot_rows((lot_from_dict(lot) for lot in book_lots(book)), self.today)

    # --- JSON ----------------------------------------------------------------------------------
    def json_chunks(self) -> Iterator[bytes]:
        totals = Totals()
        yield f'{{"year":{self.year},"as_of":"{self.today.isoformat()}","disposals":'.encode()
        yield from _json_array(_disposal_json(doc_id, disposal, totals, self.profile)
                               for doc_id, disposal in self.disposals())
        yield b',"shortfalls":'
        yield from _json_array(chain((_shortfall_json(doc, totals) for doc in self.shortfalls()),
                                     (_overflow_json(doc, totals) for doc in self.overflows())))
        if self.lots_as_of is not None:
            yield f',"open_lots_as_of":"{self.lots_day.isoformat()}"'.encode()
        yield b',"open_lots":'
        yield from _json_array(_open_lot_json(row, totals) for row in self.open_lots())
        yield (',"totals":' + dumps(totals.to_json()) + ',"provisional":'
               + ("true" if totals.provisional else "false") + "}").encode()

    # --- CSV -----------------------------------------------------------------------------------
    def disposals_csv(self) -> Iterator[bytes]:
        buf = io.StringIO()
        write_form_8949_csv((), buf, header=True)
        for batch in _batches(self.rows()):
            write_form_8949_csv(batch, buf, header=False)
            yield _drain(buf)
        writer = csv.writer(buf, lineterminator="\n")
        for batch in _batches(self.shortfalls()):
            writer.writerows(_shortfall_csv(doc) for doc in batch)
            yield _drain(buf)
        for batch in _batches(self.overflows()):
            writer.writerows(_overflow_csv(doc) for doc in batch)
            yield _drain(buf)
        yield _drain(buf)

    def rows(self) -> Iterator[Form8949Row]:
        for _, disposal in self.disposals():
            yield Form8949Row.from_disposal(disposal, self.profile)

    def digital_asset_rows(self) -> int:
        """How many of the year's rows fall in the digital-asset boxes G–L (a paged pass before a TXF
        response starts: V042 has no number for them)."""
        return sum(1 for row in self.rows() if row.box in DIGITAL_ASSET_BOXES)

    def txf_chunks(self, write_txf: Callable[..., int]) -> Iterator[bytes]:
        """TXF V042 (``backend.tax.txf``): the Form 8949 rows of boxes A–F only (shortfalls have no
        basis, open lots are not sales, G–L rows have no V042 number; the JSON/CSV export lists
        them)."""
        buf = io.StringIO()
        write_txf((), buf, exported_on=self.today, header=True)
        yield _drain(buf)
        rows = (row for row in self.rows() if row.box not in DIGITAL_ASSET_BOXES)
        for batch in _batches(rows):
            write_txf(batch, buf, exported_on=self.today, header=False)
            yield _drain(buf)

    def open_lots_csv(self) -> Iterator[bytes]:
        buf = io.StringIO()
        write_open_lots_csv((), buf, header=True)
        for batch in _batches(self.open_lots()):
            write_open_lots_csv(batch, buf, header=False)
            yield _drain(buf)
        yield _drain(buf)


# ------------------------------------------------------------------------------------ rows


def _disposal_json(doc_id: str, disposal: Disposal, totals: Totals, profile: ReportingProfile) -> dict[str, Any]:
    row = Form8949Row.from_disposal(disposal, profile)
    totals.add(row)
    return {"disposal_id": doc_id, "symbol": disposal.symbol, "quantity": dec_str(disposal.quantity),
            **dict(zip(ROW_KEYS, row.csv_fields())), **_account(disposal.book),
            **({"lot_method": disposal.lot_method} if disposal.lot_method else {})}


def _account(book: Any) -> dict[str, str]:
    """``account``: the lot book (``<tenant>:<account>``) of a row booked per account; absent otherwise."""
    return {"account": str(book)} if book else {}


def _shortfall_fields(doc: Mapping[str, Any]) -> tuple[str, str, str]:
    """(description, date sold MM/DD/YYYY, proceeds) of a LOT_SHORTFALL record."""
    qty = Decimal(str(doc["qty"]))
    return (describe(qty, doc["symbol"], AssetClass(doc["asset_class"])),
            format_date(date.fromisoformat(doc["trade_date"])), format_money(Decimal(str(doc["proceeds"]))))


def _shortfall_json(doc: Mapping[str, Any], totals: Totals) -> dict[str, Any]:
    _, sold, proceeds = _shortfall_fields(doc)
    totals.add_shortfall(Decimal(proceeds))
    return {"code": SHORTFALL_CODE, "trade_id": doc["trade_id"], "symbol": doc["symbol"],
            "quantity": dec_str(Decimal(str(doc["qty"]))), "date_sold": sold, "proceeds": proceeds,
            "text": str(doc.get("text") or ""), **_account(doc.get("book"))}


def _shortfall_csv(doc: Mapping[str, Any]) -> list[str]:
    description, sold, proceeds = _shortfall_fields(doc)
    return [description, "", sold, proceeds, "", "", "", "", "", "SHORTFALL", "", ""]


def _overflow_fields(doc: Mapping[str, Any]) -> tuple[str, bool, str, str | None]:
    """(description, is a sell, trade date MM/DD/YYYY, proceeds or None for a buy) of a
    LOT_BOOK_OVERFLOW marker. A sell's proceeds: qty x price x multiplier - fees (exact, then rounded
    as every money column); a marker without a multiplier is of a fill without one (1)."""
    qty = Decimal(str(doc["qty"]))
    sell = str(doc["side"]).upper() == "SELL"
    proceeds = None
    if sell:
        multiplier = Decimal(str(doc["multiplier"])) if doc.get("multiplier") is not None else Decimal(1)
        gross = _arith.mul(_arith.mul(qty, Decimal(str(doc["price"]))), multiplier)
        proceeds = format_money(_arith.sub(gross, Decimal(str(doc.get("fees") or "0"))))
    return (describe(qty, doc["symbol"], AssetClass(doc["asset_class"])), sell,
            format_date(date.fromisoformat(doc["trade_date"])), proceeds)


def _overflow_json(doc: Mapping[str, Any], totals: Totals) -> dict[str, Any]:
    _, sell, day, proceeds = _overflow_fields(doc)
    totals.lot_book_overflows += 1
    return {"code": OVERFLOW_CODE, "trade_id": doc["trade_id"], "symbol": doc["symbol"],
            "side": "SELL" if sell else "BUY", "quantity": dec_str(Decimal(str(doc["qty"]))),
            ("date_sold" if sell else "date_acquired"): day, "proceeds": proceeds,
            "text": str(doc.get("text") or ""), **_account(doc.get("book"))}


def _overflow_csv(doc: Mapping[str, Any]) -> list[str]:
    description, sell, day, proceeds = _overflow_fields(doc)
    if sell:
        return [description, "", day, proceeds or "", "", "", "", "", "", OVERFLOW_CODE, "", ""]
    return [description, day, "", "", "", "", "", "", "", OVERFLOW_CODE, "", ""]


def _open_lot_json(row: OpenLotRow, totals: Totals) -> dict[str, Any]:
    totals.open_lots += 1
    return {**dict(zip(OPEN_LOT_KEYS, row.csv_fields())), **_account(row.book)}


def _json_array(items: Iterable[Mapping[str, Any]]) -> Iterator[bytes]:
    yield b"["
    for index, batch in enumerate(_batches(items)):
        yield (("," if index else "") + ",".join(dumps(item) for item in batch)).encode()
    yield b"]"


def _batches(items: Iterable[Any], size: int | None = None) -> Iterator[list[Any]]:
    size = size or CHUNK_ROWS
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _drain(buf: io.StringIO) -> bytes:
    data = buf.getvalue().encode()
    buf.seek(0)
    buf.truncate()
    return data
