"""VenuePool: the venue of a bound account, over real HTTP (alpaca-py's BrokerClient against the local
Alpaca-compatible server's Broker API routes, httpx against the local OANDA server) and the
simulated paper venue. Credentials come from a real secret source (``bootstrap.secret_source``:
environment and a local secrets file); connection documents from the real stores
(``put_connection`` / ``get_connection``): the in-memory store everywhere, and the Firestore emulator
for the Broker API, rebuild and deletion tests. No mocks: the pool builds the real adapters.
"""
from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal as D

import pytest

from backend import bootstrap
from backend.adapters import alpaca_broker_api
from backend.adapters.alpaca_broker_api import AlpacaBrokerApiAccount, AlpacaBrokerApiConnection
from backend.adapters.oanda import OandaBroker
from backend.adapters.oanda.broker import forget_instruments
from backend.adapters.oanda.client import close_shared_clients
from backend.adapters.memory_store import InMemoryStore
from backend.adapters.paper_broker import PaperBroker
from backend.adapters.secrets import CachedSecretSource, LocalFileSecretSource
from backend.adapters.venue_pool import CONNECTION_TTL_SECONDS, STALE_GRACE_SECONDS, VenuePool
from backend.domain.accounts import BrokerConnection, connection_path
from backend.domain.assets import AssetClass
from backend.domain.clock import ManualClock
from backend.domain.errors import InvalidInput, RejectCode, Rejection
from backend.execution.broker_router import BrokerRouter
from backend.ports.accounts import DEPLOYMENT_CONNECTION_ID, AccountBinding, VenueUnavailable
from backend.ports.broker import BrokerError, OrderRequest, OrderSide, OrderState
from backend.ports.secrets import SecretRef, SecretUnavailable
from tests.support.alpaca_server import LocalAlpacaServer
from tests.support.group_harness import scenario
from tests.support.oanda_server import LocalOandaServer

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
KEY, SECRET = "PKVENUEPOOL0123", "venue-pool-secret-Zx9-do-not-leak"
ROTATED_KEY, ROTATED_SECRET = "PKVENUEPOOL4567", "venue-pool-rotated-Qw7-do-not-leak"
TOKEN = "oanda-token-Ty6-do-not-leak"
ALL_SECRETS = (KEY, SECRET, ROTATED_KEY, ROTATED_SECRET, TOKEN)
TENANT, OTHER_TENANT = "t-acme", "t-globex"


class ConnectionDocs:
    """A real store (``AccountStore``) with its ``get_connection`` reads counted."""

    def __init__(self, store) -> None:
        self.store = store
        self.reads = 0
        self.failure: Exception | None = None  # raised by get_connection while set (a store outage)

    def put(self, tenant_id: str, connection: BrokerConnection) -> BrokerConnection:
        return self.store.put_connection(tenant_id, connection)

    def delete(self, tenant_id: str, connection_id: str) -> None:
        path = connection_path(tenant_id, connection_id)
        if hasattr(self.store, "db"):
            self.store.db.document(path).delete()
        else:
            with self.store._lock:
                self.store.docs.pop(path, None)
        assert self.store.get_connection(tenant_id, connection_id) is None

    def get_connection(self, tenant_id: str, connection_id: str) -> BrokerConnection | None:
        self.reads += 1
        if self.failure is not None:
            raise self.failure
        return self.store.get_connection(tenant_id, connection_id)


def connection(connection_id: str, venue: str, environment: str, *, ref: str | None = None,
               base_url: str | None = None, updated_at: datetime = T0) -> BrokerConnection:
    return BrokerConnection(connection_id=connection_id, venue=venue, environment=environment,
                            credentials_ref=ref, base_url=base_url, created_at=T0, updated_at=updated_at)


def binding(account_id: str, conn: BrokerConnection | None, venue_account_id: str) -> AccountBinding:
    if conn is None:
        return AccountBinding(account_id, DEPLOYMENT_CONNECTION_ID, "deployment", venue_account_id)
    return AccountBinding(account_id, conn.connection_id, conn.venue.value, venue_account_id)


def order(cid: str, side: str = "buy", qty: str = "10", symbol: str = "SPY",
          asset_class: AssetClass = AssetClass.EQUITY) -> OrderRequest:
    return OrderRequest(client_order_id=cid, symbol=symbol, asset_class=asset_class, side=OrderSide(side), qty=D(qty))


