"""Issue 16 end to end on the official Firestore emulator: the real API app and engine (paper
broker fills), the Firestore store, HTTP requests in, Firestore documents and the tax export out.

A user elects HIFO, buys, a tenant admin records a 2-for-1 split, the user sells the doubled
quantity: the sale uses the elected method, its gain is unchanged by the split and its holding
period starts at the original purchase. The same action id again changes nothing.
"""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from backend.adapters.firestore_store import FirestoreStore
from backend.adapters.paper_broker import PaperBroker
from backend.api.app import ApiApp
from backend.domain.clock import ManualClock
from backend.execution.engine import ExecutionEngine
from backend.settings import ExecSettings
from backend.tax.state import book_lots
from tests.support.api_stack import ApiStack, FakeVerifier, execute_body

pytestmark = pytest.mark.emulator


@pytest.fixture
def stack(db, quiet_logs):
    clock = ManualClock()  # 2026-01-05T14:30Z
    store = FirestoreStore(db)
    broker = PaperBroker(clock=clock)
    engine = ExecutionEngine(broker=broker, store=store, clock=clock, dry_run=False,
                             settings=ExecSettings.from_env({"EXEC_FILL_WAIT_SECONDS": "0"}))
    verifier = FakeVerifier()
    verifier.add("tok-alice", uid="alice", tenant_id="acme", role="trader")
    verifier.add("tok-admin", uid="carol", tenant_id="acme", role="tenant_admin")
    app = ApiApp.with_instances(engine=engine, verifier=verifier)
    return ApiStack(app=app, engine=engine, broker=broker, store=store, clock=clock, verifier=verifier), db


def doc(db, path):
    snap = db.document(path).get()
    return snap.to_dict() if snap.exists else None


def test_election_split_and_sale_over_http_on_firestore(stack):
    api, db = stack
    elected = api.post("/portfolio/tax-lots/election", {"method": "HIFO"}, headers={"Idempotency-Key": "e1"})
    bought = api.post("/execute", execute_body(qty="10"), headers={"Idempotency-Key": "buy-1"})
    assert elected.status == 201 and bought.status == 201, (elected.json(), bought.json())
    lot_before = book_lots(doc(db, "users/alice/tax_books/AAPL"))[0]

    split = {"action_id": "aapl-2for1", "kind": "SPLIT", "symbol": "AAPL", "effective": "2026-01-06", "ratio": "2"}
    recorded = api.post("/tenants/acme/corporate-actions", split, token="tok-admin")
    again = api.post("/tenants/acme/corporate-actions", split, token="tok-admin")
    api.clock.advance(timedelta(days=1).total_seconds())
    sold = api.post("/execute", execute_body(side="sell", qty="20"), headers={"Idempotency-Key": "sell-1"})

    assert recorded.status == 201, recorded.json()
    assert recorded.json()["books"] == {"applied": 1, "refused": 0}
    assert again.status == 200 and again.json()["replayed"] is True
    assert sold.status == 201, sold.json()
    assert doc(db, "tenants/acme/corporate_actions/aapl-2for1")["status"] == "APPLIED"
    assert [e["method"] for e in doc(db, "users/alice/config/tax")["elections"]] == ["HIFO"]
    [history_entry] = doc(db, "users/alice/tax_books/AAPL")["corporate_actions"]
    entry = history_entry["lots"][0]
    assert (Decimal(entry["qty_before"]), Decimal(entry["qty_after"])) == (Decimal("10"), Decimal("20"))

    export = api.get("/portfolio/tax-lots/export", query={"year": "2026"}).json()
    [row] = export["disposals"]
    assert Decimal(row["quantity"]) == 20 and row["lot_method"] == "HIFO"
    assert row["date_acquired"] == "01/05/2026" and row["term"] == "SHORT"
    basis = Decimal(lot_before["basis"]).quantize(Decimal("0.01"))
    assert Decimal(row["cost_basis"]) == basis  # the split moved no basis
    assert Decimal(row["gain_or_loss"]) == Decimal(row["proceeds"]) - basis
    history = [snap.to_dict() for snap in db.collection("users/alice/portfolio/history/trades").stream()]
    assert {h["side"]: h["tax"]["lot_method"] for h in history}["sell"] == "HIFO"


def test_a_back_dated_election_is_a_400_and_firestore_is_untouched(stack):
    api, db = stack

    response = api.post("/portfolio/tax-lots/election", {"method": "LIFO", "effective_at": "2026-01-01T00:00:00Z"})

    assert response.status == 400 and response.json()["error"]["field"] == "effective_at"
    assert doc(db, "users/alice/config/tax") is None


def test_a_trader_cannot_record_a_corporate_action(stack):
    api, db = stack

    response = api.post("/tenants/acme/corporate-actions", {"action_id": "x", "kind": "SPLIT", "symbol": "AAPL",
                                                             "effective": "2026-01-06", "ratio": "2"})

    assert response.status == 403
    assert doc(db, "tenants/acme/corporate_actions/x") is None
