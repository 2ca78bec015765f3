"""An operator in the browser: sign in, read the overview, find a person, open the
timeline, refresh now and revoke (each confirmed first); a view-only member of staff sees
the same pages without an action."""

from __future__ import annotations

import pytest
import requests
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from sessions_app import tasks
from sessions_app.models import SessionState, TokenEvent, UserAuthSession
from tests.browser.conftest import screenshot

pytestmark = pytest.mark.slow


def _authorize(console, user) -> UserAuthSession:
    """The user approves on Feishu's page (the employee test drives this in the browser)."""
    session_id = console.send_card(user["open_id"])
    start = requests.get(
        f"{console.url}/oauth/start/{session_id}", allow_redirects=False, timeout=10
    )
    consent = requests.post(
        start.headers["Location"],
        data={"open_id": user["open_id"], "decision": "approve"},
        allow_redirects=False,
        timeout=10,
    )
    assert requests.get(consent.headers["Location"], timeout=10).status_code == 200
    return UserAuthSession.objects.get(pk=session_id, state=SessionState.COMPLETED)


def _sign_in(page, url: str, username: str) -> None:
    page.goto(f"{url}/admin/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("a-long-test-password")
    page.get_by_role("button", name="Log in").click()


def test_an_operator_refreshes_and_revokes_from_the_console(console, browser_context) -> None:
    from playwright.sync_api import expect

    get_user_model().objects.create_superuser("ops", "ops@example.com", "a-long-test-password")
    authorization = _authorize(console, console.zhang)
    _authorize(console, console.sandbox.alice)
    tasks.expire_pending_sessions.apply()  # a beat run for the overview
    page = browser_context.new_page()

    _sign_in(page, console.url, "ops")
    expect(page).to_have_title("Overview | larkauth")
    expect(page.locator("#site-name")).to_contain_text("larkauth console")
    row = page.locator(f'tr[data-app-id="{console.app.app_id}"]')
    expect(row.locator('[data-state="completed"]')).to_contain_text("completed: 2")
    expect(row.locator(".connection")).to_contain_text("no listener")
    expect(page.locator('tr[data-task="expire_pending_sessions"]')).to_contain_text("ok")
    screenshot(page, "admin-overview")

    page.get_by_role("link", name="User auth sessions").first.click()
    page.locator("#searchbar").fill("张三")
    page.locator("#searchbar").press("Enter")
    results = page.locator("#result_list tbody tr")
    expect(results).to_have_count(1)
    expect(results).to_contain_text("张三")
    results.locator("th a").click()

    timeline = page.locator("#timeline")
    expect(timeline.locator('[data-kind="completed"]')).to_have_count(1)
    expect(timeline.locator('[data-kind="card_sent"]')).to_have_count(1)
    screenshot(page, "admin-authorization")

    page.get_by_role("link", name="Refresh now").click()
    expect(page.locator("#question")).to_contain_text("Refresh this authorization")
    old_access = UserAuthSession.objects.get(pk=authorization.pk).access_token
    page.get_by_role("button", name="Yes, refresh now").click()
    expect(page.locator(".messagelist")).to_contain_text("Refreshed 1 authorization(s).")
    expect(page.locator("#timeline [data-kind='refreshed']")).to_have_count(1)
    assert UserAuthSession.objects.get(pk=authorization.pk).access_token != old_access

    page.get_by_role("link", name="Revoke").click()
    page.get_by_role("button", name="Yes, revoke").click()
    expect(page.locator(".messagelist")).to_contain_text("Revoked 1 authorization(s).")
    expect(page.locator(".field-state")).to_contain_text("Revoked")
    expect(page.locator("#timeline [data-kind='revoked']")).to_have_count(1)
    expect(page.get_by_role("link", name="Refresh now")).to_have_count(0)
    after = UserAuthSession.objects.get(pk=authorization.pk)
    assert (after.state, after.access_token) == (SessionState.REVOKED, None)
    assert TokenEvent.objects.get(kind="revoked").actor == "admin:ops"
    screenshot(page, "admin-revoked")


def test_view_only_staff_see_no_action(console, browser_context) -> None:
    from playwright.sync_api import expect

    viewer = get_user_model().objects.create_user(
        "viewer", "viewer@example.com", "a-long-test-password", is_staff=True
    )
    viewer.user_permissions.add(Permission.objects.get(codename="view_userauthsession"))
    authorization = _authorize(console, console.zhang)
    page = browser_context.new_page()

    _sign_in(page, console.url, "viewer")
    expect(page).to_have_title("Overview | larkauth")
    page.goto(f"{console.url}/admin/sessions_app/userauthsession/{authorization.pk}/change/")
    expect(page.locator("#timeline [data-kind='completed']")).to_have_count(1)
    for label in ("Refresh now", "Revoke", "Send the card again"):
        expect(page.get_by_role("link", name=label)).to_have_count(0)

    denied = page.goto(
        f"{console.url}/admin/sessions_app/userauthsession/{authorization.pk}/act/revoke/"
    )
    assert denied is not None
    assert denied.status == 403
    assert UserAuthSession.objects.get(pk=authorization.pk).state == SessionState.COMPLETED
