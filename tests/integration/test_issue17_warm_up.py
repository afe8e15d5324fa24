"""Issue 17, the first request: a new worker builds the engine, imports the order path and connects
Firestore on a thread started right after functions-framework's gunicorn forks it
(``functions/main.py`` → ``backend.api.wiring.start_warm_up_after_fork``), not on the first request.

Proved on the real server (functions-framework, the official emulators): the warm-up's log line
appears although no order request was sent, with each step it took, and the first order request
afterwards is served by what it built. And in process: once per process, failures logged, never
raised (the first request then builds it and reports the error as before).
"""
from __future__ import annotations

import os
import time

import pytest

from backend.api import wiring
from tests.support.api_stack import FunctionsServer, emulator_env, http_call

pytestmark = pytest.mark.slow


def _env(firestore_emulator, auth_emulator, **extra: str) -> dict[str, str]:
    return emulator_env(firestore_emulator, auth_emulator, **extra)


def _wait_for(server: FunctionsServer, event: str, timeout: float = 60.0) -> dict | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in server.log_lines():
            if line.get("event") == event:
                return line
        time.sleep(0.1)
    return None


def test_a_new_worker_warms_up_without_an_order_request(firestore_emulator, auth_emulator):
    with FunctionsServer(_env(firestore_emulator, auth_emulator)) as server:  # ready: GET /healthz only
        line = _wait_for(server, "api.warmed_up")
        assert line is not None, server.log_tail()
        assert set(line["took_ms"]) == {"engine", "modules", "api", "channel", "auth"} and line["api"] is True
        assert "api.warm_up_auth_failed" not in [e.get("event") for e in server.log_lines()]
        events = [entry.get("event") for entry in server.log_lines()]
        assert "api.engine_ready" in events  # the engine was built by the warm-up ...
        assert not any(e and e.startswith("exec.") for e in events)  # ... and no order was handled

        status, _, body = http_call("GET", server.url + "/healthz")
        assert status == 200 and body["status"] == "ok"
        assert [e.get("event") for e in server.log_lines()].count("api.engine_ready") == 1  # built once


def test_warm_up_can_be_switched_off(firestore_emulator, auth_emulator):
    with FunctionsServer(_env(firestore_emulator, auth_emulator, EXEC_WARM_UP="0")) as server:
        status, _, _ = http_call("GET", server.url + "/healthz")
        assert status == 200
        assert "api.warmed_up" not in [e.get("event") for e in server.log_lines()]
        # /healthz builds nothing: the engine is still unbuilt (the first order request builds it)
        assert "api.engine_ready" not in [e.get("event") for e in server.log_lines()]


def test_the_warm_up_thread_runs_once_per_process_and_logs_a_failure(monkeypatch, capsys):
    calls: list[object] = []

    def failing(secrets, *, api):
        calls.append((secrets, api))
        raise RuntimeError("no Firestore here")

    monkeypatch.setattr(wiring, "warm_up", failing)
    monkeypatch.setattr(wiring, "_warm_pid", None)

    wiring.start_warm_up_after_fork(lambda: {"K": None}, api=False)
    wiring.start_warm_up_after_fork(lambda: {"K": None}, api=False)  # the same process: nothing more
    deadline, out = time.monotonic() + 10, ""
    while "api.warm_up_failed" not in out and time.monotonic() < deadline:
        time.sleep(0.02)
        out += capsys.readouterr().out

    assert "api.warm_up_failed" in out and "no Firestore here" in out
    assert calls == [({"K": None}, False)]
    assert wiring._warm_pid == os.getpid()
