"""The group gates (pure, never raise for business failures): each returns a coded Rejection or None.

RPM authorization, market data (present, sane, fresh), spread, combined margin and correlation at
validation; the same checks (with spread widening and live margin) right before each leg is sent.
"""
from __future__ import annotations

import math
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from backend.domain.errors import InvalidInput, RejectCode, Rejection
from backend.domain.money import ZERO
from backend.execution.group.aggregate import ExecutionGroup
from backend.execution.group.codec import aware, dt_str, fmt
from backend.execution.group.fills import touch_price
from backend.execution.group.leg import ExecutionLeg

if TYPE_CHECKING:  # numpy loads on the first correlation check, not with the engine (issue 17: first request)
    import numpy as np
from backend.execution.group.rpm import parse_rpm_output
from backend.execution.group.settings import GroupSettings
from backend.execution.group.states import LegStatus
from backend.domain.orders import Quote



def check_rpm_authorization(group: ExecutionGroup, rpm_output: Any, now: datetime) -> Rejection | None:
    """RPM_NOT_AUTHORIZED unless rpm_output approves every leg with units <= max_units (and matching
    symbol/direction when given) and ``now < expires_at`` (at the expiry instant it is expired).
    A missing or malformed rpm_output is not an authorization."""
    now = aware(now, "now")
    if rpm_output is None:
        return Rejection(RejectCode.RPM_NOT_AUTHORIZED, "rpm_output missing")
    try:
        auth = parse_rpm_output(rpm_output)
    except InvalidInput as exc:
        return Rejection(RejectCode.RPM_NOT_AUTHORIZED, f"malformed rpm_output: {exc}")
    if not auth.approved:
        return Rejection(RejectCode.RPM_NOT_AUTHORIZED, f"decision={auth.decision_id} not approved")
    if now >= auth.expires_at:
        return Rejection(RejectCode.RPM_NOT_AUTHORIZED,
                       f"decision={auth.decision_id} expired at {dt_str(auth.expires_at)} now={dt_str(now)}")
    for leg in group.legs:
        approval = auth.legs.get(leg.leg_id)
        if approval is None:
            return Rejection(RejectCode.RPM_NOT_AUTHORIZED, f"decision={auth.decision_id} does not approve {leg.leg_id}")
        if leg.units > approval.max_units:
            return Rejection(RejectCode.RPM_NOT_AUTHORIZED,
                           f"decision={auth.decision_id} {leg.leg_id} units={fmt(leg.units)} "
                           f"approved={fmt(approval.max_units)}")
        if approval.symbol is not None and approval.symbol != leg.symbol:
            return Rejection(RejectCode.RPM_NOT_AUTHORIZED,
                           f"decision={auth.decision_id} {leg.leg_id} symbol={leg.symbol} approved={approval.symbol}")
        if approval.direction is not None and approval.direction != leg.direction:
            return Rejection(RejectCode.RPM_NOT_AUTHORIZED,
                           f"decision={auth.decision_id} {leg.leg_id} direction={leg.direction:+d} "
                           f"approved={approval.direction:+d}")
    return None


def quote_problem(leg: ExecutionLeg, quote: Quote | None, now: datetime, settings: GroupSettings) -> Rejection | None:
    """One quote's data checks: present (MARKET_DATA_UNAVAILABLE), sane (INVALID_QUOTE: zero,
    negative, crossed, naive or future-dated beyond the clock skew), fresh (STALE_TICK: age >= limit)."""
    now = aware(now, "now")
    if quote is None:
        return Rejection(RejectCode.MARKET_DATA_UNAVAILABLE, f"{leg.leg_id} {leg.symbol}: no quote")
    problem = quote.problem()
    if problem is not None:
        return Rejection(problem.code, f"{leg.leg_id} {leg.symbol}: {problem.detail}")
    ts = quote.timestamp
    if not isinstance(ts, datetime) or ts.tzinfo is None or ts.utcoffset() is None:
        return Rejection(RejectCode.INVALID_QUOTE, f"{leg.leg_id} {leg.symbol}: quote timestamp is not timezone-aware")
    age = now - ts
    limit = timedelta(seconds=float(settings.max_stale_seconds))
    if age < -timedelta(seconds=float(settings.max_clock_skew_seconds)):
        return Rejection(RejectCode.INVALID_QUOTE, f"{leg.leg_id} {leg.symbol}: quote timestamp "
                                                 f"{dt_str(ts)} is in the future (now={dt_str(now)})")
    if age >= limit:
        return Rejection(RejectCode.STALE_TICK, f"{leg.leg_id} {leg.symbol}: age={age.total_seconds():.3f}s "
                                              f"max={fmt(settings.max_stale_seconds)}s")
    return None


