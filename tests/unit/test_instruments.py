"""Instruments from the venue's own metadata (issue 19 item 2): the paper venue lists the scenario's
symbols, ``check_instrument`` refuses unknown and non-tradable symbols and sizes or limit prices off
the venue's lot step, minimum or tick — exactly, in Decimals, never rounded — and fails closed when
the metadata cannot be read. A venue without the capability is left to the spec table."""
from __future__ import annotations

import io
import json
from decimal import Decimal as D

import pytest

from backend.adapters.alpaca_wire import asset_path_symbol, instrument_from_raw
from backend.adapters.paper_broker import PaperBroker
from backend.adapters.sim import Scenario, ScenarioError
from backend.domain.assets import AssetClass
from backend.domain.errors import RejectCode
from backend.domain.instruments import InstrumentInfo, InstrumentProvider
from backend.execution.broker_router import BrokerRouter
from backend.execution.instruments import check_instrument, forget_logged_differences
from backend.logs import set_stream
from backend.ports.broker import BrokerError, BrokerErrorCode
from backend.risk.gate import GuardedVenue

EQ, CR, FX, OPT = AssetClass.EQUITY, AssetClass.CRYPTO, AssetClass.FOREX, AssetClass.OPTIONS

DOGE_MARKET = {
    "instruments_from": "default",
    "symbols": {"DOGE/USD": {"asset_class": "CRYPTO", "mid": "0.12000", "spread": "0.00002"}},
    "instruments": {
        "DOGE/USD": {"tick_size": "0.00001", "lot_size": "1", "min_qty": "10", "fractionable": False},
        "GME": {"asset_class": "EQUITY", "tradable": False},
        "TSLA": {"asset_class": "EQUITY", "fractionable": False},
    },
}


@pytest.fixture
def logs():
    forget_logged_differences()
    stream = io.StringIO()
    set_stream(stream)
    yield stream
    set_stream(None)
    forget_logged_differences()


def events(stream: io.StringIO, name: str) -> list[dict]:
    return [r for r in map(json.loads, stream.getvalue().splitlines()) if r["event"] == name]


# ------------------------------------------------------------------ the paper venue's listing


@pytest.mark.parametrize("symbol, klass", [("AAPL", EQ), ("MSFT", EQ), ("BTC/USD", CR), ("BTCUSD", CR),
                                           ("EUR/USD", FX), ("AAPL261218C00190000", OPT)])
def test_a_symbol_the_default_scenario_lists_passes(symbol, klass):
    assert check_instrument(PaperBroker(), symbol, klass, D("1"), None) is None


@pytest.mark.parametrize("symbol, klass", [("ZZZZQ", EQ), ("DOGE/USD", CR), ("ZAR/JPY", FX)])
def test_a_symbol_the_scenario_does_not_list_is_unknown(symbol, klass):
    rejection = check_instrument(PaperBroker(), symbol, klass, D("1"), None)
    assert rejection is not None and rejection.code is RejectCode.UNKNOWN_SYMBOL
    assert symbol in rejection.detail and "paper" in rejection.detail


def test_a_listed_symbol_asked_under_another_class_is_unknown():
    rejection = check_instrument(PaperBroker(), "AAPL", AssetClass.COMMODITY, D("1"), None)
    assert rejection is not None and rejection.code is RejectCode.UNKNOWN_SYMBOL


def test_a_symbol_the_scenario_marks_not_tradable_is_refused_not_tradable():
    rejection = check_instrument(PaperBroker(DOGE_MARKET), "GME", EQ, D("1"), None)
    assert rejection is not None and rejection.code is RejectCode.NOT_TRADABLE
    assert "GME" in rejection.detail


def test_instruments_from_lists_the_parent_universe_and_own_entries_win():
    broker = PaperBroker(DOGE_MARKET)
    assert check_instrument(broker, "MSFT", EQ, D("3"), None) is None  # from default.json
    info = broker.instrument("DOGE/USD", CR)
    assert info == InstrumentInfo(symbol="DOGE/USD", asset_class=CR, tradable=True, tick_size=D("0.00001"),
                                  lot_step=D("1"), min_qty=D("10"), fractionable=False, source="paper:scenario",
                                  status="active")


def test_the_scenarios_tick_is_also_the_markets_tick():
    quote = PaperBroker(DOGE_MARKET).get_latest_quote("DOGE/USD", CR)
    assert (quote.bid, quote.ask) == (D("0.11999"), D("0.12001"))


def test_an_unlisted_symbol_still_has_a_market_for_the_sims_own_callers():
    broker = PaperBroker()
    assert broker.instrument("ZZZZQ", EQ) is None
    assert broker.get_latest_quote("ZZZZQ", EQ).bid > 0


# ------------------------------------------------------------------ lot, minimum and tick, exact


