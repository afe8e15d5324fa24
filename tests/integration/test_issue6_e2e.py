"""Issue 6 on the official Firestore emulator through ``FirestoreStore``: the tax-lot export (real
range queries and ``start_after`` cursors, a few hundred disposals read in bounded pages), the
tenant ledger review (real ordered queries with cursors, also while rows are added) and the metrics
read from the day shards. The handler runs in process (the real ``ApiApp`` + engine on a stub
broker); one test goes over real HTTP through ``functions-framework`` with Auth-emulator tokens.
"""
from __future__ import annotations

import csv
import io
import uuid
from datetime import datetime
from decimal import Decimal

import pytest

from backend import logs
from backend.adapters.firestore_store import FirestoreStore
from backend.api import ledger_review, tax_export
from backend.api.app import ApiApp
from backend.api.http import ApiRequest
from backend.api.models import TaxExport
from backend.domain.clock import ManualClock
from backend.execution.engine import ExecutionEngine, RiskManager, SmartRouter
from backend.execution.metrics import summarize
from backend.risk.manager import RiskLimits
from backend.settings import ExecSettings
from backend.tax import FORM_8949_HEADER, Fill
from tests.support.api_stack import QUOTES, FakeVerifier, FunctionsServer, execute_body, http_call
from tests.support.stub_broker import StubBroker

EXPORT = "/portfolio/tax-lots/export"



_BODY_ID: dict[str, str] = {}  # stored intent id -> the id the test's body sent (issue 10 item 10)

class Api:
    """The real ApiApp over an engine persisting to the emulator; tokens from a FakeVerifier."""

    def __init__(self, db):
        self.db = db
        self.clock = ManualClock()
        self.store = FirestoreStore(db)
        self.engine = ExecutionEngine(broker=StubBroker(quotes=dict(QUOTES), now=self.clock.now),
                                      router=SmartRouter(max_spread_pct="0.001"),
                                      risk=RiskManager(RiskLimits(max_position_qty=Decimal("1000000"))),
                                      dry_run=False, store=self.store, clock=self.clock,
                                      settings=ExecSettings.from_env({"EXEC_FILL_WAIT_SECONDS": "0"}))
        self.verifier = FakeVerifier()
        self.verifier.add("tok-alice", uid="alice", tenant_id="acme", role="trader")
        self.verifier.add("tok-bob", uid="bob", tenant_id="acme", role="trader")
        self.verifier.add("tok-admin", uid="carol", tenant_id="acme", role="tenant_admin")
        self.verifier.add("tok-globex-admin", uid="gus", tenant_id="globex", role="tenant_admin")
        self.app = ApiApp.with_instances(engine=self.engine, verifier=self.verifier)

    def get(self, path, token="tok-alice", **query):
        return self.app.handle(ApiRequest("GET", path, {"Authorization": f"Bearer {token}"}, query))

    def execute(self, token="tok-alice", **body):
        import json

        response = self.app.handle(ApiRequest("POST", "/execute", {"Authorization": f"Bearer {token}",
                                                                   "Content-Type": "application/json"}, {},
                                              json.dumps(execute_body(**body)).encode()))
        assert response.status == 201, response.json()
        if "intent_id" in body:  # the stored id is per user (derived from the body's); tests name the body's
            _BODY_ID[response.json()["intent_id"]] = body["intent_id"]
        return response.json()["status"]

    def book(self, uid, *fills, one_commit=False):
        """Fills through the store's own tax step (what finish()/save_group() add to their commit)."""
        groups = [list(fills)] if one_commit else [[f] for f in fills]
        for group in groups:
            batch = self.db.batch()
            self.store._add_tax(batch, [(uid, f) for f in group])  # noqa: SLF001
            batch.commit()


@pytest.fixture
def api(db):
    logs.set_stream(io.StringIO())
    try:
        yield Api(db)
    finally:
        logs.set_stream(None)


def fill(trade_id, side, qty, price, day, *, symbol="AAPL", fees="0", hour=15):
    return Fill(trade_id=trade_id, symbol=symbol, side=side, qty=Decimal(qty), price=Decimal(price),
                fees=Decimal(fees), timestamp=datetime.fromisoformat(f"{day}T{hour:02d}:00:00+00:00"),
                asset_class="EQUITY")


