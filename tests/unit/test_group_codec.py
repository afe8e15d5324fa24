"""The group documents' declarative codec: stored documents keep their exact form.

The stored form of a group (field names, decimal strings, ISO-8601 UTC timestamps, enum values, the
derived ``slippage_pips``/``avg_slippage_pips`` keys) is a contract with every document already in
Firestore. ``GROUP_DOCUMENTS`` below were written by the hand-written ``to_dict`` this codec replaced
(issue 11); they must load and serialize back to the same document, and any generated group must
round-trip through JSON unchanged.
"""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from backend.domain.errors import InvalidInput, RejectCode, Rejection
from backend.execution import client_ids
from backend.execution import groups as g

GROUP_DOCUMENTS = json.loads((Path(__file__).parent / "data" / "group_documents_v1.json").read_text())

# ------------------------------------------------------------------------------- generated groups

ZONES = [timezone.utc, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-4))]
timestamps = st.builds(lambda dt, tz: dt.replace(tzinfo=timezone.utc).astimezone(tz),
                       st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
                       st.sampled_from(ZONES))
prices = st.decimals(min_value=D("0.0001"), max_value=D("100000"), places=4, allow_nan=False, allow_infinity=False)
rejections = st.none() | st.builds(Rejection, st.sampled_from(list(RejectCode)), st.text(max_size=30))
# (symbol, asset class as requested, units) : forex, equities, crypto with fractional units
INSTRUMENTS = [("EURUSD", "FX", st.integers(1, 10_000_000)), ("GBPUSD", "FOREX", st.integers(1, 10_000_000)),
               ("AAPL", "EQUITY", st.integers(1, 100_000)), ("MSFT", None, st.integers(1, 100_000)),
               ("BTC/USD", "CRYPTO", st.integers(1, 10_000).map(lambda n: D(n) / 1000))]


@st.composite
def recipes(draw) -> dict[str, Any]:
    """Plain data describing a group; :func:`build` turns it into a group of a given module."""
    scheme = draw(st.sampled_from(client_ids.CLIENT_ID_SCHEMES))
    group_id = draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,30}", fullmatch=True))
    picks = draw(st.permutations(range(len(INSTRUMENTS))))[:draw(st.integers(1, 4))]  # 1-leg: stored, old rule
    legs = []
    for i, pick in enumerate(picks):
        symbol, klass, units = INSTRUMENTS[pick]
        legs.append({"leg_id": f"leg_{i}", "symbol": symbol, "asset_class": klass,
                     "direction": draw(st.sampled_from([1, -1])), "units": draw(units),
                     "status": draw(st.sampled_from([s.value for s in g.LegStatus])),
                     "intended_price": draw(st.none() | prices), "validated_spread": draw(st.none() | prices),
                     "filled_units": D(draw(st.integers(0, 1000))), "fill_price": draw(st.none() | prices),
                     "rejection": draw(rejections),
                     "broker_order_id": draw(st.none() | st.text("abcdef0123456789-", min_size=1, max_size=36)),
                     **{k: draw(st.none() | timestamps) for k in
                        ("submitted_timestamp", "updated_timestamp", "completed_timestamp")}})
    rollback_orders = [{"leg": i, "seq": seq, "qty": D(draw(st.integers(1, 1000))),
                        "status": draw(st.sampled_from([s.value for s in g.RollbackStatus])),
                        "broker_order_id": draw(st.none() | st.just("b-1")),
                        "filled_qty": D(draw(st.integers(0, 1000))), "fill_price": draw(st.none() | prices),
                        "rejection": draw(rejections), "created_timestamp": draw(st.none() | timestamps),
                        "updated_timestamp": draw(st.none() | timestamps)}
                       for i in range(len(legs)) for seq in range(1, draw(st.integers(0, 2)) + 1)]
    status = draw(st.sampled_from([s.value for s in g.GroupStatus]))  # DRY_RUN included
    return {
        "scheme": scheme, "group_id": group_id, "tenant_id": draw(st.sampled_from(["tenant-1", "acme", "T 9"])),
        "strategy_id": draw(st.from_regex(r"[abc01][abc_01-]{0,11}", fullmatch=True)),
        "uid": draw(st.text("uidXYZ019", min_size=1, max_size=28)), "legs": legs,
        "rollback_orders": rollback_orders, "status": status,
        "created_timestamp": draw(timestamps), "updated_timestamp": draw(timestamps),
        "completed_timestamp": draw(st.none() | timestamps), "allow_partial_fills": draw(st.booleans()),
        "max_group_slippage_pips": draw(st.none() | st.decimals(min_value=0, max_value=100, places=2)),
        "execution_priority": draw(st.none() | st.permutations([leg["leg_id"] for leg in legs])),
        "rpm_output": draw(st.none() | st.fixed_dictionaries({
            "decision_id": st.text(min_size=1, max_size=10), "approved": st.booleans(),
            "expires_at": timestamps.map(lambda d: d.isoformat()),
            "approved_legs": st.just({leg["leg_id"]: str(leg["units"]) for leg in legs}),
            "meta": st.none() | st.dictionaries(st.text("xyz", min_size=1, max_size=3), st.integers(), max_size=2)})),
        "rejection": draw(rejections), "rollback_executed": draw(st.booleans()),
    }