@pytest.mark.parametrize("qty, limit, expected", [
    ("10", None, None),
    ("11", "0.12001", None),
    ("9", None, RejectCode.BROKER_REJECTED),             # below the minimum of 10
    ("10.5", None, RejectCode.BROKER_REJECTED),          # not a multiple of the lot step 1
    ("10.000000000000000001", None, RejectCode.BROKER_REJECTED),
    ("10", "0.120015", RejectCode.BROKER_REJECTED),      # off the 0.00001 tick
    ("10", "0.12", None),                                # 0.12 is 12000 ticks
])
def test_lot_minimum_and_tick_follow_the_venue_exactly(qty, limit, expected):
    rejection = check_instrument(PaperBroker(DOGE_MARKET), "DOGE/USD", CR, D(qty),
                                 None if limit is None else D(limit))
    assert (rejection.code if rejection else None) is expected


def test_a_refused_size_is_named_with_the_venues_rule_and_never_rounded():
    rejection = check_instrument(PaperBroker(DOGE_MARKET), "DOGE/USD", CR, D("10.5"), None)
    assert rejection is not None
    assert "10.5" in rejection.detail and "lot step 1" in rejection.detail and "paper:scenario" in rejection.detail


def test_a_non_fractionable_stock_trades_whole_shares_only():
    broker = PaperBroker(DOGE_MARKET)
    assert check_instrument(broker, "TSLA", EQ, D("2"), None) is None
    rejection = check_instrument(broker, "TSLA", EQ, D("1.5"), None)
    assert rejection is not None and "lot step 1" in rejection.detail


def test_where_the_venue_differs_from_asset_specs_the_venue_wins_and_it_is_logged_once(logs):
    broker = PaperBroker(DOGE_MARKET)
    for _ in range(3):
        assert check_instrument(broker, "DOGE/USD", CR, D("10"), D("0.12001")) is None
    [event] = events(logs, "exec.instrument_spec_mismatch")
    assert event["symbol"] == "DOGE/USD" and event["source"] == "paper:scenario"
    assert "tick: venue 0.00001 vs asset_specs 1.0" in event["differences"]


def test_a_venue_that_agrees_with_asset_specs_logs_nothing(logs):
    assert check_instrument(PaperBroker(), "AAPL", EQ, D("1.5"), D("190.01")) is None
    assert events(logs, "exec.instrument_spec_mismatch") == []


# ------------------------------------------------------------------ failures fail closed


@pytest.mark.parametrize("kind, code", [("unavailable", RejectCode.BROKER_UNAVAILABLE),
                                        ("rate_limited", RejectCode.BROKER_RATE_LIMITED),
                                        ("lost_response", RejectCode.BROKER_UNAVAILABLE)])
def test_metadata_that_cannot_be_read_now_refuses_the_order_with_a_coded_reason(kind, code):
    broker = PaperBroker()
    broker.venue.inject_fault("instrument", kind)
    rejection = check_instrument(broker, "AAPL", EQ, D("1"), None)
    assert rejection is not None and rejection.code is code
    assert "instrument metadata for AAPL unavailable" in rejection.detail
    assert check_instrument(broker, "AAPL", EQ, D("1"), None) is None  # the fault was one call


def test_a_malformed_symbol_is_unknown():
    rejection = check_instrument(PaperBroker(), "no such!", EQ, D("1"), None)
    assert rejection is not None and rejection.code is RejectCode.UNKNOWN_SYMBOL


# ------------------------------------------------------------------ capability and pass-through


class _NoMetadataVenue:
    """A venue without the capability (every BrokerPort call it needs is irrelevant here)."""

    name = "bare"

    def supports(self, asset_class):
        return True


def test_a_venue_without_the_capability_is_left_to_the_spec_table():
    assert not isinstance(_NoMetadataVenue(), InstrumentProvider)
    assert check_instrument(_NoMetadataVenue(), "ZZZZQ", EQ, D("1"), None) is None


def test_the_router_passes_the_capability_through_to_the_classs_venue():
    paper = PaperBroker(supported=[EQ])
    router = BrokerRouter({EQ: paper})
    assert router.instrument_classes == frozenset({EQ})
    assert router.instrument("AAPL", EQ) == paper.instrument("AAPL", EQ)
    rejection = check_instrument(router, "ZZZZQ", EQ, D("1"), None)
    assert rejection is not None and rejection.code is RejectCode.UNKNOWN_SYMBOL and "paper" in rejection.detail
    assert check_instrument(router, "DOGE/USD", CR, D("1"), None) is None  # no venue: the router's rejection rules
    with pytest.raises(BrokerError) as raised:
        router.instrument("BTC/USD", CR)
    assert raised.value.code is BrokerErrorCode.UNSUPPORTED