def spread_problem(leg: ExecutionLeg, quote: Quote, settings: GroupSettings) -> Rejection | None:
    """SPREAD_TOO_WIDE when spread / mid > the asset class limit (equal passes)."""
    limit = settings.spread_limit(leg.asset_class)
    if quote.spread > limit * quote.mid:
        return Rejection(RejectCode.SPREAD_TOO_WIDE, f"{leg.leg_id} {leg.symbol}: spread_pct="
                                                   f"{fmt(quote.spread_pct, '0.000001')} max={fmt(limit)}")
    return None


def spread_widening_problem(leg: ExecutionLeg, quote: Quote, settings: GroupSettings) -> Rejection | None:
    """SPREAD_WIDENED when (current spread - validated spread) / tick > max_spread_widening_pips."""
    if leg.validated_spread is None:
        raise ValueError(f"{leg.leg_id} has no validated spread; apply pass_validation first")
    widened = (quote.spread - leg.validated_spread) / leg.spec.tick_size
    if widened > settings.max_spread_widening_pips:
        return Rejection(RejectCode.SPREAD_WIDENED, f"{leg.leg_id} {leg.symbol}: widened={fmt(widened, '0.01')} pips "
                                                  f"validated={fmt(leg.validated_spread)} current={fmt(quote.spread)} "
                                                  f"max={fmt(settings.max_spread_widening_pips)}")
    return None


def leg_margin(leg: ExecutionLeg, price: Decimal) -> Decimal:
    """Seed 000: units x price x margin% / 100 (x the contract multiplier)."""
    return leg.spec.margin(leg.units, price)


def combined_margin(legs_and_prices: Iterable[tuple[ExecutionLeg, Decimal]]) -> Decimal:
    """Sum of leg margins. Hedges are NOT netted (conservative, as the seed)."""
    return sum((leg_margin(leg, price) for leg, price in legs_and_prices), ZERO)


def margin_problem(required: Decimal, buying_power: Decimal, settings: GroupSettings) -> Rejection | None:
    """INSUFFICIENT_MARGIN when required x cushion > buying power (equal passes)."""
    if required * settings.margin_cushion > buying_power:
        return Rejection(RejectCode.INSUFFICIENT_MARGIN, f"required={fmt(required, '0.01')} "
                                                       f"cushion={fmt(settings.margin_cushion)} "
                                                       f"available={fmt(buying_power, '0.01')}")
    return None


def _log_returns(closes: Sequence[Any] | None) -> "np.ndarray | None":
    import numpy as np

    if closes is None:
        return None
    try:
        values = np.array([float(c) for c in closes], dtype=float)
    except (TypeError, ValueError):
        return None
    if values.size and (not np.all(np.isfinite(values)) or np.any(values <= 0)):
        return None
    return np.diff(np.log(values))


def check_correlation(group: ExecutionGroup, closes_by_symbol: Mapping[str, Sequence[Any]] | None,
                      settings: GroupSettings) -> Rejection | None:
    """Reject two legs that double one bet.

    Rule: for every pair of legs (i, j), take Pearson's correlation ``rho`` of the log returns of
    their recent closes (the newest ``min(len_i, len_j, correlation_lookback)`` returns; closes are
    oldest-first and sampled on the same bars). The pair's *effective* correlation is
    ``rho x direction_i x direction_j``: two longs (or two shorts) on co-moving symbols, or a long and
    a short on anti-moving symbols, are one bet doubled. ``effective > correlation_threshold``
    (0.95) -> CORRELATION_TOO_HIGH. Opposite directions on co-moving symbols are hedges (the pairs
    trade) and pass. Single-leg groups pass.

    Too little data is not a pass: fewer than ``correlation_min_returns`` returns, missing,
    non-positive or non-finite closes, or a constant series (correlation undefined) ->
    MARKET_DATA_UNAVAILABLE. Floats are used here: a correlation is a statistic, not money.
    """
    legs = group.legs
    if len(legs) < 2:
        return None
    import numpy as np

    closes_by_symbol = closes_by_symbol or {}
    returns: dict[str, np.ndarray] = {}
    for leg in legs:
        series = _log_returns(closes_by_symbol.get(leg.symbol))
        if series is None:
            return Rejection(RejectCode.MARKET_DATA_UNAVAILABLE, f"correlation: {leg.symbol} closes missing or invalid")
        if series.size < settings.correlation_min_returns:
            return Rejection(RejectCode.MARKET_DATA_UNAVAILABLE, f"correlation: {leg.symbol} has {series.size} returns, "
                                                               f"need {settings.correlation_min_returns}")
        returns[leg.leg_id] = series
    threshold = float(settings.correlation_threshold)
    for i, a in enumerate(legs):
        for b in legs[i + 1:]:
            ra, rb = returns[a.leg_id], returns[b.leg_id]
            n = min(ra.size, rb.size, settings.correlation_lookback)
            xa, xb = ra[-n:], rb[-n:]
            if np.std(xa) == 0 or np.std(xb) == 0:
                flat = a.symbol if np.std(xa) == 0 else b.symbol
                return Rejection(RejectCode.MARKET_DATA_UNAVAILABLE, f"correlation: {flat} returns are constant")
            rho = float(np.corrcoef(xa, xb)[0, 1])
            if not math.isfinite(rho):
                return Rejection(RejectCode.MARKET_DATA_UNAVAILABLE, f"correlation: undefined for {a.symbol}/{b.symbol}")
            effective = rho * a.direction * b.direction
            if effective > threshold:
                return Rejection(RejectCode.CORRELATION_TOO_HIGH,
                               f"{a.leg_id} {a.symbol} ({a.direction:+d}) and {b.leg_id} {b.symbol} ({b.direction:+d}): "
                               f"rho={rho:.4f} effective={effective:.4f} threshold={threshold} over {n} returns; "
                               f"they double one bet")
    return None