def fx(cid: str, side: str = "buy", qty: str = "100000") -> OrderRequest:
    return order(cid, side, qty, symbol="EUR/USD", asset_class=AssetClass.FOREX)


def posted_paths(server, count: int) -> list[str]:
    """Paths of the POSTs the local server logged, once ``count`` are logged (the server appends to its
    request log just after answering, so the log may trail the response briefly)."""
    deadline = time.monotonic() + 2.0
    while True:
        paths = [r.path for r in list(server.requests) if r.method == "POST"]
        if len(paths) >= count or time.monotonic() > deadline:
            return paths
        time.sleep(0.005)


def positions(router: BrokerRouter, asset_class: AssetClass = AssetClass.EQUITY) -> dict[str, D]:
    return {p.symbol: p.qty for p in router.broker_for(asset_class).get_positions()}


@pytest.fixture
def clock():
    return ManualClock(T0)


BOTH_STORES = pytest.mark.parametrize("docs", ["memory", pytest.param("firestore", marks=pytest.mark.emulator)],
                                      indirect=True)


@pytest.fixture
def docs(request):
    """The store holding the connection documents: in memory, or Firestore (``BOTH_STORES``)."""
    if getattr(request, "param", "memory") == "firestore":
        from backend.adapters.firestore_store import FirestoreStore

        return ConnectionDocs(FirestoreStore(request.getfixturevalue("db")))
    return ConnectionDocs(InMemoryStore())


@pytest.fixture
def secrets_file(tmp_path):
    path = tmp_path / ".secrets.local"

    def write(**entries):
        """Replace the file's entries (none given: leave it); returns its path."""
        if entries:
            path.write_text(json.dumps(entries))
        return path

    write(ALPACA_BROKER_CREDS={"key_id": KEY, "secret_key": SECRET})
    return write


@pytest.fixture
def environ(tmp_path, secrets_file):
    """The process environment the secret source reads (a dict: nothing leaks into os.environ)."""
    return {"EXEC_SECRETS_FILE": str(tmp_path / ".secrets.local"),
            "OANDA_CREDS": json.dumps({"token": TOKEN})}


@pytest.fixture
def make_pool(docs, clock, environ):
    def make(deployment=None, **kwargs) -> VenuePool:
        deployment = deployment if deployment is not None else bootstrap.paper_broker({}, clock)
        pool = bootstrap.build_venue_pool(environ, None, clock, docs, deployment)
        for name, value in kwargs.items():
            setattr(pool, name, value)
        return pool

    return make


@pytest.fixture
def alpaca(clock):
    alpaca_broker_api.clear_client_cache()
    with LocalAlpacaServer("default", clock=clock) as srv:
        yield srv
    alpaca_broker_api.clear_client_cache()


@pytest.fixture
def oanda_server():
    srv = LocalOandaServer(scenario(), clock=ManualClock(T0), token=TOKEN).start()
    yield srv
    srv.stop()
    close_shared_clients()
    forget_instruments()


# ------------------------------------------------------------------------------- Alpaca Broker API


@BOTH_STORES
def test_two_broker_api_accounts_of_one_connection_trade_only_their_own_venue_accounts(
        alpaca, docs, make_pool):
    conn = docs.put(TENANT, connection("broker-1", "alpaca_broker", "sandbox", ref="file:ALPACA_BROKER_CREDS",
                                       base_url=alpaca.url))
    alice_id, bob_id = alpaca.open_account(str(uuid.uuid4())), alpaca.open_account(str(uuid.uuid4()))
    pool = make_pool()

    alice = pool.router_for(TENANT, binding("alice-main", conn, alice_id))
    bob = pool.router_for(TENANT, binding("bob-main", conn, bob_id))
    bought = alice.broker_for(AssetClass.EQUITY).submit_order(order("a-1", "buy", "100"))
    sold = bob.broker_for(AssetClass.EQUITY).submit_order(order("b-1", "sell", "40"))

    assert bought.state is OrderState.FILLED and sold.state is OrderState.FILLED
    assert alpaca.venue.net_position("SPY", account_id=alice_id) == D("100")
    assert alpaca.venue.net_position("SPY", account_id=bob_id) == D("-40")
    assert alpaca.venue.net_position("SPY") == 0  # the Trading API's default account: untouched
    assert positions(alice) == {"SPY": D("100")} and positions(bob) == {"SPY": D("-40")}
    assert set(posted_paths(alpaca, 2)) == {f"/v1/trading/accounts/{alice_id}/orders", f"/v1/trading/accounts/{bob_id}/orders"}
    # one connection, one BrokerClient for both accounts; the routers themselves are cached
    a_broker, b_broker = alice.broker_for(AssetClass.EQUITY), bob.broker_for(AssetClass.EQUITY)
    assert isinstance(a_broker, AlpacaBrokerApiAccount) and a_broker.account_id == alice_id
    assert a_broker.connection is b_broker.connection is pool.shared_venue(TENANT, "broker-1")
    assert a_broker._clients().trading._broker is b_broker._clients().trading._broker
    assert pool.router_for(TENANT, binding("alice-main", conn, alice_id)) is alice
    assert docs.reads == 1  # the connection document was read once (TTL cache)
    # a Broker API connection trades no FX: the coded routing refusal, nothing sent
    assert alice.rejection_for(AssetClass.FOREX) == Rejection(RejectCode.NO_VENUE_FOR_ASSET_CLASS, "FOREX")


