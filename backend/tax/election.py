"""Lot-method elections made before the sale: ``users/<uid>/config/tax``.

Document shape::

    {"lot_method": "FIFO",                       # legacy: in force always while there are no elections
     "elections": [{"method": "HIFO", "effective_at": "2025-06-02T13:30:00+00:00",
                    "recorded_at": "2025-06-01T18:00:00+00:00",
                    "account": "acme:acct1",      # optional: this lot book only; absent = every account
                    "default_rule": "FIFO"}]}     # SPECIFIC only: the rule for a sale naming no lots

Rules:

- The method applied to a sale is the election in force at the sale's time (``effective_at`` ≤
  the fill's timestamp) for its account: the latest such election, an account's own election
  winning a tie with a general one. Before the first election: FIFO (the IRS default, Pub. 550
  "Identifying the shares"). Without any election: the legacy ``lot_method`` (today's behaviour).
- Elections change only going forward: ``add_election`` refuses an ``effective_at`` earlier than
  ``now`` (the time it is recorded) or earlier than an existing election's, and never edits or
  removes an existing one. Turning a legacy ``lot_method`` into elections first records it as an
  election effective from the beginning, so past sales keep the method they were booked with.
- SPECIFIC: a sale names its lots (``Fill.lot_ids`` ← order ``metadata.lot_ids``); one naming
  none is booked with the election's ``default_rule`` (FIFO unless named).
- The method applied is stored on the disposal (``Disposal.lot_method``) and on the history row
  (``BooksPlan.applied_methods``): a later election never rewrites them.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from backend.domain.errors import InvalidInput
from backend.tax.model import Fill, LotMethod

BEGINNING = datetime(1900, 1, 1, tzinfo=timezone.utc)
MAX_ELECTIONS = 100


def _when(value: Any, field: str) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidInput(field, f"expected ISO-8601 with an offset, got {value!r}") from None
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(field, "expected a timezone-aware time")
    return value


def method_in_force(config: Mapping[str, Any] | None, at: datetime, book: str = "") -> tuple[LotMethod, LotMethod]:
    """(method, default rule for SPECIFIC sales naming no lots) in force at ``at`` for ``book``."""
    config = config or {}
    elections = config.get("elections") or []
    if not elections:
        return LotMethod.parse(config.get("lot_method") or "FIFO", "lot_method"), LotMethod.FIFO
    best: tuple[datetime, bool, Mapping[str, Any]] | None = None
    for index, item in enumerate(elections):
        account = item.get("account")
        if account and account != book:
            continue
        effective = _when(item.get("effective_at"), f"elections[{index}].effective_at")
        if effective > at:
            continue
        key = (effective, bool(account))
        if best is None or key >= best[:2]:
            best = (effective, bool(account), item)
    if best is None:
        return LotMethod.FIFO, LotMethod.FIFO
    chosen = best[2]
    return (LotMethod.parse(chosen.get("method"), "method"),
            LotMethod.parse(chosen.get("default_rule") or "FIFO", "default_rule"))


def method_for_fill(config: Mapping[str, Any] | str | None, fill: Fill) -> LotMethod:
    """The method a fill is booked with. ``config`` is the ``config/tax`` document, or the legacy
    ``lot_method`` string. SPECIFIC without named lots falls back to the election's default rule."""
    if config is None or isinstance(config, str):
        config = {"lot_method": config} if config else {}
    method, rule = method_in_force(config, fill.timestamp, fill.book)
    if method is LotMethod.SPECIFIC and fill.lot_ids is None:
        return rule
    return method


