"""nautilus_trader contender of the decision benchmark, run by bench/decision.py in bench/.venv.

It lives in its own interpreter because nautilus-trader (<= 1.221 on Python 3.11) requires
pandas < 3 while the project's venv has pandas 3 (through alpaca-py): see bench/README.md.
It imports nothing from the project, only nautilus_trader, pydantic and ``intent_model``.

Protocol: one JSON object per line on stdin, one answer per line on the original stdout (fd 1
is pointed at stderr so no library print can corrupt the channel).
    {"cmd": "measure", "intents": [...]}   -> {"ns": [...], "accepted": k, "denied": j, "reasons": [...]}
    {"cmd": "pydantic", "intents": [...]}  -> {"ns": [...]}
    {"cmd": "quit"}

The nautilus path per intent, from the JSON dict: instrument lookup by symbol, quantity made by
the instrument (precision checked), ``OrderFactory.market``, ``SubmitOrder`` into the
``RiskEngine`` (pre-trade checks: price/quantity precision and limits, notional against the free
cash balance of a CASH account at the last quote, trading state, submit-rate throttler) and on to
the ``ExecutionEngine``, which caches the order and routes it to a mock execution client — the
same wiring nautilus' own risk-engine tests use (TestRiskEngineWithCashAccount).
"""
from __future__ import annotations

import json
import os
import sys
import time
from decimal import Decimal

_proto = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)
sys.stdout = sys.stderr

from intent_model import IntentModel  # noqa: E402  (bench/ is sys.path[0])
from nautilus_trader.cache.cache import Cache  # noqa: E402
from nautilus_trader.common.component import LiveClock, MessageBus  # noqa: E402
from nautilus_trader.common.factories import OrderFactory  # noqa: E402
from nautilus_trader.config import ExecEngineConfig, RiskEngineConfig  # noqa: E402
from nautilus_trader.core.uuid import UUID4  # noqa: E402
from nautilus_trader.execution.engine import ExecutionEngine  # noqa: E402
from nautilus_trader.execution.messages import SubmitOrder  # noqa: E402
from nautilus_trader.model.currencies import USD  # noqa: E402
from nautilus_trader.model.data import QuoteTick  # noqa: E402
from nautilus_trader.model.enums import AccountType, OrderSide, OrderStatus  # noqa: E402
from nautilus_trader.model.events import AccountState  # noqa: E402
from nautilus_trader.model.identifiers import AccountId, ClientId, InstrumentId, StrategyId, TraderId, Venue  # noqa: E402
from nautilus_trader.model.objects import AccountBalance, Money, Price, Quantity  # noqa: E402
from nautilus_trader.portfolio.portfolio import Portfolio  # noqa: E402
from nautilus_trader.risk.engine import RiskEngine  # noqa: E402
from nautilus_trader.test_kit.mocks.exec_clients import MockExecutionClient  # noqa: E402
from nautilus_trader.test_kit.providers import TestInstrumentProvider  # noqa: E402

VENUE = "XNAS"
SIDES = {"buy": OrderSide.BUY, "sell": OrderSide.SELL}


class Stack:
    """One trader's engines on a cash account of 1,000,000 USD with an AAPL quote 189.99/190.01."""

    def __init__(self) -> None:
        self.clock = LiveClock()
        self.trader = TraderId("BENCH-001")
        self.strategy = StrategyId("MOMENTUM-001")
        self.msgbus = MessageBus(trader_id=self.trader, clock=self.clock)
        self.cache = Cache(database=None)
        self.portfolio = Portfolio(msgbus=self.msgbus, cache=self.cache, clock=self.clock)
        self.exec_engine = ExecutionEngine(msgbus=self.msgbus, cache=self.cache, clock=self.clock,
                                           config=ExecEngineConfig())
        # The default throttle is 100 submits/s; the benchmark submits far faster, so lift it
        # (the throttler still runs on every order) instead of measuring denials.
        self.risk = RiskEngine(portfolio=self.portfolio, msgbus=self.msgbus, cache=self.cache, clock=self.clock,
                               config=RiskEngineConfig(max_order_submit_rate="100000000/00:00:01"))
        self.client = MockExecutionClient(client_id=ClientId(VENUE), venue=Venue(VENUE), account_type=AccountType.CASH,
                                          base_currency=USD, msgbus=self.msgbus, cache=self.cache, clock=self.clock)
        self.exec_engine.register_client(self.client)
        self.portfolio.update_account(AccountState(
            account_id=AccountId(f"{VENUE}-001"), account_type=AccountType.CASH, base_currency=USD, reported=True,
            balances=[AccountBalance(Money(1_000_000, USD), Money(0, USD), Money(1_000_000, USD))],
            margins=[], info={}, event_id=UUID4(), ts_event=0, ts_init=0))
        instrument = TestInstrumentProvider.equity("AAPL", VENUE)
        self.cache.add_instrument(instrument)
        self.cache.add_quote_tick(QuoteTick(
            instrument_id=instrument.id, bid_price=Price.from_str("189.99"), ask_price=Price.from_str("190.01"),
            bid_size=Quantity.from_int(1000), ask_size=Quantity.from_int(1000), ts_event=0, ts_init=0))
        self.exec_engine.start()
        self.risk.start()
        self.factory = OrderFactory(trader_id=self.trader, strategy_id=self.strategy, clock=self.clock)

    def submit(self, data: dict):
        instrument = self.cache.instrument(InstrumentId.from_str(f"{data['symbol']}.{VENUE}"))
        order = self.factory.market(instrument.id, SIDES[data["side"]], instrument.make_qty(Decimal(data["qty"])))
        self.risk.execute(SubmitOrder(trader_id=self.trader, strategy_id=self.strategy, order=order,
                                      command_id=UUID4(), ts_init=self.clock.timestamp_ns()))
        return order


def measure(intents: list[dict]) -> dict:
    stack = Stack()
    ns = []
    orders = []
    clock = time.perf_counter_ns
    for data in intents:
        t0 = clock()
        order = stack.submit(data)
        ns.append(clock() - t0)
        orders.append(order)
    denied = [o for o in orders if o.status == OrderStatus.DENIED]
    submitted = stack.client.calls.count("submit_order")
    reasons = sorted({str(getattr(o.last_event, "reason", "")) for o in denied})[:3]
    return {"ns": ns, "accepted": submitted, "denied": len(denied), "reasons": reasons}


def validate(intents: list[dict]) -> dict:
    ns = []
    clock = time.perf_counter_ns
    for data in intents:
        t0 = clock()
        IntentModel.model_validate(data)
        ns.append(clock() - t0)
    return {"ns": ns}


def main() -> None:
    import nautilus_trader
    import pydantic

    _proto.write(json.dumps({"ready": True, "nautilus_trader": nautilus_trader.__version__,
                             "pydantic": pydantic.VERSION, "python": sys.version.split()[0]}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        cmd = request.get("cmd")
        if cmd == "quit":
            break
        try:
            if cmd == "measure":
                answer = measure(request["intents"])
            elif cmd == "pydantic":
                answer = validate(request["intents"])
            else:
                answer = {"error": f"unknown command {cmd!r}"}
        except Exception as exc:  # reported to the harness, which fails the figure loudly
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        _proto.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