def build(module: Any, recipe: dict[str, Any]) -> Any:
    """The group ``recipe`` describes, made with ``module``'s types (this one, or another version)."""
    scheme, tenant, group_id = recipe["scheme"], recipe["tenant_id"], recipe["group_id"]
    legs = []
    for spec in recipe["legs"]:
        leg = module.ExecutionLeg.create(tenant_id=tenant, group_id=group_id, leg_id=spec["leg_id"],
                                         symbol=spec["symbol"], direction=spec["direction"], units=spec["units"],
                                         asset_class=spec["asset_class"])
        fields = {k: v for k, v in spec.items() if k not in ("leg_id", "symbol", "direction", "units", "asset_class")}
        fields["status"] = module.LegStatus(spec["status"])
        legs.append(replace(leg, client_order_id=client_ids.group_leg_client_order_id(scheme, tenant, group_id,
                                                                                       spec["leg_id"]), **fields))
    orders = []
    for spec in recipe["rollback_orders"]:
        leg = legs[spec["leg"]]
        orders.append(module.RollbackOrder(
            leg_id=leg.leg_id, symbol=leg.symbol, side=leg.side.opposite, seq=spec["seq"],
            client_order_id=client_ids.group_rollback_client_order_id(scheme, tenant, group_id, leg.leg_id,
                                                                      spec["seq"]),
            **{k: v for k, v in spec.items() if k not in ("leg", "seq", "status")},
            status=module.RollbackStatus(spec["status"])))
    priority = recipe["execution_priority"]
    status = module.GroupStatus(recipe["status"])
    return module.ExecutionGroup(
        group_id=group_id, strategy_id=recipe["strategy_id"], tenant_id=tenant, uid=recipe["uid"], legs=tuple(legs),
        created_timestamp=recipe["created_timestamp"], updated_timestamp=recipe["updated_timestamp"],
        status=status, verdict=module.VERDICT_FOR_STATUS[status],
        completed_timestamp=recipe["completed_timestamp"], allow_partial_fills=recipe["allow_partial_fills"],
        max_group_slippage_pips=recipe["max_group_slippage_pips"],
        execution_priority=None if priority is None else tuple(priority), rpm_output=recipe["rpm_output"],
        rejection=recipe["rejection"], rollback_executed=recipe["rollback_executed"],
        rollback_orders=tuple(orders), client_id_scheme=scheme)


@settings(max_examples=150, deadline=None)
@given(recipes())
def test_every_group_round_trips_through_its_stored_json_form(recipe):
    group = build(g, recipe)
    stored = group.to_dict()

    loaded = g.ExecutionGroup.from_dict(json.loads(json.dumps(stored)))

    assert loaded == group
    assert loaded.to_dict() == stored


