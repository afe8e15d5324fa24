"""docs/intent-document.schema.json, the published format of app-written intent documents (issue 19
item 12), against firestore.rules on the official emulator and against intake.

Three verdicts are compared for every example document:

* the schema's: the body against the schema (``SERVER_TIMESTAMP`` fields are REST transforms, not
  values, so they are left out as the SDKs do), the document id against ``x-document-id`` and the
  ``uid`` against the writer (``x-must-equal: request.auth.uid``);
* the rules': a create as the signed-in writer (unsigned ID token, see tests/support/rules_client.py);
* intake's (``backend.service.intake.handle_intent_document`` on an in-memory engine): whether the
  server refuses the document as malformed (``INVALID_INPUT``).

Every schema-valid example is accepted by the rules and passes intake's input checks, and the server's
write-back matches ``$defs/StoredIntentDocument``. Every example the rules refuse is schema-invalid.
Where the rules are looser than intake, the schema follows intake: those examples are accepted by
the rules and then rejected by the server, never executed.

An example that names an account (``broker_account_id``) names one of its writer's own: the rules
``get()`` the account document (issue 12), so the fixtures provision those documents with admin
credentials (``ACCOUNTS``), in the emulator and in intake's in-memory store alike. Who may name
which account is tested in tests/integration/test_firestore_rules_accounts.py.
"""
from __future__ import annotations

import copy
import datetime as dt
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from backend.adapters.memory_store import InMemoryStore
from backend.adapters.paper_broker import PaperBroker
from backend.api import intent_schema
from backend.domain.accounts import Account
from backend.domain.clock import ManualClock
from backend.execution.engine import ExecutionEngine
from backend.domain.group_rules import MAX_LEGS, MIN_LEGS
from backend.service.intake import handle_intent_document
from backend.settings import ExecSettings
from tests.support.emulators import FirestoreEmulator
from tests.support.group_harness import GROUP_LIMITS_ENV
from tests.support.rules_client import OWNER, SERVER_TIMESTAMP, RulesClient, ServerTimestamp, Timestamp, fake_id_token

ROOT = Path(__file__).resolve().parents[2]
RULES = (ROOT / "firestore.rules").read_text(encoding="utf-8")
PROJECT = f"demo-intent-schema-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
TENANT = "A"
SCHEMA = json.loads(intent_schema.DOC_PATH.read_text(encoding="utf-8"))


def token(uid: str, tenant: str = TENANT, role: str = "trader") -> str:
    return fake_id_token(uid, PROJECT, tenant_id=tenant, role=role)


# The accounts the examples name, owned by their writers (written with admin credentials).
ACCOUNTS = {"acct-1": ("alice",), "acct-ada": ("ada",)}
ACCOUNT_AT = dt.datetime(2026, 1, 5, 14, 0, tzinfo=dt.timezone.utc)


def account(account_id: str, owners: tuple[str, ...]) -> Account:
    return Account(account_id=account_id, connection_id="deployment", venue_account_id=f"{TENANT}-{account_id}",
                   owner_uids=owners, status="active", asset_classes=["EQUITY", "CRYPTO", "FOREX", "OPTIONS"],
                   created_at=ACCOUNT_AT, updated_at=ACCOUNT_AT)


def provision_account(client: RulesClient, account_id: str, owners: tuple[str, ...]) -> None:
    """The account document as the admin API writes it (admin credentials bypass the rules)."""
    doc = {k: Timestamp(v) if isinstance(v, dt.datetime) else v for k, v in account(account_id, owners).to_dict().items()}
    reply = client.patch(f"tenants/{TENANT}/accounts/{account_id}", doc, token=OWNER)
    assert reply.ok, f"provisioning {account_id}: {reply}"


def validator(definition: str | None = None) -> Draft202012Validator:
    """The whole schema (the created body), or one of its ``$defs`` with the same root for its refs."""
    schema = copy.deepcopy(SCHEMA)
    if definition is not None:
        schema.pop("oneOf")
        schema["$ref"] = f"#/$defs/{definition}"
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


BODY = validator()
IDS = {"single": validator("SingleIntentId"), "multi_leg": validator("MultiLegIntentId")}
STORED = validator("StoredIntentDocument")


