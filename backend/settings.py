"""One frozen, validated settings object built from the environment at the edge.

Names are the seeds' env vars. Unknown values fail loudly at start (``InvalidInput`` naming the
variable) instead of silently falling back to a default.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Mapping

from backend.domain.errors import InvalidInput
from backend.domain.money import to_decimal

if TYPE_CHECKING:
    from backend.execution.groups import GroupSettings

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    text = raw.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidInput(name, f"expected a boolean (1/0/true/false), got {raw!r}")


def _dec(env: Mapping[str, str], name: str, default: str, *, positive: bool = True) -> Decimal:
    raw = env.get(name)
    value = to_decimal(default if raw is None or raw.strip() == "" else raw, name)
    if positive and value <= 0:
        raise InvalidInput(name, f"must be positive, got {value}")
    if not positive and value < 0:
        raise InvalidInput(name, f"must not be negative, got {value}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise InvalidInput(name, f"expected an integer, got {raw!r}") from None
    if value < minimum:
        raise InvalidInput(name, f"must be >= {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class ExecSettings:
    # seed 001
    dry_run: bool = True
    kill_switch: bool = False
    max_position_qty: Decimal = Decimal("100")
    max_daily_trades: int = 50
    default_tenant_id: str | None = None
    default_uid: str | None = None
    max_spread_pct: Decimal = Decimal("0.001")
    fill_wait_seconds: Decimal = Decimal("2")
    # seed 000: the executor's timing; the group gates' thresholds are ``group`` below
    order_timeout_seconds: Decimal = Decimal("60")
    monitoring_poll_interval: Decimal = Decimal("0.5")
    lease_seconds: Decimal = Decimal("120")
    max_position_by_class: Mapping[Any, Decimal] = field(default_factory=dict)
    # The group gates' thresholds (``GroupSettings``: stale tick, spread, spread widening, margin
    # cushion, correlation, rollback attempts), parsed once from the same environment, here.
    group: GroupSettings = field(default_factory=lambda: _group_settings_type()())
    # issue 12, ``EXEC_ACCOUNTS``: ``strict`` (only account documents written by admins count) or
    # ``auto`` (a user without a default account gets the first id they name provisioned on the
    # deployment's venues). None: the caller's default — auto for the library engine, strict for the
    # deployed API (backend/api/wiring.py).
    accounts_mode: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "ExecSettings":
        env = os.environ if env is None else env
        settings = cls(
            dry_run=_bool(env, "EXEC_DRY_RUN", True),
            kill_switch=_bool(env, "EXEC_KILL_SWITCH", False),
            max_position_qty=_dec(env, "EXEC_MAX_POSITION_QTY", "100"),
            max_daily_trades=_int(env, "EXEC_MAX_DAILY_TRADES", 50),
            default_tenant_id=(env.get("EXEC_TENANT_ID") or None),
            default_uid=(env.get("EXEC_UID") or None),
            max_spread_pct=_dec(env, "EXEC_MAX_SPREAD_PCT", "0.001"),
            fill_wait_seconds=_dec(env, "EXEC_FILL_WAIT_SECONDS", "2", positive=False),
            order_timeout_seconds=_dec(env, "EXECUTION_ENGINE_ORDER_TIMEOUT_SECONDS", "60"),
            monitoring_poll_interval=_dec(env, "EXECUTION_ENGINE_MONITORING_POLL_INTERVAL", "0.5"),
            lease_seconds=_dec(env, "EXECUTION_ENGINE_LEASE_SECONDS", "120"),
            max_position_by_class=_per_class_limits(env),
            group=_group_settings_type().from_env(env),  # invalid EXECUTION_ENGINE_* values fail here
            accounts_mode=_accounts_mode(env),
        )
        if settings.max_spread_pct >= 1:
            raise InvalidInput("EXEC_MAX_SPREAD_PCT", "is a fraction (0.001 = 0.1%), must be < 1")
        return settings


ACCOUNT_MODES = ("auto", "strict")


def _accounts_mode(env: Mapping[str, str]) -> str | None:
    raw = (env.get("EXEC_ACCOUNTS") or "").strip().lower()
    if not raw:
        return None
    if raw not in ACCOUNT_MODES:
        raise InvalidInput("EXEC_ACCOUNTS", f"must be one of {list(ACCOUNT_MODES)}, got {raw[:40]!r}")
    return raw


def _group_settings_type() -> Any:
    from backend.execution.groups import GroupSettings  # the group gates' own type (pure domain)

    return GroupSettings


def _per_class_limits(env: Mapping[str, str]) -> dict[Any, Decimal]:
    from backend.domain.assets import AssetClass

    out = {}
    for klass in AssetClass:
        name = f"EXEC_MAX_POSITION_QTY_{klass.value}"
        if env.get(name, "").strip():
            out[klass] = _dec(env, name, "1")
    return out


@dataclass(frozen=True)
class ApiSettings:
    """The edge's own settings (identity checks, rate limits), read by ``backend.api.wiring``.

    - ``EXEC_AUTH_STATE_CACHE_SECONDS`` (10): how long a user's account state (disabled, revoked,
      current claims) is cached per uid and instance; the window in which a suspension may go unseen.
    - ``EXEC_RATE_LIMIT_USER_PER_MIN`` (60) / ``EXEC_RATE_LIMIT_TENANT_PER_MIN`` (600): admitted
      order requests (HTTP POSTs and intent documents) per user / per tenant per minute; 0 disables.
    - ``EXEC_RATE_LIMIT_SHARDS`` (8): counter documents per scope and window (spreads the writes).
    - ``EXEC_RATE_LIMIT_REFRESH_SECONDS`` (1): how stale an instance's view of the shared counters
      may be before it reads them again.
    """

    auth_state_cache_seconds: Decimal = Decimal("10")
    rate_user_per_min: int = 60
    rate_tenant_per_min: int = 600
    rate_shards: int = 8
    rate_refresh_seconds: Decimal = Decimal("1")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "ApiSettings":
        env = os.environ if env is None else env
        settings = cls(
            auth_state_cache_seconds=_dec(env, "EXEC_AUTH_STATE_CACHE_SECONDS", "10", positive=False),
            rate_user_per_min=_int(env, "EXEC_RATE_LIMIT_USER_PER_MIN", 60),
            rate_tenant_per_min=_int(env, "EXEC_RATE_LIMIT_TENANT_PER_MIN", 600),
            rate_shards=_int(env, "EXEC_RATE_LIMIT_SHARDS", 8, minimum=1),
            rate_refresh_seconds=_dec(env, "EXEC_RATE_LIMIT_REFRESH_SECONDS", "1", positive=False),
        )
        if settings.auth_state_cache_seconds > 300:
            raise InvalidInput("EXEC_AUTH_STATE_CACHE_SECONDS", "must be <= 300 (a suspension must take effect)")
        if settings.rate_shards > 64:
            raise InvalidInput("EXEC_RATE_LIMIT_SHARDS", "must be <= 64")
        return settings
