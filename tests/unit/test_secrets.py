"""Secret sources (env, local file, Google Secret Manager behind the port), the TTL cache, and the
guarantee that a secret value never shows: not in repr/str/format, exceptions, log lines, JSON,
pickles or a Firestore document.

Secret Manager has no emulator: its source is tested here with a hand-written stub of the client's
``access_secret_version`` (it records calls and replays scripted answers); every other behaviour
runs on the local sources."""
from __future__ import annotations

import copy
import json
import pickle
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import google_crc32c
import pytest
from google.api_core import exceptions as gexc

from backend import logs
from backend.adapters.secrets import (
    CachedSecretSource,
    EnvSecretSource,
    GoogleSecretManagerSource,
    LocalFileSecretSource,
    RoutingSecretSource,
    build_secret_source,
    secret_manager_source,
)
from backend.domain.accounts import BrokerConnection
from backend.domain.clock import ManualClock
from backend.domain.errors import InvalidInput
from backend.domain.storable import check_storable
from backend.ports.secrets import Secret, SecretRef, SecretSource, SecretUnavailable, read_credentials

VALUE = "sk-LIVE-5ecr3t-Value-9f8e7d"
OTHER = "sk-ROTATED-n3w-Value-1a2b3c"
GSM_REF = SecretRef.parse("projects/acme-prod/secrets/alpaca-main/versions/latest")


@pytest.fixture
def captured_logs(quiet_logs):
    return quiet_logs


def assert_no_leak(*texts: str, values=(VALUE, OTHER)) -> None:
    for text in texts:
        for value in values:
            assert value not in text


def full_error_text(exc: BaseException) -> str:
    """The message, the repr and the whole printed traceback (with chained causes)."""
    return "".join(traceback.format_exception(exc)) + repr(exc) + str(exc)


# ------------------------------------------------------------------------------------------------
# references
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, scheme, name", [
    ("projects/acme-prod/secrets/alpaca-main/versions/latest", "gsm",
     "projects/acme-prod/secrets/alpaca-main/versions/latest"),
    ("projects/123456789012/secrets/oanda_token/versions/7", "gsm",
     "projects/123456789012/secrets/oanda_token/versions/7"),
    ("env:ALPACA_CREDENTIALS", "env", "ALPACA_CREDENTIALS"),
    ("env:_x1", "env", "_x1"),
    ("file:alpaca.paper-1", "file", "alpaca.paper-1"),
])
def test_secret_ref_parses_each_scheme(text, scheme, name):
    ref = SecretRef.parse(text)

    assert (ref.scheme, ref.name, str(ref)) == (scheme, name, text)


@pytest.mark.parametrize("text", [
    VALUE, "PKABCDEF1234567890XY", "", "env:", "env:1ABC", "env:A-B", "file:", "file:a/b", "file:../x",
    "projects/acme-prod/secrets/alpaca-main", "projects/acme-prod/secrets/alpaca-main/versions/0",
    "projects/Acme/secrets/x/versions/latest", "projects/acme-prod/secrets/a b/versions/latest",
    "gsm:projects/acme-prod/secrets/x/versions/latest", " env:A", "env:A\n", None, 12, {"env": "A"},
])
def test_secret_ref_refuses_anything_else_without_echoing_it(text):
    with pytest.raises(InvalidInput) as err:
        SecretRef.parse(text, "credentials_ref")

    assert err.value.field == "credentials_ref"
    if isinstance(text, str) and len(text) > 6:
        assert text not in str(err.value)


# ------------------------------------------------------------------------------------------------
# the Secret value type
# ------------------------------------------------------------------------------------------------

def test_secret_never_prints_its_value():
    secret = Secret(VALUE)

    shown = [repr(secret), str(secret), f"{secret}", f"{secret!r}", f"{secret:>40}", "%s" % secret,
             "{}".format(secret), repr([secret]), repr({"k": secret}), str((secret,))]

    assert repr(secret) == "Secret(****)" and str(secret) == "****"
    assert_no_leak(*shown)
    assert secret.reveal() == VALUE


def test_secret_refuses_json_pickle_and_copy_without_showing_the_value():
    secret = Secret(VALUE)

    for attempt in (lambda: json.dumps({"key": secret}), lambda: pickle.dumps(secret),
                    lambda: copy.copy(secret), lambda: copy.deepcopy({"k": secret})):
        with pytest.raises(TypeError) as err:
            attempt()
        assert_no_leak(full_error_text(err.value))


