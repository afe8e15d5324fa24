"""PaperBroker: the BrokerPort contract over the simulated venue, on the bundled scenarios."""
from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest

from backend.adapters.paper_broker import PaperBroker
from backend.domain.assets import AssetClass
from backend.domain.clock import ManualClock
from backend.ports.broker import (
    BrokerError,
    BrokerErrorCode,
    BrokerOrder,
    BrokerPort,
    OrderRequest,
    OrderSide,
    OrderState,
    OrderType,
)

A = AssetClass
CALL = "AAPL261218C00190000"


def paper(scenario: Any = None, **kwargs: Any) -> PaperBroker:
    return PaperBroker(scenario, clock=kwargs.pop("clock", None) or ManualClock(), **kwargs)


def order(client_id: str = "intent-1-leg-0", symbol: str = "AAPL", asset_class: AssetClass = A.EQUITY,
          side: OrderSide = OrderSide.BUY, qty: str = "10", limit: str | None = None) -> OrderRequest:
    return OrderRequest(client_order_id=client_id, symbol=symbol, asset_class=asset_class, side=side, qty=D(qty),
                        order_type=OrderType.LIMIT if limit else OrderType.MARKET,
                        limit_price=D(limit) if limit else None)


def test_it_is_a_broker_port_named_paper_that_trades_every_asset_class() -> None:
    broker = paper()

    assert isinstance(broker, BrokerPort) and broker.name == "paper"
    assert all(broker.supports(klass) for klass in AssetClass)
    assert broker.supports("FX")


@pytest.mark.parametrize("symbol, asset_class", [
    ("AAPL", A.EQUITY), ("SPY", A.EQUITY), ("MSFT", A.EQUITY), ("BTC/USD", A.CRYPTO), ("ETH/USD", A.CRYPTO),
    ("EUR/USD", A.FOREX), ("GBP/USD", A.FOREX), ("USD/JPY", A.FOREX), ("XAU/USD", A.COMMODITY),
    (CALL, A.OPTIONS), ("NVDA", A.EQUITY), ("SOL/USD", A.CRYPTO),
])
def test_the_default_market_is_tight_and_fresh(symbol: str, asset_class: AssetClass) -> None:
    clock = ManualClock()
    broker = paper(clock=clock)

    quote = broker.get_latest_quote(symbol, asset_class)

    assert quote.problem() is None
    assert quote.spread_pct < D("0.001")
    assert quote.age_seconds(clock.now()) == 0


@pytest.mark.parametrize("symbol, asset_class, qty", [
    ("AAPL", A.EQUITY, "0.5"), ("BTC/USD", A.CRYPTO, "0.01"), ("EUR/USD", A.FOREX, "10000"),
    ("XAU/USD", A.COMMODITY, "2.5"), (CALL, A.OPTIONS, "3"),
])
def test_default_orders_fill_immediately_for_every_asset_class(symbol: str, asset_class: AssetClass,
                                                               qty: str) -> None:
    broker = paper()

    placed = broker.submit_order(order(symbol=symbol, asset_class=asset_class, qty=qty))

    assert isinstance(placed, BrokerOrder)
    assert (placed.state, placed.venue_status, placed.filled_qty) == (OrderState.FILLED, "filled", D(qty))
    assert placed.submitted_at is not None and placed.remaining_qty == 0


def test_submit_is_idempotent_by_client_order_id() -> None:
    broker = paper()
    first = broker.submit_order(order("grp-1-leg-0"))

    again = broker.submit_order(order("grp-1-leg-0"))

    assert again == first
    assert [(p.symbol, p.qty) for p in broker.get_positions()] == [("AAPL", D("10"))]
    assert broker.venue.client_order_ids() == ["grp-1-leg-0"]


def test_orders_are_found_by_broker_id_and_client_id() -> None:
    broker = paper()
    placed = broker.submit_order(order("grp-2-leg-0"))

    assert broker.get_order(placed.broker_order_id) == placed
    assert broker.get_order_by_client_id("grp-2-leg-0") == placed
    assert broker.get_order_by_client_id("never-sent") is None


def test_an_unknown_broker_order_id_is_not_found() -> None:
    with pytest.raises(BrokerError) as caught:
        paper().get_order("00000000-0000-4000-8000-000000000000")

    assert caught.value.code is BrokerErrorCode.NOT_FOUND