@BOTH_STORES
def test_an_edited_connection_is_rebuilt_after_the_ttl_and_a_rotated_key_gets_a_new_client(
        alpaca, docs, make_pool, clock, secrets_file):
    conn = docs.put(TENANT, connection("broker-1", "alpaca_broker", "sandbox", ref="file:ALPACA_BROKER_CREDS",
                                       base_url=alpaca.url))
    account_id = alpaca.open_account(str(uuid.uuid4()))
    pool = make_pool()
    first = pool.router_for(TENANT, binding("main", conn, account_id))
    first_connection = pool.shared_venue(TENANT, "broker-1")
    first_client = first_connection.clients().broker

    # an admin edit (new updated_at): not seen before the TTL, rebuilt after it
    docs.put(TENANT, connection("broker-1", "alpaca_broker", "sandbox", ref="file:ALPACA_BROKER_CREDS",
                                base_url=alpaca.url, updated_at=T0 + timedelta(minutes=5)))
    clock.advance(CONNECTION_TTL_SECONDS / 2)
    assert pool.router_for(TENANT, binding("main", conn, account_id)) is first
    clock.advance(CONNECTION_TTL_SECONDS)
    edited = pool.router_for(TENANT, binding("main", conn, account_id))

    assert edited is not first
    assert pool.shared_venue(TENANT, "broker-1") is not first_connection
    assert docs.reads == 2
    # the same settings and keys: alpaca-py's client is still the one per process (no new sockets)
    assert pool.shared_venue(TENANT, "broker-1").clients().broker is first_client

    # the secret is rotated (the document is not touched): the next read after the TTL has new keys
    secrets_file(ALPACA_BROKER_CREDS={"key_id": ROTATED_KEY, "secret_key": ROTATED_SECRET})
    clock.advance(CONNECTION_TTL_SECONDS + 1)
    rotated = pool.router_for(TENANT, binding("main", conn, account_id))

    assert rotated is not edited
    assert pool.shared_venue(TENANT, "broker-1").clients().broker is not first_client
    placed = rotated.broker_for(AssetClass.EQUITY).submit_order(order("r-1"))
    assert placed.state is OrderState.FILLED
    assert alpaca.venue.net_position("SPY", account_id=account_id) == D("10")

    # an unchanged connection re-read after the TTL keeps its clients and routers
    clock.advance(CONNECTION_TTL_SECONDS + 1)
    assert pool.router_for(TENANT, binding("main", conn, account_id)) is rotated


def test_alpaca_trading_connection_is_one_account_with_its_own_keys(alpaca, docs, make_pool, secrets_file):
    secrets_file(ALPACA_BROKER_CREDS={"key_id": KEY, "secret_key": SECRET},
                 TRADING_CREDS={"key_id": ROTATED_KEY, "secret_key": ROTATED_SECRET})
    conn = docs.put(TENANT, connection("trading-1", "alpaca_trading", "paper", ref="file:TRADING_CREDS",
                                       base_url=alpaca.url))
    pool = make_pool()

    router = pool.router_for(TENANT, binding("main", conn, str(uuid.uuid4())))
    router.broker_for(AssetClass.EQUITY).submit_order(order("t-1", qty="7"))

    assert alpaca.venue.net_position("SPY") == D("7")  # the Trading API trades its key's account
    assert posted_paths(alpaca, 1) == ["/v2/orders"]