def test_secret_is_immutable_unhashable_and_compares_by_value():
    secret = Secret(VALUE)

    with pytest.raises(AttributeError):
        secret._value = OTHER  # type: ignore[misc]
    with pytest.raises(TypeError):
        hash(secret)
    assert secret == Secret(VALUE) and secret != Secret(OTHER)
    assert secret != VALUE  # never equal to the bare text


def test_a_secret_ref_in_a_firestore_document_is_storable_and_a_secret_value_is_not():
    t0 = datetime(2026, 1, 5, tzinfo=timezone.utc)
    connection = BrokerConnection(connection_id="alpaca-main", venue="alpaca_broker", environment="sandbox",
                                  credentials_ref=GSM_REF, created_at=t0, updated_at=t0)

    assert connection.storable("t1") > 0
    assert connection.to_dict()["credentials_ref"] == GSM_REF.text
    with pytest.raises(InvalidInput) as err:
        check_storable({"credentials": Secret(VALUE)}, "tenants/t1/broker_connections/c1")
    assert err.value.field == "credentials"
    assert_no_leak(full_error_text(err.value))


def test_the_log_line_of_a_secret_shows_the_mask(captured_logs):
    logs.log_event("test.secret", credentials=Secret(VALUE), nested={"k": [Secret(VALUE)]})

    line = captured_logs.getvalue()
    assert "****" in line
    assert_no_leak(line)


# ------------------------------------------------------------------------------------------------
# (a) environment, (b) local file
# ------------------------------------------------------------------------------------------------

def test_env_source_reads_the_named_variable():
    source = EnvSecretSource({"ALPACA_KEY": VALUE})

    assert source.get(SecretRef.env("ALPACA_KEY")).reveal() == VALUE


@pytest.mark.parametrize("environ, reason", [({}, "is not set"), ({"ALPACA_KEY": ""}, "is empty")])
def test_env_source_names_the_reference_when_a_variable_is_missing(environ, reason):
    with pytest.raises(SecretUnavailable) as err:
        EnvSecretSource(environ).get(SecretRef.env("ALPACA_KEY"))

    assert "env:ALPACA_KEY" in str(err.value) and reason in str(err.value)
    assert not err.value.transient


def test_a_source_refuses_references_of_another_scheme():
    with pytest.raises(SecretUnavailable, match="only env references"):
        EnvSecretSource({}).get(GSM_REF)


def test_local_json_file_serves_strings_and_objects_as_credentials(tmp_path):
    path = tmp_path / ".secrets.local"
    path.write_text(json.dumps({"plain": VALUE, "alpaca": {"key_id": "PK1", "secret_key": OTHER}}))
    source = LocalFileSecretSource(path)

    plain = source.get(SecretRef.file("plain"))
    creds = read_credentials(source, SecretRef.file("alpaca"), ["key_id", "secret_key"])

    assert plain.reveal() == VALUE
    assert creds["key_id"].reveal() == "PK1" and creds["secret_key"].reveal() == OTHER
    assert_no_leak(repr(creds))


def test_local_dotenv_file_reads_export_quotes_and_comments(tmp_path):
    path = tmp_path / "local.env"
    path.write_text(f"# a comment\n\nexport A={VALUE}\nB = '{OTHER}'\nC=\"a # not a comment\"\nD=x=y\n")
    source = LocalFileSecretSource(path)

    values = {name: source.get(SecretRef.file(name)).reveal() for name in "ABCD"}

    assert values == {"A": VALUE, "B": OTHER, "C": "a # not a comment", "D": "x=y"}


@pytest.mark.parametrize("content, reason", [
    (f"A={VALUE}\n{VALUE}\n", "line 2 is not NAME=value"),
    ('{"A": "' + VALUE + '", ', "not a JSON object"),
    ('{"A": ' + '12345' + ', "B": "' + VALUE + '"}', "must be a string or an object"),
    (b"A=" + VALUE.encode() + b"\xff\xfe", "is not UTF-8 text"),
])
def test_a_malformed_local_file_is_refused_without_showing_its_content(tmp_path, content, reason):
    path = tmp_path / ".secrets.local"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())

    with pytest.raises(SecretUnavailable) as err:
        LocalFileSecretSource(path).get(SecretRef.file("A"))

    assert reason in str(err.value) and "file:A" in str(err.value)
    assert err.value.__cause__ is None and err.value.__context__ is None  # no JSONDecodeError.doc
    assert_no_leak(full_error_text(err.value))


def test_a_missing_local_file_or_entry_names_the_file_and_the_reference(tmp_path):
    path = tmp_path / "absent.json"
    with pytest.raises(SecretUnavailable, match="not found"):
        LocalFileSecretSource(path).get(SecretRef.file("A"))
    path.write_text(json.dumps({"B": VALUE}))
    with pytest.raises(SecretUnavailable, match="A is not in the local secrets file"):
        LocalFileSecretSource(path).get(SecretRef.file("A"))


