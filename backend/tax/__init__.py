"""Tax-lot core: pure, Decimal-only, no I/O.

Fills → lots (FIFO / LIFO / HIFO / specific identification, short lots, shortfalls) →
disposals with IRS holding periods and wash-sale adjustments → Form 8949 rows and CSV.
Rules and their IRS references are documented in ``holding`` (holding period), ``book``
(wash sales, short sales), ``ledger`` (ordering, finality) and ``form8949`` (formatting).
"""
from backend.tax.book import WASH_SALE_CLASSES, LotBook
from backend.tax.boxes import ALL_BOXES, DEFAULT_PROFILE, Issuer, ReportingProfile, form_8949_box, is_covered
from backend.tax.form8949 import (
    FORM_8949_HEADER,
    OPEN_LOTS_HEADER,
    Form8949Row,
    OpenLotRow,
    describe,
    format_date,
    format_money,
    iter_disposals,
    iter_form_8949_rows,
    open_lot_rows,
    round_money,
    write_form_8949_csv,
    write_open_lots_csv,
)
from backend.tax.holding import (
    DEFAULT_TAX_TZ_NAME,
    WASH_WINDOW_DAYS,
    Term,
    first_long_term_date,
    holding_term,
    trade_date,
)
from backend.tax.ledger import LedgerStep, TaxLedger, TaxReport, compute_lots
from backend.tax.methods import ORDERING
from backend.tax.model import Disposal, Fill, Lot, LotMethod, Position, Shortfall, ShortfallError, Side

__all__ = [
    "ALL_BOXES", "DEFAULT_PROFILE", "Issuer", "ReportingProfile", "form_8949_box", "is_covered",
    "DEFAULT_TAX_TZ_NAME", "Disposal", "FORM_8949_HEADER", "Fill", "Form8949Row", "LedgerStep", "Lot", "LotBook",
    "LotMethod", "OPEN_LOTS_HEADER", "ORDERING", "OpenLotRow", "Position", "Shortfall", "ShortfallError", "Side",
    "TaxLedger", "TaxReport", "Term", "WASH_SALE_CLASSES", "WASH_WINDOW_DAYS", "compute_lots", "describe",
    "first_long_term_date", "format_date", "format_money", "holding_term", "iter_disposals", "iter_form_8949_rows",
    "open_lot_rows", "round_money", "trade_date", "write_form_8949_csv", "write_open_lots_csv",
]