# ------------------------------------------------------------------------------- OANDA


@pytest.mark.parametrize("ref", ["env:OANDA_CREDS", "file:OANDA_FILE_CREDS"])
def test_an_oanda_connection_trades_its_account_with_the_token_from_the_secret_source(
        oanda_server, docs, make_pool, secrets_file, ref):
    secrets_file(OANDA_FILE_CREDS={"token": TOKEN})
    conn = docs.put(TENANT, connection("fx-1", "oanda", "paper", ref=ref, base_url=oanda_server.url))
    pool = make_pool()

    router = pool.router_for(TENANT, binding("fx-main", conn, oanda_server.account_id))
    filled = router.broker_for(AssetClass.FOREX).submit_order(fx("o-1"))

    broker = router.broker_for(AssetClass.FOREX)
    assert isinstance(broker, OandaBroker) and broker.config.account_id == oanda_server.account_id
    assert broker.config.environment == "practice"
    assert filled.state is OrderState.FILLED
    assert oanda_server.venue.net_position("EUR/USD") == D("100000")
    assert oanda_server.client_id_counts() == {"o-1": 1}
    assert router.broker_for(AssetClass.COMMODITY) is broker
    assert router.rejection_for(AssetClass.EQUITY) == Rejection(RejectCode.NO_VENUE_FOR_ASSET_CLASS, "EQUITY")


def test_an_oanda_token_the_venue_refuses_is_a_coded_refusal_without_the_token(oanda_server, docs, make_pool,
                                                                               environ):
    environ["OANDA_CREDS"] = json.dumps({"token": "wrong-" + TOKEN})
    conn = docs.put(TENANT, connection("fx-1", "oanda", "paper", ref="env:OANDA_CREDS", base_url=oanda_server.url))
    pool = make_pool()

    router = pool.router_for(TENANT, binding("fx-main", conn, oanda_server.account_id))
    with pytest.raises(BrokerError) as refused:
        router.broker_for(AssetClass.FOREX).submit_order(fx("o-1"))

    assert TOKEN not in str(refused.value) and TOKEN not in repr(refused.value)
    assert oanda_server.client_id_counts() == {}


# ------------------------------------------------------------------------------- paper and deployment


def test_a_paper_connection_gives_each_account_its_own_book_of_one_venue_per_connection(docs, make_pool):
    conn = docs.put(TENANT, connection("paper-1", "paper", "paper"))
    docs.put(OTHER_TENANT, connection("paper-1", "paper", "paper"))
    pool = make_pool()

    alice = pool.router_for(TENANT, binding("alice", conn, "alice-book"))
    bob = pool.router_for(TENANT, binding("bob", conn, "bob-book"))
    other = pool.router_for(OTHER_TENANT, binding("alice", conn, "alice-book"))
    alice.broker_for(AssetClass.EQUITY).submit_order(order("p-1", "buy", "100"))
    bob.broker_for(AssetClass.EQUITY).submit_order(order("p-1", "sell", "40"))  # same client id: another book

    base = pool.shared_venue(TENANT, "paper-1")
    assert positions(alice) == {"SPY": D("100")} and positions(bob) == {"SPY": D("-40")}
    assert positions(other) == {}  # another tenant's connection is another venue
    assert alice.broker_for(AssetClass.EQUITY).venue is bob.broker_for(AssetClass.EQUITY).venue is base.venue
    assert other.broker_for(AssetClass.EQUITY).venue is not base.venue
    assert base.venue.net_position("SPY", account_id="alice-book") == D("100")
    assert alice.supports(AssetClass.FOREX)  # the paper venue trades every class


def test_a_paper_connections_books_survive_a_rebuild_of_the_connection(docs, make_pool, clock):
    conn = docs.put(TENANT, connection("paper-1", "paper", "paper"))
    pool = make_pool()
    pool.router_for(TENANT, binding("a", conn, "a-book")).broker_for(AssetClass.EQUITY).submit_order(order("p-1"))

    docs.put(TENANT, connection("paper-1", "paper", "paper", updated_at=T0 + timedelta(hours=1)))
    clock.advance(CONNECTION_TTL_SECONDS + 1)
    again = pool.router_for(TENANT, binding("a", conn, "a-book"))

    assert positions(again) == {"SPY": D("10")}


