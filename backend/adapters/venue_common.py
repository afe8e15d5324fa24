"""What every venue adapter does the same way, written once: the asset-class gate, the retry and
time-budget rules, Retry-After parsing and the loopback test for local-server overrides.

Used by ``AlpacaBroker`` (and ``AlpacaBrokerApiAccount``), ``OandaBroker`` / ``OandaHttp`` and
``PaperBroker``. Imports nothing from a venue SDK or an HTTP library.

Retry rules (each call has a deadline: ``clock.monotonic()`` at its start + the time budget):

- 429 is a definite refusal: wait Retry-After when the venue sent it, otherwise ``backoff``;
  at most ``max_rate_limit_retries`` times, and never a wait that would cross the deadline (the
  coded RATE_LIMITED error is raised instead, carrying the wait as ``retry_after``).
- A transient failure (5xx, timeout, dropped connection) of a *read* is retried after
  ``backoff``, at most ``MAX_READ_RETRIES`` times and only when the wait ends before the deadline.
- A submit whose outcome was unknown and whose lookup found nothing is resubmitted (same client
  order id) at most ``MAX_AMBIGUOUS_RESUBMITS`` times, within the deadline.
"""
from __future__ import annotations

import logging
import math
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import ClassVar

from backend.domain.assets import AssetClass
from backend.domain.clock import Clock
from backend.domain.orders import BrokerError, BrokerErrorCode

BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 8.0
MAX_READ_RETRIES = 2  # 5xx/timeouts/drops on reads (GET, cancel), each after a backoff
MAX_AMBIGUOUS_RESUBMITS = 2  # resubmits after "ambiguous failure, lookup says not found"


class AssetClassGate:
    """``supports`` / ``_require`` over ``self.supported``. A subclass sets ``supported`` (class or
    instance attribute) and ``unsupported_message`` (``{asset_class}`` is the refused class's value)."""

    supported: frozenset[AssetClass]
    unsupported_message: ClassVar[str] = "this broker does not trade {asset_class}"

    def supports(self, asset_class: AssetClass | str) -> bool:
        return AssetClass.parse(asset_class) in self.supported

    def _require(self, asset_class: AssetClass | str) -> AssetClass:
        """The parsed asset class; ``BrokerError(UNSUPPORTED)`` when this broker does not trade it."""
        klass = AssetClass.parse(asset_class)
        if klass not in self.supported:
            raise BrokerError(BrokerErrorCode.UNSUPPORTED, self.unsupported_message.format(asset_class=klass.value))
        return klass


def backoff(attempt: int) -> float:
    """Seconds before retry ``attempt`` (0-based): exponential from 0.5 s, capped at 8 s."""
    return min(BACKOFF_BASE_SECONDS * (2 ** attempt), BACKOFF_CAP_SECONDS)


def rate_limit_wait(error: BrokerError, attempts: int, *, deadline: float, clock: Clock, max_retries: int,
                    budget_seconds: float, op: str, venue: str, logger: logging.Logger) -> float:
    """Seconds to wait before retrying a 429 after ``attempts`` earlier retries; raises the coded
    RATE_LIMITED error when the retries are used up or the wait would cross ``deadline``."""
    wait = error.retry_after if error.retry_after is not None else backoff(attempts)
    if attempts >= max_retries:
        raise BrokerError(BrokerErrorCode.RATE_LIMITED,
                          f"{op}: still rate limited after {attempts} retries ({error.message})",
                          retry_after=wait)
    if wait > deadline - clock.monotonic():
        raise BrokerError(BrokerErrorCode.RATE_LIMITED,
                          f"{op}: rate limited; waiting {wait:.2f}s would exceed the "
                          f"{budget_seconds:g}s time budget ({error.message})",
                          retry_after=wait)
    logger.info("%s: %s rate limited; retry %d in %.2fs", venue, op, attempts + 1, wait)
    return wait


def transient_wait(error: BrokerError, attempts: int, *, deadline: float, clock: Clock, op: str, venue: str,
                   logger: logging.Logger) -> float | None:
    """Seconds to wait before retrying a transient read failure after ``attempts`` earlier retries;
    None when no retry is left or the wait would cross ``deadline``."""
    if attempts >= MAX_READ_RETRIES or clock.monotonic() + backoff(attempts) > deadline:
        return None
    wait = backoff(attempts)
    logger.info("%s: %s transient failure (%s); retry %d in %.2fs", venue, op, error.message, attempts + 1, wait)
    return wait


def resubmit_wait(resubmits: int, *, deadline: float, clock: Clock) -> float | None:
    """Seconds to wait before resubmitting an order the lookup did not find after ``resubmits``
    earlier resubmits; None when no resubmit is left or the wait would cross ``deadline``."""
    wait = backoff(resubmits)
    if resubmits >= MAX_AMBIGUOUS_RESUBMITS or clock.monotonic() + wait > deadline:
        return None
    return wait


def parse_retry_after(raw: str | None, now: datetime | None = None) -> float | None:
    """A Retry-After header (delta-seconds or an HTTP date, measured from ``now``) as seconds >= 0;
    None when absent or unreadable."""
    if raw is None:
        return None
    raw = str(raw).strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def is_loopback_url(url: str | None) -> bool:
    """True for an ``http(s)://127.0.0.1|localhost|[::1]...`` URL (a local test server): such an
    override must never go through an environment proxy."""
    if not url:
        return False
    from urllib.parse import urlsplit

    return (urlsplit(url).hostname or "") in ("127.0.0.1", "localhost", "::1")


__all__ = ["AssetClassGate", "BACKOFF_BASE_SECONDS", "BACKOFF_CAP_SECONDS", "MAX_AMBIGUOUS_RESUBMITS",
           "MAX_READ_RETRIES", "backoff", "is_loopback_url", "parse_retry_after", "rate_limit_wait",
           "resubmit_wait", "transient_wait"]
