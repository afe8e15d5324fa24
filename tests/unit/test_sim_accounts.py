"""The simulated venue keeps one book per account (cash, positions, orders, client order ids), and
``PaperBroker(account_id=...)`` trades one account's book of a shared venue."""
from __future__ import annotations

from decimal import Decimal

import pytest

from backend.adapters.paper_broker import PaperBroker
from backend.adapters.sim import DEFAULT_ACCOUNT_ID, AccountSpec, SimulatedVenue
from backend.domain.assets import AssetClass
from backend.domain.clock import ManualClock
from backend.ports.broker import BrokerError, BrokerErrorCode, OrderRequest, OrderSide

A, B = "acct-a", "acct-b"


def order(client_order_id: str, side: OrderSide = OrderSide.BUY, qty: str = "10", symbol: str = "SPY") -> OrderRequest:
    return OrderRequest(client_order_id=client_order_id, symbol=symbol, asset_class=AssetClass.EQUITY,
                        side=side, qty=Decimal(qty))


@pytest.fixture
def venue() -> SimulatedVenue:
    venue = SimulatedVenue(clock=ManualClock())
    venue.open_account(A)
    venue.open_account(B)
    return venue


def test_two_accounts_trading_one_symbol_in_opposite_directions_each_hold_their_own_position(venue):
    venue.submit_order(order("c-1", OrderSide.BUY, "100"), account_id=A)
    venue.submit_order(order("c-2", OrderSide.SELL, "40"), account_id=B)

    assert venue.net_position("SPY", account_id=A) == Decimal("100")
    assert venue.net_position("SPY", account_id=B) == Decimal("-40")
    assert venue.net_position("SPY") == Decimal("0")  # the default account did not trade
    assert [o.client_order_id for o in venue.orders(A)] == ["c-1"]
    assert {f.account_id for f in venue.fills(B)} == {B}


def test_the_same_client_order_id_in_two_accounts_is_two_orders(venue):
    first = venue.submit_order(order("same"), account_id=A)
    second = venue.submit_order(order("same"), account_id=B)
    again = venue.submit_order(order("same"), account_id=A)

    assert first.broker_order_id != second.broker_order_id
    assert again.broker_order_id == first.broker_order_id
    assert venue.get_order_by_client_id("same", account_id=B).broker_order_id == second.broker_order_id
    assert len(venue.orders()) == 2


def test_a_duplicate_client_order_id_within_one_account_raises_duplicate_when_asked(venue):
    venue.submit_order(order("dup"), account_id=A)

    with pytest.raises(BrokerError) as caught:
        venue.submit_order(order("dup"), account_id=A, on_duplicate="raise")

    assert caught.value.code is BrokerErrorCode.DUPLICATE


def test_an_order_of_another_account_is_not_found_by_id(venue):
    placed = venue.submit_order(order("c-1"), account_id=A)

    with pytest.raises(BrokerError) as caught:
        venue.get_order(placed.broker_order_id, account_id=B)
    with pytest.raises(BrokerError) as cancel:
        venue.cancel_order(placed.broker_order_id, account_id=B)

    assert caught.value.code is BrokerErrorCode.NOT_FOUND
    assert cancel.value.code is BrokerErrorCode.NOT_FOUND
    assert venue.get_order_by_client_id("c-1", account_id=B) is None


def test_each_account_has_its_own_cash_and_buying_power(venue):
    small = "acct-small"
    venue.open_account(small, AccountSpec(cash=Decimal("1000"), buying_power=Decimal("1000"), equity=Decimal("1000")))
    venue.submit_order(order("c-1", qty="50"), account_id=A)

    with pytest.raises(BrokerError) as caught:
        venue.submit_order(order("c-2", qty="50"), account_id=small)

    assert caught.value.code is BrokerErrorCode.INSUFFICIENT_BUYING_POWER
    assert venue.get_account(account_id=small).cash == Decimal("1000")
    assert venue.get_account(account_id=A).cash < venue.get_account(account_id=B).cash
    assert venue.get_account(account_id=B).cash == venue.get_account().cash


def test_an_unknown_account_is_not_found_and_nothing_is_written(venue):
    with pytest.raises(BrokerError) as caught:
        venue.submit_order(order("c-1"), account_id="nobody")

    assert caught.value.code is BrokerErrorCode.NOT_FOUND
    assert venue.orders() == []


def test_a_suspended_account_refuses_orders_until_cleared_and_others_keep_trading(venue):
    venue.set_trade_suspended(A, True)

    with pytest.raises(BrokerError) as caught:
        venue.submit_order(order("c-1"), account_id=A)
    venue.submit_order(order("c-2"), account_id=B)
    venue.set_trade_suspended(A, False)
    venue.submit_order(order("c-1"), account_id=A)

    assert caught.value.code is BrokerErrorCode.REJECTED
    assert "suspended" in caught.value.message
    assert [o.client_order_id for o in venue.orders(A)] == ["c-1"]


def test_a_paper_broker_per_account_on_one_venue_sees_only_its_own_book():
    venue = SimulatedVenue(clock=ManualClock())
    alice = PaperBroker(venue=venue, account_id=A)
    bob = PaperBroker(venue=venue, account_id=B)

    placed = alice.submit_order(order("c-1", OrderSide.BUY, "5"))
    bob.submit_order(order("c-1", OrderSide.SELL, "3"))
    closed = bob.close_position("SPY", AssetClass.EQUITY)

    assert [(p.symbol, p.qty) for p in alice.get_positions()] == [("SPY", Decimal("5"))]
    assert bob.get_positions() == []
    assert closed is not None and closed.side is OrderSide.BUY and closed.qty == Decimal("3")
    assert bob.get_order_by_client_id("c-1").broker_order_id != placed.broker_order_id
    with pytest.raises(BrokerError):
        bob.get_order(placed.broker_order_id)


def test_a_paper_broker_without_an_account_trades_the_default_account():
    venue = SimulatedVenue(clock=ManualClock())
    broker = PaperBroker(venue=venue)

    broker.submit_order(order("c-1"))

    assert broker.account_id == DEFAULT_ACCOUNT_ID
    assert venue.net_position("SPY") == Decimal("10")
    assert venue.account_ids() == [DEFAULT_ACCOUNT_ID]


def test_for_account_gives_a_paper_broker_on_the_same_venue_and_market():
    paper = PaperBroker(clock=ManualClock(), supported=["equity"])
    other = paper.for_account(B, AccountSpec(cash=Decimal("5000"), buying_power=Decimal("5000"),
                                             equity=Decimal("5000")))

    other.submit_order(order("c-1", qty="1"))

    assert other.venue is paper.venue and other.supported == paper.supported
    assert other.get_account().buying_power < Decimal("5000")
    assert paper.get_positions() == [] and paper.venue.net_position("SPY", account_id=B) == Decimal("1")
    assert other.get_latest_quote("SPY", AssetClass.EQUITY) == paper.get_latest_quote("SPY", AssetClass.EQUITY)