def test_the_deployment_connection_with_the_paper_default_gives_each_account_a_book(clock, make_pool, docs):
    deployment = bootstrap.paper_broker({}, clock)
    pool = make_pool(deployment)

    alice = pool.router_for(TENANT, binding("alice", None, "acme-alice"))
    bob = pool.router_for(TENANT, binding("bob", None, "acme-bob"))
    alice.broker_for(AssetClass.EQUITY).submit_order(order("d-1", "buy", "100"))
    bob.broker_for(AssetClass.EQUITY).submit_order(order("d-1", "sell", "40"))

    assert positions(alice) == {"SPY": D("100")} and positions(bob) == {"SPY": D("-40")}
    assert deployment.venue.net_position("SPY") == 0  # the deployment's own default book: untouched
    assert deployment.venue.net_position("SPY", account_id="acme-alice") == D("100")
    assert alice.broker_for(AssetClass.EQUITY).venue is deployment.venue
    assert pool.router_for(TENANT, binding("alice", None, "acme-alice")) is alice
    assert docs.reads == 0  # the deployment connection has no document


def test_a_deployment_book_is_never_shared_by_two_tenants(clock, make_pool):
    pool = make_pool(bootstrap.paper_broker({}, clock))
    pool.router_for(TENANT, binding("main", None, "main"))

    with pytest.raises(VenueUnavailable) as refused:
        pool.router_for(OTHER_TENANT, binding("main", None, "main"))

    assert refused.value.code is RejectCode.VENUE_UNAVAILABLE
    assert "another tenant" in refused.value.reason


def test_a_routed_deployment_scopes_the_paper_venue_and_keeps_a_single_account_venue(
        clock, make_pool, oanda_server):
    env = {"EXEC_BROKER_ROUTES": "EQUITY=paper,CRYPTO=paper,FOREX=oanda,COMMODITY=oanda",
           "OANDA_ACCOUNT_ID": oanda_server.account_id, "OANDA_BASE_URL": oanda_server.url}
    deployment = bootstrap.build_broker(env, {"OANDA_API_TOKEN": TOKEN}, clock)
    pool = make_pool(deployment)

    router = pool.router_for(TENANT, binding("alice", None, "acme-alice"))

    paper = router.broker_for(AssetClass.EQUITY)
    assert isinstance(paper, PaperBroker) and paper.account_id == "acme-alice"
    assert router.broker_for(AssetClass.CRYPTO) is paper  # one per-account broker per deployment venue
    assert router.broker_for(AssetClass.FOREX) is deployment.broker_for(AssetClass.FOREX)  # the one OANDA account
    assert router.rejection_for(AssetClass.OPTIONS) == Rejection(RejectCode.NO_VENUE_FOR_ASSET_CLASS, "OPTIONS")
    router.broker_for(AssetClass.FOREX).submit_order(fx("d-fx"))
    assert oanda_server.venue.net_position("EUR/USD") == D("100000")


# ------------------------------------------------------------------------------- unavailable venues


def _no_secret_in(*texts: str) -> None:
    basic = [base64.b64encode(f"{k}:{s}".encode()).decode() for k, s in ((KEY, SECRET), (ROTATED_KEY, ROTATED_SECRET))]
    for text in texts:
        for value in (*ALL_SECRETS, *basic):
            assert value not in text


@pytest.mark.parametrize("case", ["missing_connection", "unset_env", "secret_not_json", "field_missing",
                                  "file_entry_missing", "venue_changed", "bad_venue_account_id"])
def test_an_unavailable_venue_is_a_coded_refusal_that_names_no_secret(case, docs, make_pool, environ, quiet_logs,
                                                                      caplog, secrets_file, alpaca):
    caplog.set_level(logging.DEBUG)
    conn = connection("broker-1", "alpaca_broker", "sandbox", ref="file:ALPACA_BROKER_CREDS", base_url=alpaca.url)
    bound = binding("main", conn, str(uuid.uuid4()))
    if case != "missing_connection":
        docs.put(TENANT, conn)
    if case == "unset_env":
        docs.put(TENANT, connection("broker-1", "alpaca_broker", "sandbox", ref="env:NOT_SET", base_url=alpaca.url))
    if case == "secret_not_json":  # a raw key pasted where the JSON object belongs
        environ["PASTED"] = SECRET
        docs.put(TENANT, connection("broker-1", "alpaca_broker", "sandbox", ref="env:PASTED", base_url=alpaca.url))
    if case == "field_missing":
        secrets_file(ALPACA_BROKER_CREDS={"key_id": KEY, "secret": SECRET})
    if case == "file_entry_missing":
        secrets_file(SOMETHING_ELSE={"key_id": KEY, "secret_key": SECRET})
    if case == "venue_changed":
        bound = AccountBinding("main", "broker-1", "alpaca_trading", bound.venue_account_id)
    if case == "bad_venue_account_id":
        bound = binding("main", conn, "not-a-uuid")
    pool = make_pool()

    with pytest.raises(VenueUnavailable) as refused:
        pool.router_for(TENANT, bound)

    error = refused.value
    assert error.code is RejectCode.VENUE_UNAVAILABLE and error.rejection.code is RejectCode.VENUE_UNAVAILABLE
    assert "broker-1" in str(error)
    _no_secret_in(str(error), repr(error), str(error.rejection), quiet_logs.getvalue(), caplog.text)
    assert '"venues.unavailable"' in quiet_logs.getvalue()
    assert not [r for r in alpaca.requests if r.method == "POST"]