@settings(max_examples=60, deadline=None)
@given(recipes())
def test_the_stored_form_uses_strings_for_decimals_and_utc_iso_timestamps(recipe):
    stored = build(g, recipe).to_dict()

    leg = stored["legs"][0]
    assert isinstance(leg["units"], str) and isinstance(leg["filled_units"], str)
    assert D(leg["units"]) == D(recipe["legs"][0]["units"]) and "E" not in leg["units"]
    assert stored["created_timestamp"].endswith("+00:00")
    assert stored["schema_version"] == 1 and stored["client_id_scheme"] == recipe["scheme"]
    assert json.loads(json.dumps(stored)) == stored  # JSON types only: no Decimal, datetime or float


# ------------------------------------------------------------------ documents of the previous code


@pytest.mark.parametrize("name", sorted(GROUP_DOCUMENTS))
def test_documents_written_before_the_codec_load_and_serialize_back_unchanged(name):
    document = GROUP_DOCUMENTS[name]

    group = g.ExecutionGroup.from_dict(document)

    assert group.to_dict() == document


def test_a_document_without_client_id_scheme_is_a_scheme_1_group():
    legacy = {k: v for k, v in GROUP_DOCUMENTS["legacy_scheme1_filled"].items() if k != "client_id_scheme"}

    group = g.ExecutionGroup.from_dict(legacy)

    assert group.client_id_scheme == client_ids.LEGACY_CLIENT_ID_SCHEME
    assert group.to_dict() == {**legacy, "client_id_scheme": 1}


def test_a_document_without_rollback_orders_has_none():
    document = {k: v for k, v in GROUP_DOCUMENTS["seed_pending"].items() if k != "rollback_orders"}

    assert g.ExecutionGroup.from_dict(document).rollback_orders == ()
    assert g.ExecutionGroup.from_dict({**document, "rollback_orders": None}).rollback_orders == ()


# ------------------------------------------------------------------------ malformed documents


def _with(document: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(document))
    target = copy
    for key in path[:-1]:
        target = target[key]
    if value is _DROP:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return copy


_DROP = object()


@pytest.mark.parametrize("path, value, field", [
    (("legs", 0, "units"), "1e", "legs[0].units"),
    (("legs", 0, "filled_units"), None, "legs[0].filled_units"),
    (("legs", 0, "status"), "DONE", "legs[0].status"),
    (("legs", 0, "spec", "tick_size"), "x", "legs[0].spec.tick_size"),
    (("legs", 0, "spec", "extra"), "1", "legs[0].spec"),
    (("legs", 0, "rejection"), {"code": "NOPE", "detail": ""}, "legs[0].rejection.code"),
    (("legs", 0, "rejection"), {"code": "STALE_TICK", "detail": 3}, "legs[0].rejection.detail"),
    (("legs", 0, "submitted_timestamp"), "2024-01-01T00:00:00", "legs[0].submitted_timestamp"),  # naive
    (("legs", 0, "submitted_timestamp"), "yesterday", "legs[0].submitted_timestamp"),
    (("legs", 0, "asset_class"), "BONDS", "legs[0].asset_class"),
    (("legs", 0, "direction"), 2, "direction"),  # constructor invariants name the bare field
    (("legs", 0, "leg_id"), _DROP, "legs[0]"),
    (("legs",), "abc", "legs"),
    (("status",), "DONE", "status"),
    (("verdict",), "MAYBE", "verdict"),
    (("created_timestamp",), None, "created_timestamp"),
    (("allow_partial_fills",), "false", "allow_partial_fills"),
    (("rollback_executed",), 0, "rollback_executed"),
    (("max_group_slippage_pips",), "-1", "max_group_slippage_pips"),
    (("execution_priority",), "leg_001", "execution_priority"),
    (("rpm_output",), ["not", "an", "object"], "rpm_output"),
    (("client_id_scheme",), 3, "client_id_scheme"),
    (("client_id_scheme",), True, "client_id_scheme"),
    (("schema_version",), 2, "schema_version"),
    (("schema_version",), _DROP, "group"),
    (("surprise",), 1, "group"),
    (("rollback_orders",), [{"leg_id": "leg_001"}], "rollback_orders[0]"),
])
def test_malformed_documents_raise_invalid_input_naming_the_field(path, value, field):
    document = _with(GROUP_DOCUMENTS["seed_pending"], path, value)

    with pytest.raises(InvalidInput) as err:
        g.ExecutionGroup.from_dict(document)

    assert err.value.field == field


