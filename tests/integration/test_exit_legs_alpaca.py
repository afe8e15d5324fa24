"""Issue 15 item 7 over the wire: a bracket entry placed through the real alpaca-py clients on the local
Alpaca-compatible server, its stop fires at the venue while nothing of ours runs; following the
entry's exit legs (backend/execution/exit_legs.py) records that fill once in Firestore (official
emulator) — ledger, history, lot book, exposure — and the take-profit ends canceled at the venue."""
from __future__ import annotations

from decimal import Decimal as D

import pytest

from backend.adapters.alpaca_broker import AlpacaBroker
from backend.adapters.firestore_store import FirestoreStore
from backend.domain.assets import AssetClass
from backend.domain.clock import ManualClock
from backend.execution.engine import ExecutionEngine
from backend.execution.exit_legs import follow_exit_legs
from backend.execution.intent import ExecutionContext, OrderIntent
from backend.settings import ExecSettings
from backend.tax.state import book_lots
from tests.support.alpaca_server import LocalAlpacaServer

pytestmark = pytest.mark.slow


def test_a_bracket_stop_fired_at_alpaca_reaches_the_ledger_once_and_the_take_profit_is_canceled(db):
    clock = ManualClock()
    with LocalAlpacaServer("default", clock=clock) as server:
        broker = AlpacaBroker("test-key", "test-secret", url_override=server.url, clock=clock, timeout_seconds=5,
                              time_budget_seconds=30)
        engine = ExecutionEngine(broker=broker, store=FirestoreStore(db), clock=clock, dry_run=False,
                                 settings=ExecSettings.from_env({"EXEC_FILL_WAIT_SECONDS": "0"}))
        quote = server.venue.get_latest_quote("AAPL", AssetClass.EQUITY)
        stop = (quote.bid - D("10")).quantize(D("0.01"))
        intent = OrderIntent("s1", None, "AAPL", "buy", "3", intent_id="br1", time_in_force="gtc",
                             order_class="bracket", take_profit={"limit_price": str((quote.ask + D("10")).quantize(
                                 D("0.01")))}, stop_loss={"stop_price": str(stop)})
        placed = engine.execute_intent(intent, ExecutionContext("acme", "u1"))
        assert placed.status == "placed" and placed.order_status == "filled", placed
        assert follow_exit_legs(engine, "acme", "br1") == 0  # both exits still working

        server.venue.market.set_mid("AAPL", stop - D("0.50"), AssetClass.EQUITY)  # the stop fires at the venue
        server.venue.poll()
        added, again = follow_exit_legs(engine, "acme", "br1"), follow_exit_legs(engine, "acme", "br1")

        assert (added, again) == (1, 0)
        rows = {s.id: s.to_dict() for s in db.collection("tenants/acme/ledger_trades").stream() if "--x" in s.id}
        (trade_id, row), = rows.items()
        assert row["kind"] == "fill" and row["side"] == "sell" and D(row["filled_qty"]) == 3
        assert db.document(f"users/u1/portfolio/history/trades/{trade_id}").get().exists
        assert book_lots(db.document("users/u1/tax_books/AAPL").get().to_dict()) == []
        record = db.document("tenants/acme/order_intents/br1").get().to_dict()
        assert record["exits_final"] is True
        assert sorted(leg["state"] for leg in record["exit_legs"].values()) == ["canceled", "filled"]
        assert server.venue.net_position("AAPL", AssetClass.EQUITY) == 0