@BOTH_STORES
def test_a_deleted_connection_stops_its_accounts_after_the_ttl(docs, make_pool, clock):
    conn = docs.put(TENANT, connection("paper-1", "paper", "paper"))
    pool = make_pool()
    pool.router_for(TENANT, binding("a", conn, "a-book"))

    docs.delete(TENANT, "paper-1")
    clock.advance(CONNECTION_TTL_SECONDS + 1)

    with pytest.raises(VenueUnavailable, match="no such connection document"):
        pool.router_for(TENANT, binding("a", conn, "a-book"))


def test_a_store_outage_serves_the_loaded_connection_for_a_bounded_grace(docs, make_pool, clock, quiet_logs):
    conn = docs.put(TENANT, connection("paper-1", "paper", "paper"))
    pool = make_pool()
    first = pool.router_for(TENANT, binding("a", conn, "a-book"))

    docs.failure = ConnectionError("store unreachable")
    clock.advance(CONNECTION_TTL_SECONDS + 1)
    during = pool.router_for(TENANT, binding("a", conn, "a-book"))
    clock.advance(STALE_GRACE_SECONDS)

    assert during is first
    assert '"venues.connection_stale_served"' in quiet_logs.getvalue()
    with pytest.raises(ConnectionError):
        pool.router_for(TENANT, binding("a", conn, "a-book"))
    docs.failure = None
    assert positions(pool.router_for(TENANT, binding("a", conn, "a-book"))) == {}


def test_a_connection_document_that_does_not_parse_is_an_unavailable_venue():
    store = InMemoryStore()
    store.docs[connection_path(TENANT, "bad-1")] = {**connection("bad-1", "paper", "paper").to_dict(),
                                                   "venue": "nyse"}
    pool = bootstrap.build_venue_pool({}, None, ManualClock(T0), store, bootstrap.paper_broker({}))

    with pytest.raises(VenueUnavailable, match="the connection document is invalid") as refused:
        pool.router_for(TENANT, AccountBinding("a", "bad-1", "paper", "a-book"))

    assert refused.value.code is RejectCode.VENUE_UNAVAILABLE


def test_routers_are_bounded_least_recently_used_first(docs, make_pool):
    conn = docs.put(TENANT, connection("paper-1", "paper", "paper"))
    pool = make_pool(max_routers=2)

    first = pool.router_for(TENANT, binding("a", conn, "a"))
    second = pool.router_for(TENANT, binding("b", conn, "b"))
    assert pool.router_for(TENANT, binding("a", conn, "a")) is first  # a is now the most recent
    third = pool.router_for(TENANT, binding("c", conn, "c"))  # evicts b

    assert pool.router_for(TENANT, binding("a", conn, "a")) is first
    assert pool.router_for(TENANT, binding("c", conn, "c")) is third
    rebuilt = pool.router_for(TENANT, binding("b", conn, "b"))  # evicted: built again (evicts a)
    assert rebuilt is not second
    assert rebuilt.broker_for(AssetClass.EQUITY).venue is second.broker_for(AssetClass.EQUITY).venue  # same books
    assert pool.router_for(TENANT, binding("a", conn, "a")) is not first


# ------------------------------------------------------------------------------- secrets stay secret


