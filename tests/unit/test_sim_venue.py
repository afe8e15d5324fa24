"""SimulatedVenue, MarketSimulator and Scenario: determinism, fill models, faults, positions, account."""
from __future__ import annotations

import threading
import uuid
from decimal import Decimal as D
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.adapters.sim_venue import (
    SCENARIOS_DIR,
    LegRequest,
    LostResponse,
    MlegRequest,
    Scenario,
    ScenarioError,
    SimulatedVenue,
)
from backend.domain.assets import AssetClass
from backend.domain.clock import ManualClock
from backend.ports.broker import BrokerError, BrokerErrorCode, OrderRequest, OrderSide, OrderState, OrderType

AAPL = {"mid": "190.00", "spread": "0.02"}  # bid 189.99, ask 190.01
CALL = "AAPL261218C00190000"
PUT = "AAPL261218P00190000"


def make_venue(fill: dict[str, Any] | None = None, *, seed: int = 42, clock: ManualClock | None = None,
               **extra: Any) -> SimulatedVenue:
    symbols = {"AAPL": {**AAPL, **({"fill": fill} if fill else {})},
               "SPY": {"mid": "520.00", "spread": "0.02"},
               CALL: {"mid": "15.00", "spread": "0.02"},
               PUT: {"mid": "14.00", "spread": "0.02"}}
    symbols.update(extra.pop("symbols", {}))
    return SimulatedVenue({"seed": seed, "symbols": symbols, **extra}, clock=clock or ManualClock())


def order(client_id: str = "c-1", symbol: str = "AAPL", side: OrderSide = OrderSide.BUY, qty: str = "10",
          limit: str | None = None, tif: str = "day", asset_class: AssetClass = AssetClass.EQUITY) -> OrderRequest:
    return OrderRequest(client_order_id=client_id, symbol=symbol, asset_class=asset_class, side=side, qty=D(qty),
                        order_type=OrderType.LIMIT if limit else OrderType.MARKET,
                        limit_price=D(limit) if limit else None, time_in_force=tif)


# --------------------------------------------------------------------------- scenario


@pytest.mark.parametrize("name", sorted(p.stem for p in SCENARIOS_DIR.glob("*.json")))
def test_every_bundled_scenario_loads(name: str) -> None:
    scenario = Scenario.load(name)

    assert scenario.symbols


@pytest.mark.parametrize("data, field", [
    ({"sede": 1}, "scenario"),
    ({"seed": "42"}, "seed"),
    ({"symbols": {"AAPL": {"spread": "0.02"}}}, "symbols.AAPL.mid"),
    ({"symbols": {"AAPL": {"mid": 190.5}}}, "symbols.AAPL.mid"),
    ({"symbols": {"AAPL": {"mid": "-1"}}}, "symbols.AAPL.mid"),
    ({"symbols": {"AAPL": {"mid": "190", "spread": "-0.01"}}}, "symbols.AAPL.spread"),
    ({"symbols": {"AAPL": {"mid": "190", "colour": "red"}}}, "symbols.AAPL"),
    ({"symbols": {"AAPL": {"mid": "190", "asset_class": "BONDS"}}}, "symbols.AAPL.asset_class"),
    ({"symbols": {"BTC/USD": {"mid": "1"}, "BTCUSD": {"mid": "1"}}}, "symbols.BTCUSD"),
    ({"default_fill": {"model": "sometimes"}}, "default_fill.model"),
    ({"default_fill": {"model": "partial", "ratios": ["0.6", "0.5"]}}, "default_fill.ratios"),
    ({"default_fill": {"model": "partial", "ratios": ["0.5", "1.5"]}}, "default_fill.ratios"),
    ({"default_fill": {"model": "immediate", "ratios": ["1"]}}, "default_fill.ratios"),
    ({"default_fill": {"latency_seconds": -1}}, "default_fill.latency_seconds"),
    ({"default_fill": {"slippage_ticks": -2}}, "default_fill.slippage_ticks"),
    ({"faults": [{"operation": "buy_stuff", "kind": "unavailable"}]}, "faults[0].operation"),
    ({"faults": [{"operation": "submit_order", "kind": "flaky"}]}, "faults[0].kind"),
    ({"faults": [{"operation": "submit_order", "kind": "unavailable", "count": 0}]}, "faults[0].count"),
    ({"faults": {"operation": "submit_order"}}, "faults"),
    ({"account": {"cash": 1000.0}}, "account.cash"),
])
def test_invalid_scenarios_are_refused_naming_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        Scenario.from_dict(data)

    assert caught.value.field == field


