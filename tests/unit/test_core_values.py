"""Value types: Decimal edges, asset classes and specs, the shared cost model, settings."""
from decimal import Decimal

import pytest
from hypothesis import given, strategies as st

from backend.domain.assets import AssetClass, AssetSpecRegistry, default_registry, detect_asset_class
from backend.domain.cost import analyze_market_data, analyze_spread
from backend.domain.errors import InvalidInput
from backend.domain.money import quantize_exact, to_decimal
from backend.settings import ExecSettings


@pytest.mark.parametrize("raw, expected", [
    (0.1, Decimal("0.1")), ("1.2345", Decimal("1.2345")), (7, Decimal(7)), (Decimal("2.50"), Decimal("2.50")),
    (0.1 + 0.2, Decimal("0.30000000000000004")),
])
def test_to_decimal_goes_through_shortest_repr(raw, expected):
    assert to_decimal(raw, "x") == expected


@pytest.mark.parametrize("raw", [float("nan"), float("inf"), "NaN", "-Infinity", True, None, "abc", "", [1], {}])
def test_to_decimal_refuses_non_numbers_naming_the_field(raw):
    with pytest.raises(InvalidInput) as err:
        to_decimal(raw, "qty")
    assert err.value.field == "qty"


def test_quantize_refuses_binary_noise_instead_of_rounding():
    with pytest.raises(InvalidInput, match="not a multiple of 0.0001"):
        quantize_exact(to_decimal(0.1 + 0.2, "qty"), Decimal("0.0001"), "qty")
    assert quantize_exact(Decimal("0.3"), Decimal("0.0001"), "qty") == Decimal("0.3000")


@pytest.mark.parametrize("symbol, klass", [
    ("EUR/USD", AssetClass.FOREX), ("EURUSD", AssetClass.FOREX), ("USD/JPY", AssetClass.FOREX),
    ("BTC/USD", AssetClass.CRYPTO), ("BTCUSD", AssetClass.CRYPTO), ("ETH/USDT", AssetClass.CRYPTO),
    ("AAPL240119C00150000", AssetClass.OPTIONS), ("SPY   250620P00400000", AssetClass.OPTIONS),
    ("XAU/USD", AssetClass.COMMODITY), ("GC=F", AssetClass.COMMODITY),
    ("AAPL", AssetClass.EQUITY), ("BRK.B", AssetClass.EQUITY), ("spy", AssetClass.EQUITY),
])
def test_detect_asset_class(symbol, klass):
    assert detect_asset_class(symbol) is klass


@pytest.mark.parametrize("raw, klass", [("FX", AssetClass.FOREX), ("forex", AssetClass.FOREX),
                                        ("CRYPTO", AssetClass.CRYPTO), ("Equity", AssetClass.EQUITY),
                                        ("COMMODITY", AssetClass.COMMODITY), ("OPTIONS", AssetClass.OPTIONS)])
def test_asset_class_aliases(raw, klass):
    assert AssetClass.parse(raw) is klass


@pytest.mark.parametrize("raw", ["BONDS", "", 3, None])
def test_unknown_asset_class_is_a_clear_error(raw):
    with pytest.raises(InvalidInput, match="asset class|expected one of"):
        AssetClass.parse(raw)


@pytest.mark.parametrize("symbol, tick, margin", [
    ("EUR/USD", "0.0001", "2"), ("USD/JPY", "0.01", "2"), ("GBPJPY", "0.01", "2"), ("AAPL", "0.01", "50"),
    ("XAU/USD", "0.01", "10"), ("BTC/USD", "1.0", "50"),
])
def test_seed_asset_specs(symbol, tick, margin):
    spec = default_registry().spec_for(symbol)
    assert spec.tick_size == Decimal(tick) and spec.margin_pct == Decimal(margin)


def test_margin_is_units_times_price_times_percent():
    spec = default_registry().spec_for("EUR/USD")
    assert spec.margin(Decimal("100000"), Decimal("1.1000")) == Decimal("2200.0000")


def test_spec_file_rejects_floats_and_unknown_fields():
    base = {"defaults": {k.value: {"tick_size": "0.01", "lot_size": "1", "margin_pct": "10"} for k in AssetClass}}
    with pytest.raises(InvalidInput, match="strings"):
        AssetSpecRegistry.from_mapping({**base, "overrides": [{"match": "X", "tick_size": 0.01}]})
    with pytest.raises(InvalidInput, match="unknown fields"):
        AssetSpecRegistry.from_mapping({**base, "overrides": [{"match": "X", "tick": "0.01"}]})


