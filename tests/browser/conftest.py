"""Browser tests: Playwright driving Debian's Chromium against larkauth on a live server
(pytest-django's `live_server`) and the Feishu sandbox (its inbox and consent page).

Chromium is `/usr/bin/chromium` (`.ci/services.sh` installs it with apt-get): Playwright
downloads no browser. Screenshots are written to `var/screenshots/` (the README shows
copies kept in `docs/screenshots/`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from django.db import connections

from sessions_app.models import Application, ServiceClient
from tests.conftest import REQUIRE_SERVICES
from tests.fixtures.sandbox import TEST_APP, Sandbox

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "var" / "screenshots"
TIME_ZONE = "Asia/Shanghai"
ZHANG: dict[str, Any] = {
    "name": "张三",
    "en_name": "Zhang San",
    "email": "zhangsan@example.com",
    "user_id": "zhangsan",
}


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def browser_context(monkeypatch) -> Iterator[Any]:
    """A fresh Chromium context (no cookies) per test."""
    if not os.access(CHROMIUM, os.X_OK):
        reason = f"{CHROMIUM} not installed (.ci/services.sh installs it with apt-get as root)"
        if REQUIRE_SERVICES:
            pytest.fail(f"Chromium is required in CI: {reason}", pytrace=False)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the test's own ORM calls
    # (between browser calls) are still synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox"] if os.geteuid() == 0 else [],  # root: no user namespace
        )
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        context.set_default_timeout(15_000)
        try:
            yield context
        finally:
            context.close()
            browser.close()
            # The test's queries ran in Playwright's context, on a connection of their own.
            connections.close_all()


@dataclass
class Console:
    """larkauth on a live server, wired to the sandbox; the app and an API key."""

    url: str
    sandbox: Sandbox
    app: Application
    api_key: str
    zhang: dict[str, Any]

    def api(self, method: str, path: str, body: dict[str, Any] | None = None):
        return requests.request(
            method,
            self.url + path,
            json=body,
            headers={"Authorization": f"Api-Key {self.api_key}"},
            timeout=20,
        )

    def send_card(self, open_id: str) -> str:
        response = self.api("POST", "/api/v1/auth-sessions/", {"open_id": open_id})
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def inbox(self, user: dict[str, Any]) -> str:
        return f"{self.sandbox.url}/_sandbox/inbox/{quote(user['open_id'])}"


@pytest.fixture
def console(transactional_db, live_server, sandbox: Sandbox, settings) -> Console:
    settings.LARK_DOMAIN = sandbox.url
    settings.LARK_ACCOUNTS_DOMAIN = sandbox.url
    settings.LARKAUTH_PUBLIC_URL = live_server.url
    settings.TIME_ZONE = TIME_ZONE
    # Card clicks reach larkauth over HTTP (no listener runs here).
    sandbox.add_app(**TEST_APP, event_callback_url=f"{live_server.url}/lark/events/")
    zhang = sandbox.add_user(**ZHANG)
    app = Application.objects.create(
        app_id=TEST_APP["app_id"],
        name="Test app",
        app_secret=TEST_APP["app_secret"],
        encrypt_key=TEST_APP["encrypt_key"],
        verification_token=TEST_APP["verification_token"],
    )
    service, key = ServiceClient.objects.create_key(name="browser-test-service")
    assert isinstance(service, ServiceClient)
    service.applications.add(app)
    return Console(url=live_server.url, sandbox=sandbox, app=app, api_key=key, zhang=zhang)
