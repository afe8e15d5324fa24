"""POST /execute/multi-leg and GET /groups/<id>.

Part 1 tests the API's translation on a hand-written group side (``RecordingGroupEngine``): the
seed-000 request reaches ``execute_group`` exactly, the response is ``to_api_response()``, keys map
to group ids, conflicts are 409, reads are tenant-scoped.

Part 2 runs the same requests on the real ``ExecutionEngine.execute_group`` / ``get_group`` (the
lead's contract). Those tests fail until the engine has them.
"""
import io
from decimal import Decimal

import pytest

from backend import logs
from backend.api.idempotency import derived_id
from backend.domain.errors import InvalidInput
from tests.support.api_stack import make_stack, multileg_body


@pytest.fixture(autouse=True)
def quiet():
    logs.set_stream(io.StringIO())
    yield
    logs.set_stream(None)


@pytest.fixture
def stack():
    return make_stack(group_engine=True)


# ------------------------------------------------------------------ the API's translation


def test_the_seed_request_reaches_execute_group_exactly_with_the_callers_identity(stack):
    response = stack.post("/execute/multi-leg", multileg_body(execution_priority=["leg_002", "leg_001"]))
    assert response.status == 201
    (request, context, group_id), = stack.engine.group_calls
    assert group_id is None and (context.tenant_id, context.uid, context.role) == ("acme", "alice", "trader")
    assert request == {
        "strategy_id": "stat_arb_01",
        "legs": [{"leg_id": "leg_001", "symbol": "EURUSD", "direction": 1, "units": Decimal("100000"),
                  "asset_class": "FX"},
                 {"leg_id": "leg_002", "symbol": "GBPUSD", "direction": -1, "units": Decimal("50000"),
                  "asset_class": "FX"}],
        "rpm_output": {"decision_id": "rpm-42", "approved": True, "expires_at": "2099-01-01T00:00:00+00:00",
                       "approved_legs": {"leg_001": 100000, "leg_002": "50000.0"}},
        "max_group_slippage_pips": Decimal("10.0"), "allow_partial_fills": True,
        "execution_priority": ["leg_002", "leg_001"],
    }
    assert all(not isinstance(v, float) for leg in request["legs"] for v in leg.values())


def test_the_response_is_the_groups_api_response_with_decimal_strings(stack):
    body = stack.post("/execute/multi-leg", multileg_body()).json()
    assert set(body) >= {"group_id", "strategy_id", "status", "legs", "avg_slippage_pips", "rollback_executed",
                         "completed_timestamp"}
    assert body["legs"][0] == {"leg_id": "leg_001", "symbol": "EURUSD", "direction": 1, "units": "100000",
                               "asset_class": "FX", "status": "FILLED", "filled_units": "100000",
                               "fill_price": "1.1005", "slippage_pips": "0.5"}


def test_an_idempotency_key_names_the_group_and_a_retry_is_a_200_replay(stack):
    first = stack.post("/execute/multi-leg", multileg_body(), headers={"Idempotency-Key": "pair-1"})
    again = stack.post("/execute/multi-leg", multileg_body(), headers={"Idempotency-Key": "pair-1"})
    assert first.status == 201 and again.status == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert first.json()["group_id"] == again.json()["group_id"] == derived_id("g", "acme", "alice", "pair-1")


@pytest.mark.parametrize("change", [
    {"strategy_id": "other"},
    {"legs": [{"leg_id": "leg_001", "symbol": "EURUSD", "direction": 1, "units": 100001, "asset_class": "FX"},
              {"leg_id": "leg_002", "symbol": "GBPUSD", "direction": -1, "units": 50000, "asset_class": "FX"}]},
    {"legs": [{"leg_id": "leg_001", "symbol": "EURUSD", "direction": -1, "units": 100000, "asset_class": "FX"},
              {"leg_id": "leg_002", "symbol": "GBPUSD", "direction": -1, "units": 50000, "asset_class": "FX"}]},
])
def test_the_same_key_with_other_legs_is_a_409(stack, change):
    stack.post("/execute/multi-leg", multileg_body(), headers={"Idempotency-Key": "pair-1"})
    response = stack.post("/execute/multi-leg", multileg_body(**change), headers={"Idempotency-Key": "pair-1"})
    assert response.status == 409 and response.json()["error"]["code"] == "IDEMPOTENCY_CONFLICT"
    assert len(stack.engine.group_calls) == 1