class RecordingStore:
    """FirestoreStore behind a hand-written proxy that records every page query."""

    def __init__(self, store):
        self.store = store
        self.calls: list[tuple[str, int, int]] = []

    def __getattr__(self, name):
        target = getattr(self.store, name)
        if not name.endswith("_page"):
            return target

        def page(*args, **kw):
            rows = target(*args, **kw)
            self.calls.append((name, kw["limit"], len(rows)))
            return rows

        return page


# ------------------------------------------------------------------------------- tax export


def test_tax_export_from_the_persisted_books_and_disposals(api, monkeypatch):
    monkeypatch.setattr(tax_export, "PAGE_SIZE", 2)  # every read (books, disposals) goes through its cursor
    api.book("alice",
             fill("b1", "BUY", "10", "100", "2025-03-03", fees="1"),
             fill("s1", "SELL", "4", "110", "2025-03-10", fees="1"),
             fill("m1", "BUY", "10", "100", "2025-02-03", symbol="MSFT"),
             fill("m2", "SELL", "10", "90", "2025-03-03", symbol="MSFT"),
             fill("m3", "BUY", "10", "95", "2025-03-10", symbol="MSFT"),
             fill("p1", "BUY", "5", "50", "2025-11-03", symbol="SPY"),
             fill("p2", "SELL", "5", "40", "2025-12-20", symbol="SPY"),
             fill("t1", "SELL", "2", "30", "2025-06-02", symbol="TSLA"))  # opens a SHORT lot (issue 19)
    api.book("bob", fill("x1", "BUY", "1", "10", "2025-01-02", symbol="QQQ"),
             fill("x2", "SELL", "1", "12", "2025-01-03", symbol="QQQ"))

    body = api.get(EXPORT, year="2025").json()
    rows = list(csv.reader(io.StringIO(api.get(EXPORT, year="2025", format="csv").text())))
    lots = list(csv.DictReader(io.StringIO(api.get(EXPORT, year="2025", format="csv", section="open_lots").text())))

    TaxExport.model_validate(body)
    assert rows == [list(FORM_8949_HEADER),
                    ["10 MSFT", "02/03/2025", "03/03/2025", "900.00", "1000.00", "W", "100.00", "0.00", "SHORT",
                     "FINAL", "I", "A"],
                    ["4 AAPL", "03/03/2025", "03/10/2025", "439.00", "400.40", "", "0.00", "38.60", "SHORT", "FINAL", "I", "A"],
                    ["5 SPY", "11/03/2025", "12/20/2025", "200.00", "250.00", "", "0.00", "-50.00", "SHORT",
                     "PROVISIONAL", "I", "A"]]  # issue 19: the TSLA sale is a short, no SHORTFALL row
    assert body["provisional"] is True and body["totals"]["gain_or_loss"] == "-11.40"
    assert body["totals"]["shortfalls"] == 0 and body["shortfalls"] == []
    assert [(lot["Symbol"], lot["Position"], lot["Quantity"], lot["Cost basis"]) for lot in lots] == [
        ("AAPL", "LONG", "6", "600.60"), ("MSFT", "LONG", "10", "1050.00"), ("TSLA", "SHORT", "2", "60.00")]
    assert {d["symbol"] for d in body["disposals"]} == {"AAPL", "MSFT", "SPY"}  # bob's QQQ never shows

    api.clock.advance(15 * 86400)  # 2026-01-20: the SPY loss's window closed on 01-19
    assert api.get(EXPORT, year="2025").json()["provisional"] is False


def test_csv_export_of_hundreds_of_disposals_reads_bounded_pages(api, monkeypatch):
    monkeypatch.setattr(tax_export, "PAGE_SIZE", 50)
    monkeypatch.setattr(tax_export, "CHUNK_ROWS", 40)
    sells = [fill(f"s{i:03d}", "SELL", "1", "110", f"2025-{1 + i // 56:02d}-{1 + (i // 2) % 28:02d}", hour=14 + i % 2)
             for i in range(300)]  # two sales a day, over 11 months
    api.book("alice", fill("b0", "BUY", "300", "100", "2024-12-02"), *sells, one_commit=True)
    recorder = RecordingStore(api.store)
    app = ApiApp.with_instances(engine=type("E", (), {"store": recorder, "clock": api.clock})(), verifier=api.verifier)

    response = app.handle(ApiRequest("GET", EXPORT, {"Authorization": "Bearer tok-alice"},
                                     {"year": "2025", "format": "csv"}))
    chunks = list(response.iter_bytes())
    records = list(csv.DictReader(io.StringIO(b"".join(chunks).decode())))
    totals = api.get(EXPORT, year="2025").json()["totals"]

    disposal_pages = [n for name, _, n in recorder.calls if name == "tax_disposals_page"]
    assert disposal_pages == [50] * 6 + [0]
    assert {limit for _, limit, _ in recorder.calls} == {50}
    assert len(chunks) >= 300 // 40
    assert len(records) == 300 and {r["Status"] for r in records} == {"FINAL"}
    sold = [datetime.strptime(r["Date sold or disposed of"], "%m/%d/%Y").date() for r in records]
    assert sold == sorted(sold)
    assert sum(Decimal(r["Proceeds"]) for r in records) == Decimal("33000.00") == Decimal(totals["proceeds"])
    assert sum(Decimal(r["Gain or (loss)"]) for r in records) == Decimal("3000.00") == Decimal(totals["gain_or_loss"])
    assert totals["disposals"] == 300 and totals["long_term"]["count"] == 0