def add_election(config: Mapping[str, Any] | None, method: LotMethod | str, *, now: datetime,
                 effective_at: datetime | None = None, account: str | None = None,
                 default_rule: LotMethod | str | None = None) -> dict[str, Any]:
    """A new ``config/tax`` document with one more election (nothing before it changes)."""
    now = _when(now, "now")
    effective = _when(effective_at, "effective_at") if effective_at is not None else now
    if effective < now:
        raise InvalidInput("effective_at", "an election applies only going forward (not before now)")
    chosen = LotMethod.parse(method, "method")
    rule = LotMethod.parse(default_rule, "default_rule") if default_rule is not None else LotMethod.FIFO
    if rule is LotMethod.SPECIFIC:
        raise InvalidInput("default_rule", "must be FIFO, LIFO or HIFO")
    if default_rule is not None and chosen is not LotMethod.SPECIFIC:
        raise InvalidInput("default_rule", "only for SPECIFIC")
    if account is not None and (not isinstance(account, str) or ":" not in account):
        raise InvalidInput("account", "expected '<tenant_id>:<broker_account_id>'")
    current = dict(config or {})
    elections = [dict(item) for item in current.get("elections") or []]
    if not elections and current.get("lot_method"):
        elections.append({"method": LotMethod.parse(current["lot_method"], "lot_method").value,
                          "effective_at": BEGINNING.isoformat(), "recorded_at": now.isoformat()})
    for index, item in enumerate(elections):
        if _when(item.get("effective_at"), f"elections[{index}].effective_at") > effective:
            raise InvalidInput("effective_at", "earlier than an existing election: elections only go forward")
    if len(elections) >= MAX_ELECTIONS:
        raise InvalidInput("elections", f"at most {MAX_ELECTIONS}")
    elections.append({"method": chosen.value, "effective_at": effective.isoformat(), "recorded_at": now.isoformat(),
                      **({"account": account} if account else {}),
                      **({"default_rule": rule.value} if chosen is LotMethod.SPECIFIC else {})})
    current["elections"] = elections
    return current


# --- recording an election (the writer behind POST /portfolio/tax-lots/election) -------------------
MAX_AHEAD = timedelta(days=366)  # an election further ahead would block every change until then


class ElectionConflict(Exception):
    """The request key of an earlier election was reused for a different election (HTTP 409)."""


@dataclass(frozen=True)
class ElectionOutcome:
    config: dict[str, Any] | None  # the new ``config/tax`` document; None when nothing is to be written
    election: dict[str, Any]  # the election recorded now, or the earlier one this request repeats
    replayed: bool


def _same(item: Mapping[str, Any], method: LotMethod, account: str | None, rule: LotMethod | None,
          effective: datetime | None) -> bool:
    return (item.get("method") == method.value and (item.get("account") or None) == account
            and (item.get("default_rule") or None) == (rule.value if method is LotMethod.SPECIFIC else None)
            and (effective is None or _when(item.get("effective_at"), "effective_at") == effective))


def record_election(config: Mapping[str, Any] | None, method: LotMethod | str, *, now: datetime,
                    effective_at: datetime | None = None, account: str | None = None,
                    default_rule: LotMethod | str | None = None, request_key: str | None = None) -> ElectionOutcome:
    """``add_election`` made safe to retry. With ``request_key`` (from the client's Idempotency-Key):
    the election already recorded under that key is answered again (``replayed``), and a different
    election under the same key is an ``ElectionConflict``. Without a key: an election identical to
    the latest one of the same scope (method, account, default rule, and ``effective_at`` when given)
    changes nothing and is answered as a replay. ``effective_at`` more than ``MAX_AHEAD`` after
    ``now`` is refused (it would block every later change until then)."""
    now = _when(now, "now")
    chosen = LotMethod.parse(method, "method")
    rule = LotMethod.parse(default_rule, "default_rule") if default_rule is not None else None
    effective = _when(effective_at, "effective_at") if effective_at is not None else None
    if rule is not None and chosen is not LotMethod.SPECIFIC:
        raise InvalidInput("default_rule", "only for SPECIFIC")
    if rule is LotMethod.SPECIFIC:
        raise InvalidInput("default_rule", "must be FIFO, LIFO or HIFO")
    if rule is None and chosen is LotMethod.SPECIFIC:
        rule = LotMethod.FIFO
    elections = list((config or {}).get("elections") or [])
    if request_key is not None:
        for item in elections:
            if item.get("request_key") == request_key:
                if not _same(item, chosen, account, rule, effective):
                    raise ElectionConflict("this Idempotency-Key was used for a different election")
                return ElectionOutcome(None, dict(item), True)
    scope = [item for item in elections if (item.get("account") or None) == account]
    if scope and _same(scope[-1], chosen, account, rule, effective):
        return ElectionOutcome(None, dict(scope[-1]), True)
    if effective is not None and effective - now > MAX_AHEAD:
        raise InvalidInput("effective_at", f"at most {MAX_AHEAD.days} days ahead")
    new = add_election(config, chosen, now=now, effective_at=effective, account=account, default_rule=rule)
    if request_key is not None:
        new["elections"][-1]["request_key"] = request_key
    return ElectionOutcome(new, dict(new["elections"][-1]), False)