@pytest.mark.parametrize("symbol, after_submit, after_one_poll", [
    ("AAPL", (OrderState.PARTIALLY_FILLED, "5"), (OrderState.FILLED, "10")),
    ("SPY", (OrderState.PARTIALLY_FILLED, "2.5"), (OrderState.PARTIALLY_FILLED, "5")),
    ("MSFT", (OrderState.PARTIALLY_FILLED, "4"), (OrderState.PARTIALLY_FILLED, "4")),
    ("ETH/USD", (OrderState.NEW, "0"), (OrderState.NEW, "0")),
    ("TSLA", (OrderState.REJECTED, "0"), (OrderState.REJECTED, "0")),
    ("GME", (OrderState.NEW, "0"), (OrderState.NEW, "0")),
])
def test_partial_fills_scenario_progresses_per_symbol(symbol: str, after_submit: tuple[OrderState, str],
                                                      after_one_poll: tuple[OrderState, str]) -> None:
    broker = paper("partial_fills")
    klass = A.CRYPTO if "/" in symbol else A.EQUITY

    placed = broker.submit_order(order(symbol=symbol, asset_class=klass, qty="10"))
    polled = broker.get_order(placed.broker_order_id)

    assert (placed.state, placed.filled_qty) == (after_submit[0], D(after_submit[1]))
    assert (polled.state, polled.filled_qty) == (after_one_poll[0], D(after_one_poll[1]))


def test_latency_fills_once_the_clock_has_moved() -> None:
    clock = ManualClock()
    broker = paper("partial_fills", clock=clock)
    placed = broker.submit_order(order(symbol="ETH/USD", asset_class=A.CRYPTO, qty="1"))

    clock.advance(3)

    assert broker.get_order_by_client_id(placed.client_order_id).state is OrderState.FILLED


def test_cancel_of_a_working_order_keeps_nothing_filled_and_cancel_of_a_final_one_is_harmless() -> None:
    broker = paper("partial_fills")
    working = broker.submit_order(order("w", symbol="GME"))
    filled = broker.submit_order(order("f", symbol="AAPL", qty="1"))
    filled = broker.get_order(filled.broker_order_id)

    broker.cancel_order(working.broker_order_id)
    broker.cancel_order(working.broker_order_id)
    broker.cancel_order(filled.broker_order_id)

    after = broker.get_order(working.broker_order_id)
    assert (after.state, after.filled_qty) == (OrderState.CANCELED, 0)
    assert broker.get_order(filled.broker_order_id) == filled and filled.state is OrderState.FILLED


@pytest.mark.parametrize("side", [OrderSide.BUY, OrderSide.SELL])
def test_slippage_ticks_are_adverse_as_the_port_measures_them(side: OrderSide) -> None:
    scenario = {"symbols": {"AAPL": {"mid": "190.00", "spread": "0.02", "fill": {"slippage_ticks": 2}}}}
    broker = paper(scenario)
    touch = broker.get_latest_quote("AAPL", A.EQUITY)
    intended = touch.ask if side is OrderSide.BUY else touch.bid

    placed = broker.submit_order(order(side=side))

    assert broker.normalize_slippage("AAPL", side.direction, intended, placed.filled_avg_price) == D("2")


def test_positions_account_and_close_position() -> None:
    broker = paper()
    broker.submit_order(order("buy", qty="10"))
    broker.submit_order(order("short", symbol="EUR/USD", asset_class=A.FOREX, side=OrderSide.SELL, qty="10000"))

    positions = {p.symbol: (p.qty, p.avg_entry_price) for p in broker.get_positions()}
    closing = broker.close_position("AAPL", A.EQUITY)
    account = broker.get_account()

    assert positions == {"AAPL": (D("10"), D("190.01")), "EUR/USD": (D("-10000"), D("1.0849"))}
    assert closing is not None and (closing.side, closing.qty, closing.state) == (OrderSide.SELL, D("10"),
                                                                                 OrderState.FILLED)
    assert [p.symbol for p in broker.get_positions()] == ["EUR/USD"]
    assert broker.close_position("AAPL", A.EQUITY) is None
    assert account.cash == D("1000000") - D("1900.10") + D("1899.90") + D("10849")
    assert account.currency == "USD"


def test_insufficient_buying_power_is_coded() -> None:
    with pytest.raises(BrokerError) as caught:
        paper().submit_order(order(qty="100000"))

    assert caught.value.code is BrokerErrorCode.INSUFFICIENT_BUYING_POWER


@pytest.mark.parametrize("call", [
    lambda b: b.submit_order(order(symbol="EUR/USD", asset_class=A.FOREX)),
    lambda b: b.get_latest_quote("EUR/USD", A.FOREX),
    lambda b: b.get_recent_closes("EUR/USD", A.FOREX, 5),
    lambda b: b.close_position("EUR/USD", A.FOREX),
])
def test_asset_classes_outside_supported_are_unsupported(call: Any) -> None:
    broker = paper(supported=["EQUITY", "CRYPTO"])

    with pytest.raises(BrokerError) as caught:
        call(broker)

    assert caught.value.code is BrokerErrorCode.UNSUPPORTED and not broker.supports(A.FOREX)


def test_a_malformed_symbol_is_an_invalid_broker_error() -> None:
    with pytest.raises(BrokerError) as caught:
        paper().get_latest_quote("not a symbol!", A.EQUITY)

    assert caught.value.code is BrokerErrorCode.INVALID