# ------------------------------------------------------------------------ ledger and metrics


@pytest.fixture
def session(api):
    plan = [("tok-alice", dict(intent_id="a1", strategy_id="s1", symbol="AAPL")),
            ("tok-alice", dict(intent_id="a2", strategy_id="s1", symbol="WIDE")),
            ("tok-bob", dict(intent_id="b1", strategy_id="s2", symbol="SPY")),
            ("tok-bob", dict(intent_id="b2", strategy_id="s2", symbol="NOQUOTE")),
            ("tok-alice", dict(intent_id="a3", strategy_id="s2", symbol="AAPL", side="sell", qty="4")),
            ("tok-bob", dict(intent_id="b3", strategy_id="s1", symbol="AAPL", qty="9999999"))]
    statuses = {}
    for index, (token, body) in enumerate(plan):
        statuses[body["intent_id"]] = api.execute(token, **body)
        api.clock.advance(3600 * 20 if index % 2 else 1)  # ties by id: the paging test below
    assert statuses == {"a1": "placed", "a2": "downgraded", "b1": "placed", "b2": "rejected", "a3": "placed",
                        "b3": "rejected"}
    return statuses


def ledger(api, token="tok-admin", **query):
    return api.get("/tenants/acme/ledger", token, **query)


def ids(response):
    assert response.status == 200, response.json()
    return [_BODY_ID.get(row["ledger_id"], row["ledger_id"]) for row in response.json()["items"]]


def test_ledger_filters_run_as_real_queries(api, session):
    assert ids(ledger(api)) == ["b3", "a3", "b2", "b1", "a2", "a1"]
    assert ids(ledger(api, status="rejected", uid="bob")) == ["b3", "b2"]
    assert ids(ledger(api, symbol="aapl")) == ["b3", "a3", "a1"]
    assert ids(ledger(api, strategy_id="s2")) == ["a3", "b2", "b1"]
    assert ids(ledger(api, status="placed", strategy_id="s1")) == ["a1"]
    assert ids(ledger(api, **{"from": "2026-01-06", "to": "2026-01-06"})) == ["b2", "b1"]
    assert ids(ledger(api, status="downgraded", **{"from": "2026-01-05"})) == ["a2"]
    assert ledger(api, symbol="AAPL", uid="bob").json()["error"]["code"] == "UNSUPPORTED_FILTER"
    assert ledger(api, token="tok-alice").status == 403
    assert ledger(api, token="tok-globex-admin").status == 403


