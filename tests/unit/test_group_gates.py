"""Validation gates and pre-submit hardening checks for multi-leg groups: pure, coded, never raising."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal as D

import numpy as np
import pytest

from backend.domain.assets import AssetClass
from backend.domain.errors import InvalidInput, RejectCode
from backend.execution.groups import (
    ExecutionGroup,
    GroupSettings,
    check_correlation,
    check_rpm_authorization,
    hardening_check,
    mark_leg_submitted,
    parse_rpm_output,
    pass_validation,
    start_validation,
    validate_group,
    validate_group_all,
)
from backend.ports.broker import Quote

NOW = datetime(2024, 12, 22, 10, 8, 30, tzinfo=timezone.utc)
SETTINGS = GroupSettings()

SEED_LEGS = [
    {"leg_id": "leg_001", "symbol": "EURUSD", "direction": 1, "units": 100000, "asset_class": "FX"},
    {"leg_id": "leg_002", "symbol": "GBPUSD", "direction": -1, "units": 50000, "asset_class": "FX"},
]
# margin: EURUSD buy at ask 1.1000 -> 2200; GBPUSD sell at bid 1.2692 -> 1269.2; x1.5 = 5203.8
NEEDED = D("5203.8")


def stored_one_leg_group(group: ExecutionGroup) -> ExecutionGroup:
    """A one-leg group as stored under the old 1..10 rule (new groups need MIN_LEGS; old ones still load)."""
    from dataclasses import replace

    return replace(group, legs=group.legs[:1], execution_priority=None)


def make_group(legs=None, **kwargs) -> ExecutionGroup:
    params = dict(group_id="g1", strategy_id="stat_arb_01", tenant_id="tenant-1", uid="uid-1",
                  legs=SEED_LEGS if legs is None else legs, now=NOW)
    params.update(kwargs)
    return ExecutionGroup.create(**params)


def quote(symbol, bid, ask, age_seconds=1.0) -> Quote:
    return Quote(symbol, D(bid), D(ask), NOW - timedelta(seconds=age_seconds))


def fresh_quotes(**ages) -> dict[str, Quote]:
    return {"EURUSD": quote("EURUSD", "1.0999", "1.1000", ages.get("EURUSD", 1.0)),
            "GBPUSD": quote("GBPUSD", "1.2692", "1.2693", ages.get("GBPUSD", 1.0))}


def rpm(approved_legs=None, **overrides) -> dict:
    out = {"decision_id": "rpm-42", "approved": True, "expires_at": (NOW + timedelta(seconds=60)).isoformat(),
           "approved_legs": {"leg_001": "100000", "leg_002": 50000} if approved_legs is None else approved_legs}
    out.update(overrides)
    return out


def closes_from_returns(returns: np.ndarray, start: float = 1.1) -> list[D]:
    return [D(repr(float(v))) for v in start * np.exp(np.concatenate([[0.0], np.cumsum(returns)]))]


RNG = np.random.default_rng(7)
BASE = RNG.normal(0, 0.001, 60)
NOISE = RNG.normal(0, 0.0001, 60)
INDEPENDENT = RNG.normal(0, 0.001, 60)
CO_MOVING = {"EURUSD": closes_from_returns(BASE), "GBPUSD": closes_from_returns(BASE + NOISE, 1.27)}
ANTI_MOVING = {"EURUSD": closes_from_returns(BASE), "GBPUSD": closes_from_returns(-BASE + NOISE, 1.27)}
UNRELATED = {"EURUSD": closes_from_returns(BASE), "GBPUSD": closes_from_returns(INDEPENDENT, 1.27)}


def validate(group=None, quotes=None, buying_power=D("100000"), closes=CO_MOVING, rpm_output="default", now=NOW,
             settings=SETTINGS):
    group = group or make_group()
    return validate_group(group, fresh_quotes() if quotes is None else quotes, buying_power, closes,
                          rpm() if rpm_output == "default" else rpm_output, now, settings)


def test_the_seed_pair_passes_every_gate():
    assert validate() is None


# --- market data, sanity, freshness -------------------------------------------------------


def test_missing_quote_is_market_data_unavailable():
    rejection = validate(quotes={"EURUSD": fresh_quotes()["EURUSD"]})

    assert rejection.code is RejectCode.MARKET_DATA_UNAVAILABLE
    assert "GBPUSD" in rejection.detail


@pytest.mark.parametrize("age, code", [
    (0.0, None),
    (4.999, None),
    (5.0, RejectCode.STALE_TICK),  # equal to the limit is stale
    (5.001, RejectCode.STALE_TICK),
    (60.0, RejectCode.STALE_TICK),
    (-1.5, None),  # slightly ahead of our clock: within the 2 s skew
    (-2.5, RejectCode.INVALID_QUOTE),  # from the future beyond the skew
])
def test_tick_freshness_boundary(age, code):
    rejection = validate(quotes=fresh_quotes(GBPUSD=age))

    assert (rejection.code if rejection else None) is code


@pytest.mark.parametrize("bid, ask", [("0", "1.2693"), ("1.2692", "0"), ("-1", "1.2"), ("1.2694", "1.2693")])
def test_zero_negative_or_crossed_quotes_are_invalid(bid, ask):
    quotes = {**fresh_quotes(), "GBPUSD": quote("GBPUSD", bid, ask)}

    assert validate(quotes=quotes).code is RejectCode.INVALID_QUOTE


def test_a_naive_quote_timestamp_is_invalid_not_a_crash():
    quotes = {**fresh_quotes(), "GBPUSD": Quote("GBPUSD", D("1.2692"), D("1.2693"), datetime(2024, 12, 22, 10, 8, 29))}

    assert validate(quotes=quotes).code is RejectCode.INVALID_QUOTE


def test_a_locked_quote_is_sane():
    quotes = {**fresh_quotes(), "GBPUSD": quote("GBPUSD", "1.2692", "1.2692")}

    assert validate(quotes=quotes) is None


# --- spread limit ----------------------------------------------------------------------------


@pytest.mark.parametrize("bid, ask, code", [
    ("0.9995", "1.0005", None),  # spread/mid = 0.001 exactly: at the FX limit, passes
    ("0.9994", "1.0005", RejectCode.SPREAD_TOO_WIDE),
    ("0.9990", "1.0010", RejectCode.SPREAD_TOO_WIDE),
])
def test_spread_limit_per_leg(bid, ask, code):
    quotes = {**fresh_quotes(), "EURUSD": quote("EURUSD", bid, ask)}

    rejection = validate(quotes=quotes)

    assert (rejection.code if rejection else None) is code


def test_spread_limit_is_per_asset_class():
    group = stored_one_leg_group(make_group(legs=[
        {"leg_id": "eq", "symbol": "AAPL", "direction": 1, "units": 10, "asset_class": "EQUITY"}, SEED_LEGS[1]]))
    quotes = {"AAPL": quote("AAPL", "149.70", "150.30")}  # 0.4%: too wide for FX, fine for equity
    approval = rpm({"eq": 10})

    assert validate(group=group, quotes=quotes, rpm_output=approval, closes=None) is None
    tight = GroupSettings(max_spread_pct={AssetClass.EQUITY: D("0.001")})
    assert validate(group=group, quotes=quotes, rpm_output=approval, closes=None, settings=tight).code \
        is RejectCode.SPREAD_TOO_WIDE


# --- margin ----------------------------------------------------------------------------------


@pytest.mark.parametrize("buying_power, passes", [(NEEDED, True), (NEEDED - D("0.01"), False), (D("0"), False)])
def test_combined_margin_times_cushion_must_fit_buying_power(buying_power, passes):
    rejection = validate(buying_power=buying_power)

    assert (rejection is None) is passes
    if not passes:
        assert rejection.code is RejectCode.INSUFFICIENT_MARGIN


def test_insufficient_margin_states_the_numbers():
    rejection = validate(buying_power=D("5000"))

    assert str(rejection) == "INSUFFICIENT_MARGIN: required=3469.20 cushion=1.5 available=5000.00"


def test_margin_across_asset_classes_is_combined():
    group = make_group(legs=[
        {"leg_id": "fx", "symbol": "EURUSD", "direction": 1, "units": 100000, "asset_class": "FX"},
        {"leg_id": "cr", "symbol": "BTC/USD", "direction": -1, "units": "0.5", "asset_class": "CRYPTO"},
    ])
    quotes = {"EURUSD": quote("EURUSD", "1.0999", "1.1000"), "BTC/USD": quote("BTC/USD", "40000", "40010")}
    closes = {"EURUSD": closes_from_returns(BASE), "BTC/USD": closes_from_returns(INDEPENDENT, 40000)}
    approval = rpm({"fx": 100000, "cr": "0.5"})
    needed = (D("2200") + D("10000")) * D("1.5")  # FX 2% at the ask, crypto 50% at the bid

    assert validate(group=group, quotes=quotes, closes=closes, rpm_output=approval, buying_power=needed) is None
    assert validate(group=group, quotes=quotes, closes=closes, rpm_output=approval,
                    buying_power=needed - 1).code is RejectCode.INSUFFICIENT_MARGIN


# --- correlation -----------------------------------------------------------------------------


def test_opposite_directions_on_co_moving_symbols_are_a_hedge_and_pass():
    assert check_correlation(make_group(), CO_MOVING, SETTINGS) is None


def test_same_direction_on_co_moving_symbols_doubles_one_bet():
    group = make_group(legs=[SEED_LEGS[0], {**SEED_LEGS[1], "direction": 1}])

    rejection = check_correlation(group, CO_MOVING, SETTINGS)

    assert rejection.code is RejectCode.CORRELATION_TOO_HIGH
    assert "double one bet" in rejection.detail and "leg_001" in rejection.detail


def test_opposite_directions_on_anti_moving_symbols_double_one_bet():
    rejection = check_correlation(make_group(), ANTI_MOVING, SETTINGS)

    assert rejection.code is RejectCode.CORRELATION_TOO_HIGH


def test_unrelated_symbols_pass_in_any_direction():
    same_direction = make_group(legs=[SEED_LEGS[0], {**SEED_LEGS[1], "direction": 1}])

    assert check_correlation(make_group(), UNRELATED, SETTINGS) is None
    assert check_correlation(same_direction, UNRELATED, SETTINGS) is None


def test_correlation_threshold_is_strict():
    group = make_group(legs=[SEED_LEGS[0], {**SEED_LEGS[1], "direction": 1}])
    returns = np.diff(np.log(np.array([float(c) for c in CO_MOVING["EURUSD"]])))
    other = np.diff(np.log(np.array([float(c) for c in CO_MOVING["GBPUSD"]])))
    rho = float(np.corrcoef(returns, other)[0, 1])

    at_rho = GroupSettings(correlation_threshold=D(repr(rho)) + D("1e-12"))
    below_rho = GroupSettings(correlation_threshold=D(repr(rho)) - D("1e-9"))

    assert check_correlation(group, CO_MOVING, at_rho) is None
    assert check_correlation(group, CO_MOVING, below_rho).code is RejectCode.CORRELATION_TOO_HIGH


@pytest.mark.parametrize("closes", [
    {"EURUSD": CO_MOVING["EURUSD"]},  # a symbol without closes
    {"EURUSD": CO_MOVING["EURUSD"], "GBPUSD": CO_MOVING["GBPUSD"][:20]},  # 19 returns < 20
    {"EURUSD": CO_MOVING["EURUSD"], "GBPUSD": [D("1.27")] * 40},  # constant: correlation undefined
    {"EURUSD": CO_MOVING["EURUSD"], "GBPUSD": [D("1.27"), D("0")] * 20},  # non-positive close
    {"EURUSD": CO_MOVING["EURUSD"], "GBPUSD": ["x"] * 40},
    None,
])
def test_too_little_or_bad_close_data_rejects_rather_than_passes(closes):
    rejection = check_correlation(make_group(), closes, SETTINGS)

    assert rejection.code is RejectCode.MARKET_DATA_UNAVAILABLE


def test_exactly_the_minimum_number_of_returns_is_enough():
    closes = {"EURUSD": CO_MOVING["EURUSD"][:21], "GBPUSD": UNRELATED["GBPUSD"][:21]}  # 20 returns

    assert check_correlation(make_group(), closes, SETTINGS) is None


def test_a_single_leg_group_needs_no_correlation_data():
    group = stored_one_leg_group(make_group())

    assert check_correlation(group, None, SETTINGS) is None


# --- RPM authorization ----------------------------------------------------------------------


def test_rpm_list_form_with_symbol_and_direction_is_accepted():
    approval = rpm([{"leg_id": "leg_001", "max_units": "100000", "symbol": "EURUSD", "direction": 1},
                    {"leg_id": "leg_002", "max_units": "60000"}])

    assert check_rpm_authorization(make_group(), approval, NOW) is None


@pytest.mark.parametrize("rpm_output, fragment", [
    (None, "missing"),
    (rpm(approved=False), "not approved"),
    (rpm(expires_at=NOW.isoformat()), "expired"),  # at the expiry instant it is expired
    (rpm(expires_at=(NOW - timedelta(seconds=1)).isoformat()), "expired"),
    (rpm({"leg_001": "100000"}), "does not approve leg_002"),
    (rpm({"leg_001": "99999", "leg_002": "50000"}), "units=100000 approved=99999"),
    (rpm([{"leg_id": "leg_001", "max_units": 100000, "symbol": "EURGBP"},
          {"leg_id": "leg_002", "max_units": 50000}]), "symbol=EURUSD approved=EURGBP"),
    (rpm([{"leg_id": "leg_001", "max_units": 100000, "direction": -1},
          {"leg_id": "leg_002", "max_units": 50000}]), "direction=+1 approved=-1"),
    (rpm(extra="field"), "malformed"),
    (rpm(expires_at="2024-12-22T10:09:00"), "malformed"),  # naive expiry
    (rpm(expires_at="tomorrow"), "malformed"),
    (rpm(approved="yes"), "malformed"),
    (rpm({"leg_001": "lots", "leg_002": 1}), "malformed"),
    (rpm({"leg_001": "0", "leg_002": 1}), "malformed"),
    ({"approved": True}, "malformed"),
    ("approved", "malformed"),
])
def test_rpm_not_authorized(rpm_output, fragment):
    rejection = check_rpm_authorization(make_group(), rpm_output, NOW)

    assert rejection.code is RejectCode.RPM_NOT_AUTHORIZED
    assert fragment in rejection.detail


def test_parse_rpm_output_keeps_meta_out_of_the_decision():
    auth = parse_rpm_output(rpm(meta={"score": 0.7}))

    assert auth.decision_id == "rpm-42" and auth.legs["leg_002"].max_units == D("50000")


# --- validate_group: all gates ------------------------------------------------------------


def test_validate_group_returns_the_first_rejection_and_all_of_them():
    quotes = {"EURUSD": quote("EURUSD", "1.0999", "1.1000", age_seconds=30)}

    first = validate(quotes=quotes, rpm_output=None)
    everything = validate_group_all(make_group(), quotes, D("100000"), CO_MOVING, None, NOW, SETTINGS)

    assert first.code is RejectCode.RPM_NOT_AUTHORIZED
    assert [r.code for r in everything] == [RejectCode.RPM_NOT_AUTHORIZED, RejectCode.STALE_TICK,
                                            RejectCode.MARKET_DATA_UNAVAILABLE]


def test_validate_group_never_raises_on_business_failures():
    group = make_group(legs=[SEED_LEGS[0], {**SEED_LEGS[1], "direction": 1}])
    quotes = {"EURUSD": quote("EURUSD", "1.2", "1.1"), "GBPUSD": quote("GBPUSD", "0", "0")}

    found = validate_group_all(group, quotes, D("0"), {"EURUSD": []}, {"bad": 1}, NOW, SETTINGS)

    assert {r.code for r in found} == {RejectCode.RPM_NOT_AUTHORIZED, RejectCode.INVALID_QUOTE,
                                       RejectCode.MARKET_DATA_UNAVAILABLE}


# --- hardening before each submit ---------------------------------------------------------


def validated_group() -> ExecutionGroup:
    return pass_validation(start_validation(make_group(), NOW), fresh_quotes(), NOW)


def harden(group=None, leg_id="leg_002", q="default", buying_power=D("100000"), closes=CO_MOVING, rpm_output="default",
           now=NOW + timedelta(seconds=1)):
    group = group or validated_group()
    if q == "default":
        q = Quote("GBPUSD", D("1.2692"), D("1.2693"), now - timedelta(seconds=0.5))
    return hardening_check(group, leg_id, q, buying_power, closes, rpm() if rpm_output == "default" else rpm_output,
                           now, SETTINGS)


def test_hardening_passes_on_an_unchanged_market():
    assert harden() is None


@pytest.mark.parametrize("bid, ask, code", [
    ("1.2692", "1.2695", None),  # widened by 2.0 pips: at the limit, passes
    ("1.2692", "1.26951", RejectCode.SPREAD_WIDENED),  # 2.1 pips
    ("1.2690", "1.2696", RejectCode.SPREAD_WIDENED),  # 5 pips
    ("1.26925", "1.26930", None),  # tightened
])
def test_spread_widening_is_measured_in_ticks_of_the_asset_spec(bid, ask, code):
    now = NOW + timedelta(seconds=1)

    rejection = harden(q=Quote("GBPUSD", D(bid), D(ask), now), now=now)

    assert (rejection.code if rejection else None) is code


def test_spread_widened_detail_names_the_numbers():
    now = NOW + timedelta(seconds=1)

    rejection = harden(q=Quote("GBPUSD", D("1.2690"), D("1.2696"), now), now=now)

    assert str(rejection) == ("SPREAD_WIDENED: leg_002 GBPUSD: widened=5.00 pips validated=0.0001 current=0.0006 "
                              "max=2.0")


def test_hardening_rejects_a_stale_tick_at_submit_time():
    now = NOW + timedelta(seconds=30)

    rejection = harden(q=Quote("GBPUSD", D("1.2692"), D("1.2693"), now - timedelta(seconds=5)), now=now)

    assert rejection.code is RejectCode.STALE_TICK


def test_hardening_rejects_a_missing_or_invalid_quote():
    assert harden(q=None).code is RejectCode.MARKET_DATA_UNAVAILABLE
    assert harden(q=Quote("GBPUSD", D("1.3"), D("1.2"), NOW)).code is RejectCode.INVALID_QUOTE


def test_live_margin_recheck_counts_this_leg_and_the_legs_not_yet_sent():
    group = validated_group()

    # before the first leg (the short) both legs are still to be sent
    assert harden(group, buying_power=NEEDED) is None
    assert harden(group, buying_power=NEEDED - D("0.01")).code is RejectCode.INSUFFICIENT_MARGIN
    # after the short was sent, only the long remains: 2200 x 1.5
    group = mark_leg_submitted(group, "leg_002", NOW)
    eur = Quote("EURUSD", D("1.0999"), D("1.1000"), NOW)
    assert harden(group, "leg_001", eur, buying_power=D("3300"), now=NOW) is None
    assert harden(group, "leg_001", eur, buying_power=D("3299.99"), now=NOW).code is RejectCode.INSUFFICIENT_MARGIN


def test_hardening_rechecks_correlation():
    assert harden(closes=ANTI_MOVING).code is RejectCode.CORRELATION_TOO_HIGH
    assert harden(closes={}).code is RejectCode.MARKET_DATA_UNAVAILABLE


def test_hardening_rejects_an_authorization_that_expired_since_validation():
    now = NOW + timedelta(seconds=61)

    rejection = harden(q=Quote("GBPUSD", D("1.2692"), D("1.2693"), now), now=now)

    assert rejection.code is RejectCode.RPM_NOT_AUTHORIZED and "expired" in rejection.detail


def test_hardening_needs_a_priced_group():
    with pytest.raises(ValueError):
        harden(group=make_group())


# --- settings --------------------------------------------------------------------------------


def test_settings_from_env_reads_the_seed_variables():
    settings = GroupSettings.from_env({
        "EXECUTION_ENGINE_MAX_STALE_TICK_SECONDS": "3",
        "EXECUTION_ENGINE_MAX_SPREAD_WIDENING_PIPS": "1.5",
        "EXECUTION_ENGINE_MARGIN_CUSHION": "2",
        "EXECUTION_ENGINE_CORRELATION_THRESHOLD": "0.9",
        "EXECUTION_ENGINE_MAX_SPREAD_PCT_FX": "0.002",
        "EXECUTION_ENGINE_ORDER_TIMEOUT_SECONDS": "60",  # the orchestrator's, ignored here
    })

    assert (settings.max_stale_seconds, settings.max_spread_widening_pips, settings.margin_cushion,
            settings.correlation_threshold) == (D("3"), D("1.5"), D("2"), D("0.9"))
    assert settings.spread_limit(AssetClass.FOREX) == D("0.002")
    assert GroupSettings.from_env({}) == GroupSettings()


@pytest.mark.parametrize("env, var", [
    ({"EXECUTION_ENGINE_MARGIN_CUSHION": "0.5"}, "EXECUTION_ENGINE_MARGIN_CUSHION"),
    ({"EXECUTION_ENGINE_MARGIN_CUSHION": "lots"}, "EXECUTION_ENGINE_MARGIN_CUSHION"),
    ({"EXECUTION_ENGINE_CORRELATION_THRESHOLD": "1.5"}, "EXECUTION_ENGINE_CORRELATION_THRESHOLD"),
    ({"EXECUTION_ENGINE_MAX_STALE_TICK_SECONDS": "0"}, "EXECUTION_ENGINE_MAX_STALE_TICK_SECONDS"),
    ({"EXECUTION_ENGINE_MAX_ROLLBACK_ATTEMPTS": "x"}, "EXECUTION_ENGINE_MAX_ROLLBACK_ATTEMPTS"),
    ({"EXECUTION_ENGINE_MAX_SPREAD_PCT_BONDS": "0.1"}, "EXECUTION_ENGINE_MAX_SPREAD_PCT_BONDS"),
])
def test_invalid_settings_fail_loudly_naming_the_variable(env, var):
    with pytest.raises(InvalidInput) as err:
        GroupSettings.from_env(env)
    assert err.value.field == var
