"""Form 8949 parts and boxes: which check box (A–L) a row is filed under.

Part I is short-term, Part II long-term (``Term``). The box says what the taxpayer received:

====================================  =======  =======  ===========================
what the broker sent                  Part I   Part II  from tax year
====================================  =======  =======  ===========================
1099-B, basis reported to the IRS     A        D        always
1099-B, basis not reported            B        E        always
no 1099-B                             C        F        always
1099-DA, basis reported to the IRS    G        J        2025 (digital assets only)
1099-DA, basis not reported           H        K        2025 (digital assets only)
no 1099-DA                            I        L        2025 (digital assets only)
====================================  =======  =======  ===========================

From tax year 2025 a digital asset (our ``CRYPTO``) is never filed under A–F (2025 Instructions
for Form 8949: "do not use boxes C or F for digital assets"; boxes G–L added for Form 1099-DA).
Before 2025 crypto had no information return: boxes C/F unless the account says otherwise.

Whether the basis was reported is decided by two things (``form_8949_box``):

1. **The account** (``Issuer``, per book ``<tenant>:<account>`` and asset class,
   ``ReportingProfile``): ``BROKER`` (a covered-security broker: files the 1099 and reports the
   basis of covered lots), ``PROCEEDS_ONLY`` (files the 1099 without basis), ``NONE`` (no 1099).
   Default (``DEFAULT_ISSUERS``): ``BROKER`` for EQUITY and OPTIONS (Alpaca-routed accounts are a
   US broker-dealer issuing Form 1099-B); CRYPTO ``BROKER`` for sales from 2025 (custodial
   digital-asset brokers file Form 1099-DA for sales on or after 2025-01-01) and ``NONE`` before;
   every other class ``NONE`` (forex and commodity futures are not Form 8949 property of a
   securities broker here: no 1099-B is assumed; Section 1256 contracts belong on Form 6781).
2. **The lot** (``is_covered``, Reg. §1.6045-1(a)(15), Form 1099-B and 1099-DA instructions):
   stock acquired on or after 2011-01-01 (we do not tell funds/DRIP stock — covered from
   2012-01-01 — from other stock: an ETF bought in 2011 would be reported as covered); options
   acquired on or after 2014-01-01; digital assets acquired on or after 2025-01-01 in the same
   custodial account, with basis reporting mandatory for sales on or after 2026-01-01 (for 2025
   sales 1099-DA reports gross proceeds; basis is voluntary, so H/K). A short sale's "acquired"
   date is the covering date (``Disposal.acquired``). Lots transferred in from another broker
   are noncovered for the receiving broker; the core does not see transfers (every lot is bought
   in the book that holds it).

Totals per box are what Schedule D needs: lines 1b/2/3 (A/B/C, G/H/I) and 8b/9/10 (D/E/F, J/K/L)
take the box totals of columns (d), (e), (g) and (h).
"""
from __future__ import annotations

from datetime import date
from enum import Enum
from typing import Any, Mapping

from backend.domain.assets import AssetClass
from backend.domain.errors import InvalidInput
from backend.tax.holding import Term

DIGITAL_ASSET_BOXES_FROM = 2025  # first tax year with boxes G–L
COVERED_FROM = {
    AssetClass.EQUITY: date(2011, 1, 1),
    AssetClass.OPTIONS: date(2014, 1, 1),
    AssetClass.CRYPTO: date(2025, 1, 1),
}
CRYPTO_BASIS_REPORTED_SALES_FROM = date(2026, 1, 1)

PARTS = {Term.SHORT: "I", Term.LONG: "II"}
# (digital, term) → (reported, not reported, no form)
_BOXES = {
    (False, Term.SHORT): ("A", "B", "C"), (False, Term.LONG): ("D", "E", "F"),
    (True, Term.SHORT): ("G", "H", "I"), (True, Term.LONG): ("J", "K", "L"),
}
ALL_BOXES = tuple("ABCDEFGHIJKL")
BOX_PART = {box: ("I" if box in "ABCGHI" else "II") for box in ALL_BOXES}


class Issuer(str, Enum):
    BROKER = "BROKER"
    PROCEEDS_ONLY = "PROCEEDS_ONLY"
    NONE = "NONE"

    @classmethod
    def parse(cls, value: Any, field_name: str) -> "Issuer":
        if isinstance(value, cls):
            return value
        if isinstance(value, str) and value.strip().upper() in cls.__members__:
            return cls[value.strip().upper()]
        raise InvalidInput(field_name, f"expected one of {[m.value for m in cls]}, got {value!r}")


