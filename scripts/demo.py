"""The main job on the embedded default: paper broker + the official Firestore emulator, no keys.

A scripted session that places, downgrades, rejects and replays intents, runs a multi-leg group,
and prints what landed in the tenant ledger and the user's history. Run it with
``bash scripts/run.sh`` (which installs everything first).
"""
from __future__ import annotations

import os
import sys
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend import logs  # noqa: E402
from backend.adapters.firestore_store import FirestoreStore, make_client  # noqa: E402
from backend.adapters.paper_broker import PaperBroker  # noqa: E402
from backend.domain.assets import AssetClass  # noqa: E402
from backend.execution.engine import ExecutionEngine, OrderIntent, RiskManager, SmartRouter  # noqa: E402
from backend.execution.intent import ExecutionContext  # noqa: E402
from backend.risk.manager import RiskLimits  # noqa: E402
from backend.settings import ExecSettings  # noqa: E402

PROJECT = "demo-exec"
TENANT, UID = "acme_corp", "user_12345"


def main() -> int:
    emulator = None
    if not os.environ.get("FIRESTORE_EMULATOR_HOST"):
        from tests.support.emulators import FirestoreEmulator

        emulator = FirestoreEmulator().start()
        os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host
        print(f"Official Firestore emulator on {emulator.host} (project {PROJECT})")
    try:
        return run_session()
    finally:
        if emulator is not None:
            emulator.stop()


def run_session() -> int:
    log_path = ROOT / "demo-events.log"
    logs.set_stream(open(log_path, "w", encoding="utf-8"))
    db = make_client(PROJECT)
    for doc in db.collection("tenants").document(TENANT).collection("ledger_trades").list_documents():
        doc.delete()  # a re-run starts from an empty ledger only for the demo tenant's view
    store = FirestoreStore(db)
    market = {"seed": 7, "symbols": {
        "AAPL": {"asset_class": "EQUITY", "mid": "190.00", "spread": "0.02"},
        "SPY": {"asset_class": "EQUITY", "mid": "520.00", "spread": "0.02"},
        "TSLA": {"asset_class": "EQUITY", "mid": "250.00", "spread": "0.40"},  # 0.16%: too wide
        "BTC/USD": {"asset_class": "CRYPTO", "mid": "65000", "spread": "10"},
        "EUR/USD": {"asset_class": "FOREX", "mid": "1.0850", "spread": "0.0002"},
        "GBP/USD": {"asset_class": "FOREX", "mid": "1.2700", "spread": "0.0002"},
    }}
    engine = ExecutionEngine(
        broker=PaperBroker(market), router=SmartRouter(max_spread_pct=0.001),
        risk=RiskManager(RiskLimits(max_position_qty=Decimal("1000"), max_daily_trades=50,
                                    max_position_by_class={AssetClass.FOREX: Decimal("500000")})),
        dry_run=False, store=store,
        # groups pass the position limit too: FX legs of 100k units need a FOREX limit of their own
        settings=ExecSettings.from_env({"EXEC_DRY_RUN": "0", "EXEC_MAX_POSITION_QTY_FOREX": "1000000"}))
    ctx = ExecutionContext(tenant_id=TENANT, uid=UID)
    run_id = os.urandom(3).hex()

    def intent(n: str, symbol: str, side: str, qty: str, asset_class: str = "EQUITY") -> OrderIntent:
        return OrderIntent(strategy_id="demo_momentum", broker_account_id="paper_main", symbol=symbol, side=side,
                           qty=qty, asset_class=asset_class, intent_id=f"demo-{run_id}-{n}")

    steps = [
        ("buy 10 AAPL (tight spread)", intent("1", "AAPL", "buy", "10")),
        ("buy 0.05 BTC/USD", intent("2", "BTC/USD", "buy", "0.05", "CRYPTO")),
        ("buy 10000 EUR/USD (FX alias, paper venue)", intent("3", "EUR/USD", "buy", "10000", "FX")),
        ("buy 5 TSLA (spread 0.16% > 0.10%)", intent("4", "TSLA", "buy", "5")),
        ("buy 5000 SPY (above the position limit)", intent("5", "SPY", "buy", "5000")),
        ("retry of the first intent (same id)", intent("1", "AAPL", "buy", "10")),
    ]
    print(f"\nScripted session, tenant {TENANT}, user {UID}\n")
    for label, order in steps:
        result = engine.execute_intent(order, ctx)
        extra = f" order={result.broker_order_id} filled={result.filled_qty}@{result.filled_avg_price}" \
            if result.status == "placed" else f" reason={result.reason}"
        print(f"  {label:45} -> {result.status}{' (replayed)' if result.replayed else ''}{extra}")

    run_group(engine, ctx, run_id)

    print(f"\nTenant ledger tenants/{TENANT}/ledger_trades (this run):")
    rows = [d.to_dict() for d in db.collection("tenants").document(TENANT).collection("ledger_trades").stream()]
    rows = [r for r in rows if run_id in r.get("trade_id", "")]
    print(f"  {'trade_id':36} {'symbol':9} {'side':4} {'qty':>12} {'status':10} {'price':>10}  reason")
    for r in sorted(rows, key=lambda r: r["trade_id"]):
        print(f"  {r['trade_id']:36} {r['symbol']:9} {r['side']:4} {r['qty']:>12} {r['status']:10} "
              f"{r.get('filled_avg_price') or '-':>10}  {r.get('reason_code') or r.get('reason') or ''}")
    hist = db.collection("users").document(UID).collection("portfolio").document("history").collection("trades")
    count = sum(1 for d in hist.stream() if run_id in d.id)
    print(f"\nUser history users/{UID}/portfolio/history/trades: {count} entries from this run")
    print(f"Structured event log: {log_path}")
    return 0