def test_the_default_local_secrets_file_is_ignored_by_git():
    from pathlib import Path

    from backend.adapters.secrets import DEFAULT_LOCAL_SECRETS_FILE

    root = Path(__file__).resolve().parents[2]
    patterns = (root / ".gitignore").read_text().splitlines()
    assert any(Path(DEFAULT_LOCAL_SECRETS_FILE).match(p) for p in patterns if p and not p.startswith("#"))
    assert any(Path(DEFAULT_LOCAL_SECRETS_FILE + ".json").match(p) for p in patterns if p)


def test_read_credentials_refuses_a_value_that_is_not_an_object_of_the_fields():
    source = EnvSecretSource({"A": VALUE, "B": json.dumps({"key_id": "PK1"})})

    with pytest.raises(SecretUnavailable) as not_json:
        read_credentials(source, SecretRef.env("A"), ["key_id", "secret_key"])
    with pytest.raises(SecretUnavailable, match="'secret_key' is missing") as missing:
        read_credentials(source, SecretRef.env("B"), ["key_id", "secret_key"])

    assert not_json.value.__context__ is None
    assert_no_leak(full_error_text(not_json.value), full_error_text(missing.value))


# ------------------------------------------------------------------------------------------------
# (c) Google Secret Manager behind the port, with a hand-written stub client
# ------------------------------------------------------------------------------------------------

@dataclass
class _Payload:
    data: bytes
    data_crc32c: int | None = None


@dataclass
class _Response:
    payload: _Payload
    name: str = ""


def payload(text: str | bytes, *, crc: bool = True, wrong_crc: bool = False) -> _Response:
    data = text.encode() if isinstance(text, str) else text
    checksum = int(google_crc32c.Checksum(data).hexdigest(), 16) if crc else None
    if wrong_crc:
        checksum = (checksum or 0) ^ 1
    return _Response(_Payload(data, checksum))


@dataclass
class StubSecretManagerClient:
    """Stands in for ``SecretManagerServiceClient``: replays scripted answers, records each call."""

    answers: list[Any] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)

    def access_secret_version(self, request=None, *, retry=None, timeout=None, metadata=()):
        self.calls.append({"request": request, "retry": retry, "timeout": timeout})
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def test_secret_manager_source_reads_the_named_version_with_a_bounded_call():
    client = StubSecretManagerClient([payload(VALUE)])
    source = GoogleSecretManagerSource(client, timeout_seconds=4)

    secret = source.get(GSM_REF)

    assert secret.reveal() == VALUE
    assert client.calls[0]["request"] == {"name": GSM_REF.text}
    assert client.calls[0]["timeout"] == 4
    assert client.calls[0]["retry"] is not None and client.calls[0]["retry"].timeout == 4


@pytest.mark.parametrize("error, reason, transient", [
    (gexc.NotFound("no such secret"), "not found", False),
    (gexc.PermissionDenied("denied"), "permission denied", False),
    (gexc.Unauthenticated("who"), "not authenticated", False),
    (gexc.FailedPrecondition("version disabled"), "the version is disabled or destroyed", False),
    (gexc.ServiceUnavailable("down"), "unavailable (ServiceUnavailable)", True),
    (gexc.DeadlineExceeded("slow"), "unavailable (DeadlineExceeded)", True),
    (gexc.TooManyRequests("slow down"), "unavailable (TooManyRequests)", True),
    (ConnectionResetError("reset"), "unavailable (ConnectionResetError)", True),
])
def test_secret_manager_errors_map_to_coded_unavailability(error, reason, transient):
    source = GoogleSecretManagerSource(StubSecretManagerClient([error]))

    with pytest.raises(SecretUnavailable) as err:
        source.get(GSM_REF)

    assert str(err.value) == f"secret {GSM_REF.text} unavailable: Secret Manager: {reason}"
    assert err.value.transient is transient


@pytest.mark.parametrize("response, reason, transient", [
    (payload(VALUE, wrong_crc=True), "checksum mismatch", True),
    (payload(b"\xff" + VALUE.encode()), "not UTF-8 text", False),
    (payload(""), "payload is empty", False),
])
def test_secret_manager_payload_problems_are_refused_without_the_value(response, reason, transient):
    source = GoogleSecretManagerSource(StubSecretManagerClient([response]))

    with pytest.raises(SecretUnavailable, match=reason) as err:
        source.get(GSM_REF)

    assert err.value.transient is transient
    assert_no_leak(full_error_text(err.value))