def test_adapter_private_fields_are_ignored_on_the_group_document_only():
    document = GROUP_DOCUMENTS["seed_pending"]

    assert g.ExecutionGroup.from_dict({**document, "_lease": "w1", "_version": 3}) == \
        g.ExecutionGroup.from_dict(document)
    with pytest.raises(InvalidInput) as err:
        g.ExecutionGroup.from_dict(_with(document, ("legs", 0, "_lease"), "w1"))
    assert err.value.field == "legs[0]"


def test_derived_keys_are_written_but_never_read():
    document = GROUP_DOCUMENTS["seed_filled"]

    tampered = _with(_with(document, ("avg_slippage_pips",), "999"), ("legs", 0, "slippage_pips"), "-7")

    assert g.ExecutionGroup.from_dict(tampered).to_dict() == document


# ------------------------------------------------------ library and intent-document callers


def _create(**changes: Any) -> Any:
    params = dict(group_id="g1", strategy_id="s1", tenant_id="acme", uid="u1", now=datetime(2024, 12, 22, tzinfo=timezone.utc),
                  legs=[{"leg_id": "leg_001", "symbol": "EURUSD", "direction": 1, "units": 100000, "asset_class": "FX"},
                        {"leg_id": "leg_002", "symbol": "GBPUSD", "direction": -1, "units": 50000}],
                  rpm_output={"decision_id": "r1", "approved": True, "expires_at": "2024-12-22T00:05:00+00:00",
                              "approved_legs": {"leg_001": "100000", "leg_002": "50000"}})
    params.update(changes)
    return g.ExecutionGroup.create(**params)


@pytest.mark.parametrize("rpm_output", ["", [], "approved", ["leg_001"], 1, True])
def test_create_refuses_an_rpm_output_that_is_not_an_object(rpm_output):
    # before issue 11: dict(rpm_output) raised ValueError/TypeError (a 500 for an intent document), or
    # silently stored {} for "" and []
    with pytest.raises(InvalidInput) as err:
        _create(rpm_output=rpm_output)
    assert err.value.field == "rpm_output"


@pytest.mark.parametrize("priority", [0, 1.5, True, datetime(2024, 1, 1, tzinfo=timezone.utc)])
def test_create_refuses_an_execution_priority_that_is_not_a_list(priority):
    # before issue 11: a TypeError from iterating it, not a 400 naming the field
    with pytest.raises(InvalidInput) as err:
        _create(execution_priority=priority)
    assert err.value.field == "execution_priority"


@pytest.mark.parametrize("value", ["false", 0, 1, None])
def test_create_refuses_a_non_boolean_allow_partial_fills(value):
    with pytest.raises(InvalidInput) as err:
        _create(allow_partial_fills=value)
    assert err.value.field == "allow_partial_fills"


def test_the_domain_takes_the_same_leg_fields_as_the_api_model():
    from backend.api.models import LegRequest
    from backend.execution.group.aggregate import LEG_REQUEST_OPTIONAL, LEG_REQUEST_REQUIRED

    required = {name for name, info in LegRequest.model_fields.items() if info.is_required()}

    assert set(LegRequest.model_fields) == set(LEG_REQUEST_REQUIRED + LEG_REQUEST_OPTIONAL)
    assert required == set(LEG_REQUEST_REQUIRED)