def test_missing_scenario_file_is_a_scenario_error() -> None:
    with pytest.raises(ScenarioError, match="no scenario file"):
        Scenario.load("no_such_scenario")


def test_resolve_accepts_none_name_dict_and_scenario() -> None:
    default = Scenario.resolve(None)

    assert Scenario.resolve("default") == default
    assert Scenario.resolve(default) is default
    assert Scenario.resolve({"seed": 3}).seed == 3


# --------------------------------------------------------------------------- market


@pytest.mark.parametrize("symbol, mid, spread, bid, ask", [
    ("AAPL", "190.00", "0.02", "189.99", "190.01"),
    ("AAPL", "190.00", "0.01", "189.99", "190.00"),   # odd ticks: the spread is kept exact
    ("AAPL", "190.004", "0.02", "189.99", "190.01"),  # the mid is rounded to the tick first
    ("EUR/USD", "1.0850", "0.0002", "1.0849", "1.0851"),
    ("BTC/USD", "65000", "10", "64995", "65005"),
    ("AAPL", "190.00", "0", "190.00", "190.00"),
])
def test_quote_is_rounded_to_the_tick_around_the_mid(symbol: str, mid: str, spread: str, bid: str,
                                                     ask: str) -> None:
    venue = SimulatedVenue({"symbols": {symbol: {"mid": mid, "spread": spread}}}, clock=ManualClock())

    quote = venue.get_latest_quote(symbol)

    assert (quote.bid, quote.ask) == (D(bid), D(ask))


@pytest.mark.parametrize("symbol", ["NVDA", "TSLA", "SOL/USD", "ETH/USD", "AUD/USD", "USD/JPY", "XAG/USD",
                                    "SPY261218C00500000", "QQQ"])
def test_unknown_symbols_get_a_tight_deterministic_default_market(symbol: str) -> None:
    first = SimulatedVenue({"seed": 5}, clock=ManualClock()).get_latest_quote(symbol)
    again = SimulatedVenue({"seed": 5}, clock=ManualClock()).get_latest_quote(symbol)

    assert first == again
    assert first.problem() is None
    assert D(0) < first.spread_pct < D("0.001")


def test_default_markets_depend_on_the_seed() -> None:
    mids = {SimulatedVenue({"seed": seed}, clock=ManualClock()).get_latest_quote("NVDA").mid for seed in range(5)}

    assert len(mids) > 1


def test_crypto_symbol_spellings_share_one_market() -> None:
    venue = make_venue(symbols={"BTC/USD": {"mid": "65000", "spread": "10"}})

    assert venue.get_latest_quote("BTCUSD") == venue.get_latest_quote("btc/usd")


def test_drift_moves_the_mid_by_whole_ticks_per_step() -> None:
    venue = make_venue(symbols={"AAPL": {**AAPL, "drift_ticks": 3}})

    venue.step(2)

    assert venue.get_latest_quote("AAPL").mid == D("190.06")


def test_volatile_paths_repeat_for_a_seed_whatever_order_symbols_are_touched() -> None:
    vol = {"AAPL": {**AAPL, "volatility_ticks": "5"}, "SPY": {"mid": "520", "volatility_ticks": "5"}}
    one, two = make_venue(symbols=vol), make_venue(symbols=vol)
    one.get_latest_quote("SPY")  # touched before the steps in one venue only

    one.step(10)
    two.step(10)

    assert [one.get_latest_quote(s) for s in ("AAPL", "SPY")] == [two.get_latest_quote(s) for s in ("AAPL", "SPY")]
    assert one.get_latest_quote("AAPL").mid != D("190.00")