def part(term: Term) -> str:
    return PARTS[Term(term)]


def is_digital(asset_class: AssetClass, year: int) -> bool:
    return asset_class is AssetClass.CRYPTO and year >= DIGITAL_ASSET_BOXES_FROM


def is_covered(asset_class: AssetClass, acquired: date, sold: date) -> bool:
    """A covered security: one whose basis the broker must report (see the module docstring)."""
    start = COVERED_FROM.get(asset_class)
    if start is None or acquired < start:
        return False
    return asset_class is not AssetClass.CRYPTO or sold >= CRYPTO_BASIS_REPORTED_SALES_FROM


def default_issuer(asset_class: AssetClass, year: int) -> Issuer:
    if asset_class in (AssetClass.EQUITY, AssetClass.OPTIONS):
        return Issuer.BROKER
    if asset_class is AssetClass.CRYPTO:
        return Issuer.BROKER if year >= DIGITAL_ASSET_BOXES_FROM else Issuer.NONE
    return Issuer.NONE


def form_8949_box(term: Term, asset_class: AssetClass, acquired: date, sold: date, issuer: Issuer) -> str:
    """The check box (A–L) of one row sold on ``sold`` whose account's 1099 status is ``issuer``."""
    reported, not_reported, no_form = _BOXES[(is_digital(asset_class, sold.year), Term(term))]
    if issuer is Issuer.NONE:
        return no_form
    if issuer is Issuer.BROKER and is_covered(asset_class, acquired, sold):
        return reported
    return not_reported


class ReportingProfile:
    """The 1099 status per (book, asset class); unnamed pairs use ``default_issuer``.

    ``settings``: ``{"<tenant>:<account>": {"EQUITY": "BROKER", "CRYPTO": "NONE", ...}}``; the key
    ``"*"`` applies to every book without its own entry for that class. A value may also be a
    history, ``[{"issuer": "NONE", "from": "2024-01-01"}, {"issuer": "BROKER", "from": "2026-01-01"}]``:
    the entry in force on the date sold applies (before the first entry: the default), so a change
    made later never moves the rows of a past year to another box (exports stay reproducible).
    """

    def __init__(self, settings: Mapping[str, Mapping[str, Any]] | None = None):
        self._settings: dict[str, dict[AssetClass, list[tuple[date, Issuer]]]] = {}
        for book, per_class in (settings or {}).items():
            if not isinstance(book, str) or not isinstance(per_class, Mapping):
                raise InvalidInput("tax_reporting", f"expected book → {{asset_class: issuer}}, got {book!r}")
            self._settings[book] = {
                AssetClass.parse(klass, f"tax_reporting.{book}"): _history(value, f"tax_reporting.{book}.{klass}")
                for klass, value in per_class.items()}

    def issuer(self, book: str, asset_class: AssetClass, sold: date) -> Issuer:
        for key in (book, "*"):
            history = self._settings.get(key, {}).get(asset_class)
            if history is not None:
                in_force = [issuer for start, issuer in history if start <= sold]
                return in_force[-1] if in_force else default_issuer(asset_class, sold.year)
        return default_issuer(asset_class, sold.year)

    def box(self, *, book: str, term: Term, asset_class: AssetClass, acquired: date, sold: date) -> str:
        return form_8949_box(term, asset_class, acquired, sold, self.issuer(book, asset_class, sold))


def _history(value: Any, field: str) -> list[tuple[date, Issuer]]:
    if not isinstance(value, (list, tuple)):
        return [(date.min, Issuer.parse(value, field))]
    out: list[tuple[date, Issuer]] = []
    for index, item in enumerate(value):
        if not isinstance(item, Mapping) or set(item) != {"issuer", "from"}:
            raise InvalidInput(f"{field}[{index}]", "expected {\"issuer\": …, \"from\": \"YYYY-MM-DD\"}")
        try:
            start = date.fromisoformat(str(item["from"]))
        except ValueError:
            raise InvalidInput(f"{field}[{index}].from", f"expected YYYY-MM-DD, got {item['from']!r}") from None
        if out and start <= out[-1][0]:
            raise InvalidInput(f"{field}[{index}].from", "entries must be in increasing date order")
        out.append((start, Issuer.parse(item["issuer"], f"{field}[{index}].issuer")))
    return out


DEFAULT_PROFILE = ReportingProfile()
