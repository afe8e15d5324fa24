"""Multi-leg group domain: fill classification, slippage, ordering, ids, storage and API shape."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal as D

import pytest
from hypothesis import given, settings, strategies as st

from backend.domain.assets import AssetClass
from backend.domain.errors import InvalidInput, RejectCode, Rejection
from backend.execution.groups import (
    ExecutionGroup,
    ExecutionLeg,
    GroupStatus,
    LegStatus,
    RollbackOrder,
    RollbackStatus,
    VERDICT_FOR_STATUS,
    classify_fill,
    combined_margin,
    execution_order,
    leg_client_order_id,
    leg_margin,
    leg_order_request,
    rollback_client_order_id,
)
from backend.ports.broker import OrderSide, OrderType

NOW = datetime(2024, 12, 22, 10, 8, 30, 123456, tzinfo=timezone.utc)

SEED_LEGS = [
    {"leg_id": "leg_001", "symbol": "EURUSD", "direction": 1, "units": 100000, "asset_class": "FX"},
    {"leg_id": "leg_002", "symbol": "GBPUSD", "direction": -1, "units": 50000, "asset_class": "FX"},
]


# a group has at least two legs (MIN_LEGS); tests about one leg pair it with this one
OTHER_LEG = {"leg_id": "z", "symbol": "GBPUSD", "direction": -1, "units": 1000, "asset_class": "FX"}


def make_group(legs=None, **kwargs) -> ExecutionGroup:
    params = dict(group_id="group_20241222100830", strategy_id="stat_arb_01", tenant_id="tenant-1", uid="uid-1",
                  legs=SEED_LEGS if legs is None else legs, now=NOW)
    params.update(kwargs)
    return ExecutionGroup.create(**params)


def with_fills(group: ExecutionGroup, fills: dict[str, tuple[str, str, str, LegStatus]]) -> ExecutionGroup:
    """Set (intended, fill_price, filled_units, status) on legs directly (storage-level arrangement)."""
    legs = []
    for leg in group.legs:
        if leg.leg_id in fills:
            intended, price, filled, status = fills[leg.leg_id]
            leg = replace(leg, intended_price=D(intended), fill_price=D(price) if price else None,
                          filled_units=D(filled), status=status)
        legs.append(leg)
    return replace(group, legs=tuple(legs))


# --- fill ratio ----------------------------------------------------------------------------


@pytest.mark.parametrize("filled, units, expected", [
    ("100", "100", LegStatus.FILLED),
    ("99", "100", LegStatus.FILLED),  # exactly 99% is FILLED
    ("9900", "10000", LegStatus.FILLED),
    ("9899", "10000", LegStatus.PARTIALLY_FILLED),  # 98.99%
    ("98.999999", "100", LegStatus.PARTIALLY_FILLED),
    ("90", "100", LegStatus.PARTIALLY_FILLED),  # exactly 90% is PARTIALLY_FILLED
    ("9000", "10000", LegStatus.PARTIALLY_FILLED),
    ("8999", "10000", LegStatus.REJECTED),  # 89.99%
    ("10", "100", LegStatus.REJECTED),
    ("0", "100", LegStatus.REJECTED),
    ("101", "100", LegStatus.FILLED),  # an over-fill is still FILLED (and rolled back fully if needed)
    ("2.97", "3", LegStatus.FILLED),  # 0.99 exactly with a non-power-of-ten base
    ("2.969999", "3", LegStatus.PARTIALLY_FILLED),
    ("0.9", "1", LegStatus.PARTIALLY_FILLED),
    ("0.899999999999", "1", LegStatus.REJECTED),
])
def test_classify_fill_thresholds_are_exact(filled, units, expected):
    assert classify_fill(D(filled), D(units)) is expected


# --- slippage --------------------------------------------------------------------------------


def test_seed_slippage_buy_adverse_sell_favorable_average():
    group = with_fills(make_group(), {
        "leg_001": ("1.1000", "1.1005", "100000", LegStatus.FILLED),
        "leg_002": ("1.2692", "1.2695", "50000", LegStatus.FILLED),
    })

    assert group.leg("leg_001").slippage_pips == D("5")
    assert group.leg("leg_002").slippage_pips == D("-3")
    assert group.avg_slippage_pips == D("1")


@pytest.mark.parametrize("direction, intended, fill, expected", [
    (1, "1.1000", "1.1003", "3"),  # buy filled higher: adverse
    (1, "1.1000", "1.0998", "-2"),  # buy filled lower: favorable
    (-1, "1.1000", "1.0996", "4"),  # sell filled lower: adverse
    (-1, "1.1000", "1.1001", "-1"),  # sell filled higher: favorable
])
def test_slippage_is_direction_aware(direction, intended, fill, expected):
    group = make_group(legs=[{"leg_id": "a", "symbol": "EURUSD", "direction": direction, "units": 1000,
                              "asset_class": "FX"}, OTHER_LEG])
    group = with_fills(group, {"a": (intended, fill, "1000", LegStatus.FILLED)})

    assert group.leg("a").slippage_pips == D(expected)


def test_slippage_uses_the_asset_spec_tick():
    group = make_group(legs=[{"leg_id": "a", "symbol": "AAPL", "direction": 1, "units": 10, "asset_class": "EQUITY"},
                             {"leg_id": "b", "symbol": "BTC/USD", "direction": 1, "units": "0.5", "asset_class": "CRYPTO"}])
    group = with_fills(group, {"a": ("150.00", "150.05", "10", LegStatus.FILLED),
                               "b": ("40000", "40012", "0.5", LegStatus.FILLED)})

    assert group.leg("a").slippage_pips == D("5")  # 0.05 / 0.01
    assert group.leg("b").slippage_pips == D("12")  # 12 / 1.0


def test_average_slippage_ignores_legs_without_fills_and_offers_weighted_mean():
    group = make_group(legs=[
        {"leg_id": "a", "symbol": "EURUSD", "direction": 1, "units": 300, "asset_class": "FX"},
        {"leg_id": "b", "symbol": "GBPUSD", "direction": 1, "units": 100, "asset_class": "FX"},
        {"leg_id": "c", "symbol": "USDJPY", "direction": 1, "units": 100, "asset_class": "FX"},
    ])
    group = with_fills(group, {"a": ("1.1000", "1.1002", "300", LegStatus.FILLED),
                               "b": ("1.2000", "1.2006", "100", LegStatus.FILLED),
                               "c": ("150.00", None, "0", LegStatus.REJECTED)})

    assert group.avg_slippage_pips == D("4")  # (2 + 6) / 2, leg c has no fill
    assert group.weighted_avg_slippage_pips == D("3")  # (2*300 + 6*100) / 400


def test_average_slippage_is_none_without_fills_and_rounded_to_a_ten_thousandth():
    assert make_group().avg_slippage_pips is None
    group = make_group(legs=[
        {"leg_id": "a", "symbol": "EURUSD", "direction": 1, "units": 1, "asset_class": "FX"},
        {"leg_id": "b", "symbol": "GBPUSD", "direction": 1, "units": 1, "asset_class": "FX"},
        {"leg_id": "c", "symbol": "AUDUSD", "direction": 1, "units": 1, "asset_class": "FX"},
    ])
    group = with_fills(group, {"a": ("1.1000", "1.1001", "1", LegStatus.FILLED),
                               "b": ("1.1000", "1.1001", "1", LegStatus.FILLED),
                               "c": ("1.1000", "1.1000", "1", LegStatus.FILLED)})

    assert group.avg_slippage_pips == D("0.6667")


# --- the seed's API response ---------------------------------------------------------------


def test_seed_example_response_is_reproduced():
    group = with_fills(make_group(allow_partial_fills=True, max_group_slippage_pips=10.0), {
        "leg_001": ("1.1000", "1.1005", "100000", LegStatus.FILLED),
        "leg_002": ("1.2692", "1.2695", "50000", LegStatus.FILLED),
    })
    group = replace(group, status=GroupStatus.FILLED, verdict=VERDICT_FOR_STATUS[GroupStatus.FILLED],
                    completed_timestamp=NOW)

    response = group.to_api_response()

    assert response == {
        "group_id": "group_20241222100830",
        "strategy_id": "stat_arb_01",
        "status": "FILLED",
        "legs": [
            {"leg_id": "leg_001", "symbol": "EURUSD", "direction": 1, "units": "100000", "asset_class": "FX",
             "status": "FILLED", "filled_units": "100000", "fill_price": "1.1005", "slippage_pips": "5",
             "rejection": None},
            {"leg_id": "leg_002", "symbol": "GBPUSD", "direction": -1, "units": "50000", "asset_class": "FX",
             "status": "FILLED", "filled_units": "50000", "fill_price": "1.2695", "slippage_pips": "-3",
             "rejection": None},
        ],
        "avg_slippage_pips": "1.0000",
        "rollback_executed": False,
        "completed_timestamp": "2024-12-22T10:08:30.123456+00:00",
        "rejection": None,
    }
    assert '"slippage_pips": "5"' in json.dumps(response)  # one representation: decimals are strings


def test_api_response_keeps_the_request_spelling_of_the_asset_class():
    group = make_group(legs=[{"leg_id": "a", "symbol": "EURUSD", "direction": 1, "units": 1000, "asset_class": "FX"},
                             {"leg_id": "b", "symbol": "AAPL", "direction": 1, "units": "2.5", "asset_class": "equity"}])

    legs = group.to_api_response()["legs"]

    assert [leg["asset_class"] for leg in legs] == ["FX", "equity"]
    assert group.leg("a").asset_class is AssetClass.FOREX
    assert legs[1]["units"] == "2.5000" and legs[1]["fill_price"] is None and legs[1]["slippage_pips"] is None


def test_api_status_shows_the_lifecycle_while_a_position_may_be_open():
    group = make_group()
    assert group.to_api_response()["status"] == "PENDING"
    rolling = replace(group, status=GroupStatus.ROLLING_BACK, verdict=VERDICT_FOR_STATUS[GroupStatus.ROLLING_BACK])
    assert rolling.to_api_response()["status"] == "ROLLING_BACK"
    attention = replace(group, status=GroupStatus.FAILED_NEEDS_ATTENTION,
                        verdict=VERDICT_FOR_STATUS[GroupStatus.FAILED_NEEDS_ATTENTION])
    assert attention.to_api_response()["status"] == "FAILED_NEEDS_ATTENTION"
    rolled_back = replace(group, status=GroupStatus.ROLLED_BACK, verdict=VERDICT_FOR_STATUS[GroupStatus.ROLLED_BACK])
    assert rolled_back.to_api_response()["status"] == "REJECTED"


# --- ordering --------------------------------------------------------------------------------


BASKET = [
    {"leg_id": "l1", "symbol": "EURUSD", "direction": 1, "units": 1000, "asset_class": "FX"},
    {"leg_id": "s1", "symbol": "GBPUSD", "direction": -1, "units": 1000, "asset_class": "FX"},
    {"leg_id": "l2", "symbol": "AUDUSD", "direction": 1, "units": 1000, "asset_class": "FX"},
    {"leg_id": "s2", "symbol": "NZDUSD", "direction": -1, "units": 1000, "asset_class": "FX"},
]


def test_shorts_go_before_longs_stable_within_each_side():
    group = make_group(legs=BASKET)

    assert [leg.leg_id for leg in execution_order(group)] == ["s1", "s2", "l1", "l2"]


def test_execution_priority_overrides_the_default_order_fully():
    group = make_group(legs=BASKET, execution_priority=["l2", "s2", "l1", "s1"])

    assert [leg.leg_id for leg in execution_order(group)] == ["l2", "s2", "l1", "s1"]


@pytest.mark.parametrize("priority", [["l1", "s1", "l2"], ["l1", "s1", "l2", "s2", "l1"], ["l1", "s1", "l2", "x"],
                                      "l1,s1,l2,s2"])
def test_execution_priority_must_name_exactly_the_groups_legs(priority):
    with pytest.raises(InvalidInput) as err:
        make_group(legs=BASKET, execution_priority=priority)
    assert err.value.field == "execution_priority"


# --- structure -------------------------------------------------------------------------------


@pytest.mark.parametrize("legs, field", [
    ([], "legs"),
    ([SEED_LEGS[0], {**SEED_LEGS[1], "leg_id": "leg_001"}], "legs"),  # duplicate leg id
    ([SEED_LEGS[0], {**SEED_LEGS[1], "symbol": "eurusd"}], "legs"),  # same symbol twice (normalized)
    ([{**SEED_LEGS[0], "direction": 0}], "direction"),
    ([{**SEED_LEGS[0], "direction": True}], "direction"),
    ([{**SEED_LEGS[0], "direction": 1.0}], "direction"),
    ([{**SEED_LEGS[0], "units": "100000.5"}], "units"),  # FX lot is 1
    ([{**SEED_LEGS[0], "units": 0}], "units"),
    ([{**SEED_LEGS[0], "units": "NaN"}], "units"),
    ([{**SEED_LEGS[0], "asset_class": "BONDS"}], "asset_class"),
    ([{**SEED_LEGS[0], "leg_id": "a/b"}], "leg_id"),
    ([{**SEED_LEGS[0], "extra": 1}], "legs[0]"),  # unknown request fields are refused
    ([{**SEED_LEGS[0], "_extra": 1}], "legs[0]"),
    ([{k: v for k, v in SEED_LEGS[0].items() if k != "units"}], "legs[0]"),
    ([{**SEED_LEGS[0], "leg_id": f"l{i}", "symbol": s} for i, s in enumerate(
        ["EURUSD", "GBPUSD", "AUDUSD", "NZDUSD", "USDJPY", "USDCHF", "USDCAD", "EURGBP", "EURJPY", "GBPJPY", "AUDJPY"])],
     "legs"),  # 11 legs
])
def test_malformed_groups_are_invalid_input(legs, field):
    with pytest.raises(InvalidInput) as err:
        make_group(legs=legs)
    assert err.value.field == field


def test_tenant_and_ids_are_validated():
    with pytest.raises(InvalidInput):
        make_group(tenant_id="")
    with pytest.raises(InvalidInput):
        make_group(group_id="has space")
    with pytest.raises(InvalidInput):
        make_group(now=datetime(2024, 1, 1))  # naive


def test_a_leg_client_order_id_must_be_derived_from_group_and_leg():
    group = make_group()
    forged = replace(group.legs[0], client_order_id="something-else")

    with pytest.raises(InvalidInput):
        replace(group, legs=(forged, group.legs[1]))


# --- identifiers -----------------------------------------------------------------------------


def test_client_order_ids_are_deterministic_short_and_distinct():
    t = {"tenant_id": "t1"}
    ids = {leg_client_order_id("g1", "a", **t), leg_client_order_id("g1", "b", **t), leg_client_order_id("g2", "a", **t),
           leg_client_order_id("g1-a", "b", **t), leg_client_order_id("g1", "a-b", **t),
           leg_client_order_id("g1", "a", tenant_id="t2"),
           rollback_client_order_id("g1", "a", 1, **t), rollback_client_order_id("g1", "a", 2, **t),
           rollback_client_order_id("g1", "b", 1, **t), rollback_client_order_id("g1", "a", 1, tenant_id="t2")}

    assert len(ids) == 10
    assert leg_client_order_id("g1", "a", **t) == leg_client_order_id("g1", "a", **t)
    assert rollback_client_order_id("g1", "a", 1, **t) == rollback_client_order_id("g1", "a", 1, **t)
    long_id = "x" * 128
    assert len(leg_client_order_id(long_id, long_id, tenant_id=long_id, account=long_id)) <= 48
    assert len(rollback_client_order_id(long_id, long_id, 9999, tenant_id=long_id, account=long_id)) <= 48


@pytest.mark.parametrize("seq", [0, -1, 10000, True, "1"])
def test_rollback_seq_is_a_small_positive_int(seq):
    with pytest.raises(ValueError):
        rollback_client_order_id("g", "a", seq, tenant_id="t1")


def test_leg_order_request_is_a_market_order_with_the_leg_client_id():
    group = make_group()

    request = leg_order_request(group, "leg_002")

    assert request.client_order_id == leg_client_order_id("group_20241222100830", "leg_002", tenant_id="tenant-1")
    assert (request.side, request.qty, request.order_type, request.asset_class) == (
        OrderSide.SELL, D("50000"), OrderType.MARKET, AssetClass.FOREX)


# --- margin per asset class -----------------------------------------------------------------


@pytest.mark.parametrize("leg, price, expected", [
    ({"symbol": "EURUSD", "units": 100000, "asset_class": "FX"}, "1.1000", "2200"),  # 2%
    ({"symbol": "AAPL", "units": 100, "asset_class": "EQUITY"}, "150.00", "7500"),  # 50%
    ({"symbol": "CL=F", "units": 100, "asset_class": "COMMODITY"}, "80.00", "800"),  # 10%
    ({"symbol": "BTC/USD", "units": "0.5", "asset_class": "CRYPTO"}, "40000", "10000"),  # 50%
])
def test_margin_per_asset_class(leg, price, expected):
    group = make_group(legs=[{"leg_id": "a", "direction": 1, **leg}, OTHER_LEG])

    assert leg_margin(group.leg("a"), D(price)) == D(expected)


def test_combined_margin_sums_legs_without_netting_hedges():
    group = make_group(legs=[
        {"leg_id": "fx", "symbol": "EURUSD", "direction": 1, "units": 100000, "asset_class": "FX"},
        {"leg_id": "eq", "symbol": "AAPL", "direction": -1, "units": 100, "asset_class": "EQUITY"},
        {"leg_id": "co", "symbol": "CL=F", "direction": 1, "units": 100, "asset_class": "COMMODITY"},
        {"leg_id": "cr", "symbol": "BTC/USD", "direction": -1, "units": "0.5", "asset_class": "CRYPTO"},
    ])
    prices = {"fx": D("1.1000"), "eq": D("150.00"), "co": D("80.00"), "cr": D("40000")}

    total = combined_margin((leg, prices[leg.leg_id]) for leg in group.legs)

    assert total == D("2200") + D("7500") + D("800") + D("10000")


# --- storage round trip --------------------------------------------------------------------


utc_datetimes = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                             timezones=st.just(timezone.utc))
prices = st.decimals(min_value=D("0.0001"), max_value=D("100000"), places=4, allow_nan=False, allow_infinity=False)
quantities = st.integers(min_value=1, max_value=10_000_000).map(D)
rejections = st.none() | st.builds(Rejection, st.sampled_from(list(RejectCode)), st.text(max_size=40))
SYMBOLS = ["EURUSD", "GBPUSD", "AUDUSD", "USDJPY", "NZDUSD"]


@st.composite
def legs_strategy(draw, group_id: str):
    count = draw(st.integers(min_value=1, max_value=4))
    symbols = draw(st.permutations(SYMBOLS))[:count]
    legs = []
    for i, symbol in enumerate(symbols):
        leg = ExecutionLeg.create(tenant_id="tenant-1", group_id=group_id, leg_id=f"leg_{i}", symbol=symbol,
                                  direction=draw(st.sampled_from([1, -1])), units=draw(quantities),
                                  asset_class=draw(st.sampled_from(["FX", "fx", "FOREX"])))
        filled = draw(st.integers(min_value=0, max_value=int(leg.units) + 5).map(D))
        leg = replace(
            leg,
            status=draw(st.sampled_from(list(LegStatus))),
            intended_price=draw(st.none() | prices),
            validated_spread=draw(st.none() | prices),
            filled_units=filled,
            fill_price=draw(st.none() | prices),
            rejection=draw(rejections),
            broker_order_id=draw(st.none() | st.text(alphabet="abcdef0123456789-", min_size=1, max_size=36)),
            submitted_timestamp=draw(st.none() | utc_datetimes),
            updated_timestamp=draw(st.none() | utc_datetimes),
            completed_timestamp=draw(st.none() | utc_datetimes),
        )
        legs.append(leg)
    return tuple(legs)


@st.composite
def groups_strategy(draw):
    group_id = draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,30}", fullmatch=True))
    legs = draw(legs_strategy(group_id))
    status = draw(st.sampled_from(list(GroupStatus)))
    rollback_orders = []
    for leg in legs:
        for seq in range(1, draw(st.integers(min_value=0, max_value=2)) + 1):
            rollback_orders.append(RollbackOrder(
                leg_id=leg.leg_id, symbol=leg.symbol, side=leg.side.opposite, qty=draw(quantities), seq=seq,
                client_order_id=rollback_client_order_id(group_id, leg.leg_id, seq, tenant_id="tenant-1"),
                status=draw(st.sampled_from(list(RollbackStatus))),
                broker_order_id=draw(st.none() | st.just("b-1")), filled_qty=draw(quantities | st.just(D(0))),
                fill_price=draw(st.none() | prices), rejection=draw(rejections),
                created_timestamp=draw(st.none() | utc_datetimes), updated_timestamp=draw(st.none() | utc_datetimes)))
    priority = draw(st.none() | st.permutations([leg.leg_id for leg in legs]).map(tuple))
    rpm = draw(st.none() | st.fixed_dictionaries({
        "decision_id": st.text(min_size=1, max_size=10), "approved": st.booleans(),
        "expires_at": utc_datetimes.map(lambda d: d.isoformat()),
        "approved_legs": st.just({leg.leg_id: str(leg.units) for leg in legs})}))
    return ExecutionGroup(
        group_id=group_id, strategy_id=draw(st.from_regex(r"[abc01][abc_01]{0,11}", fullmatch=True)),
        tenant_id="tenant-1", uid=draw(st.text(alphabet="uidXYZ019", min_size=1, max_size=28)), legs=legs,
        created_timestamp=draw(utc_datetimes), updated_timestamp=draw(utc_datetimes), status=status,
        verdict=VERDICT_FOR_STATUS[status], completed_timestamp=draw(st.none() | utc_datetimes),
        allow_partial_fills=draw(st.booleans()),
        max_group_slippage_pips=draw(st.none() | st.decimals(min_value=0, max_value=100, places=2)),
        execution_priority=priority, rpm_output=rpm, rejection=draw(rejections),
        rollback_executed=draw(st.booleans()), rollback_orders=tuple(rollback_orders))


@settings(max_examples=60, deadline=None)
@given(groups_strategy())
def test_to_dict_from_dict_round_trips_exactly(group):
    stored = group.to_dict()
    wire = json.loads(json.dumps(stored))  # only JSON types: strings for Decimals and datetimes

    loaded = ExecutionGroup.from_dict(wire)

    assert loaded == group
    assert loaded.to_dict() == stored
    assert all(isinstance(leg["units"], str) for leg in stored["legs"])


def test_from_dict_refuses_unknown_fields_but_tolerates_adapter_private_ones():
    stored = make_group().to_dict()

    assert ExecutionGroup.from_dict({**stored, "_lease": "worker-1"}) == make_group()
    with pytest.raises(InvalidInput):
        ExecutionGroup.from_dict({**stored, "surprise": 1})
    with pytest.raises(InvalidInput):
        ExecutionGroup.from_dict({**stored, "legs": [{**stored["legs"][0], "surprise": 1}, stored["legs"][1]]})
    with pytest.raises(InvalidInput):
        ExecutionGroup.from_dict({**stored, "schema_version": 99})


def test_from_dict_refuses_a_verdict_inconsistent_with_the_status():
    stored = make_group().to_dict()

    with pytest.raises(InvalidInput):
        ExecutionGroup.from_dict({**stored, "status": "FILLED", "verdict": None})


def test_stored_form_has_no_floats():
    group = with_fills(make_group(max_group_slippage_pips=10.0), {
        "leg_001": ("1.1000", "1.1005", "100000", LegStatus.FILLED)})

    def walk(value):
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        else:
            assert not isinstance(value, float)

    walk(group.to_dict())
    assert group.to_dict()["max_group_slippage_pips"] == "10.0"
    assert group.to_dict()["legs"][0]["slippage_pips"] == "5"