def test_market_steps_with_clock_time_when_step_seconds_is_set() -> None:
    clock = ManualClock()
    venue = make_venue(clock=clock, step_seconds=10, symbols={"AAPL": {**AAPL, "drift_ticks": 1}})

    clock.advance(35)

    assert venue.get_latest_quote("AAPL").mid == D("190.03")


def test_stale_quotes_carry_an_old_timestamp() -> None:
    clock = ManualClock()
    venue = make_venue(clock=clock, symbols={"AAPL": {**AAPL, "quote_age_seconds": 30}})

    quote = venue.get_latest_quote("AAPL")

    assert quote.age_seconds(clock.now()) == 30


def test_recent_closes_are_given_ones_when_the_scenario_lists_them() -> None:
    venue = make_venue(symbols={"AAPL": {**AAPL, "closes": ["1.5", "2.5", "3.5"]}})

    assert venue.get_recent_closes("AAPL", 2) == [D("2.5"), D("3.5")]
    assert venue.get_recent_closes("AAPL", 10) == [D("1.5"), D("2.5"), D("3.5")]


def test_generated_closes_are_deterministic_and_end_at_the_starting_mid() -> None:
    closes = make_venue().get_recent_closes("AAPL", 30)

    assert closes == make_venue().get_recent_closes("AAPL", 30)
    assert len(closes) == 30 and closes[-1] == D("190.00")
    assert all(c > 0 and c == c.quantize(D("0.01")) for c in closes)
    assert make_venue(seed=1).get_recent_closes("AAPL", 30) != closes


def test_set_mid_and_set_spread_move_a_market_by_hand() -> None:
    venue = make_venue()

    venue.market.set_mid("AAPL", D("200.004"))
    venue.market.set_spread("AAPL", D("0.50"))

    quote = venue.get_latest_quote("AAPL")
    assert (quote.bid, quote.ask) == (D("199.75"), D("200.25"))


# --------------------------------------------------------------------------- determinism


def _script(venue: SimulatedVenue) -> tuple[Any, ...]:
    venue.submit_order(order("a", "AAPL", OrderSide.BUY, "10"))
    venue.submit_order(order("b", "SPY", OrderSide.SELL, "3"))
    venue.submit_order(order("c", "NVDA", OrderSide.BUY, "1.5"))
    venue.step(3)
    venue.get_order_by_client_id("b")
    venue.close_position("AAPL")
    return (venue.orders(), venue.fills(), venue.get_positions(), venue.get_account(),
            [venue.get_latest_quote(s) for s in ("AAPL", "SPY", "NVDA")])


@pytest.mark.parametrize("fill", [None, {"model": "partial", "ratios": ["0.3", "0.7", "1"]}])
def test_same_scenario_and_calls_give_identical_orders_fills_and_quotes(fill: dict[str, Any] | None) -> None:
    vol = {"SPY": {"mid": "520.00", "volatility_ticks": "4", "drift_ticks": -1}}

    first = _script(make_venue(fill, symbols=vol))
    second = _script(make_venue(fill, symbols=vol))

    assert first == second


def test_order_ids_are_uuids_derived_from_the_seed() -> None:
    ids = [make_venue(seed=seed).submit_order(order()).broker_order_id for seed in (1, 1, 2)]

    assert ids[0] == ids[1] != ids[2]
    assert uuid.UUID(ids[0]).version == 4


# --------------------------------------------------------------------------- fill models


@pytest.mark.parametrize("side, price", [(OrderSide.BUY, "190.01"), (OrderSide.SELL, "189.99")])
def test_market_orders_fill_immediately_at_the_touch(side: OrderSide, price: str) -> None:
    venue = make_venue()

    placed = venue.submit_order(order(side=side))

    assert placed.state is OrderState.FILLED
    assert (placed.filled_qty, placed.filled_avg_price) == (D("10"), D(price))