def test_no_secret_appears_in_any_log_line_repr_or_description_while_building_and_trading(
        alpaca, oanda_server, docs, make_pool, secrets_file, quiet_logs, caplog, clock):
    caplog.set_level(logging.DEBUG)
    secrets_file(ALPACA_BROKER_CREDS={"key_id": KEY, "secret_key": SECRET},
                 TRADING_CREDS={"key_id": ROTATED_KEY, "secret_key": ROTATED_SECRET})
    broker_conn = docs.put(TENANT, connection("broker-1", "alpaca_broker", "sandbox", ref="file:ALPACA_BROKER_CREDS",
                                              base_url=alpaca.url))
    trading_conn = docs.put(TENANT, connection("trading-1", "alpaca_trading", "paper", ref="file:TRADING_CREDS",
                                               base_url=alpaca.url))
    fx_conn = docs.put(TENANT, connection("fx-1", "oanda", "paper", ref="env:OANDA_CREDS",
                                          base_url=oanda_server.url))
    pool = make_pool()
    account_id = alpaca.open_account(str(uuid.uuid4()))

    routers = [pool.router_for(TENANT, binding("b", broker_conn, account_id)),
               pool.router_for(TENANT, binding("t", trading_conn, str(uuid.uuid4()))),
               pool.router_for(TENANT, binding("f", fx_conn, oanda_server.account_id))]
    routers[0].broker_for(AssetClass.EQUITY).submit_order(order("s-1"))
    routers[1].broker_for(AssetClass.EQUITY).submit_order(order("s-2"))
    routers[2].broker_for(AssetClass.FOREX).submit_order(fx("s-3"))
    routers[0].broker_for(AssetClass.EQUITY).get_positions()
    routers[2].broker_for(AssetClass.FOREX).get_account()
    clock.advance(CONNECTION_TTL_SECONDS + 1)  # re-read connections and credentials
    pool.router_for(TENANT, binding("b", broker_conn, account_id))

    shown = [repr(pool), *(repr(r.broker_for(k)) for r, k in zip(routers, (AssetClass.EQUITY, AssetClass.EQUITY,
                                                                           AssetClass.FOREX))),
             *(json.dumps(r.describe()) for r in routers),
             repr(pool.shared_venue(TENANT, "broker-1")), repr(pool.shared_venue(TENANT, "trading-1")),
             repr(pool.shared_venue(TENANT, "fx-1")), repr(routers[2].broker_for(AssetClass.FOREX).config)]
    logs = quiet_logs.getvalue()
    assert '"venues.connection_loaded"' in logs and '"venues.router_built"' in logs
    assert "file:ALPACA_BROKER_CREDS" in logs  # the reference is logged; the values never are
    _no_secret_in(logs, caplog.text, *shown)
    # the capture saw the HTTP clients' own debug lines (alpaca-py's requests/urllib3, OANDA's httpx)
    assert {"urllib3.connectionpool", "httpx"} <= {record.name for record in caplog.records}
    assert isinstance(pool.shared_venue(TENANT, "broker-1"), AlpacaBrokerApiConnection)


# ------------------------------------------------------------------------------- configuration


def test_a_deployment_venue_passed_in_as_given_is_one_venue_account_for_every_account(clock, docs, environ):
    deployment = bootstrap.paper_broker({}, clock)
    pool = bootstrap.build_venue_pool(environ, None, clock, docs, deployment, deployment_books=False)

    alice = pool.router_for(TENANT, binding("alice", None, "acme-alice"))
    alice.broker_for(AssetClass.EQUITY).submit_order(order("g-1"))

    assert alice.broker_for(AssetClass.EQUITY) is deployment
    assert deployment.venue.net_position("SPY") == D("10")


def test_invalidate_makes_the_next_order_reread_the_connection_and_its_credentials(docs, secrets_file, alpaca,
                                                                                   clock):
    conn = docs.put(TENANT, connection("broker-1", "alpaca_broker", "sandbox", ref="file:ALPACA_BROKER_CREDS",
                                       base_url=alpaca.url))
    cached = CachedSecretSource(LocalFileSecretSource(secrets_file()), ttl_seconds=3600, clock=clock)
    pool = VenuePool(docs, cached, deployment=bootstrap.paper_broker({}, clock), clock=clock)
    account_id = alpaca.open_account(str(uuid.uuid4()))
    first = pool.router_for(TENANT, binding("main", conn, account_id))

    secrets_file(ALPACA_BROKER_CREDS={"key_id": ROTATED_KEY, "secret_key": ROTATED_SECRET})
    assert pool.router_for(TENANT, binding("main", conn, account_id)) is first  # within the TTL: cached
    clock.advance(CONNECTION_TTL_SECONDS + 1)  # the connection is re-read, the secret still cached
    assert pool.router_for(TENANT, binding("main", conn, account_id)) is first
    pool.invalidate(TENANT, "broker-1")  # e.g. the venue answered 401: the key was rotated
    again = pool.router_for(TENANT, binding("main", conn, account_id))

    assert again is not first and docs.reads == 3
    assert again.broker_for(AssetClass.EQUITY).connection.clients() is not first.broker_for(
        AssetClass.EQUITY).connection.clients()


