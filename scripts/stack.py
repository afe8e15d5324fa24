"""The whole backend on one machine: firebase-tools' emulator suite running OUR functions, then a
scripted session against it over HTTP, as an app would use it.

    bash scripts/run.sh              # installs what is missing, then runs this file
    bash scripts/run.sh --alpaca     # the traders' accounts on the local Alpaca-compatible server's Broker API
    bash scripts/run.sh --once       # exit after the session (also when not on a terminal, e.g. CI)
    bash scripts/run.sh --stay | tee log   # stay up after the session even when piped, until Ctrl-C

What runs (project ``demo-exec``, offline, nothing deployed):
- ``firebase emulators:start --only auth,firestore,functions,pubsub``: the official Firestore emulator
  (the wrapper jar scripts/setup.sh builds) with ``firestore.rules`` loaded, the Auth emulator, the
  Pub/Sub emulator (without it the Functions emulator ignores scheduled functions) and the Functions
  emulator running ``functions/main.py`` (``api``, ``on_order_intent_created``, ``sweep_stuck_work``)
  with ``functions/venv``. Function env: ``functions/.env.demo-exec`` (dry run off, the
  ``wide_spread`` paper scenario, strict accounts — ``EXEC_ACCOUNTS`` unset, as deployed),
  overridable in ``functions/.env.local``. EXEC_*/ALPACA_* vars of the calling shell are NOT passed
  on, so a run does not depend on the shell.
- Venues and accounts (scripts/localstack/demo_tenant.py): the demo tenant
  ``acme_corp`` gets, written with admin credentials, broker connections, one account per trader
  and member documents with default accounts — only such documents count. ``LocalOandaServer``
  (tests/support/oanda_server.py) always runs in a thread of this process: connection
  ``demo_oanda`` (venue ``oanda``) and the first trader's FX account ``trader_fx``. The traders'
  accounts (``trader_main``, ``trader2_main``) are on connection ``demo_paper`` (the ``paper`` venue,
  simulated inside the functions) or, with ``--alpaca``, on ``demo_alpaca`` (venue
  ``alpaca_broker``: ``LocalAlpacaServer``'s Broker API, one venue account per trader). Connection
  documents hold only ``credentials_ref`` = ``env:DEMO_...``; the values (random per run) are
  passed to the functions' environment, never written to Firestore.

The session (each step has an expected outcome; the exit code is 0 only if all of them held):
users with custom claims in the Auth emulator (a trader and a tenant admin of ``acme_corp``); through
the API with the trader's ID token: a placed trade, a downgraded one (wide spread), a rejected one
(position limit), a replay with the same Idempotency-Key, a multi-leg pair and its read-back, a
signal, the history page; two users, two accounts: each trader's SPY trade lands in their own
account (ledger rows with ``broker_account_id``/``venue_account_id``, the venue's position per
account, the admin's reconciliation), another user's or an invented account is refused
(``ACCOUNT_NOT_OWNED``), GBP/USD goes to the OANDA account; through the Firestore REST API with the
trader's token (rules apply): an intent document created as the app would, executed by the
Firestore trigger, plus two writes and reads the rules must refuse; the sweeper invoked as Cloud Scheduler would; the tenant ledger read
with the admin's token. Then ID tokens and a curl line for every API route, and the stack stays up
until Ctrl-C — on a terminal, or anywhere with ``--stay``. When it exits after the session instead
(``--once``, stdin/stdout not a terminal such as ``| tee log``, ``CI`` set) it says which.

While the stack is up, ``SchedulerTicker`` calls ``sweep_stuck_work`` every minute
(``--schedule-seconds``) the way Cloud Scheduler does, because the Functions emulator registers
the schedule but never fires it; it stops before the emulators do.

Logs: ``.tools/stack/emulators.log`` (firebase-tools + the functions' JSON log lines), kept after exit.
The test tests/integration/test_local_stack.py starts the same ``EmulatorSuite`` on free ports.

This file is the command line; the parts live in ``scripts/localstack/``: ``suite.py`` (the
emulator suite and the scheduler ticker), ``clients.py`` (Auth, API and Firestore REST clients),
``demo_tenant.py`` (the local venue servers and the tenant's connection, account and member
documents) and ``session.py`` (the scripted session, tokens and curl examples). Their names are re-exported
here for the tests that load this file.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any, Iterable

import requests

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.localstack.clients import (  # noqa: E402 - after the sys.path line above
    PASSWORD,
    ApiClient,
    AuthClient,
    FirestoreRest,
    Reply,
    User,
    invoke_scheduled,
    wait_for,
)
from scripts.localstack.demo_tenant import (  # noqa: E402
    ALPACA_CREDENTIALS_ENV,
    FX_ACCOUNT,
    OANDA_CREDENTIALS_ENV,
    TENANT,
    TRADER2_ACCOUNT,
    TRADER_ACCOUNT,
    DemoVenues,
    paper_connection,
    provision_paper_trader,
    trader_account,
)
from scripts.localstack.session import (  # noqa: E402
    FINAL_INTENT_STATUSES,
    Session,
    approval_body,
    curl_examples,
    execute_body,
    intent_document,
    pair_body,
    print_access,
    signal_body,
)
from scripts.localstack.suite import (  # noqa: E402
    FUNCTIONS,
    PROJECT,
    REGION,
    SERVICES,
    EmulatorSuite,
    SchedulerTicker,
    StackError,
    loopback_session,
)
from tests.support.emulators import EmulatorError  # noqa: E402

_http = loopback_session  # the name tests/integration/test_local_stack.py uses

__all__ = [
    "ALPACA_CREDENTIALS_ENV", "FINAL_INTENT_STATUSES", "FUNCTIONS", "FX_ACCOUNT", "OANDA_CREDENTIALS_ENV", "PASSWORD",
    "PROJECT", "REGION", "SERVICES", "TENANT", "TRADER2_ACCOUNT", "TRADER_ACCOUNT", "ApiClient", "AuthClient",
    "DemoVenues", "EmulatorSuite", "FirestoreRest", "Reply", "SchedulerTicker", "Session", "StackError", "User",
    "approval_body", "curl_examples", "execute_body", "intent_document", "invoke_scheduled", "main", "pair_body",
    "paper_connection", "print_access",
    "provision_paper_trader", "signal_body", "stay_up", "trader_account", "wait_for",
]


def stay_up(once: bool, stay: bool, stdin_tty: bool, stdout_tty: bool, ci: bool) -> tuple[bool, str]:
    """Whether the stack stays up after the session, and why (printed when it does not)."""
    if stay:
        return True, "--stay"
    if once:
        return False, "--once was given"
    why = [name for name, tty in (("stdin", stdin_tty), ("stdout", stdout_tty)) if not tty]
    if why:
        return False, (f"{' and '.join(why)} {'is' if len(why) == 1 else 'are'} not a terminal (piped, e.g. "
                       "`| tee log`, or run from a script)")
    if ci:
        return False, "CI is set"
    return True, "on a terminal"


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="exit after the session (default when not on a terminal)")
    mode.add_argument("--stay", action="store_true",
                      help="stay up after the session until Ctrl-C or SIGTERM, also when not on a terminal "
                           "(e.g. `bash scripts/run.sh --stay | tee log`)")
    parser.add_argument("--alpaca", action="store_true",
                        help="put the traders' accounts on the local Alpaca-compatible server's Broker API "
                             "(connection demo_alpaca, venue alpaca_broker) instead of the paper venue")
    parser.add_argument("--schedule-seconds", type=float, default=60.0, metavar="S",
                        help="call the scheduled sweeper (sweep_stuck_work) every S seconds while the stack is "
                             "up, as Cloud Scheduler does every minute (default 60; 0: never)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.schedule_seconds < 0:
        parser.error("--schedule-seconds must be >= 0")
    interactive, stay_reason = stay_up(args.once, args.stay, sys.stdin.isatty(), sys.stdout.isatty(),
                                       bool(os.environ.get("CI")))

    def _terminate(signum: int, frame: Any) -> None:  # SIGTERM/SIGHUP: the same clean stop as Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)

    venues = DemoVenues.start(alpaca=args.alpaca)  # the local venue servers and their credentials (env only)
    workdir = ROOT / ".tools/stack"
    shutil.rmtree(workdir, ignore_errors=True)
    suite = EmulatorSuite(workdir=workdir, functions_env=venues.functions_env)
    code = 1
    ticker: SchedulerTicker | None = None
    try:
        print(f"Local stack: project {PROJECT}, tenant {TENANT}, strict accounts: {venues.describe()}; "
              "functions/.env.demo-exec")
        print(f"Starting firebase emulators ({', '.join(SERVICES)}) offline ...", flush=True)
        suite.start()
        since_run = ""
        if os.environ.get("RUN_SH_STARTED"):
            try:
                since_run = f" ({time.time() - float(os.environ['RUN_SH_STARTED']):.1f} s since run.sh started)"
            except ValueError:
                pass
        print(f"Ready in {suite.startup_seconds:.1f} s{since_run}: functions {', '.join(FUNCTIONS)} loaded, "
              "/healthz answers.")
        print(f"  Functions {suite.host('functions')}  Firestore {suite.host('firestore')} (rules: firestore.rules)  "
              f"Auth {suite.host('auth')}  Pub/Sub {suite.host('pubsub')}  Hosting {suite.host('hosting')}")
        print(f"  Web console: {suite.console_url}/ (demo users and password printed after the session)")
        print(f"  Log (firebase-tools + function logs): {suite.log_path.relative_to(ROOT)}")
        if args.schedule_seconds > 0:
            ticker = SchedulerTicker(lambda: invoke_scheduled(suite), args.schedule_seconds).start()
            print(f"  Scheduler: sweep_stuck_work every {args.schedule_seconds:g} s, as Cloud Scheduler would "
                  "(the Functions emulator does not run schedules).")
        print()
        session = Session(suite, venues=venues, out=lambda line: print(line, flush=True))
        try:
            session.run()
        except (requests.RequestException, StackError) as exc:
            session.check("session", False, f"{type(exc).__name__}: {exc}")
        passed = sum(ok for _, ok, _ in session.results)
        print(f"\n{passed}/{len(session.results)} steps as expected.")
        if session.trader is not None and session.admin is not None:
            print_access(suite, session)
        code = 0 if session.ok else 1
        if not interactive:
            print(f"\nExiting after the session: {stay_reason}. Pass --stay to keep the stack up "
                  "(bash scripts/run.sh --stay).", flush=True)
        if interactive:
            print(f"\nThe stack is up (Functions {suite.functions_url}, web console {suite.console_url}/; {stay_reason}). "
                  "Ctrl-C to stop.", flush=True)
            while suite.running():
                time.sleep(0.5)
            print(f"firebase-tools exited on its own\n{suite.log_tail()}")
            code = 1
    except KeyboardInterrupt:
        print("\nStopping ...", flush=True)
    except EmulatorError as exc:  # StackError, or firebase-tools / Java not installed
        print(f"ERROR: {exc}", file=sys.stderr)
        code = 1
    finally:
        started = time.monotonic()
        if ticker is not None:
            ticker.stop()
            print(f"Scheduler stopped after {ticker.ticks} tick(s), {ticker.failures} failed.", flush=True)
        suite.stop()
        venues.stop()
        print(f"Stopped in {time.monotonic() - started:.1f} s.", flush=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
