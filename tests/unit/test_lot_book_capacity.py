"""The lot book capacity guard (backend/execution/lot_capacity.py): the size arithmetic, which orders
open lots, and the guard on the engine, group and finish paths on the in-memory store (the same
behaviours on the Firestore emulator, which enforces the 1 MiB limit:
tests/integration/test_lot_book_capacity_firestore.py)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from backend.adapters.memory_store import InMemoryStore
from backend.adapters.paper_broker import PaperBroker
from backend.domain.assets import AssetClass
from backend.domain.clock import ManualClock
from backend.domain.errors import InvalidInput
from backend.domain.storable import FIRESTORE_MAX_DOC_BYTES, _size, record_size
from backend.execution import lot_capacity as cap
from backend.execution.engine import ExecutionEngine
from backend.execution.intent import ExecutionContext, OrderIntent
from backend.settings import ExecSettings
from backend.tax.model import Fill, Lot, Position
from backend.tax.state import _lot_to_dict, apply_fill_to_state, book_label, book_lots, packed_state
from tests.support.group_harness import GROUP_LIMITS_ENV, CrashingBroker, approve, rpm_output

CTX = ExecutionContext("acme", "u1")
LABEL = book_label("acme", "acct")
PATH = "users/u1/tax_books/AAPL"
T0 = datetime(2026, 1, 5, 14, 30, tzinfo=timezone.utc)


# --------------------------------------------------------------------------------- building books
def typical_lot(i: int, *, symbol: str = "AAPL", label: str = LABEL, position: str = "LONG",
                basis: str = "1.00") -> dict:
    """One share bought at ``basis``, a 36-character intent id ``--f<n>`` (a fill increment's id)."""
    at = T0 - timedelta(days=400)
    trade = f"{i:036d}--f1"
    return _lot_to_dict(Lot(lot_id=trade, symbol=symbol, asset_class=AssetClass.EQUITY, position=Position(position),
                            qty=Decimal("1"), basis=Decimal(basis), acquired_at=at, acquired=at.date(),
                            holding_start=at.date(), source_trade_id=trade, seq=(i,), book=label))


def book_of(n: int, *, symbol: str = "AAPL", label: str = LABEL, position: str = "LONG", pad: int = 0,
            basis: str = "1.00", packed: bool = True) -> dict:
    """A stored lot book of ``n`` typical lots, packed as the finish writes it (``packed=False``: the
    list form written before issue 17); ``pad`` bytes of corporate-action history (kept by every
    fill) fine-tune its size."""
    state = {"version": 1, "symbol": symbol, "asset_class": "EQUITY",
             "lots": [typical_lot(i, symbol=symbol, label=label, position=position, basis=basis) for i in range(n)],
             "pending": [], "splits": 0, "next_seq": n, "last_fill_at": (T0 - timedelta(days=400)).isoformat(),
             "recent_trade_ids": [f"{LABEL}|{i:036d}--f1" for i in range(max(0, n - 50), n)],
             "method": "FIFO", "pending_disposals": []}
    if pad:
        state["corporate_actions"] = [{"note": "x" * pad}]
    return packed_state(state) if packed else state


def book_of_size(target: int, **kw) -> dict:
    """A book whose stored size at ``PATH`` is exactly ``target`` bytes."""
    one = (record_size(book_of(1001, **kw), PATH) - record_size(book_of(1, **kw), PATH)) // 1000 + 1
    n = (target - record_size(book_of(0, **kw), PATH)) // one - 1
    while record_size({**book_of(n, **kw), "corporate_actions": [{"note": ""}]}, PATH) > target:
        n -= 5
    state = book_of(n, **kw)
    base = record_size({**state, "corporate_actions": [{"note": ""}]}, PATH)
    state = book_of(n, pad=target - base, **kw)
    assert record_size(state, PATH) == target
    return state


def full_book(**kw) -> dict:
    """Past the admission limit of one order, inside the write limit."""
    return book_of_size(cap.admission_limit() + 2_000, **kw)


# ------------------------------------------------------------------------------- the size arithmetic
def test_a_typical_lot_stores_in_about_230_bytes_packed_so_about_4600_fill_a_document():
    lot = typical_lot(1, label="acme:main-u1234567890abcdef")
    one = cap.row_bytes(lot)
    assert 200 <= one <= 260 and one < _size(lot, 0) - 100  # the list form stored it in ~355
    assert 4_000 <= FIRESTORE_MAX_DOC_BYTES // one <= 5_200
    row = cap.row_bytes(typical_lot(1))
    hundred = record_size(book_of(150), PATH) - record_size(book_of(50), PATH)  # both: 50 recent ids
    assert 100 * row <= hundred <= 100 * row + 2 * 100  # 100 more rows (``seq`` digits vary)


def test_the_margin_covers_64_fill_increments_of_the_largest_lot_and_its_recent_id():
    lot, pending, disposal = cap.worst_sizes()
    assert lot == cap.packed_entry_bytes(cap._worst_lot()) and 1_450 <= lot <= 1_650
    assert lot > cap.row_bytes(cap._worst_lot()) + 150  # a lot that starts a run of its own names its fields
    assert pending > disposal > lot  # a loss sale's pending entry outweighs the lot it closed
    assert cap.fill_growth_bytes() == lot + (201 + 1 + 300 + 1) + cap.PENDING_UPDATE_BYTES
    assert cap.order_margin_bytes() == 64 * cap.fill_growth_bytes()
    assert cap.BOOK_WRITE_LIMIT == FIRESTORE_MAX_DOC_BYTES - 1024
    assert cap.admission_limit() == cap.BOOK_WRITE_LIMIT - cap.order_margin_bytes()
    assert cap.admission_limit(2) == cap.BOOK_WRITE_LIMIT - 2 * cap.order_margin_bytes()
    # a retail user's typical lots: ~3,900 open lots of one symbol are admitted (~2,500 in the list form)
    assert cap.admission_limit() // cap.row_bytes(typical_lot(1)) >= 3_900


def test_real_fills_with_the_longest_ids_and_a_wash_split_stay_within_the_worst_lot_and_the_growth_bound():
    label = "t" * 100 + ":" + "a" * 100
    trade = lambda tag: (tag * 300)[:300]  # noqa: E731 - the LOT_ID rule's longest id
    state = None
    sizes = []
    steps = [("b", "buy", "10", "100.123456789012"), ("s", "sell", "10", "50.987654321098"),  # a loss
             ("c", "buy", "7", "60.5"), ("d", "buy", "3.333333333333", "61.25")]  # washes (a split)
    for i, (tag, side, qty, price) in enumerate(steps):
        fill = Fill(trade_id=trade(tag), symbol="AAPL", side=side, qty=Decimal(qty), price=Decimal(price),
                    timestamp=T0 + timedelta(days=i), asset_class="EQUITY", fees=Decimal("0.0137"), book=label)
        before = record_size(state or {}, PATH)
        state = apply_fill_to_state(state, fill).state
        if side == "buy":
            assert record_size(state, PATH) - before <= cap.fill_growth_bytes()
        sizes.extend(cap.packed_entry_bytes(lot) for lot in book_lots(state))
    assert any(lot["lot_id"].endswith("-W1") for lot in book_lots(state)) and state["splits"] == 1  # the split
    assert sizes and max(sizes) <= cap.worst_lot_bytes()


def test_a_packed_book_is_measured_exactly_without_decoding_its_lots(monkeypatch):
    import backend.tax.state as state_module

    small, big = book_of(100), full_book()
    lots = len(book_lots(big))
    monkeypatch.setattr(state_module, "unpack_list", lambda packed: pytest.fail("decoded"))
    quick = cap.measure(small, PATH, limit=cap.admission_limit())
    assert quick.measured and quick.size == record_size(small, PATH) and quick.lots == 100
    exact = cap.measure(big, PATH, limit=cap.admission_limit())
    assert exact.measured and exact.size == record_size(big, PATH) and exact.lots == lots
    assert cap.measure(None, PATH, limit=1).size == 0


def test_a_list_form_book_is_measured_as_it_will_be_written_packed():
    small = book_of(100, packed=False)
    quick = cap.measure(small, PATH, limit=cap.admission_limit())
    assert not quick.measured and quick.lots == 100
    assert quick.size >= record_size(packed_state(small), PATH)  # a bound of what the next fill writes
    big = book_of(len(book_lots(full_book())) + 60, packed=False)  # a full book's lots, unpacked
    exact = cap.measure(big, PATH, limit=cap.admission_limit())
    assert exact.measured and exact.size == record_size(packed_state(big), PATH) > cap.admission_limit()
    assert record_size(big, PATH) > exact.size  # the list form is larger than what replaces it
    refused = cap.refusal(big, PATH, symbol="AAPL", side="buy", qty=Decimal("1"), book=LABEL)
    assert refused is not None and refused.lots == len(big["lots"])


@pytest.mark.parametrize("side, qty, lots, position, label, can_short, opens", [
    ("buy", "1", 0, "LONG", LABEL, True, True),           # a buy opens a long lot
    ("buy", "3", 5, "SHORT", LABEL, True, False),         # covers short lots only
    ("buy", "6", 5, "SHORT", LABEL, True, True),          # covers and opens the rest
    ("sell", "5", 5, "LONG", LABEL, True, False),         # closes long lots (an exit, a stop, a rollback)
    ("sell", "6", 5, "LONG", LABEL, True, True),          # beyond the long lots: opens a SHORT lot
    ("sell", "6", 5, "LONG", LABEL, False, False),        # a class that cannot short: a shortfall, no lot
    ("sell", "1", 5, "LONG", "acme:other", True, True),   # another account's lots are not this book's
    ("buy", "1", 5, "SHORT", "acme:other", True, True),
])
def test_which_orders_open_lots(side, qty, lots, position, label, can_short, opens):
    state = book_of(lots, position=position)
    assert cap.opens_lots(state, side=side, qty=Decimal(qty), book=label, can_short=can_short) is opens


def test_a_full_book_refuses_a_buy_with_a_coded_reason_and_accepts_a_closing_sell():
    state = full_book()
    refused = cap.refusal(state, PATH, symbol="AAPL", side="buy", qty=Decimal("1"), book=LABEL)
    assert isinstance(refused, InvalidInput) and refused.field == "qty"
    assert refused.reason.startswith(f"LOT_BOOK_FULL: {len(book_lots(state)):,} open lots of AAPL")
    assert f"{cap.admission_limit():,}" in refused.reason
    assert cap.refusal(state, PATH, symbol="AAPL", side="sell", qty=Decimal("5"), book=LABEL) is None
    assert cap.refusal(book_of(100), PATH, symbol="AAPL", side="buy", qty=Decimal("1"), book=LABEL) is None


def test_two_opening_legs_on_one_book_need_room_for_both():
    state = book_of_size(cap.admission_limit(2) + 500)
    docs = {PATH: (state, None)}
    one = [{"path": PATH, "symbol": "AAPL", "side": "buy", "qty": Decimal(1), "book": LABEL}]
    cap.check_books(docs, one)
    with pytest.raises(cap.LotBookFull):
        cap.check_books(docs, one * 2)


# ---------------------------------------------------------------------- the engine (in-memory store)
def engine_on(store, broker, clock):
    return ExecutionEngine(broker=broker, store=store, clock=clock, dry_run=False,
                           settings=ExecSettings.from_env({"EXEC_FILL_WAIT_SECONDS": "0", **GROUP_LIMITS_ENV}))


def order(intent_id, side, qty, symbol="AAPL"):
    return OrderIntent("s1", "acct", symbol, side, qty, intent_id=intent_id)


@pytest.fixture
def world():
    clock = ManualClock()
    store = InMemoryStore()
    venue = CrashingBroker(PaperBroker(clock=clock))
    return store, venue, engine_on(store, venue, clock), clock


def test_a_buy_on_a_full_book_is_refused_before_anything_is_written_or_sent(world):
    store, venue, engine, _ = world
    store.set_doc(PATH, full_book())
    before = dict(store.docs)

    with pytest.raises(cap.LotBookFull) as refused:
        engine.execute_intent(order("b1", "buy", "1"), CTX)

    assert refused.value.reason.startswith("LOT_BOOK_FULL: ")
    assert venue.submitted == [] and venue.count("submit_order") == 0
    assert {p: d for p, d in store.docs.items() if not p.startswith("tenants/acme/accounts")
            and not p.startswith("tenants/acme/members")} == \
        {p: d for p, d in before.items()}  # no intent record, ledger row, slot or exposure


def test_a_sell_on_the_full_book_is_accepted_and_shrinks_it(world):
    store, venue, engine, _ = world
    state = full_book()
    store.set_doc(PATH, state)
    size = record_size(state, PATH)

    result = engine.execute_intent(order("s1", "sell", "10"), CTX)

    assert result.status == "placed" and venue.count("submit_order") == 1
    book = store.docs[PATH]
    assert len(book_lots(book)) == len(book_lots(state)) - 10
    assert record_size({k: v for k, v in book.items() if k != "updated_server_at"}, PATH) < size


def test_a_group_whose_leg_book_is_full_is_rejected_before_the_first_leg(world):
    store, venue, engine, clock = world
    store.set_doc(PATH, full_book())
    legs = [{"leg_id": "leg_001", "symbol": "AAPL", "direction": 1, "units": 10, "asset_class": "EQUITY"},
            {"leg_id": "leg_002", "symbol": "MSFT", "direction": -1, "units": 5, "asset_class": "EQUITY"}]
    request = {"strategy_id": "pairs", "legs": legs, "rpm_output": rpm_output(legs, clock.now()),
               "broker_account_id": "acct"}
    approve(store, request)

    group = engine.execute_group(request, CTX, group_id="g1")

    body = group.to_api_response()
    assert body["status"] == "REJECTED", body
    assert group.rejection is not None and group.rejection.code.value == "LOT_BOOK_FULL"
    assert group.rejection.detail.startswith("leg_001 ") and "open lots of AAPL" in group.rejection.detail
    assert venue.count("submit_order") == 0


def test_a_finish_on_a_book_over_the_write_limit_records_the_fill_and_marks_the_lot_step(world, monkeypatch, capsys):
    store, venue, engine, _ = world
    monkeypatch.setattr(cap, "MAX_FILL_INCREMENTS", 0)  # admitted under an older limit (no margin)
    state = book_of_size(cap.BOOK_WRITE_LIMIT - 100)
    store.set_doc(PATH, state)

    result = engine.execute_intent(order("b1", "buy", "1"), CTX)

    assert result.status == "placed"
    assert store.docs["tenants/acme/order_intents/b1"]["status"] == "placed"  # not RESERVED: no retry loop
    assert store.docs["tenants/acme/ledger_trades/b1"]["status"] == "placed"
    history = store.docs["users/u1/portfolio/history/trades/b1"]
    assert history["tax"].get("lot_method") is None
    assert store.docs[PATH] == state  # the book is unchanged
    marker = store.docs[f"users/u1/tax_disposals/{LABEL}--AAPL--overflow-b1"]
    assert marker["code"] == "LOT_BOOK_OVERFLOW" and marker["side"] == "BUY" and Decimal(marker["qty"]) == 1
    assert marker["book_bytes"] > cap.BOOK_WRITE_LIMIT and marker["trade_date"]
    alerts = [line for line in capsys.readouterr().out.splitlines() if '"tax.lot_book_overflow"' in line]
    assert alerts and '"severity":"ERROR"' in alerts[0] and '"b1"' in alerts[0]


def test_a_replace_that_raises_the_quantity_gets_a_coded_rejection_on_a_full_book():
    from backend.execution.preflight import lot_book_path, lot_book_rejection

    intent = order("r1", "buy", "1").with_account("acct")
    assert lot_book_path(intent, CTX) == PATH
    rejection = lot_book_rejection(intent, CTX, full_book(), qty=Decimal("5"))
    assert rejection is not None and rejection.code.value == "LOT_BOOK_FULL"
    assert rejection.detail.startswith(f"{len(book_lots(full_book())):,} open lots of AAPL")
    assert lot_book_rejection(intent, CTX, book_of(10), qty=Decimal("5")) is None
    sell = order("r2", "sell", "1").with_account("acct")
    assert lot_book_rejection(sell, CTX, full_book(), qty=Decimal("5")) is None  # closes long lots


def test_a_reserved_intent_is_resumed_on_a_book_that_filled_meanwhile_it_was_admitted_already():
    from tests.support.group_harness import CrashPoint, SimulatedCrash

    clock = ManualClock()
    store = InMemoryStore()
    venue = CrashingBroker(PaperBroker(clock=clock), crash=CrashPoint("submit_order", 1, "before"))
    with pytest.raises(SimulatedCrash):  # claimed (RESERVED), then the process died before the submit
        engine_on(store, venue, clock).execute_intent(order("b1", "buy", "1"), CTX)
    assert store.docs["tenants/acme/order_intents/b1"]["status"] == "reserved"
    store.set_doc(PATH, full_book())  # other fills filled the book meanwhile
    clock.advance(600)  # past the lease
    venue.crash = None

    result = engine_on(store, venue, clock).execute_intent(order("b1", "buy", "1"), CTX)

    assert result.status == "placed" and venue.count("submit_order") == 2  # the crash counted one
    assert len(venue.submitted) == 1
