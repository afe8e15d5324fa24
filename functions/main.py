"""Cloud Functions entry points. Thin: each handler turns a request, a Firestore event or a schedule
tick into one call of the core and returns; all logic lives in ``backend`` (reachable through the
``functions/backend`` symlink when ``functions/`` is the source root — deploy, emulator,
functions-framework — and from the repo root as ``functions.main``).

Cheap to import (every cold start and the deploy-time discovery pay for it): only
``firebase_functions`` at the top. firebase_admin's app, Firestore, pydantic and alpaca-py load
inside the handlers, on first use, and stay cached for the life of the instance
(``backend.api.wiring`` builds the engine once per process).
"""
from __future__ import annotations

import os

from firebase_functions import firestore_fn, https_fn, options, params, scheduler_fn

from backend.api.wiring import refuse_emulators_when_deployed

# Refuse to start (every cold start) when an emulator host variable is set in a deployed
# environment: the Auth emulator's tokens are unsigned (backend.api.wiring).
refuse_emulators_when_deployed(os.environ)

REGION = os.environ.get("FUNCTIONS_REGION", "us-central1")

options.set_global_options(region=REGION, max_instances=20, timeout_sec=120, memory=options.MemoryOption.MB_512)


def _secret(name: str) -> params.SecretParam:
    # Declared once per process even if this file is imported under two names (``main`` and
    # ``functions.main``): firebase_functions refuses a second declaration of the same param.
    existing = getattr(params, "_params", {}).get(name)
    return existing if isinstance(existing, params.SecretParam) else params.SecretParam(name)


ALPACA_API_KEY = _secret("ALPACA_API_KEY")
ALPACA_SECRET_KEY = _secret("ALPACA_SECRET_KEY")
SECRETS = [ALPACA_API_KEY, ALPACA_SECRET_KEY]


def _secret_values() -> dict[str, str | None]:
    """Read inside a handler: secrets are only mounted at run time."""
    return {"ALPACA_API_KEY": ALPACA_API_KEY.value or None, "ALPACA_SECRET_KEY": ALPACA_SECRET_KEY.value or None}


def _warm_after_fork() -> None:
    # issue 17: in the worker process functions-framework's gunicorn forks after importing this file,
    # build the engine and connect Firestore on a thread while the worker starts and the first request
    # arrives (before the fork nothing may be built: a gRPC channel does not survive one).
    from backend.api.wiring import start_warm_up_after_fork

    target = os.environ.get("FUNCTION_TARGET") or ""
    start_warm_up_after_fork(_secret_values, api=target in ("", "api"))


if hasattr(os, "register_at_fork") and os.environ.get("EXEC_WARM_UP", "1") != "0":
    os.register_at_fork(after_in_child=_warm_after_fork)
    if os.environ.get("FUNCTION_TARGET") == "api":
        # The api instance imports its order path here, before the server listens (a platform routes
        # requests to an instance once it listens): no first request pays for it. It also builds the
        # engine, the API and the limiter (no channel, no thread: those come after the fork). Trigger
        # instances and deploy-time discovery (no FUNCTION_TARGET) keep the cheap import above.
        from backend.api.wiring import preload_api

        preload_api(_secret_values)


@https_fn.on_request(secrets=SECRETS)
def api(req: https_fn.Request) -> https_fn.Response:
    """The HTTP API: POST /execute, /execute/multi-leg, /signals; GET /groups/<id>,
    /portfolio/history, /healthz, /openapi.json (docs/openapi.json)."""
    from backend.api.flask_bridge import serve

    return serve(req, _secret_values())


@firestore_fn.on_document_created(document="tenants/{tenant_id}/order_intents/{intent_id}", secrets=SECRETS)
def on_order_intent_created(event: firestore_fn.Event[firestore_fn.DocumentSnapshot | None]) -> None:
    """Execute an intent document an app wrote (status ``new``). Records the engine itself creates
    (HTTP path: status ``reserved``/final) are ignored by the intake, and a redelivered event finds
    the stored outcome: at-least-once delivery places nothing twice."""
    if event.data is None:
        return
    from backend.api.wiring import get_engine, get_rate_limiter
    from backend.service.intake import handle_intent_document

    secrets = _secret_values()
    handle_intent_document(get_engine(secrets), event.params["tenant_id"], event.params["intent_id"],
                           event.data.to_dict(), limiter=get_rate_limiter(secrets))


@scheduler_fn.on_schedule(schedule="every 1 minutes", secrets=SECRETS, timeout_sec=300)
def sweep_stuck_work(event: scheduler_fn.ScheduledEvent) -> None:
    """Resume groups and reconcile RESERVED intents whose lease expired (backend.execution.sweeper)."""
    from backend.api.wiring import get_engine
    from backend.execution.sweeper import Sweeper

    Sweeper(get_engine(_secret_values())).sweep()


# --- risk admin (issue 13): the daily reconciliation of every tenant's accounts
@scheduler_fn.on_schedule(schedule="every day 23:30", timezone=scheduler_fn.Timezone("UTC"), secrets=SECRETS,
                          timeout_sec=540)
def reconcile_daily(event: scheduler_fn.ScheduledEvent) -> None:
    """Ledger net positions vs venue positions per account; reports at tenants/{t}/reconciliation/{day},
    breaks logged at ERROR, nothing corrected (backend.api.reconciliation_api, backend.risk.reconciliation)."""
    from backend.api.reconciliation_api import run_scheduled
    from backend.api.wiring import get_engine

    run_scheduled(get_engine(_secret_values()))