def test_secret_manager_payload_without_a_checksum_is_accepted():
    source = GoogleSecretManagerSource(StubSecretManagerClient([payload(VALUE, crc=False)]))

    assert source.get(GSM_REF).reveal() == VALUE


def test_secret_manager_client_is_built_lazily_once_per_source():
    built: list[StubSecretManagerClient] = []

    def factory():
        built.append(StubSecretManagerClient([payload(VALUE), payload(OTHER)]))
        return built[-1]

    source = GoogleSecretManagerSource(client_factory=factory)
    assert built == []

    first, second = source.get(GSM_REF), source.get(GSM_REF)

    assert len(built) == 1 and (first.reveal(), second.reveal()) == (VALUE, OTHER)


def test_secret_manager_source_behind_the_ttl_cache_fetches_once_per_ttl():
    clock = ManualClock()
    client = StubSecretManagerClient([payload(VALUE), payload(OTHER)])
    source = secret_manager_source(client, ttl_seconds=60, clock=clock)

    first = [source.get(GSM_REF) for _ in range(5)]
    clock.advance(61)
    after_ttl = source.get(GSM_REF)

    assert [s.reveal() for s in first] == [VALUE] * 5 and after_ttl.reveal() == OTHER
    assert len(client.calls) == 2


# ------------------------------------------------------------------------------------------------
# the TTL cache around any source
# ------------------------------------------------------------------------------------------------

class ScriptedSource:
    """A source that answers from a script (values or ``SecretUnavailable``) and counts calls."""

    def __init__(self, *answers: Any):
        self.answers = list(answers)
        self.calls = 0

    def get(self, ref: SecretRef) -> Secret:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return Secret(answer)


def transient(ref=GSM_REF) -> SecretUnavailable:
    return SecretUnavailable(ref, "Secret Manager: unavailable (ServiceUnavailable)", transient=True)


def decisive(ref=GSM_REF) -> SecretUnavailable:
    return SecretUnavailable(ref, "Secret Manager: the version is disabled or destroyed")


def test_cached_source_serves_within_the_ttl_and_refetches_after_it():
    clock = ManualClock()
    inner = ScriptedSource(VALUE, OTHER)
    cache = CachedSecretSource(inner, ttl_seconds=300, clock=clock)

    cache.get(GSM_REF)
    clock.advance(299)
    within = cache.get(GSM_REF)
    clock.advance(1)
    after = cache.get(GSM_REF)

    assert (within.reveal(), after.reveal(), inner.calls) == (VALUE, OTHER, 2)


def test_a_transient_failure_after_expiry_serves_the_stale_value_within_the_grace(captured_logs):
    clock = ManualClock()
    inner = ScriptedSource(VALUE, transient(), transient(), OTHER)
    cache = CachedSecretSource(inner, ttl_seconds=60, stale_grace_seconds=600, retry_interval_seconds=30,
                               clock=clock)
    cache.get(GSM_REF)
    clock.advance(61)

    stale = cache.get(GSM_REF)                 # fetch fails: stale served, retry in 30 s
    clock.advance(10)
    during_backoff = cache.get(GSM_REF)        # within the retry interval: the source is not asked
    calls_during_backoff = inner.calls
    clock.advance(21)
    still_stale = cache.get(GSM_REF)           # asked again, fails again: stale again
    clock.advance(31)
    recovered = cache.get(GSM_REF)             # asked again, answers

    assert [s.reveal() for s in (stale, during_backoff, still_stale, recovered)] == [VALUE, VALUE, VALUE, OTHER]
    assert calls_during_backoff == 2 and inner.calls == 4
    lines = [json.loads(line) for line in captured_logs.getvalue().splitlines()]
    warnings = [line for line in lines if line["event"] == "secrets.stale_served"]
    assert len(warnings) == 2 and warnings[0]["severity"] == "WARNING" and warnings[0]["ref"] == GSM_REF.text
    assert_no_leak(captured_logs.getvalue())


def test_the_stale_value_is_refused_once_the_grace_has_passed():
    clock = ManualClock()
    inner = ScriptedSource(VALUE, transient())
    cache = CachedSecretSource(inner, ttl_seconds=60, stale_grace_seconds=120, clock=clock)
    cache.get(GSM_REF)
    clock.advance(60 + 120)

    with pytest.raises(SecretUnavailable) as err:
        cache.get(GSM_REF)

    assert err.value.transient and GSM_REF.text in str(err.value)