def test_the_secret_source_reads_env_the_local_file_and_secret_manager_as_configured(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"CREDS": {"token": TOKEN}}))

    local = bootstrap.secret_source({"EXEC_SECRETS_FILE": str(path), "FROM_ENV": "v"}, {"FROM_FUNCTION": "f"})
    deployed = bootstrap.secret_source({"K_SERVICE": "api"})
    forced_off = bootstrap.secret_source({"K_SERVICE": "api", "EXEC_SECRET_MANAGER": "0"})

    assert json.loads(local.get(SecretRef.file("CREDS")).reveal()) == {"token": TOKEN}
    assert local.get(SecretRef.env("FROM_ENV")).reveal() == "v"
    assert local.get(SecretRef.env("FROM_FUNCTION")).reveal() == "f"  # a function secret is an env: ref
    assert repr(local) == "RoutingSecretSource(['env', 'file'])"
    assert repr(deployed) == "RoutingSecretSource(['env', 'gsm'])"
    assert repr(forced_off) == "RoutingSecretSource(['env'])"
    with pytest.raises(SecretUnavailable, match="no secret source is configured for file"):
        deployed.get(SecretRef.file("CREDS"))
    with pytest.raises(InvalidInput, match="EXEC_SECRET_MANAGER"):
        bootstrap.secret_source({"EXEC_SECRET_MANAGER": "maybe"})


# ------------------------------------------------------------------------------- through the engine


def test_an_fx_intent_of_an_account_on_an_oanda_connection_is_placed_through_oanda(tmp_path):
    """Issue 14 item 6 end to end: the account's connection decides the venue (the deployment's own
    FX route is the paper venue here), the token comes from the local secrets file."""
    from backend.domain.accounts import Account
    from backend.domain.clock import SystemClock
    from backend.execution.engine import ExecutionEngine
    from backend.execution.intent import ExecutionContext, OrderIntent
    from backend.settings import ExecSettings

    path = tmp_path / ".secrets.local"
    path.write_text(json.dumps({"OANDA_LOCAL": {"token": TOKEN}}))
    env = {"EXEC_SECRETS_FILE": str(path), "EXEC_DRY_RUN": "0", "EXEC_ACCOUNTS": "strict",
           "EXEC_MAX_POSITION_QTY": "10000000"}
    now = datetime.now(timezone.utc)
    with LocalOandaServer("default", token=TOKEN) as srv:
        store = InMemoryStore()
        store.put_connection(TENANT, BrokerConnection(connection_id="oanda-local", venue="oanda", environment="paper",
                                                      base_url=srv.url, credentials_ref="file:OANDA_LOCAL",
                                                      created_at=now, updated_at=now))
        store.put_account(TENANT, Account(account_id="fx-main", connection_id="oanda-local",
                                          venue_account_id=srv.account_id, owner_uids=("alice",), status="active",
                                          asset_classes=["FOREX", "COMMODITY"], created_at=now, updated_at=now))
        clock = SystemClock()
        deployment = bootstrap.paper_broker({}, clock)
        engine = ExecutionEngine(broker=deployment, store=store, clock=clock, settings=ExecSettings.from_env(env),
                                 venue_pool=bootstrap.build_venue_pool(env, None, clock, store, deployment))
        try:
            result = engine.execute_intent(
                OrderIntent(strategy_id="s1", broker_account_id="fx-main", symbol="EUR/USD", side="buy", qty="10000",
                            asset_class="FOREX", intent_id="fx-1"),
                ExecutionContext(tenant_id=TENANT, uid="alice"))

            assert result.status == "placed"
            assert srv.venue.net_position("EUR/USD") == D("10000")
            assert srv.client_id_counts().total() == 1
            assert deployment.venue.net_position("EUR/USD") == 0
        finally:
            close_shared_clients()
            forget_instruments()
