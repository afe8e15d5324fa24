"""scripts/stack.py without emulators (issue 19 item 15): when the stack stays up after the session
and what it says when it does not, and the scheduler ticker that stands in for Cloud Scheduler."""
import threading
import time

import pytest

from tests.support.stack_script import load_stack


stack = load_stack()


@pytest.mark.parametrize("once, stay, stdin_tty, stdout_tty, ci, up, reason_part", [
    (False, False, True, True, False, True, "on a terminal"),
    (False, False, True, False, False, False, "stdout is not a terminal"),  # bash scripts/run.sh | tee log
    (False, False, False, False, False, False, "stdin and stdout are not a terminal"),
    (False, False, True, True, True, False, "CI is set"),
    (True, False, True, True, False, False, "--once"),
    (False, True, False, False, True, True, "--stay"),  # piped, in CI: --stay wins
])
def test_the_stack_stays_up_only_when_it_can_and_says_why_not(once, stay, stdin_tty, stdout_tty, ci, up,
                                                               reason_part):
    stays, reason = stack.stay_up(once, stay, stdin_tty, stdout_tty, ci)
    assert stays is up and reason_part in reason


def test_once_and_stay_are_exclusive(capsys):
    with pytest.raises(SystemExit):
        stack.main(["--once", "--stay"])
    assert "not allowed with argument" in capsys.readouterr().err


class RecordingTick:
    def __init__(self, fail_first: int = 0):
        self.calls = 0
        self.fail_first = fail_first
        self.called = threading.Event()

    def __call__(self):
        self.calls += 1
        if self.calls >= 3:
            self.called.set()
        if self.calls <= self.fail_first:
            raise ConnectionError("emulator busy")
        return stack.Reply(200, {}, None)


def test_the_ticker_calls_the_sweeper_every_interval_until_stopped():
    tick, lines = RecordingTick(), []
    ticker = stack.SchedulerTicker(tick, interval=0.01, report=lines.append).start()
    assert tick.called.wait(5)
    ticker.stop()
    calls = tick.calls
    time.sleep(0.05)
    assert tick.calls == calls and ticker.ticks == calls and lines == []


def test_a_failed_tick_is_reported_and_the_schedule_goes_on():
    tick, lines = RecordingTick(fail_first=1), []
    ticker = stack.SchedulerTicker(tick, interval=0.01, report=lines.append).start()
    assert tick.called.wait(5)
    ticker.stop()
    assert ticker.failures == 1 and tick.calls >= 3
    assert lines == ["scheduler: sweep_stuck_work tick failed: ConnectionError: emulator busy"]


def test_the_first_tick_waits_one_interval():
    tick = RecordingTick()
    ticker = stack.SchedulerTicker(tick, interval=60).start()
    ticker.stop()
    assert tick.calls == 0


# ---- issue 12 item 7 / issue 14 item 7: the run command's tenant, accounts and venues ------------------

def test_the_demo_venues_give_the_functions_credentials_by_reference_only():
    import json

    from backend.domain.accounts import CREDENTIAL_FIELDS, Venue

    venues = stack.DemoVenues.start(alpaca=True)
    try:
        env = venues.functions_env
        assert set(env) == {stack.ALPACA_CREDENTIALS_ENV, stack.OANDA_CREDENTIALS_ENV}
        assert set(json.loads(env[stack.ALPACA_CREDENTIALS_ENV])) == set(CREDENTIAL_FIELDS[Venue.ALPACA_BROKER])
        assert set(json.loads(env[stack.OANDA_CREDENTIALS_ENV])) == set(CREDENTIAL_FIELDS[Venue.OANDA])
        assert venues.broker == "alpaca_broker" and venues.alpaca.url in venues.describe()
        assert venues.oanda.token == json.loads(env[stack.OANDA_CREDENTIALS_ENV])["token"]  # the server checks it
        assert all(secret not in repr(venues) for secret in venues.secret_values())
    finally:
        venues.stop()
    assert venues.alpaca is None and venues.oanda is None
    assert stack.DemoVenues().broker == "paper" and stack.DemoVenues().functions_env == {}


def test_the_stack_runs_strict_accounts_as_deployed():
    settings = [line.split("=", 1)[0] for line in (stack.ROOT / "functions/.env.demo-exec").read_text().splitlines()
                if line and not line.startswith("#")]
    assert "EXEC_ACCOUNTS" not in settings and "EXEC_SECRET_MANAGER" in settings
    assert not any(name.startswith("EXEC_") for name in stack.DemoVenues().functions_env)


def test_the_demo_account_documents_parse_strictly_and_hold_no_credentials():
    from datetime import datetime, timezone

    from backend.domain.accounts import Account, BrokerConnection

    at = datetime(2026, 12, 1, tzinfo=timezone.utc)
    user = stack.User("trader", "trader@acme.example", "uid-1", "token", {"tenant_id": stack.TENANT, "role": "trader"})
    connection = stack.paper_connection(at)
    account = stack.trader_account(stack.TRADER_ACCOUNT, user, connection, "book-trader_main", at)

    assert BrokerConnection.from_dict(connection.to_dict()) == connection and connection.credentials_ref is None
    assert Account.from_dict(account.to_dict(), connection) == account
    assert account.owner_uids == ("uid-1",) and len(account.asset_classes) == 5


def test_request_bodies_name_the_traders_account_or_leave_it_to_the_default():
    assert stack.execute_body()["broker_account_id"] == stack.TRADER_ACCOUNT
    assert "broker_account_id" not in stack.execute_body(account=None)
    assert stack.pair_body("d1", account=stack.TRADER2_ACCOUNT)["broker_account_id"] == stack.TRADER2_ACCOUNT
    assert stack.signal_body()["broker_account_id"] == stack.TRADER_ACCOUNT
    assert "broker_account_id" not in stack.intent_document("u1", account=None)["intent"]
    assert stack.intent_document("u1")["intent"]["broker_account_id"] == stack.TRADER_ACCOUNT


def test_the_curl_examples_name_accounts():
    from types import SimpleNamespace

    suite = SimpleNamespace(api_url="http://api", documents_url="http://fs", auth_url="http://auth",
                            function_url=lambda name: f"http://fn/{name}")
    session = SimpleNamespace(group_id="g-1", intent_id="app-1", trader=SimpleNamespace(uid="uid-1"),
                              accounts={stack.FX_ACCOUNT: None})

    curls = stack.curl_examples(suite, session)

    execute = [c for c in curls if '"$API/execute"' in c]
    assert execute and all('"broker_account_id":' in c for c in execute)
    assert any("$TRADER2_TOKEN" in c and f'"broker_account_id":"{stack.TRADER_ACCOUNT}"' in c for c in execute)
    assert any(f'"broker_account_id":"{stack.FX_ACCOUNT}"' in c and "GBP/USD" in c for c in execute)
    assert all("/accounts/ID" not in c for c in curls)  # account routes name the trader's account
    reconcile = [c for c in curls if "-X POST" in c and c.split()[4].endswith('/reconciliation"')]
    assert reconcile and all(" -d " not in c for c in reconcile)  # the endpoint takes no body