def test_a_decisive_failure_is_raised_at_once_and_drops_the_cached_value():
    clock = ManualClock()
    inner = ScriptedSource(VALUE, decisive(), OTHER)
    cache = CachedSecretSource(inner, ttl_seconds=60, stale_grace_seconds=600, clock=clock)
    cache.get(GSM_REF)
    clock.advance(61)

    with pytest.raises(SecretUnavailable, match="disabled or destroyed"):
        cache.get(GSM_REF)
    after = cache.get(GSM_REF)  # nothing stale left: the source is asked

    assert after.reveal() == OTHER and inner.calls == 3


def test_a_failure_with_nothing_cached_is_raised_and_not_cached():
    inner = ScriptedSource(transient(), VALUE)
    cache = CachedSecretSource(inner, clock=ManualClock())

    with pytest.raises(SecretUnavailable):
        cache.get(GSM_REF)

    assert cache.get(GSM_REF).reveal() == VALUE and inner.calls == 2


def test_invalidate_makes_the_next_get_fetch_a_rotated_value():
    inner = ScriptedSource(VALUE, OTHER)
    cache = CachedSecretSource(inner, ttl_seconds=3600, clock=ManualClock())
    cache.get(GSM_REF)

    cache.invalidate(GSM_REF)

    assert cache.get(GSM_REF).reveal() == OTHER


def test_cache_entries_are_per_reference():
    other_ref = SecretRef.gsm("acme-prod", "oanda")
    inner = ScriptedSource(VALUE, OTHER)
    cache = CachedSecretSource(inner, clock=ManualClock())

    assert (cache.get(GSM_REF).reveal(), cache.get(other_ref).reveal()) == (VALUE, OTHER)
    assert cache.get(GSM_REF).reveal() == VALUE and inner.calls == 2


@pytest.mark.parametrize("kwargs", [{"ttl_seconds": -1}, {"stale_grace_seconds": -1}, {"retry_interval_seconds": 0}])
def test_cache_refuses_nonsense_configuration(kwargs):
    with pytest.raises(ValueError):
        CachedSecretSource(ScriptedSource(), **kwargs)


# ------------------------------------------------------------------------------------------------
# routing, and no leak end to end
# ------------------------------------------------------------------------------------------------

def test_routing_source_sends_each_scheme_to_its_source_and_refuses_unconfigured_ones(tmp_path):
    path = tmp_path / ".secrets.local"
    path.write_text(json.dumps({"F": OTHER}))
    source = build_secret_source(environ={"E": VALUE}, local_file=path)

    assert isinstance(source, SecretSource)
    assert source.get(SecretRef.env("E")).reveal() == VALUE
    assert source.get(SecretRef.file("F")).reveal() == OTHER
    with pytest.raises(SecretUnavailable, match="no secret source is configured for gsm references"):
        source.get(GSM_REF)


def test_routing_source_with_secret_manager_caches_and_invalidates():
    client = StubSecretManagerClient([payload(VALUE), payload(OTHER)])
    source = build_secret_source(environ={}, secret_manager_client=client, clock=ManualClock())

    first, again = source.get(GSM_REF), source.get(GSM_REF)
    source.invalidate(GSM_REF)
    rotated = source.get(GSM_REF)

    assert (first.reveal(), again.reveal(), rotated.reveal()) == (VALUE, VALUE, OTHER)
    assert len(client.calls) == 2


def test_no_secret_value_reaches_logs_errors_or_reprs_along_the_whole_path(captured_logs, tmp_path):
    clock = ManualClock()
    client = StubSecretManagerClient([payload(json.dumps({"key_id": "PK1", "secret_key": VALUE})),
                                      gexc.ServiceUnavailable("down"), gexc.NotFound("gone")])
    source = RoutingSecretSource({"gsm": secret_manager_source(client, ttl_seconds=10, clock=clock),
                                  "env": EnvSecretSource({"E": OTHER})})
    texts: list[str] = [repr(source)]

    creds = read_credentials(source, GSM_REF, ["key_id", "secret_key"])
    texts += [repr(creds), str(creds), json.dumps({k: str(v) for k, v in creds.items()})]
    clock.advance(11)
    creds_stale = read_credentials(source, GSM_REF, ["key_id", "secret_key"])  # stale served
    clock.advance(31)
    with pytest.raises(SecretUnavailable) as err:  # NotFound: decisive
        read_credentials(source, GSM_REF, ["key_id", "secret_key"])
    texts += [full_error_text(err.value), repr(source.get(SecretRef.env("E")))]
    logs.log_event("test.creds", creds=creds, source=source)

    assert creds_stale["secret_key"].reveal() == VALUE
    assert_no_leak(captured_logs.getvalue(), *texts)