def validate_group_all(group: ExecutionGroup, quotes: Mapping[str, Quote], account_buying_power: Decimal,
                       closes_by_symbol: Mapping[str, Sequence[Any]] | None, rpm_output: Any, now: datetime,
                       settings: GroupSettings) -> tuple[Rejection, ...]:
    """Every rejection, gate by gate (RPM, market data / quote sanity / freshness per leg, spread per
    leg, combined margin, correlation). Quotes are keyed by the leg's symbol. Gates that need a
    leg's quote skip legs whose quote already failed; the margin gate runs only with a usable quote
    for every leg. All-or-nothing: any rejection rejects the whole group."""
    now = aware(now, "now")
    found: list[Rejection] = []
    rpm = check_rpm_authorization(group, rpm_output, now)
    if rpm is not None:
        found.append(rpm)
    usable: dict[str, Quote] = {}
    for leg in group.legs:
        quote = quotes.get(leg.symbol)
        problem = quote_problem(leg, quote, now, settings)
        if problem is not None:
            found.append(problem)
        else:
            usable[leg.leg_id] = quote  # type: ignore[assignment]
    for leg in group.legs:
        if leg.leg_id in usable:
            problem = spread_problem(leg, usable[leg.leg_id], settings)
            if problem is not None:
                found.append(problem)
    if len(usable) == len(group.legs):
        required = combined_margin((leg, touch_price(leg.direction, usable[leg.leg_id])) for leg in group.legs)
        problem = margin_problem(required, account_buying_power, settings)
        if problem is not None:
            found.append(problem)
    correlation = check_correlation(group, closes_by_symbol, settings)
    if correlation is not None:
        found.append(correlation)
    return tuple(found)


def validate_group(group: ExecutionGroup, quotes: Mapping[str, Quote], account_buying_power: Decimal,
                   closes_by_symbol: Mapping[str, Sequence[Any]] | None, rpm_output: Any, now: datetime,
                   settings: GroupSettings) -> Rejection | None:
    """The group's rejection (the first of :func:`validate_group_all`), or None when every gate passes."""
    found = validate_group_all(group, quotes, account_buying_power, closes_by_symbol, rpm_output, now, settings)
    return found[0] if found else None


def hardening_check(group: ExecutionGroup, leg_id: str, quote: Quote | None, buying_power: Decimal,
                    closes_by_symbol: Mapping[str, Sequence[Any]] | None, rpm_output: Any, now: datetime,
                    settings: GroupSettings) -> Rejection | None:
    """Checks right before a leg's first submission (pure). In order: RPM authorization still valid
    (not expired), a fresh sane quote (MARKET_DATA_UNAVAILABLE / INVALID_QUOTE / STALE_TICK),
    SPREAD_WIDENED versus the spread seen at validation (in ticks), live margin (INSUFFICIENT_MARGIN:
    this leg at the fresh touch price plus every other leg not yet sent at its intended price,
    x cushion, against the broker's current buying power, which already reflects legs sent), and the
    correlation re-check."""
    now = aware(now, "now")
    leg = group.leg(leg_id)
    rpm = check_rpm_authorization(group, rpm_output, now)
    if rpm is not None:
        return rpm
    problem = quote_problem(leg, quote, now, settings)
    if problem is not None:
        return problem
    assert quote is not None
    problem = spread_widening_problem(leg, quote, settings)
    if problem is not None:
        return problem
    pending = [(other, other.intended_price) for other in group.legs
               if other.leg_id != leg_id and other.status is LegStatus.PENDING]
    if any(price is None for _, price in pending):
        raise ValueError("legs are not priced; apply pass_validation first")
    required = combined_margin([(leg, touch_price(leg.direction, quote)), *pending])  # type: ignore[list-item]
    problem = margin_problem(required, buying_power, settings)
    if problem is not None:
        return problem
    return check_correlation(group, closes_by_symbol, settings)