@pytest.mark.parametrize("side, ticks, price", [
    (OrderSide.BUY, 0, "190.01"), (OrderSide.BUY, 3, "190.04"),
    (OrderSide.SELL, 0, "189.99"), (OrderSide.SELL, 3, "189.96"),
])
def test_slippage_ticks_move_fills_against_the_order(side: OrderSide, ticks: int, price: str) -> None:
    venue = make_venue({"slippage_ticks": ticks})

    placed = venue.submit_order(order(side=side))

    assert placed.filled_avg_price == D(price)


@pytest.mark.parametrize("side, limit, state, price", [
    (OrderSide.BUY, "190.05", OrderState.FILLED, "190.01"),   # marketable: fills at the ask
    (OrderSide.BUY, "190.01", OrderState.FILLED, "190.01"),
    (OrderSide.BUY, "190.00", OrderState.NEW, None),          # below the ask: works
    (OrderSide.SELL, "189.90", OrderState.FILLED, "189.99"),
    (OrderSide.SELL, "189.99", OrderState.FILLED, "189.99"),
    (OrderSide.SELL, "190.00", OrderState.NEW, None),
])
def test_limit_orders_fill_only_when_marketable(side: OrderSide, limit: str, state: OrderState,
                                                price: str | None) -> None:
    venue = make_venue()

    placed = venue.submit_order(order(side=side, limit=limit))

    assert placed.state is state
    assert placed.filled_avg_price == (D(price) if price else None)


@pytest.mark.parametrize("side, limit, price", [(OrderSide.BUY, "190.02", "190.02"),
                                                (OrderSide.SELL, "189.98", "189.98")])
def test_slippage_never_fills_a_limit_order_through_its_limit(side: OrderSide, limit: str, price: str) -> None:
    venue = make_venue({"slippage_ticks": 5})

    placed = venue.submit_order(order(side=side, limit=limit))

    assert placed.filled_avg_price == D(price)


def test_a_working_limit_order_fills_when_the_market_comes_to_it() -> None:
    venue = make_venue()
    placed = venue.submit_order(order(limit="185.00"))

    venue.market.set_mid("AAPL", D("184.50"))
    filled = venue.get_order(placed.broker_order_id)

    assert filled.state is OrderState.FILLED
    assert filled.filled_avg_price == D("184.51")


@pytest.mark.parametrize("ratios, qty, progression", [
    (["0.5", "1.0"], "10", ["5", "10"]),
    (["0.25", "0.5", "1.0"], "10", ["2.5", "5", "10"]),
    (["0.4"], "10", ["4", "4", "4"]),                # a last ratio below 1 leaves it working
    (["0.5", "1.0"], "0.0003", ["0.0001", "0.0003"]),  # partial steps round down to the lot
])
def test_partial_fills_progress_one_ratio_per_observation(ratios: list[str], qty: str,
                                                          progression: list[str]) -> None:
    venue = make_venue({"model": "partial", "ratios": ratios})

    placed = venue.submit_order(order(qty=qty))
    seen = [placed.filled_qty] + [venue.get_order(placed.broker_order_id).filled_qty
                                  for _ in progression[1:]]

    assert seen == [D(q) for q in progression]
    final = venue.peek_order(placed.broker_order_id)
    assert final.state is (OrderState.FILLED if ratios[-1] in ("1", "1.0") else OrderState.PARTIALLY_FILLED)


def test_partial_fills_follow_clock_time_when_step_seconds_is_set() -> None:
    clock = ManualClock()
    venue = make_venue({"model": "partial", "ratios": ["0.25", "0.5", "1"], "step_seconds": 2}, clock=clock)
    placed = venue.submit_order(order(qty="8"))

    clock.advance(4)
    later = venue.peek_order(placed.broker_order_id)
    polled = venue.poll()

    assert placed.filled_qty == D("2") and later.filled_qty == D("2")  # nothing moves unobserved
    assert polled == [] and venue.peek_order(placed.broker_order_id).state is OrderState.FILLED


