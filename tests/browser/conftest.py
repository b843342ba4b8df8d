"""Browser tests: Playwright (sync API) driving Debian's Chromium against pytest-django's live server.

Playwright's sync API keeps an asyncio event loop in the test thread, which trips Django's
async-safety check for the ORM calls the tests make themselves; the tests are plain synchronous
code, so the check is switched off for this process.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect, sync_playwright

from tests import factories

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
PASSWORD = "pw-123456"  # tests.factories.make_user's default

expect.set_options(timeout=10_000)


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}; install it (apt-get install -y chromium) or set CHROMIUM_PATH.")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server, transactional_db):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1800, "height": 1000})
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def owner(transactional_db):
    return factories.make_user(name="Olivia Owner", password=PASSWORD)


@pytest.fixture
def workspace(owner):
    return factories.make_entity(name="Olivia Co", owner=owner)


def login(page: Page, user, *, password: str = PASSWORD) -> None:
    """Sign in through the login form, as a person would; lands on the board."""
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/crm/board")


_axe = Axe()


def assert_accessible(page: Page, name: str) -> None:
    """No serious or critical axe-core violations (axe ships inside the package: no network)."""
    results = _axe.run(page)
    serious = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert not serious, f"{name}: " + "; ".join(
        f"{v['id']} ({v['impact']}): {v['help']} at {[node['target'] for node in v['nodes']][:3]}" for v in serious
    )
