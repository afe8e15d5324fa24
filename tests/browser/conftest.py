"""The web console in a real browser: headless Chromium from the OS packages (``chromium``, installed
by scripts/setup.sh) driven by the Playwright Python package through ``executable_path`` — no
browser is ever downloaded. Against the full local stack of ``bash scripts/run.sh`` on free ports
(``EmulatorSuite``: Auth, Firestore with firestore.rules, Functions running functions/main.py, and
Hosting serving web/dist with ``/api/**`` rewritten to the ``api`` function).

Fixtures (one stack and one browser for the whole package):
    console      session   the started EmulatorSuite; ``console.console_url`` is the page
    users        session   trader, tenant admin, auditor and risk manager of ``acme_corp`` in the
                           Auth emulator (email + password, custom claims)
    browser      session   Chromium (headless)
    page_as      function  ``page_as(user)`` → a signed-in Page in a fresh context (own storage)
    shoot        session   ``shoot(page, name)`` → build/screenshots/<name>.png (docs/screenshots/ with
                           UPDATE_SCREENSHOTS=1)
"""
from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.stack_script import load_stack

ROOT = Path(__file__).resolve().parents[2]
# A run writes its screenshots under build/ (ignored); UPDATE_SCREENSHOTS=1 writes the README's
# committed ones in docs/screenshots/ (a deliberate update, never a side effect of the test command)
SCREENSHOTS = ROOT / ("docs/screenshots" if os.environ.get("UPDATE_SCREENSHOTS") == "1" else "build/screenshots")
VIEWPORT = {"width": 1180, "height": 760}
stack = load_stack()
TENANT = stack.TENANT


def chromium_path() -> str:
    found = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("chromium is not installed: run scripts/setup.sh (apt-get install chromium)")
    return found


@pytest.fixture(scope="session")
def console(request):
    """The stack; when a test failed, its emulator log is kept as .tools/browser-failures/emulators.log."""
    if not (ROOT / "web/dist/index.html").is_file():
        pytest.fail("web/dist is missing: run scripts/setup.sh (npm ci and the web build)")
    suite = stack.EmulatorSuite(free_ports=True)
    suite.start()
    try:
        yield suite
    finally:
        if request.session.testsfailed:
            out = ROOT / ".tools/browser-failures"
            out.mkdir(parents=True, exist_ok=True)
            (out / "emulators.log").write_text(suite.log_text())
        suite.stop()


@pytest.fixture(scope="session")
def users(console):
    """Users with custom claims (the tenant's first admin is set out of band, as a platform operator
    would); the admin then makes the trader a member with an account of their own through the admin
    API — the deployed API trades only accounts that admins created (strict accounts)."""
    auth = stack.AuthClient(console)
    run = uuid.uuid4().hex[:6]

    def make(role: str):
        return auth.create_user(role, f"{role}-{run}@acme.example", {"tenant_id": TENANT, "role": role})

    made = {role: make(role) for role in ("trader", "tenant_admin", "auditor", "risk_manager")}
    admin = stack.ApiClient(console, made["tenant_admin"].token)
    trader = made["trader"]
    account = f"web-{run}"
    for method, path, body in (
            ("POST", f"/tenants/{TENANT}/members", {"uid": trader.uid, "role": "trader"}),
            ("POST", f"/tenants/{TENANT}/accounts", {"account_id": account, "connection_id": "deployment",
                                                    "venue_account_id": f"book-{account}", "owner_uids": [trader.uid],
                                                    "asset_classes": ["EQUITY"]}),
            ("PUT", f"/tenants/{TENANT}/members/{trader.uid}/default-account", {"account_id": account})):
        reply = admin.call(method, path, body)
        assert reply.status in (200, 201), (method, path, reply.status, reply.body)
    trader.token = auth.sign_in(trader.email)  # a fresh token after the member change
    return made


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), headless=True,
                              args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.browser_call_failed = report.failed


@pytest.fixture
def page_as(browser, console, request) -> Iterator[Callable]:
    """On failure each open page is saved (PNG + the text of <main>) under .tools/browser-failures/."""
    contexts = []

    def open_as(user):
        context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
        context.set_default_timeout(60_000)
        contexts.append(context)
        page = context.new_page()
        page.goto(console.console_url + "/")
        page.get_by_label("Email").fill(user.email)
        page.get_by_label("Password").fill(stack.PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_test_id("who").wait_for()
        return page

    yield open_as
    if getattr(request.node, "browser_call_failed", False):
        out = ROOT / ".tools/browser-failures"
        out.mkdir(parents=True, exist_ok=True)
        for i, context in enumerate(contexts):
            for j, page in enumerate(context.pages):
                stem = out / f"{request.node.name[:60]}-{i}-{j}"
                try:
                    page.screenshot(path=f"{stem}.png")
                    Path(f"{stem}.txt").write_text(f"{page.url}\n{page.locator('body').inner_text()}")
                except Exception as exc:  # noqa: BLE001 - best effort: the test already failed
                    print(f"could not save {stem}: {exc}")
        print(f"browser pages saved under {out}")
    for context in contexts:
        context.close()


@pytest.fixture(scope="session")
def shoot() -> Callable:
    """``shoot(page, name)``: a PNG of the viewport (small: no full-page captures) under ``SCREENSHOTS``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path))
        return path

    return take