def test_partial_fill_prices_follow_the_market_between_steps() -> None:
    venue = make_venue({"model": "partial", "ratios": ["0.5", "1"]})
    placed = venue.submit_order(order(qty="10"))

    venue.market.set_mid("AAPL", D("191.00"))
    filled = venue.get_order(placed.broker_order_id)

    assert filled.filled_avg_price == D("190.51")  # (5 × 190.01 + 5 × 191.01) / 10
    assert [f.price for f in venue.fills()] == [D("190.01"), D("191.01")]


def test_latency_delays_the_fill_until_the_clock_passes_it() -> None:
    clock = ManualClock()
    venue = make_venue({"model": "latency", "latency_seconds": 3}, clock=clock)
    placed = venue.submit_order(order())

    clock.advance(2.9)
    early = venue.get_order(placed.broker_order_id)
    clock.advance(0.1)
    late = venue.get_order(placed.broker_order_id)

    assert (placed.state, early.state, late.state) == (OrderState.NEW, OrderState.NEW, OrderState.FILLED)


def test_reject_model_rejects_with_the_reason_and_leaves_no_position() -> None:
    venue = make_venue({"model": "reject", "reject_reason": "symbol halted"})

    placed = venue.submit_order(order())

    assert placed.state is OrderState.REJECTED and placed.reject_reason == "symbol halted"
    assert venue.get_positions() == [] and venue.fills() == []


def test_never_model_works_until_canceled() -> None:
    venue = make_venue({"model": "never"})
    placed = venue.submit_order(order())

    still = venue.get_order(placed.broker_order_id)
    canceled = venue.cancel_order(placed.broker_order_id)

    assert still.state is OrderState.NEW
    assert canceled.state is OrderState.CANCELED and canceled.filled_qty == 0


def test_cancel_keeps_the_filled_part_of_a_partial_fill() -> None:
    venue = make_venue({"model": "partial", "ratios": ["0.4"]})
    placed = venue.submit_order(order())

    canceled = venue.cancel_order(placed.broker_order_id)

    assert canceled.state is OrderState.CANCELED and canceled.filled_qty == D("4")
    assert venue.net_position("AAPL") == D("4")


def test_canceling_a_final_order_changes_nothing() -> None:
    venue = make_venue()
    placed = venue.submit_order(order())

    again = venue.cancel_order(placed.broker_order_id)

    assert again == placed


@pytest.mark.parametrize("fill, tif, state, filled", [
    ({"model": "never"}, "ioc", OrderState.CANCELED, "0"),
    ({"model": "partial", "ratios": ["0.5", "1"]}, "ioc", OrderState.CANCELED, "5"),
    ({"model": "partial", "ratios": ["0.5", "1"]}, "fok", OrderState.CANCELED, "0"),
    ({"model": "immediate"}, "fok", OrderState.FILLED, "10"),
    ({"model": "immediate"}, "ioc", OrderState.FILLED, "10"),
])
def test_ioc_and_fok_cancel_what_does_not_fill_at_once(fill: dict[str, Any], tif: str, state: OrderState,
                                                       filled: str) -> None:
    venue = make_venue(fill)

    placed = venue.submit_order(order(tif=tif))

    assert (placed.state, placed.filled_qty) == (state, D(filled))


@pytest.mark.parametrize("request_, message", [
    (order(qty="0.00001"), "not a multiple"),
    (order(limit="190.001"), "not a multiple"),
    (order(tif="weekly"), "time_in_force"),
    (order(symbol="bad symbol!"), "invalid symbol"),
])
def test_malformed_orders_are_invalid(request_: OrderRequest, message: str) -> None:
    venue = make_venue()

    with pytest.raises(BrokerError) as caught:
        venue.submit_order(request_)

    assert caught.value.code is BrokerErrorCode.INVALID and message in caught.value.message
    assert venue.orders() == []