def run_group(engine: ExecutionEngine, ctx: ExecutionContext, run_id: str) -> None:
    if not hasattr(engine, "execute_group"):
        return
    from datetime import datetime, timedelta, timezone

    request = {
        "strategy_id": "stat_arb_01",
        "legs": [{"leg_id": "leg_001", "symbol": "EURUSD", "direction": 1, "units": 100000, "asset_class": "FX"},
                 {"leg_id": "leg_002", "symbol": "GBPUSD", "direction": -1, "units": 50000, "asset_class": "FX"}],
        "rpm_output": {"approved": True, "decision_id": f"rpm-{run_id}",
                       "expires_at": (datetime.now(timezone.utc) + timedelta(minutes=5)).isoformat(),
                       "approved_legs": {"leg_001": "100000", "leg_002": "50000"}},
        "max_group_slippage_pips": 10.0, "allow_partial_fills": True,
    }
    # the risk desk's approval, issued through the store (library form of POST /risk/approvals): the
    # group's rpm_output only references it by decision_id
    from backend.risk.approvals import approval_for_legs, issue_approval

    now = datetime.now(timezone.utc)
    issue_approval(engine.store, ctx.tenant_id, decision_id=f"rpm-{run_id}", for_uid=ctx.uid, issuer_uid="risk-desk",
                   legs=approval_for_legs(f"rpm-{run_id}", request["legs"]), expires_at=now + timedelta(minutes=5),
                   now=now)
    group = engine.execute_group(request, ctx, group_id=f"demo-{run_id}-g1")
    resp = group.to_api_response()
    print(f"\n  multi-leg pair EURUSD/GBPUSD -> {resp['status']} avg_slippage_pips={resp['avg_slippage_pips']} "
          f"rollback={resp['rollback_executed']}")
    for leg in resp["legs"]:
        print(f"    {leg['leg_id']} {leg['symbol']} dir={leg['direction']} {leg['status']} "
              f"{leg['filled_units']}@{leg['fill_price']} slippage={leg['slippage_pips']}")


if __name__ == "__main__":
    raise SystemExit(main())