def test_ledger_pages_with_real_cursors_without_gaps_or_repeats_while_rows_are_added(api, session):
    for i in range(9):  # 15 rows in all, many sharing one created_at
        api.execute(intent_id=f"c{i}", strategy_id="s3")
        if i % 3 == 2:
            api.clock.advance(1)
    snapshot = ids(ledger(api, limit="500"))
    seen, cursor, added = [], None, []
    while True:
        query = {"limit": "4"} if cursor is None else {"limit": "4", "cursor": cursor}
        body = ledger(api, **query).json()
        seen += [_BODY_ID.get(row["ledger_id"], row["ledger_id"]) for row in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
        api.clock.advance(1)
        new_id = f"n{len(added)}"
        api.execute(token="tok-bob", intent_id=new_id)  # a new row between two page fetches
        added.append(new_id)

    assert seen == snapshot and len(snapshot) == 15 and len(added) == 3
    assert ids(ledger(api, limit="3")) == list(reversed(added))


def test_ledger_csv_export_streams_all_pages(api, session, monkeypatch):
    monkeypatch.setattr(ledger_review, "PAGE_SIZE", 4)
    response = ledger(api, format="csv", status="placed")
    chunks = list(response.iter_bytes())
    rows = list(csv.DictReader(io.StringIO(b"".join(chunks).decode())))
    every = list(csv.DictReader(io.StringIO(ledger(api, format="csv").text())))

    assert [_BODY_ID[r["ledger_id"]] for r in rows] == ["a3", "b1", "a1"] and len(chunks) == 1
    assert [_BODY_ID[r["ledger_id"]] for r in every] == ["b3", "a3", "b2", "b1", "a2", "a1"]
    assert every[0]["reason_code"] == "POSITION_LIMIT" and every[0]["uid"] == "bob"


def test_metrics_are_read_from_the_day_shards(api, session):
    body = api.get("/tenants/acme/metrics", "tok-admin", **{"from": "2026-01-01", "to": "2026-01-31"}).json()
    docs = api.store.read_metrics("acme", "2026-01-01", "2026-01-31")

    assert body["summary"] == summarize(docs) and body["shard_documents"] == len(docs)
    assert (body["summary"]["decisions"], body["summary"]["placed"], body["summary"]["downgraded"],
            body["summary"]["rejected"]) == (6, 3, 1, 2)
    assert set(body["by_strategy"]) == {"s1", "s2"} and body["by_strategy"]["s2"] == summarize(docs, "s2")
    assert body["by_strategy"]["s1"]["downgraded"] == 1 and body["by_strategy"]["s2"]["rejected"] == 1
    one = api.get("/tenants/acme/metrics", "tok-admin", **{"from": "2026-01-06", "to": "2026-01-06",
                                                           "strategy_id": "s2"}).json()
    assert one["by_strategy"] is None and one["summary"]["decisions"] == 2


# ------------------------------------------------------------------------------- real HTTP


@pytest.mark.slow
def test_over_real_http_the_exports_are_chunked_streams(firestore_emulator, auth, db):
    project = auth.project
    env = {"FIRESTORE_EMULATOR_HOST": firestore_emulator.host, "FIREBASE_AUTH_EMULATOR_HOST": auth.host,
           "GOOGLE_CLOUD_PROJECT": project, "GCLOUD_PROJECT": project, "EXEC_DRY_RUN": "0",
           "EXEC_ACCOUNTS": "auto",  # legacy labels: one account per user (issue 12)
           "GOOGLE_APPLICATION_CREDENTIALS": ""}
    tokens = {}
    for name, role in (("trader", "trader"), ("admin", "tenant_admin")):
        email = f"{name}-{uuid.uuid4().hex[:8]}@example.com"
        uid, _ = auth.sign_up(email, "secret-pw-1")
        auth.set_claims(uid, {"tenant_id": "acme", "role": role})
        tokens[name] = (uid, auth.sign_in(email, "secret-pw-1"))
    trader_uid, trader = tokens["trader"]
    store = FirestoreStore(db)
    batch = db.batch()
    store._add_tax(batch, [(trader_uid, fill("b1", "BUY", "10", "100", "2025-03-03", fees="1")),  # noqa: SLF001
                           (trader_uid, fill("s1", "SELL", "4", "110", "2025-03-10", fees="1"))])
    batch.commit()

    with FunctionsServer(env) as server:
        status, _, _ = http_call("POST", server.url + "/execute", execute_body(symbol="SPY", qty="3"),
                                 {"Authorization": f"Bearer {trader}"})
        assert status == 201
        status, headers, text = http_call("GET", server.url + EXPORT + "?year=2025&format=csv",
                                          headers={"Authorization": f"Bearer {trader}"})
        assert status == 200 and headers.get("Transfer-Encoding") == "chunked"
        assert headers["Content-Type"].startswith("text/csv")
        assert text.splitlines()[1] == "4 AAPL,03/03/2025,03/10/2025,439.00,400.40,,0.00,38.60,SHORT,FINAL,I,A"
        status, headers, body = http_call("GET", server.url + EXPORT + "?year=2025",
                                          headers={"Authorization": f"Bearer {trader}"})
        assert status == 200 and body["totals"]["gain_or_loss"] == "38.60"
        status, _, body = http_call("GET", server.url + "/tenants/acme/ledger?limit=5",
                                    headers={"Authorization": f"Bearer {tokens['admin'][1]}"})
        assert status == 200 and [row["uid"] for row in body["items"]] == [trader_uid]
        status, _, _ = http_call("GET", server.url + "/tenants/acme/ledger",
                                 headers={"Authorization": f"Bearer {trader}"})
        assert status == 403