def test_exact_symbol_override_beats_glob():
    base = {"defaults": {k.value: {"tick_size": "0.01", "lot_size": "1", "margin_pct": "10"} for k in AssetClass},
            "overrides": [{"match": "AA*", "tick_size": "0.05"}, {"match": "AAPL", "tick_size": "0.5"}]}
    reg = AssetSpecRegistry.from_mapping(base)
    assert reg.spec_for("AAPL").tick_size == Decimal("0.5")
    assert reg.spec_for("AAL").tick_size == Decimal("0.05")


# --- cost model: threshold table (0.1% default) -------------------------------------------------
@pytest.mark.parametrize("bid, ask, price, downgrade", [
    ("99.951", "100.049", "100", False),  # 0.098%: just below
    ("99.95", "100.05", "100", False),  # exactly 0.1%: equal passes
    ("99.9499", "100.05", "100", True),  # 0.1001%: just above
    (99.95, 100.05, 100.0, False),  # floats at the edge, still exact
    ("1.09995", "1.10005", "1.1", False),  # FX
    ("49950", "50050", "50000", True),  # seed crypto example: 0.2%
])
def test_threshold_table(bid, ask, price, downgrade):
    assert analyze_spread(bid, ask, price).downgrade is downgrade


def test_reason_text_matches_seed_format():
    analysis = analyze_spread("99.925", "100.075", "100")
    assert analysis.reason == "Spread 0.15% exceeds threshold 0.10%"


@pytest.mark.parametrize("bid, ask", [("101", "100"), ("0", "1"), ("-1", "1")])
def test_crossed_or_non_positive_quotes_are_errors(bid, ask):
    with pytest.raises(InvalidInput):
        analyze_spread(bid, ask)


def test_market_data_without_spread_downgrades_fail_safe():
    assert analyze_market_data({"symbol": "AAPL", "price": 100}).downgrade is True


def test_market_data_spread_pct_only():
    assert analyze_market_data({"spread_pct": 0.0005}).downgrade is False
    assert analyze_market_data({"spread_pct": 0.002}).downgrade is True


@given(st.decimals(min_value=Decimal("0.01"), max_value=Decimal("100000"), places=2),
       st.decimals(min_value=Decimal("0"), max_value=Decimal("50"), places=2))
def test_downgrade_iff_spread_share_strictly_above_threshold(bid, width):
    ask = bid + width
    analysis = analyze_spread(bid, ask)
    assert analysis.downgrade == ((ask - bid) / ((ask + bid) / 2) > Decimal("0.001"))


# --- settings ----------------------------------------------------------------------------------
def test_settings_defaults_are_the_seeds():
    s = ExecSettings.from_env({})
    assert (s.dry_run, s.kill_switch, s.max_position_qty, s.max_daily_trades) == (True, False, Decimal(100), 50)
    # the group gates' thresholds are parsed once, into s.group (issue 11, defect 5)
    assert (s.group.max_stale_seconds, s.group.margin_cushion, s.group.correlation_threshold) == (
        Decimal(5), Decimal("1.5"), Decimal("0.95"))


@pytest.mark.parametrize("env, field", [
    ({"EXEC_DRY_RUN": "maybe"}, "EXEC_DRY_RUN"), ({"EXEC_MAX_DAILY_TRADES": "ten"}, "EXEC_MAX_DAILY_TRADES"),
    ({"EXEC_MAX_POSITION_QTY": "-5"}, "EXEC_MAX_POSITION_QTY"),
    ({"EXECUTION_ENGINE_MARGIN_CUSHION": "0.5"}, "EXECUTION_ENGINE_MARGIN_CUSHION"),
    ({"EXECUTION_ENGINE_CORRELATION_THRESHOLD": "1.5"}, "EXECUTION_ENGINE_CORRELATION_THRESHOLD"),
    ({"EXECUTION_ENGINE_MAX_STALE_TICK_SECONDS": "nan"}, "EXECUTION_ENGINE_MAX_STALE_TICK_SECONDS"),
])
def test_invalid_settings_fail_loudly(env, field):
    with pytest.raises(InvalidInput) as err:
        ExecSettings.from_env(env)
    assert err.value.field == field