def schema_problems(doc_id: str, doc: dict[str, Any], writer_uid: str) -> list[str]:
    body = {k: v for k, v in doc.items() if not isinstance(v, ServerTimestamp)}
    problems = [f"body: {e.message}" for e in BODY.iter_errors(body)]
    ids = IDS["multi_leg" if doc.get("kind") == "multi_leg" else "single"]
    problems += [f"document id: {e.message}" for e in ids.iter_errors(doc_id)]
    if doc.get("uid") != writer_uid:
        problems.append("uid: not the writer's (x-must-equal request.auth.uid)")
    return problems


# ---- examples --------------------------------------------------------------------------------------

def fresh_id(prefix: str = "x") -> str:
    return f"{prefix}{uuid.uuid4().hex[:16]}"


def single(**intent: Any) -> dict[str, Any]:
    body = {"strategy_id": "momo_1", "broker_account_id": "acct-1", "symbol": "AAPL", "side": "buy", "qty": "2"}
    return {"uid": "alice", "status": "new", "kind": "single", "intent": {**body, **intent}}


SYMBOLS = ["AAPL", "MSFT", "SPY", "QQQ", "IWM", "TSLA", "NVDA", "AMZN", "GOOG", "META", "NFLX", "AMD"]


def legs(n: int) -> list[dict[str, Any]]:
    return [{"leg_id": f"leg_{i:03d}", "symbol": SYMBOLS[i % len(SYMBOLS)] + ("" if i < len(SYMBOLS) else str(i)),
             "direction": -1 if i % 2 else 1, "units": "1"} for i in range(n)]


def multi(n: int = 2, **request: Any) -> dict[str, Any]:
    return {"uid": "alice", "status": "new", "kind": "multi_leg",
            "request": {"strategy_id": "pairs_1", "legs": legs(n), **request}}


RPM = {"decision_id": "rpm-42", "approved": True, "expires_at": "2030-01-01T00:00:00+00:00",
       "approved_legs": {f"leg_{i:03d}": "1" for i in range(MAX_LEGS)}}


@dataclass
class Example:
    doc: dict[str, Any]
    doc_id: str = field(default_factory=fresh_id)
    writer: str = "alice"
    role: str = "trader"

    @property
    def token(self) -> str:
        return token(self.writer, role=self.role)


