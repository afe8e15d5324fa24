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