@pytest.mark.parametrize("change, field, reason_part", [
    ({"legs": []}, "legs", "at least 2"),
    ({"legs": [{"leg_id": "a", "symbol": "EURUSD", "direction": 1, "units": 1, "asset_class": "FX"}]}, "legs",
     "at least 2"),
    ({"legs": "EURUSD"}, "legs", "valid list"),
    ({"strategy_id": None}, "strategy_id", "field required"),
    ({"rpm_output": None}, "rpm_output", "field required"),
    ({"rpm_output": []}, "rpm_output", "valid dictionary"),
    ({"max_group_slippage_pips": None}, "max_group_slippage_pips", "field required"),
    ({"max_group_slippage_pips": -1}, "max_group_slippage_pips", "must be >= 0"),
    ({"allow_partial_fills": "yes"}, "allow_partial_fills", "valid boolean"),
    ({"allow_partial_fills": 1}, "allow_partial_fills", "valid boolean"),
    ({"execution_priority": ["leg_001"]}, "execution_priority", "every leg_id exactly once"),
    ({"group_id": "g1"}, "group_id", "unknown field"),
])
def test_group_request_errors_name_the_field(stack, change, field, reason_part):
    body = multileg_body()
    for key, value in change.items():
        if value is None:
            body.pop(key)
        else:
            body[key] = value
    response = stack.post("/execute/multi-leg", body)
    assert response.status == 400, response.json()
    err = response.json()["error"]
    assert err["field"] == field and reason_part in err["reason"], err
    assert stack.engine.group_calls == []


@pytest.mark.parametrize("leg_change, field, reason_part", [
    ({"direction": 0}, "legs[1].direction", "must be the integer 1 (buy) or -1 (sell)"),
    ({"direction": "1"}, "legs[1].direction", "must be the integer 1"),
    ({"direction": True}, "legs[1].direction", "must be the integer 1"),
    ({"direction": 1.0}, "legs[1].direction", "must be the integer 1"),
    ({"units": 0}, "legs[1].units", "must be > 0"),
    ({"units": "lots"}, "legs[1].units", "expected a number"),
    ({"asset_class": "BONDS"}, "legs[1].asset_class", "Input should be"),
    ({"asset_class": "CRYPTO"}, "legs[1].asset_class", "which is FOREX"),  # omitted: the symbol's class
    ({"leg_id": "leg_001"}, "legs", "leg_id values must be unique"),
    ({"price": 1}, "legs[1].price", "unknown field"),
])
def test_leg_errors_name_the_leg_and_field(stack, leg_change, field, reason_part):
    body = multileg_body()
    for key, value in leg_change.items():
        if value is None:
            body["legs"][1].pop(key)
        else:
            body["legs"][1][key] = value
    response = stack.post("/execute/multi-leg", body)
    assert response.status == 400
    err = response.json()["error"]
    assert err["field"] == field and reason_part in err["reason"], err


def test_invalid_input_from_the_group_executor_is_a_400_with_its_field(stack):
    stack.engine.fail_with = InvalidInput("legs[0].symbol", "no asset spec for XXXYYY")
    response = stack.post("/execute/multi-leg", multileg_body())
    assert response.status == 400 and response.json()["error"]["field"] == "legs[0].symbol"