def with_(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """``doc`` with one (dotted) field set, or removed when ``value`` is ``DROP``."""
    out = copy.deepcopy(doc)
    *parents, last = path.split(".")
    target = out
    for part in parents:
        target = target[int(part) if isinstance(target, list) else part]
    key = int(last) if isinstance(target, list) else last
    if value is DROP:
        del target[key]
    else:
        target[key] = value
    return out


DROP = object()

VALID = {
    "single-market-minimal": Example(single()),
    "single-limit-every-option": Example(single(asset_class="EQUITY", order_type="limit", limit_price="190.25",
                                                qty=3, side="sell")),
    "single-json-number-price": Example(single(order_type="limit", limit_price=190.5)),
    "single-crypto-decimal-qty": Example(single(symbol="BTC/USD", qty="0.001", asset_class="CRYPTO")),
    "single-forex-alias-fx": Example(single(symbol="EUR/USD", qty=1000, asset_class="FX")),
    "single-market-order-type-explicit": Example(single(order_type="market")),
    "single-symbol-lower-case": Example(single(symbol="aapl")),
    "single-occ-option-symbol": Example(single(symbol="AAPL  240119C00190000", asset_class="OPTIONS")),
    "single-with-server-timestamp": Example({**single(), "created_at": SERVER_TIMESTAMP}),
    "single-by-tenant-admin": Example({**single(broker_account_id="acct-ada"), "uid": "ada"}, writer="ada",
                                      role="tenant_admin"),
    "single-id-leading-underscore": Example(single(), doc_id=f"_{uuid.uuid4().hex[:10]}-x"),
    "single-id-100-chars": Example(single(), doc_id=uuid.uuid4().hex + "a" * 68),
    "single-id-like-derived-but-uppercase": Example(single(), doc_id="k-" + uuid.uuid4().hex.upper() + "ABCDEF0123456789"),
    # issue 15: order types, time in force and protective legs
    "single-stop-gtc": Example(single(order_type="stop", stop_price="150.00", time_in_force="gtc")),
    "single-stop-limit": Example(single(order_type="stop_limit", stop_price="150.00", limit_price="151.00")),
    "single-trailing-percent": Example(single(order_type="trailing_stop", trail_percent="1.5")),
    "single-bracket": Example(single(order_type="limit", limit_price="100.00", order_class="bracket",
                                     take_profit={"limit_price": "110.00"},
                                     stop_loss={"stop_price": "95.00", "limit_price": "94.50"})),
    "single-oco": Example(single(side="sell", order_type="limit", order_class="oco",
                                 take_profit={"limit_price": "110.00"}, stop_loss={"stop_price": "95.00"})),
    "single-fx-trailing-stop-on-fill": Example(single(symbol="EUR/USD", qty=1000, stop_loss={"trail_price": "0.002"})),
    "multi-minimal-two-legs": Example(multi(MIN_LEGS)),
    "multi-max-legs-every-option": Example(multi(MAX_LEGS, rpm_output=RPM, max_group_slippage_pips=2.5,
                                                 allow_partial_fills=True, broker_account_id="acct-1")),
    "multi-integer-slippage-and-classes": Example(with_(multi(2, max_group_slippage_pips=0),
                                                        "request.legs", [
                                                            {"leg_id": "eur", "symbol": "EUR/USD", "direction": 1,
                                                             "units": 1000, "asset_class": "FOREX"},
                                                            {"leg_id": "gbp.2", "symbol": "GBP/USD", "direction": -1,
                                                             "units": "1000", "asset_class": "FX"}])),
    "multi-with-server-timestamp": Example({**multi(), "created_at": SERVER_TIMESTAMP}),
}

ELEVEN = multi(MAX_LEGS + 1)

REFUSED_BY_RULES = {
    # document-level fields
    "missing-uid": Example(with_(single(), "uid", DROP)),
    "missing-status": Example(with_(single(), "status", DROP)),
    "missing-kind": Example(with_(single(), "kind", DROP)),
    "missing-intent": Example(with_(single(), "intent", DROP)),
    "missing-request": Example(with_(multi(), "request", DROP)),
    "extra-top-level-field": Example({**single(), "note": "hi"}),
    "result-prefilled": Example({**single(), "result": {"status": "placed"}}),
    "wrong-uid": Example({**single(), "uid": "bob"}),
    "status-placed": Example({**single(), "status": "placed"}),
    "status-accepted": Example({**multi(), "status": "accepted"}),
    "unknown-kind": Example({**single(), "kind": "group"}),
    "single-kind-with-request": Example({**multi(), "kind": "single"}),
    "created-at-client-time": Example({**single(), "created_at": Timestamp(dt.datetime(2026, 1, 5, 14, 30, tzinfo=dt.timezone.utc))}),
    # document ids
    "id-derived-k-shape": Example(single(), doc_id="k-" + "0123456789abcdef" * 3),
    "id-derived-g-shape": Example(multi(), doc_id="g-" + "fedcba9876543210" * 3),
    "id-with-dot": Example(single(), doc_id="a.b"),
    "id-101-chars": Example(single(), doc_id="a" * 101),
    # the single intent
    "intent-missing-qty": Example(with_(single(), "intent.qty", DROP)),
    "intent-missing-symbol": Example(with_(single(), "intent.symbol", DROP)),
    "intent-metadata": Example(single(metadata={"source": "app"})),
    "intent-estimated-slippage": Example(single(estimated_slippage="0.001")),
    "intent-intent-id": Example(single(intent_id="abc")),
    "intent-not-a-map": Example({**single(), "intent": "buy 2 AAPL"}),
    "time-in-force-weekly": Example(single(time_in_force="weekly")),
    "order-class-otoco": Example(single(order_class="otoco")),
    "take-profit-extra-field": Example(single(take_profit={"limit_price": "110.00", "qty": "1"})),
    "stop-loss-empty": Example(single(stop_loss={})),
    "stop-price-zero": Example(single(order_type="stop", stop_price="0")),
    "qty-boolean": Example(single(qty=True)),
    "qty-negative-string": Example(single(qty="-1")),
    "qty-zero-string": Example(single(qty="0.00")),
    "qty-zero-number": Example(single(qty=0)),
    "qty-exponent": Example(single(qty="1e3")),
    "qty-too-large": Example(single(qty=10**15)),
    "qty-16-integer-digits": Example(single(qty="1" * 16)),
    "side-upper-case": Example(single(side="BUY")),
    "side-hold": Example(single(side="hold")),
    "order-type-stop": Example(single(order_type="stop_loss")),
    "limit-price-zero": Example(single(order_type="limit", limit_price="0")),
    "strategy-id-empty": Example(single(strategy_id="")),
    "strategy-id-101-chars": Example(single(strategy_id="s" * 101)),
    "account-number": Example(single(broker_account_id=7)),
    # not an id, so no account document can have it (the rules get() the account: issue 12)
    "account-with-slash": Example(single(broker_account_id="acct/1")),
    "symbol-33-chars": Example(single(symbol="A" * 33)),
    "symbol-32-astral-characters": Example(single(symbol="\U0001F600" * 32)),  # size() counts UTF-16 units
    "asset-class-33-chars": Example(single(asset_class="E" * 33)),
    # the multi-leg request
    "legs-one": Example(multi(MIN_LEGS - 1)),
    "legs-none": Example(multi(0)),
    "legs-eleven": Example(ELEVEN),
    "legs-a-map": Example(with_(multi(), "request.legs", {"a": legs(1)[0], "b": legs(2)[1]})),
    "request-execution-priority": Example(multi(execution_priority=["leg_000", "leg_001"])),
    "request-group-id": Example(multi(group_id="g1")),
    "request-metadata": Example(multi(metadata={"source": "app"})),
    "request-missing-strategy": Example(with_(multi(), "request.strategy_id", DROP)),
    "slippage-string": Example(multi(max_group_slippage_pips="2.5")),
    "slippage-negative": Example(multi(max_group_slippage_pips=-1)),
    "partial-fills-string": Example(multi(allow_partial_fills="yes")),
    "rpm-output-string": Example(multi(rpm_output="approved")),
    "request-account-empty": Example(multi(broker_account_id="")),
}

# Accepted by the rules, which do not check these, then rejected by the server as INVALID_INPUT
# (status "rejected", result.error): the schema states the server's rule.
REFUSED_AT_INTAKE = {
    "strategy-id-with-space": (Example(single(strategy_id="momo 1")), "strategy_id"),
    "strategy-id-reserved-name": (Example(single(strategy_id="__x__")), "strategy_id"),
    "market-order-with-limit-price": (Example(single(limit_price="190")), "limit_price"),
    "limit-order-without-price": (Example(single(order_type="limit")), "limit_price"),
    "unknown-asset-class": (Example(single(asset_class="BONDS")), "asset_class"),
    "symbol-non-ascii": (Example(single(symbol="\u00c9" * 32)), "symbol"),
    "leg-missing-units": (Example(with_(multi(), "request.legs.0", {"leg_id": "a", "symbol": "AAPL",
                                                                    "direction": 1})), "legs[0]"),
    "leg-direction-3": (Example(with_(multi(), "request.legs.1", {"leg_id": "b", "symbol": "MSFT",
                                                                  "direction": 3, "units": "1"})), "direction"),
    "leg-extra-field": (Example(with_(multi(), "request.legs.0", {**legs(1)[0], "note": "x"})), "legs[0]"),
    "leg-not-a-map": (Example(with_(multi(), "request.legs.0", "AAPL")), "legs[0]"),
    "multi-id-leading-underscore": (Example(multi(), doc_id=f"_{uuid.uuid4().hex[:10]}"), "group_id"),
}


# ---- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rules_client(firestore_emulator: FirestoreEmulator) -> RulesClient:
    """The session emulator with firestore.rules loaded for a project of this module's own."""
    firestore_emulator.reset(PROJECT)
    firestore_emulator.set_rules(PROJECT, RULES)
    client = RulesClient(firestore_emulator.base_url, PROJECT)
    probe = client.get("ops/probe", token=OWNER, timeout=120)  # the first request compiles the rules
    assert probe.status in (200, 404), f"firestore.rules not usable: {probe}"
    for account_id, owners in ACCOUNTS.items():
        provision_account(client, account_id, owners)
    return client


def create(client: RulesClient, example: Example):
    return client.create(f"tenants/{TENANT}/order_intents/{example.doc_id}", example.doc, token=example.token)


def intake(doc_id: str, doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The server's handling of the document as stored (an in-memory engine, no venue fill wait)."""
    clock = ManualClock()
    engine = ExecutionEngine(broker=PaperBroker(clock=clock), store=InMemoryStore(), clock=clock, dry_run=False,
                             settings=ExecSettings.from_env({"EXEC_FILL_WAIT_SECONDS": "0", **GROUP_LIMITS_ENV}))
    stored = {k: v for k, v in doc.items() if not isinstance(v, ServerTimestamp)}
    path = f"tenants/{TENANT}/order_intents/{doc_id}"
    for account_id, owners in ACCOUNTS.items():
        engine.store.put_account(TENANT, account(account_id, owners))
    engine.store.set_doc(path, stored)
    out = handle_intent_document(engine, TENANT, doc_id, stored)
    return out, engine.store.get(path)


# ---- (1) the committed schema is the generator's output ------------------------------------------


def test_the_committed_schema_is_the_generators_output():
    assert intent_schema.DOC_PATH.read_text(encoding="utf-8") == intent_schema.render(), (
        "docs/intent-document.schema.json is stale: run .venv/bin/python -m backend.api.intent_schema --write")


def test_the_schema_is_a_valid_2020_12_schema_and_follows_the_code():
    Draft202012Validator.check_schema(SCHEMA)
    legs_schema = SCHEMA["$defs"]["MultiLegRequest"]["properties"]["legs"]
    assert (legs_schema["minItems"], legs_schema["maxItems"]) == (MIN_LEGS, MAX_LEGS)
    assert SCHEMA["$defs"]["Id"]["pattern"] == "^[A-Za-z0-9_-]{1,100}$"


# ---- (2) the schema's verdict is the rules' verdict --------------------------------------------------


@pytest.mark.parametrize("name", VALID)
def test_a_schema_valid_document_is_accepted_by_the_rules(rules_client: RulesClient, name: str):
    example = VALID[name]
    assert schema_problems(example.doc_id, example.doc, example.writer) == []

    reply = create(rules_client, example)

    assert reply.ok, f"{name}: {reply}"


@pytest.mark.parametrize("name", REFUSED_BY_RULES)
def test_a_document_the_rules_refuse_is_schema_invalid(rules_client: RulesClient, name: str):
    example = REFUSED_BY_RULES[name]

    reply = create(rules_client, example)

    assert reply.denied, f"{name}: {reply}"
    assert schema_problems(example.doc_id, example.doc, example.writer), f"{name}: the schema accepts it"


@pytest.mark.parametrize("name", REFUSED_AT_INTAKE)
def test_a_document_the_schema_refuses_but_the_rules_let_through_is_rejected_by_the_server(
        rules_client: RulesClient, name: str):
    example, field = REFUSED_AT_INTAKE[name]
    assert schema_problems(example.doc_id, example.doc, example.writer)
    assert create(rules_client, example).ok  # the rules do not check this

    out, stored = intake(example.doc_id, example.doc)

    assert out["status"] == "rejected" and out["error"]["code"] == "INVALID_INPUT", out
    assert field in out["error"]["field"], out
    assert stored["status"] == "rejected" and stored["result"]["error"] == out["error"]
    assert STORED.is_valid(stored), list(STORED.iter_errors(stored))


@pytest.mark.parametrize("name", VALID)
def test_a_schema_valid_document_passes_the_servers_input_checks_and_is_written_back_as_documented(name: str):
    example = VALID[name]

    out, stored = intake(example.doc_id, example.doc)

    assert (out.get("error") or {}).get("code") != "INVALID_INPUT", out
    assert stored["status"] != "new", stored
    problems = [e.message for e in STORED.iter_errors(stored)]
    assert problems == [], problems


def test_a_non_member_cannot_create_even_a_schema_valid_document(rules_client: RulesClient):
    doc = single()
    for who in (token("alice", tenant="B"), token("alice", role="viewer"), token("alice", role="risk_manager")):
        reply = rules_client.create(f"tenants/{TENANT}/order_intents/{fresh_id()}", doc, token=who)
        assert reply.denied, reply
    assert SCHEMA["x-writer"]["claims"]["role"] == ["trader", "tenant_admin"]


# ---- (3) documents generated from the schema are accepted by the rules -------------------------------

_ID = SCHEMA["$defs"]["Id"]["pattern"]
_SERVER_CHOSEN = intent_schema.server_chosen_id_pattern()
_TEXT = st.characters(min_codepoint=32, max_codepoint=0xFFFF, exclude_categories=("Cs",))


def _ids(pattern: str = _ID) -> st.SearchStrategy[str]:
    return st.from_regex(pattern, fullmatch=True).filter(
        lambda s: not (s.startswith("__") and s.endswith("__") and len(s) >= 4))


_AMOUNT_STRINGS = st.from_regex(intent_schema.AMOUNT_STRING, fullmatch=True).filter(lambda s: any(c in s for c in "123456789"))
_AMOUNTS = st.one_of(
    _AMOUNT_STRINGS,
    st.integers(min_value=1, max_value=intent_schema.AMOUNT_LIMIT - 1),
    st.floats(min_value=0, max_value=intent_schema.AMOUNT_LIMIT, exclude_min=True, exclude_max=True,
              allow_nan=False, allow_infinity=False),
)
_SYMBOLS = st.from_regex(intent_schema.SYMBOL_PATTERN, fullmatch=True)
_CLASSES = st.sampled_from(SCHEMA["$defs"]["SingleIntent"]["properties"]["asset_class"]["enum"])


@st.composite
def _single_intents(draw) -> dict[str, Any]:
    intent = draw(st.fixed_dictionaries(
        {"strategy_id": _ids(), "broker_account_id": _ids(), "symbol": _SYMBOLS,
         "side": st.sampled_from(["buy", "sell"]), "qty": _AMOUNTS},
        optional={"asset_class": _CLASSES}))
    order_type = draw(st.sampled_from([None, "market", "limit"]))
    if order_type is not None:
        intent["order_type"] = order_type
    if order_type == "limit":
        intent["limit_price"] = draw(_AMOUNTS)
    return {"kind": "single", "intent": intent}


_LEGS = st.lists(st.fixed_dictionaries(
    {"leg_id": _ids(SCHEMA["$defs"]["Leg"]["properties"]["leg_id"]["pattern"]), "symbol": _SYMBOLS,
     "direction": st.sampled_from([1, -1]), "units": _AMOUNTS},
    optional={"asset_class": _CLASSES}), min_size=MIN_LEGS, max_size=MAX_LEGS)
_RPM = st.fixed_dictionaries({"decision_id": st.text(_TEXT, min_size=1, max_size=20), "approved": st.booleans(),
                              "expires_at": st.just("2030-01-01T00:00:00+00:00"),
                              "approved_legs": st.dictionaries(_ids(), _AMOUNTS, max_size=3)})


@st.composite
def _multi_leg_requests(draw) -> dict[str, Any]:
    request = draw(st.fixed_dictionaries(
        {"strategy_id": _ids(), "legs": _LEGS},
        optional={"rpm_output": _RPM, "broker_account_id": _ids(), "allow_partial_fills": st.booleans(),
                  "max_group_slippage_pips": st.one_of(st.integers(0, 10**6),
                                                       st.floats(0, 1e6, allow_nan=False))}))
    return {"kind": "multi_leg", "request": request}


@st.composite
def _examples(draw) -> Example:
    body = draw(st.one_of(_single_intents(), _multi_leg_requests()))
    doc = {"uid": "alice", "status": "new", **body}
    if draw(st.booleans()):
        doc["created_at"] = SERVER_TIMESTAMP
    id_pattern = SCHEMA["$defs"]["MultiLegIntentId" if body["kind"] == "multi_leg" else "SingleIntentId"]["allOf"][-1]
    doc_id = draw(_ids(id_pattern["pattern"]).filter(IDS[body["kind"]].is_valid))
    return Example(doc, doc_id=doc_id)


@settings(max_examples=30, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(example=_examples())
def test_documents_generated_from_the_schema_are_accepted_by_the_rules(rules_client: RulesClient, example: Example):
    assert schema_problems(example.doc_id, example.doc, example.writer) == []  # the generator follows the schema
    path = f"tenants/{TENANT}/order_intents/{example.doc_id}"
    rules_client.delete(path, token=OWNER)  # ids may repeat across examples
    body = example.doc.get("intent") or example.doc.get("request")
    if "broker_account_id" in body:  # the writer's own account, as an admin would have bound it
        provision_account(rules_client, body["broker_account_id"], (example.writer,))

    reply = create(rules_client, example)

    assert reply.ok, f"{json.dumps(example.doc, default=str)[:400]} id={example.doc_id!r}: {reply}"


def test_the_openapi_document_links_the_schema_beside_it():
    openapi_path = ROOT / "docs" / "openapi.json"
    link = json.loads(openapi_path.read_text(encoding="utf-8"))["info"]["x-intent-document-schema"]["url"]
    assert (openapi_path.parent / link).resolve() == intent_schema.DOC_PATH
