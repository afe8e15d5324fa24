"""Trade dates, the holding period and the wash-sale window.

Rules (IRS Pub. 550, "Holding Period"; IRC §1222):
- The holding period starts the day AFTER the acquisition (trade) date and includes the sale
  (trade) date. More than one year is long-term; one year or less is short-term. So an asset
  bought 2025-03-15 and sold 2026-03-15 is short-term; sold 2026-03-16 it is long-term.
- Months are counted from the day after acquisition to the same date of later months. When that
  date does not exist in the sale year (the holding period starts on Feb 29), the next holding
  month starts on Mar 1. Consequences, all tested: bought 2024-02-29 → long-term from 2025-03-01
  (2025-02-28 is exactly one year: short); bought 2024-02-28 → long-term from 2025-03-01;
  bought 2023-02-28 (last day of the month) → 2024-02-29 is still short, long-term from
  2024-03-01, which matches the "last day of the month" reading of the rule.
- Trade dates are taken in one tax time zone (default America/New_York, the exchange day US
  brokers report on Form 1099-B), not UTC: a fill at 2026-01-01T02:00Z is a 2025-12-31 trade.
- Wash-sale window (IRC §1091, Pub. 550 "Wash Sales"): 30 calendar days before through 30 days
  after the sale date, the sale day included (61 days).
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, tzinfo
from enum import Enum
from zoneinfo import ZoneInfo

DEFAULT_TAX_TZ_NAME = "America/New_York"
WASH_WINDOW_DAYS = 30


class Term(str, Enum):
    SHORT = "SHORT"
    LONG = "LONG"


def resolve_tz(tz: tzinfo | str | None) -> tzinfo:
    if tz is None:
        return ZoneInfo(DEFAULT_TAX_TZ_NAME)
    if isinstance(tz, str):
        return ZoneInfo(tz)
    return tz


def trade_date(timestamp: datetime, tz: tzinfo) -> date:
    """The calendar trade date of an aware timestamp in the tax time zone."""
    if timestamp.tzinfo is None or timestamp.utcoffset() is None:
        raise ValueError("timestamps must be timezone-aware")
    return timestamp.astimezone(tz).date()


def first_long_term_date(holding_start: date) -> date:
    """The earliest sale date on which an asset acquired on ``holding_start`` is long-term."""
    start = holding_start + timedelta(days=1)  # the holding period begins the day after
    try:
        return start.replace(year=start.year + 1)
    except ValueError:  # the period began on Feb 29; next year has no Feb 29
        return date(start.year + 1, 3, 1)


def holding_term(holding_start: date, sold: date) -> Term:
    return Term.LONG if sold >= first_long_term_date(holding_start) else Term.SHORT


def tacked_holding_start(replacement_acquired: date, loss_sale: date, sold_holding_start: date) -> date:
    """Holding start of wash-sale replacement shares: their own acquisition date moved back by the
    number of days the sold shares had been held (Pub. 550: the holding period of the new stock
    includes the holding period of the stock sold)."""
    return replacement_acquired - (loss_sale - sold_holding_start)


def in_wash_window(sale: date, purchase: date) -> bool:
    return abs((purchase - sale).days) <= WASH_WINDOW_DAYS


def wash_window_closes(sale: date) -> date:
    """The last date whose purchases can still wash a loss realized on ``sale``."""
    return sale + timedelta(days=WASH_WINDOW_DAYS)