def test_get_group_is_tenant_scoped_and_owner_or_admin_only(stack):
    group_id = stack.post("/execute/multi-leg", multileg_body()).json()["group_id"]
    assert stack.get(f"/groups/{group_id}").status == 200
    assert stack.get(f"/groups/{group_id}", token="tok-admin").status == 200
    bob = stack.get(f"/groups/{group_id}", token="tok-bob")  # a colleague: the same answer as "no such group"
    unknown = stack.get("/groups/unknown")
    assert bob.status == unknown.status == 404 and bob.json()["error"]["field"] == "group_id"
    assert bob.json()["error"]["reason"] == unknown.json()["error"]["reason"]
    assert stack.get(f"/groups/{group_id}", token="tok-zed").status == 404  # another tenant: not found
    assert stack.get("/groups/bad%20id").status == 400


# ------------------------------------------------------------- on the real engine (the lead's)


@pytest.fixture
def real():
    from tests.support.group_harness import approve

    stack = make_stack(paper=True)
    approve(stack.store, multileg_body(), tenant_id="acme", uid="alice", issuer_uid="rita")  # the risk desk's "rpm-42"
    return stack


def test_real_engine_executes_a_two_leg_fx_group(real):
    response = real.post("/execute/multi-leg", multileg_body(), headers={"Idempotency-Key": "fx-pair"})
    assert response.status == 201, response.json()
    body = response.json()
    assert body["group_id"] == derived_id("g", "acme", "alice", "fx-pair")
    assert body["strategy_id"] == "stat_arb_01" and [leg["leg_id"] for leg in body["legs"]] == ["leg_001", "leg_002"]
    assert body["status"] == "FILLED" and body["rollback_executed"] is False
    assert [leg["filled_units"] for leg in body["legs"]] == ["100000", "50000"]
    assert real.store.get(f"tenants/acme/execution_groups/{body['group_id']}") is not None


def test_real_engine_group_replays_and_reads_back(real):
    first = real.post("/execute/multi-leg", multileg_body(), headers={"Idempotency-Key": "fx-pair"})
    again = real.post("/execute/multi-leg", multileg_body(), headers={"Idempotency-Key": "fx-pair"})
    read = real.get(f"/groups/{first.json()['group_id']}")
    assert (first.status, again.status, read.status) == (201, 200, 200)
    assert again.json()["legs"] == first.json()["legs"] == read.json()["legs"]
    assert real.get("/groups/g-unknown").status == 404


@pytest.mark.parametrize("change", [{"allow_partial_fills": False}, {"max_group_slippage_pips": "11"},
                                    {"execution_priority": ["leg_002", "leg_001"]}])
def test_real_engine_same_key_with_other_group_options_is_409(real, change):
    assert real.post("/execute/multi-leg", multileg_body(), headers={"Idempotency-Key": "opt"}).status == 201
    response = real.post("/execute/multi-leg", multileg_body(**change), headers={"Idempotency-Key": "opt"})
    assert response.status == 409 and next(iter(change)) in response.json()["error"]["reason"]


def test_real_engine_malformed_leg_is_400(real):
    body = multileg_body()
    body["legs"][0]["symbol"] = "NOT/A/SYMBOL!"
    response = real.post("/execute/multi-leg", body)
    # the field is the core's (ExecutionLeg.create says "symbol"; "legs[0].symbol" would be clearer)
    assert response.status == 400 and response.json()["error"]["field"] in ("legs[0].symbol", "symbol")
    assert real.store.collection("tenants/acme/execution_groups") == {}


def test_a_group_that_is_still_working_is_202_with_its_location(stack):
    from backend.execution.groups import GroupStatus

    class Working:
        status = GroupStatus.SUBMITTING
        uid = "alice"

        def to_api_response(self):
            return {"group_id": "g-1", "strategy_id": "s", "status": self.status.value, "legs": [],
                    "avg_slippage_pips": None, "rollback_executed": False, "completed_timestamp": None}

    stack.engine.execute_group = lambda request, context, *, group_id=None: Working()
    response = stack.post("/execute/multi-leg", multileg_body())
    assert response.status == 202 and response.headers["Location"] == "/groups/g-1"
    assert response.headers["Retry-After"] == "5"