def test_a_route_to_a_venue_without_metadata_is_not_checked():
    router = BrokerRouter.single(_NoMetadataVenue())
    assert router.instrument_classes == frozenset()
    assert check_instrument(router, "ZZZZQ", EQ, D("1"), None) is None


def test_the_dry_run_guard_passes_the_capability_through():
    guarded = GuardedVenue(PaperBroker(), dry_run=lambda: True)
    rejection = check_instrument(guarded, "ZZZZQ", EQ, D("1"), None)
    assert rejection is not None and rejection.code is RejectCode.UNKNOWN_SYMBOL
    assert check_instrument(guarded, "AAPL", EQ, D("1"), None) is None


def test_a_broker_limited_to_some_classes_offers_metadata_for_those_only():
    broker = PaperBroker(supported=[FX])
    assert broker.instrument_classes == frozenset({FX})
    assert check_instrument(broker, "ZZZZQ", EQ, D("1"), None) is None


# ------------------------------------------------------------------ scenario format


@pytest.mark.parametrize("instruments, field", [
    ({"GME": {"tradable": "no"}}, "instruments.GME.tradable"),
    ({"GME": {"tick": "0.01"}}, "instruments.GME"),
    ({"GME": {"lot_size": "0"}}, "instruments.GME.lot_size"),
    ({"GME": {"tick_size": 0.01}}, "instruments.GME.tick_size"),
    ({"AAPL": {"asset_class": "CRYPTO"}}, "instruments.AAPL.asset_class"),
])
def test_a_bad_instrument_entry_is_refused_with_its_field(instruments, field):
    with pytest.raises(ScenarioError) as raised:
        Scenario.from_dict({"symbols": {"AAPL": {"mid": "190", "asset_class": "EQUITY"}}, "instruments": instruments})
    assert raised.value.field == field


def test_instruments_from_a_missing_scenario_is_refused():
    with pytest.raises(ScenarioError):
        Scenario.from_dict({"instruments_from": "no-such-scenario"})


def test_instruments_from_that_inherits_from_itself_is_refused(tmp_path):
    path = tmp_path / "loop.json"
    path.write_text(json.dumps({"instruments_from": str(path)}))
    with pytest.raises(ScenarioError) as raised:
        Scenario.load(str(path))
    assert raised.value.field == "instruments_from"


@pytest.mark.parametrize("name", ["default", "moving_market", "wide_spread", "partial_fills", "stale_quotes",
                                  "outage"])
def test_every_shipped_scenario_lists_the_default_universe(name):
    listed = Scenario.load(name).listed()
    assert set(Scenario.load("default").listed()) <= set(listed)


# ------------------------------------------------------------------ Alpaca's wire form (pure)


@pytest.mark.parametrize("symbol, klass, path", [("BTC/USD", CR, "BTCUSD"), ("btcusd", CR, "BTCUSD"),
                                                 ("ETH/USDT", CR, "ETH%2FUSDT"), ("aapl", EQ, "AAPL"),
                                                 ("AAPL261218C00190000", OPT, "AAPL261218C00190000")])
def test_the_assets_path_takes_alpacas_symbology(symbol, klass, path):
    assert asset_path_symbol(symbol, klass) == path


def test_an_alpaca_crypto_asset_carries_its_increments_exactly():
    info = instrument_from_raw({"class": "crypto", "symbol": "SOL/USD", "status": "active", "tradable": True,
                                "fractionable": True, "min_order_size": "0.01", "min_trade_increment": "0.001",
                                "price_increment": "0.01"}, CR)
    assert (info.tick_size, info.lot_step, info.min_qty, info.tradable) == (D("0.01"), D("0.001"), D("0.01"), True)


@pytest.mark.parametrize("raw, tradable, lot", [
    ({"status": "active", "tradable": True, "fractionable": True}, True, None),
    ({"status": "active", "tradable": True, "fractionable": False}, True, D("1")),
    ({"status": "inactive", "tradable": True, "fractionable": True}, False, None),
    ({"status": "active", "tradable": False, "fractionable": True}, False, None),
])
def test_an_alpaca_stock_is_tradable_only_when_active_and_whole_shares_unless_fractionable(raw, tradable, lot):
    info = instrument_from_raw({"class": "us_equity", "symbol": "AAPL", **raw}, EQ)
    assert (info.tradable, info.lot_step, info.tick_size) == (tradable, lot, None)


def test_an_alpaca_asset_of_another_class_is_not_this_instrument():
    assert instrument_from_raw({"class": "us_equity", "symbol": "BTCUSD", "status": "active",
                                "tradable": True, "fractionable": True}, CR) is None


def test_instrument_info_refuses_a_zero_step():
    with pytest.raises(ValueError):
        InstrumentInfo(symbol="X", asset_class=EQ, tradable=True, tick_size=D("0"), lot_step=None, min_qty=None,
                       fractionable=None, source="test")