# --------------------------------------------------------------------------- idempotency


def test_duplicate_client_order_id_returns_the_existing_order() -> None:
    venue = make_venue()
    first = venue.submit_order(order("same"))

    second = venue.submit_order(order("same", qty="99"))

    assert second == first
    assert len(venue.orders()) == 1 and venue.net_position("AAPL") == D("10")


def test_duplicate_client_order_id_can_raise_for_the_http_face() -> None:
    venue = make_venue()
    venue.submit_order(order("same"))

    with pytest.raises(BrokerError) as caught:
        venue.submit_order(order("same"), on_duplicate="raise")

    assert caught.value.code is BrokerErrorCode.DUPLICATE


def test_concurrent_submits_never_duplicate_an_order() -> None:
    venue = make_venue()
    client_ids = [f"c-{i % 40}" for i in range(400)]

    def worker(ids: list[str]) -> None:
        for client_id in ids:
            venue.submit_order(order(client_id, qty="1"))

    threads = [threading.Thread(target=worker, args=(client_ids[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    ids = venue.client_order_ids()
    assert len(ids) == len(set(ids)) == 40
    assert venue.net_position("AAPL") == D("40")


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize("kind, code", [("unavailable", BrokerErrorCode.UNAVAILABLE),
                                        ("rate_limited", BrokerErrorCode.RATE_LIMITED)])
def test_faults_fail_calls_before_anything_happens(kind: str, code: BrokerErrorCode) -> None:
    venue = make_venue(faults=[{"operation": "submit_order", "kind": kind, "count": 2, "retry_after": 0.5}])

    errors = []
    for _ in range(2):
        with pytest.raises(BrokerError) as caught:
            venue.submit_order(order())
        errors.append(caught.value)
    placed = venue.submit_order(order())

    assert [(e.code, e.retry_after, e.retryable) for e in errors] == [(code, 0.5, True)] * 2
    assert placed.state is OrderState.FILLED and len(venue.orders()) == 1


def test_after_calls_lets_the_first_calls_through() -> None:
    venue = make_venue()
    venue.inject_fault("get_latest_quote", "unavailable", after_calls=2, count=1)

    outcomes = []
    for _ in range(4):
        try:
            venue.get_latest_quote("AAPL")
            outcomes.append("ok")
        except BrokerError:
            outcomes.append("down")

    assert outcomes == ["ok", "ok", "down", "ok"]


def test_a_fault_without_count_lasts_until_cleared_and_star_matches_every_operation() -> None:
    venue = make_venue()
    venue.inject_fault("*", "unavailable", count=None)

    with pytest.raises(BrokerError):
        venue.get_account()
    with pytest.raises(BrokerError):
        venue.get_positions()
    venue.clear_faults()

    assert venue.get_positions() == []


def test_lost_response_raises_after_the_order_exists() -> None:
    venue = make_venue(faults=[{"operation": "submit_order", "kind": "lost_response"}])

    with pytest.raises(LostResponse) as caught:
        venue.submit_order(order("ambiguous"))

    assert caught.value.code is BrokerErrorCode.UNAVAILABLE
    found = venue.get_order_by_client_id("ambiguous")
    assert found is not None and found.state is OrderState.FILLED
    assert venue.submit_order(order("ambiguous")) == found


def test_outage_scenario_tells_its_story() -> None:
    venue = SimulatedVenue("outage", clock=ManualClock())

    codes = []
    for _ in range(3):
        with pytest.raises(BrokerError) as caught:
            venue.submit_order(order("retry-me"))
        codes.append(type(caught.value).__name__)
    recovered = venue.submit_order(order("retry-me"))

    assert codes == ["BrokerError", "BrokerError", "LostResponse"]
    assert recovered.state is OrderState.FILLED and len(venue.orders()) == 1


# --------------------------------------------------------------------------- positions and account


@pytest.mark.parametrize("trades, net, avg", [
    ([("buy", "10")], "10", "190.01"),
    ([("buy", "10"), ("buy", "10")], "20", "190.01"),
    ([("buy", "10"), ("sell", "4")], "6", "190.01"),   # reducing keeps the entry price
    ([("sell", "5")], "-5", "189.99"),                  # short
    ([("buy", "10"), ("sell", "15")], "-5", "189.99"),  # through zero: the rest opens at the fill
    ([("buy", "10"), ("sell", "10")], "0", None),
])
def test_positions_are_signed_with_an_average_entry(trades: list[tuple[str, str]], net: str,
                                                    avg: str | None) -> None:
    venue = make_venue()

    for i, (side, qty) in enumerate(trades):
        venue.submit_order(order(f"t{i}", side=OrderSide(side), qty=qty))

    assert venue.net_position("AAPL") == D(net)
    position = venue.get_position("AAPL")
    assert (position.avg_entry_price if position else None) == (D(avg) if avg else None)


def test_close_position_flattens_with_a_market_order_and_none_when_flat() -> None:
    venue = make_venue()
    venue.submit_order(order(side=OrderSide.SELL, qty="7"))

    closing = venue.close_position("AAPL")

    assert closing is not None and closing.side is OrderSide.BUY and closing.qty == D("7")
    assert venue.net_position("AAPL") == 0
    assert venue.close_position("AAPL") is None


def test_account_moves_cash_by_fills_and_buying_power_by_margin() -> None:
    venue = make_venue(account={"cash": "100000", "buying_power": "200000", "equity": "100000"})

    venue.submit_order(order(qty="100"))
    account = venue.get_account()

    assert account.cash == D("100000") - D("19001")
    assert account.buying_power == D("200000") - D("9500.50")  # 50% equity margin at the entry
    assert account.equity == D("100000") - D("19001") + D("19000")  # marked at the mid


def test_round_trip_realizes_the_spread_into_buying_power() -> None:
    venue = make_venue(account={"cash": "100000", "buying_power": "200000", "equity": "100000"})

    venue.submit_order(order("in", qty="100"))
    venue.close_position("AAPL")
    account = venue.get_account()

    assert account.cash == account.equity == D("99998")
    assert account.buying_power == D("199998")


def test_orders_beyond_buying_power_are_refused_and_not_stored() -> None:
    venue = make_venue(account={"cash": "1000", "buying_power": "1000", "equity": "1000"})

    with pytest.raises(BrokerError) as caught:
        venue.submit_order(order(qty="11"))  # margin 11 × 190.01 × 50% = 1045.06

    assert caught.value.code is BrokerErrorCode.INSUFFICIENT_BUYING_POWER
    assert venue.orders() == []


def test_reducing_a_position_needs_no_buying_power() -> None:
    venue = make_venue(account={"cash": "2000", "buying_power": "1000", "equity": "2000"})
    venue.submit_order(order("in", qty="10"))

    closing = venue.submit_order(order("out", side=OrderSide.SELL, qty="10"))

    assert closing.state is OrderState.FILLED


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([OrderSide.BUY, OrderSide.SELL]), st.integers(1, 50)),
                min_size=1, max_size=12))
def test_positions_and_cash_always_add_up_to_the_fills(trades: list[tuple[OrderSide, int]]) -> None:
    venue = make_venue()

    for i, (side, qty) in enumerate(trades):
        venue.submit_order(order(f"p{i}", side=side, qty=str(qty)))

    fills = venue.fills()
    net = sum((f.qty * f.side.direction for f in fills), D(0))
    assert len(fills) == len(trades)
    assert venue.net_position("AAPL") == net == sum(q * s.direction for s, q in trades)
    account = venue.get_account()
    assert account.cash == D("1000000") - sum((f.qty * f.price * f.side.direction for f in fills), D(0))
    assert account.equity == account.cash + net * D("190.00")


@settings(max_examples=60, deadline=None)
@given(mid_ticks=st.integers(1, 10_000_000), spread_ticks=st.integers(0, 1000))
def test_quotes_are_never_crossed_and_keep_the_spread(mid_ticks: int, spread_ticks: int) -> None:
    mid, spread = D(mid_ticks) * D("0.01"), D(spread_ticks) * D("0.01")
    venue = SimulatedVenue({"symbols": {"AAPL": {"mid": str(mid), "spread": str(spread)}}}, clock=ManualClock())

    quote = venue.get_latest_quote("AAPL")

    assert D("0.01") <= quote.bid <= quote.ask
    assert quote.spread == spread


# --------------------------------------------------------------------------- multi-leg


def straddle(client_id: str = "m-1", qty: str = "2", limit: str | None = None) -> MlegRequest:
    return MlegRequest(client_order_id=client_id, qty=D(qty),
                       legs=(LegRequest(CALL, 1, OrderSide.BUY, "buy_to_open"),
                             LegRequest(PUT, 1, OrderSide.BUY, "buy_to_open")),
                       order_type=OrderType.LIMIT if limit else OrderType.MARKET,
                       limit_price=D(limit) if limit else None)


def test_mleg_orders_fill_every_leg_together_at_a_net_price() -> None:
    venue = make_venue()

    placed = venue.submit_mleg(straddle())

    assert placed.state is OrderState.FILLED and placed.order_class == "mleg"
    assert placed.filled_avg_price == D("29.02")  # 15.01 + 14.01
    assert [(leg.symbol, leg.state, leg.filled_qty) for leg in placed.legs] == [
        (CALL, OrderState.FILLED, D("2")), (PUT, OrderState.FILLED, D("2"))]
    assert (venue.net_position(CALL), venue.net_position(PUT)) == (D("2"), D("2"))


def test_a_not_marketable_mleg_limit_leaves_every_leg_unfilled() -> None:
    venue = make_venue()

    placed = venue.submit_mleg(straddle(limit="29.00"))

    assert placed.state is OrderState.NEW and all(leg.filled_qty == 0 for leg in placed.legs)
    assert venue.get_positions() == []


@pytest.mark.parametrize("legs, message", [
    ((LegRequest(CALL, 1, OrderSide.BUY),), "2 to 4 legs"),
    (tuple(LegRequest(f"AAPL261218C00{190 + i}000", 1, OrderSide.BUY) for i in range(5)), "2 to 4 legs"),
    ((LegRequest(CALL, 1, OrderSide.BUY), LegRequest(CALL, 2, OrderSide.SELL)), "unique"),
    ((LegRequest(CALL, 1, OrderSide.BUY), LegRequest("AAPL", 1, OrderSide.SELL)), "OCC"),
    ((LegRequest(CALL, 0, OrderSide.BUY), LegRequest(PUT, 1, OrderSide.SELL)), "ratio_qty"),
])
def test_mleg_requests_are_validated(legs: tuple[LegRequest, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MlegRequest(client_order_id="m", qty=D("1"), legs=legs)


def test_latency_applies_to_the_time_of_eligibility_not_the_submit() -> None:
    clock = ManualClock()
    venue = make_venue({"model": "partial", "ratios": ["0.5", "1"], "latency_seconds": 5}, clock=clock)
    placed = venue.submit_order(order())

    polled_early = venue.get_order(placed.broker_order_id)
    clock.advance(5)
    first = venue.get_order(placed.broker_order_id)
    second = venue.get_order(placed.broker_order_id)

    assert (polled_early.filled_qty, first.filled_qty, second.filled_qty) == (0, D("5"), D("10"))


def test_an_mleg_debit_beyond_buying_power_is_refused_and_stores_nothing() -> None:
    venue = make_venue(account={"cash": "1000", "buying_power": "1000", "equity": "1000"})

    with pytest.raises(BrokerError) as caught:
        venue.submit_mleg(straddle(qty="1"))  # 29.02 × 100 per straddle

    assert caught.value.code is BrokerErrorCode.INSUFFICIENT_BUYING_POWER
    assert venue.orders() == [] and venue.get_positions() == []