def test_recent_closes_come_from_the_scenario_seed() -> None:
    closes = paper().get_recent_closes("AAPL", A.EQUITY, 20)

    assert len(closes) == 20 and closes[-1] == D("190.00")
    assert closes == paper().get_recent_closes("AAPL", A.EQUITY, 20)
    assert closes != paper(seed=8).get_recent_closes("AAPL", A.EQUITY, 20)


def test_the_outage_scenario_never_doubles_an_order_when_retried_by_client_id() -> None:
    broker = paper("outage")

    failures = []
    for _ in range(3):
        with pytest.raises(BrokerError) as caught:
            broker.submit_order(order("grp-3-leg-0"))
        failures.append((caught.value.code, caught.value.retryable))
    found = broker.get_order_by_client_id("grp-3-leg-0")
    again = broker.submit_order(order("grp-3-leg-0"))

    assert failures == [(BrokerErrorCode.UNAVAILABLE, True)] * 3
    assert found is not None and again == found
    assert broker.venue.client_order_ids() == ["grp-3-leg-0"]


def test_the_outage_scenario_rate_limits_the_first_order_lookup() -> None:
    broker = paper("outage")
    broker.venue.clear_faults()
    placed = broker.submit_order(order())
    broker.venue.inject_fault("get_order", "rate_limited", retry_after=1.5)

    with pytest.raises(BrokerError) as caught:
        broker.get_order(placed.broker_order_id)

    assert (caught.value.code, caught.value.retry_after) == (BrokerErrorCode.RATE_LIMITED, 1.5)
    assert broker.get_order(placed.broker_order_id) == placed


def test_two_brokers_on_the_same_scenario_and_clock_agree_exactly() -> None:
    def session(broker: PaperBroker) -> list[Any]:
        out: list[Any] = [broker.submit_order(order("a", qty="3")),
                          broker.submit_order(order("b", symbol="NVDA", side=OrderSide.SELL, qty="2")),
                          broker.submit_order(order("c", symbol="BTC/USD", asset_class=A.CRYPTO, qty="0.1"))]
        out += [broker.get_order_by_client_id(c) for c in "abc"]
        return out + [broker.get_positions(), broker.get_account(), broker.get_latest_quote("NVDA", A.EQUITY)]

    assert session(paper("partial_fills")) == session(paper("partial_fills"))


def test_margin_helpers_come_from_the_asset_specs() -> None:
    broker = paper()

    assert broker.calculate_margin_requirement("EUR/USD", D("10000"), D("1.0850")) == D("217.000000")
    assert broker.get_asset_spec(CALL).multiplier == D("100")


def test_a_shared_venue_is_used_as_is() -> None:
    first = paper()
    second = PaperBroker(venue=first.venue)

    placed = first.submit_order(order())

    assert second.get_order_by_client_id(placed.client_order_id) == placed


def test_a_multileg_option_order_fills_every_leg_and_is_idempotent() -> None:
    broker = paper()
    legs = [(CALL, "buy", 1), ("AAPL261218C00200000", OrderSide.SELL, 1)]

    placed = broker.submit_multileg_options("spread-1", legs, 2, "limit", D("3.50"))
    again = broker.submit_multileg_options("spread-1", legs, 2, "limit", D("3.50"))

    assert again == placed and len(broker.venue.orders()) == 1
    assert (placed.symbol, placed.qty, placed.state, placed.filled_avg_price) == (
        "AAPL", D("2"), OrderState.FILLED, D("3.01"))  # 15.00 ask - 11.99 bid
    assert [(leg.symbol, leg.side, leg.qty, leg.state) for leg in placed.legs] == [
        (CALL, OrderSide.BUY, D("2"), OrderState.FILLED),
        ("AAPL261218C00200000", OrderSide.SELL, D("2"), OrderState.FILLED)]


@pytest.mark.parametrize("legs, qty, message", [
    ([(CALL, "buy", 1)], 1, "2 to 4 legs"),
    ([(CALL, "buy", 1), (CALL, "sell", 1)], 1, "unique"),
    ([(CALL, "buy", 1), ("MSFT261218C00400000", "sell", 1)], 1, "one underlying"),
    ([(CALL, "buy", 1), ("AAPL", "sell", 1)], 1, "OCC"),
    ([(CALL, "buy", 1), ("AAPL261218C00200000", "hold", 1)], 1, "hold"),
    ([(CALL, "buy", 1), ("AAPL261218C00200000", "sell", 1)], "1.5", "whole number"),
])
def test_invalid_multileg_orders_are_coded_invalid(legs: list[tuple[str, str, int]], qty: Any,
                                                   message: str) -> None:
    broker = paper()

    with pytest.raises(BrokerError) as caught:
        broker.submit_multileg_options("bad", legs, qty)

    assert caught.value.code is BrokerErrorCode.INVALID and message in caught.value.message
    assert broker.venue.orders() == []
