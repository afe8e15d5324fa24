"""Issue 15: the owner cancels and moves a FILLED group leg's protective stop over HTTP.

The real ApiApp and ExecutionEngine on the official Firestore emulator (FirestoreStore), FakeVerifier
tokens for the callers (alice and bob of tenant acme, zed of tenant globex). Paper: the simulated venue
in-process (a subclass that counts cancel/replace calls and can lose one replace answer). Alpaca: the
real alpaca-py clients against the local Alpaca-compatible server. After each paper test the ledger's
net position per symbol equals the venue's.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from decimal import Decimal as D
from typing import Any

import pytest

from backend.adapters.firestore_store import FirestoreStore
from backend.adapters.paper_broker import PaperBroker
from backend.adapters.sim_venue import SimulatedVenue
from backend.api.app import ApiApp
from backend.domain.clock import ManualClock
from backend.domain.orders import BrokerError, BrokerErrorCode
from backend.execution.engine import ExecutionEngine, RiskManager
from backend.risk.manager import RiskLimits
from backend.execution.sweeper import Sweeper
from backend.settings import ExecSettings
from tests.support.api_stack import ApiStack, FakeVerifier, multileg_body
from tests.support.group_harness import approve

pytestmark = pytest.mark.emulator

STOP = "1.0500"  # leg_001 long EURUSD 100k; the paper EURUSD quote is 1.0849 / 1.0851


def RISK() -> RiskManager:  # noqa: N802 - a factory of the test limits
    return RiskManager(RiskLimits(max_position_qty=D("1000000")))


class CountingVenue(SimulatedVenue):
    """The simulated venue, counting cancel/replace calls; ``lose_replace`` answers the next replace
    with a lost connection after the venue made it (a real venue's timeout)."""

    def __init__(self, *args: Any, **kw: Any):
        super().__init__(*args, **kw)
        self.calls: Counter[str] = Counter()
        self.lose_replace = False

    def cancel_order(self, broker_order_id: str, **kw: Any):  # noqa: ANN201
        self.calls["cancel_order"] += 1
        return super().cancel_order(broker_order_id, **kw)

    def replace_order(self, broker_order_id: str, request: Any, **kw: Any):  # noqa: ANN201
        self.calls["replace_order"] += 1
        order = super().replace_order(broker_order_id, request, **kw)
        if self.lose_replace:
            self.lose_replace = False
            raise BrokerError(BrokerErrorCode.UNAVAILABLE, "replace_order: connection lost after the venue acted")
        return order


@pytest.fixture
def paper(db, quiet_logs):
    clock = ManualClock()
    venue = CountingVenue(clock=clock)
    broker = PaperBroker(venue=venue)
    store = FirestoreStore(db)
    engine = ExecutionEngine(broker=broker, store=store, clock=clock, dry_run=False, risk=RISK(),
                             settings=ExecSettings.from_env({"EXEC_FILL_WAIT_SECONDS": "0"}))
    verifier = FakeVerifier()
    verifier.add("tok-alice", uid="alice", tenant_id="acme", role="trader")
    verifier.add("tok-bob", uid="bob", tenant_id="acme", role="trader")
    verifier.add("tok-zed", uid="alice", tenant_id="globex", role="trader")  # another tenant, even the same uid
    app = ApiApp.with_instances(engine=engine, verifier=verifier)
    stack = ApiStack(app=app, engine=engine, broker=broker, store=store, clock=clock, verifier=verifier)
    yield stack, venue, db
    assert ledger_net(db) == venue_net(venue), "ledger and venue positions differ"


def place_group(stack: ApiStack, key: str = "grp-1", stop: str = STOP, token: str = "tok-alice") -> str:
    body = multileg_body()
    body["legs"][0]["stop_loss"] = {"stop_price": stop}
    approve(stack.store, body, tenant_id="acme", uid="alice", issuer_uid="rita")
    response = stack.post("/execute/multi-leg", body, headers={"Idempotency-Key": key}, token=token)
    assert response.status == 201 and response.json()["status"] == "FILLED", response.json().get("rejection")
    assert response.json()["legs"][0]["stop_loss"]["status"] == "WORKING"
    return response.json()["group_id"]


def stop_path(group_id: str, leg_id: str = "leg_001") -> str:
    return f"/groups/{group_id}/legs/{leg_id}/stop"


def working_stops(venue: SimulatedVenue) -> list[Any]:
    return [o for o in venue.orders() if o.client_order_id.startswith(("mlst-", "mlsr-")) and not o.state.is_final]


def ledger(db, group_id: str) -> dict[str, dict[str, Any]]:
    return {s.id: s.to_dict() for s in db.collection("tenants/acme/ledger_trades").stream() if s.id.startswith(group_id)}


def ledger_net(db) -> dict[str, D]:
    net: dict[str, D] = defaultdict(D)
    for snap in db.collection("tenants/acme/ledger_trades").stream():
        row = snap.to_dict()
        if row.get("kind") in ("group_fill", "rollback_fill", "fill") and row.get("filled_qty"):
            symbol = row["symbol"].replace("/", "")
            net[symbol] += (1 if row["side"] == "buy" else -1) * D(row["filled_qty"])
    return {s: q for s, q in net.items() if q}


def venue_net(venue: SimulatedVenue) -> dict[str, D]:
    net: dict[str, D] = defaultdict(D)
    for fill in venue.fills():
        net[fill.symbol.replace("/", "")] += fill.side.direction * fill.qty
    return {s: q for s, q in net.items() if q}


def group_doc(db, group_id: str) -> dict[str, Any]:
    return db.document(f"tenants/acme/execution_groups/{group_id}").get().to_dict()


# ------------------------------------------------------------------------------------ cancel
def test_cancel_leaves_no_working_stop_records_one_cancel_row_and_a_repeat_answers_without_the_venue(paper):
    stack, venue, db = paper
    group_id = place_group(stack)
    [stop_order] = working_stops(venue)

    first = stack.request("DELETE", stop_path(group_id))
    again = stack.request("DELETE", stop_path(group_id))

    assert first.status == 200 and first.json()["outcome"] == "canceled", first.json()
    assert first.json()["stop"]["status"] == "CANCELED" and first.json()["replayed"] is False
    assert again.status == 200 and again.json()["replayed"] is True and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["stop"] == first.json()["stop"]
    assert venue.calls["cancel_order"] == 1  # the repeat never reached the venue
    assert working_stops(venue) == [] and venue.peek_order(stop_order.broker_order_id).state.value == "canceled"
    rows = ledger(db, group_id)
    cancel = rows[f"{group_id}--leg_001--stop--cancel"]
    assert [r["kind"] for r in rows.values()].count("cancel") == 1
    assert (cancel["group_id"], cancel["leg_id"], cancel["broker_order_id"], cancel["order_status"], cancel["qty"],
            cancel["side"], cancel["order_type"], cancel["status"]) == (
        group_id, "leg_001", stop_order.broker_order_id, "canceled", "100000", "sell", "stop", "canceled")
    doc = group_doc(db, group_id)
    assert doc["_final"] is True and f"{group_id}--leg_001--stop--cancel" in doc["_ledger_written"]
    assert doc["legs"][0]["stop_loss"]["cancel_requested_at"]  # the request was stored on the group
    shown = stack.get(f"/groups/{group_id}").json()["legs"][0]["stop_loss"]
    assert shown["status"] == "CANCELED" and shown["cancel"]["ledger_id"] == f"{group_id}--leg_001--stop--cancel"


def test_a_stop_that_filled_before_the_cancel_reached_the_venue_is_not_cancelable_and_its_fill_is_recorded_once(paper):
    stack, venue, db = paper
    group_id = place_group(stack)
    venue.market.set_mid("EUR/USD", D("1.0450"))  # the price went through the stop; nothing of ours ran

    first = stack.request("DELETE", stop_path(group_id))
    again = stack.request("DELETE", stop_path(group_id))
    Sweeper(stack.engine).sweep()

    assert first.status == 409 and first.json()["error"]["code"] == "STOP_NOT_CANCELABLE", first.json()
    assert first.json()["stop"]["status"] == "FILLED" and first.json()["stop"]["filled_qty"] == "100000"
    assert again.status == 409 and again.json()["error"]["code"] == "STOP_NOT_CANCELABLE"
    rows = ledger(db, group_id)
    fill = rows[f"{group_id}--leg_001--stop"]
    assert fill["kind"] == "fill" and D(fill["filled_qty"]) == D("100000")
    assert not any(r["kind"] == "cancel" for r in rows.values())
    assert venue.net_position("EUR/USD") == 0  # ledger = venue (checked for every symbol by the fixture)


def test_a_cancel_the_venue_cannot_confirm_is_202_pending_and_the_sweeper_completes_it_once(paper):
    stack, venue, db = paper
    group_id = place_group(stack)
    venue.inject_fault("cancel_order", "unavailable", count=1)

    pending = stack.request("DELETE", stop_path(group_id))
    stored = group_doc(db, group_id)
    Sweeper(stack.engine).sweep()
    Sweeper(stack.engine).sweep()
    done = stack.request("DELETE", stop_path(group_id))

    assert pending.status == 202 and pending.json()["outcome"] == "pending", pending.json()
    assert stored["legs"][0]["stop_loss"]["cancel_requested_at"] and stored["_final"] is False
    assert done.status == 200 and done.json()["outcome"] == "canceled" and done.json()["replayed"] is True
    assert working_stops(venue) == []
    assert [r["kind"] for r in ledger(db, group_id).values()].count("cancel") == 1
    assert group_doc(db, group_id)["_final"] is True


# ------------------------------------------------------------------------------------ replace
def test_replace_keeps_one_working_stop_at_the_new_price_links_old_and_new_and_replays_by_key(paper):
    stack, venue, db = paper
    group_id = place_group(stack)
    [old] = working_stops(venue)

    moved = stack.request("PATCH", stop_path(group_id), {"stop_price": "1.0600"}, headers={"Idempotency-Key": "mv-1"})
    replay = stack.request("PATCH", stop_path(group_id), {"stop_price": "1.0600"}, headers={"Idempotency-Key": "mv-1"})
    reused = stack.request("PATCH", stop_path(group_id), {"stop_price": "1.0700"}, headers={"Idempotency-Key": "mv-1"})

    assert moved.status == 200 and moved.json()["outcome"] == "replaced", moved.json()
    [new] = working_stops(venue)  # one working stop at the venue
    assert new.stop_price == D("1.0600") and new.qty == D("100000") and new.broker_order_id != old.broker_order_id
    assert venue.peek_order(old.broker_order_id).replaced_by == new.broker_order_id
    assert moved.json()["stop"]["broker_order_id"] == new.broker_order_id
    assert replay.status == 200 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["stop"] == moved.json()["stop"]
    assert reused.status == 409 and reused.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert venue.calls["replace_order"] == 1
    row = ledger(db, group_id)[f"{group_id}--leg_001--stop--r1"]
    assert (row["kind"], row["broker_order_id"], row["replaces"]["broker_order_id"], row["replaces"]["stop_price"]) == (
        "replace", new.broker_order_id, old.broker_order_id, "1.0500")

    venue.market.set_mid("EUR/USD", D("1.0550"))  # through the new stop (not the old one)
    Sweeper(stack.engine).sweep()

    fill = ledger(db, group_id)[f"{group_id}--leg_001--stop"]
    assert fill["broker_order_id"] == new.broker_order_id and D(fill["filled_qty"]) == D("100000")
    exposure = {s.id: s.to_dict() for s in db.collection("tenants/acme/exposure").stream() if "EUR" in s.id}
    assert [d.get("position_nanos", 0) for d in exposure.values()] == [0]


def test_a_lost_replace_answer_is_found_by_the_new_client_id_on_the_retry_with_the_same_key(paper):
    stack, venue, db = paper
    group_id = place_group(stack)
    venue.lose_replace = True

    lost = stack.request("PATCH", stop_path(group_id), {"stop_price": "1.0600"}, headers={"Idempotency-Key": "mv-2"})
    marker = group_doc(db, group_id)["legs"][0]["stop_loss"]["pending_replace"]
    retry = stack.request("PATCH", stop_path(group_id), {"stop_price": "1.0600"}, headers={"Idempotency-Key": "mv-2"})

    assert lost.status == 503 and lost.json()["error"]["code"] == "BROKER_UNAVAILABLE", lost.json()
    assert marker["client_order_id"].startswith("mlsr-")  # persisted before the call
    assert retry.status == 200 and retry.json()["outcome"] == "replaced", retry.json()
    [new] = working_stops(venue)
    assert new.client_order_id == marker["client_order_id"] and new.stop_price == D("1.0600")
    assert venue.calls["replace_order"] == 1  # found, not replaced twice
    assert [r["kind"] for r in ledger(db, group_id).values()].count("replace") == 1


@pytest.mark.parametrize("body, field, code", [
    ({"stop_price": "1.05005"}, "stop_price", "VALIDATION_ERROR"),  # off the 0.0001 tick: never rounded
    ({"stop_price": "1.0900"}, "stop_price", "STOP_PRICE_WRONG_SIDE"),  # above the bid of a long
    ({"stop_price": "-1"}, "stop_price", None),
    ({"stop_price": "1.06", "limit_price": "1.05"}, "limit_price", None),
    ({}, "stop_price", None),
])
def test_a_bad_stop_price_is_a_400_naming_the_field_and_nothing_changes(paper, body, field, code):
    stack, venue, db = paper
    group_id = place_group(stack)
    before = group_doc(db, group_id)["legs"][0]["stop_loss"]

    response = stack.request("PATCH", stop_path(group_id), body, headers={"Idempotency-Key": "bad-1"})

    assert response.status == 400 and response.json()["error"]["field"] == field, response.json()
    if code is not None:
        assert response.json()["error"]["code"] == code
    assert venue.calls["replace_order"] == 0
    assert group_doc(db, group_id)["legs"][0]["stop_loss"] == before


def test_a_replace_without_an_idempotency_key_is_a_400(paper):
    stack, venue, _ = paper
    group_id = place_group(stack)

    response = stack.request("PATCH", stop_path(group_id), {"stop_price": "1.0600"})

    assert response.status == 400 and response.json()["error"]["field"] == "Idempotency-Key"
    assert venue.calls["replace_order"] == 0


# ------------------------------------------------------------------------------ who and when
def test_another_user_and_another_tenant_with_the_same_group_id_get_the_404_of_a_missing_group(paper):
    stack, venue, db = paper
    group_id = place_group(stack)

    answers = [stack.request("DELETE", stop_path(group_id), token=token) for token in ("tok-bob", "tok-zed")]
    answers += [stack.request("PATCH", stop_path(group_id), {"stop_price": "1.0600"}, token=token,
                              headers={"Idempotency-Key": "x"}) for token in ("tok-bob", "tok-zed")]
    missing = stack.request("DELETE", stop_path("g-does-not-exist"))

    assert [r.status for r in answers] == [404] * 4
    strip = [{k: v for k, v in r.json()["error"].items() if k != "request_id"} for r in answers + [missing]]
    assert all(s == strip[-1] for s in strip)
    assert venue.calls == Counter() and len(working_stops(venue)) == 1
    assert stack.request("DELETE", stop_path(group_id, "leg_002")).json()["error"]["field"] == "leg_id"  # no stop
    assert stack.request("DELETE", stop_path(group_id, "leg_404")).status == 404


def test_under_dry_run_a_cancel_is_allowed_and_a_replace_is_refused(paper):
    stack, venue, db = paper
    group_id = place_group(stack)
    stack.engine.dry_run = True

    refused = stack.request("PATCH", stop_path(group_id), {"stop_price": "1.0600"}, headers={"Idempotency-Key": "d1"})
    canceled = stack.request("DELETE", stop_path(group_id))

    assert refused.status == 409 and refused.json()["error"]["code"] == "DRY_RUN"
    assert canceled.status == 200 and canceled.json()["outcome"] == "canceled"
    assert venue.calls["replace_order"] == 0 and working_stops(venue) == []


def test_while_the_tenant_is_halted_the_owner_may_still_move_and_cancel_a_stop(paper):
    stack, venue, db = paper
    group_id = place_group(stack)
    db.document("tenants/acme/config/risk").set({"trading_state": "halted"})

    moved = stack.request("PATCH", stop_path(group_id), {"stop_price": "1.0600"}, headers={"Idempotency-Key": "h1"})
    canceled = stack.request("DELETE", stop_path(group_id))

    assert moved.status == 200 and canceled.status == 200, (moved.json(), canceled.json())
    assert working_stops(venue) == []


def test_the_sweeper_does_not_rewrite_the_group_while_its_stop_works_unchanged(paper):
    stack, venue, db = paper
    group_id = place_group(stack)
    ref = db.document(f"tenants/acme/execution_groups/{group_id}")
    before = ref.get().update_time

    Sweeper(stack.engine).sweep()
    Sweeper(stack.engine).sweep()

    assert ref.get().update_time == before
    venue.market.set_mid("EUR/USD", D("1.0450"))  # it moves: the next sweep records it
    Sweeper(stack.engine).sweep()
    assert ref.get().to_dict()["legs"][0]["stop_loss"]["status"] == "FILLED"


# ------------------------------------------------------------------------------------ Alpaca
@pytest.mark.slow
def test_on_alpaca_a_stop_is_moved_by_the_venues_replace_then_canceled_over_http(db, quiet_logs):
    from backend.adapters.alpaca_broker import AlpacaBroker
    from backend.domain.assets import AssetClass
    from tests.support.alpaca_server import LocalAlpacaServer

    clock = ManualClock()
    with LocalAlpacaServer("default", clock=clock) as server:
        broker = AlpacaBroker("test-key", "test-secret", url_override=server.url, clock=clock, timeout_seconds=5,
                              time_budget_seconds=30)
        engine = ExecutionEngine(broker=broker, store=FirestoreStore(db), clock=clock, dry_run=False, risk=RISK(),
                                 settings=ExecSettings.from_env({"EXEC_FILL_WAIT_SECONDS": "0"}))
        verifier = FakeVerifier()
        verifier.add("tok-alice", uid="alice", tenant_id="acme", role="trader")
        stack = ApiStack(app=ApiApp.with_instances(engine=engine, verifier=verifier), engine=engine, broker=broker,
                         store=engine.store, clock=clock, verifier=verifier)
        aapl = server.venue.get_latest_quote("AAPL", AssetClass.EQUITY)
        spy = server.venue.get_latest_quote("SPY", AssetClass.EQUITY)
        stop = (aapl.bid - D("10")).quantize(D("0.01"))
        body = multileg_body(legs=[
            {"leg_id": "leg_001", "symbol": "AAPL", "direction": 1, "units": 3, "asset_class": "EQUITY",
             "stop_loss": {"stop_price": str(stop)}},
            {"leg_id": "leg_002", "symbol": "SPY", "direction": -1, "units": 1, "asset_class": "EQUITY"}],
            rpm_output={"decision_id": "rpm-aapl", "approved": True, "expires_at": "2099-01-01T00:00:00+00:00",
                        "approved_legs": {"leg_001": 3, "leg_002": 1}}, max_group_slippage_pips=1000.0)
        approve(engine.store, body, tenant_id="acme", uid="alice", issuer_uid="rita")
        placed = stack.post("/execute/multi-leg", body, headers={"Idempotency-Key": "alp-1"})
        assert placed.status == 201 and placed.json()["status"] == "FILLED", placed.json()
        group_id = placed.json()["group_id"]
        old_id = placed.json()["legs"][0]["stop_loss"]["broker_order_id"]
        assert spy.bid > 0

        new_price = str(stop + D("1.00"))
        moved = stack.request("PATCH", stop_path(group_id), {"stop_price": new_price},
                              headers={"Idempotency-Key": "alp-mv"})
        assert moved.status == 200 and moved.json()["outcome"] == "replaced", moved.json()
        new_id = moved.json()["stop"]["broker_order_id"]
        working = [o for o in server.venue.orders() if o.symbol == "AAPL" and not o.state.is_final]
        assert [(o.broker_order_id, o.stop_price) for o in working] == [(new_id, D(new_price))]
        assert server.venue.peek_order(old_id).replaced_by == new_id

        canceled = stack.request("DELETE", stop_path(group_id))
        if canceled.status == 202:  # the venue confirms asynchronously: a retry completes it
            canceled = stack.request("DELETE", stop_path(group_id))
        assert canceled.status == 200 and canceled.json()["outcome"] == "canceled", canceled.json()
        assert [o for o in server.venue.orders() if o.symbol == "AAPL" and not o.state.is_final] == []
        rows = ledger(db, group_id)
        assert rows[f"{group_id}--leg_001--stop--r1"]["replaces"]["broker_order_id"] == old_id
        assert rows[f"{group_id}--leg_001--stop--cancel"]["broker_order_id"] == new_id


def test_a_replace_racing_dry_run_sends_nothing_and_drops_its_marker(paper, monkeypatch):
    """Dry run switched on after the replace's check, before the venue call: the venue guard
    (``replace_order`` is a venue write) refuses it, nothing is sent, the marker is gone."""
    from backend.execution.group.stop_management import StopManager

    stack, venue, db = paper
    group_id = place_group(stack)
    original = StopManager._check_price

    def flip_then_check(*args, **kwargs):
        stack.engine.dry_run = True  # the operator switches dry run on while the request runs
        return original(*args, **kwargs)

    monkeypatch.setattr(StopManager, "_check_price", staticmethod(flip_then_check))
    refused = stack.request("PATCH", stop_path(group_id), {"stop_price": "1.0600"}, headers={"Idempotency-Key": "r1"})

    assert refused.status == 409 and refused.json()["error"]["code"] == "DRY_RUN", refused.json()
    assert venue.calls["replace_order"] == 0
    view = stack.get(f"/groups/{group_id}").json()
    leg = next(leg for leg in view["legs"] if leg["leg_id"] == "leg_001")
    assert not leg["stop_loss"].get("pending_replace"), leg["stop_loss"]
    assert len(working_stops(venue)) == 1  # the stop still protects the leg
