"""An employee in the browser: the card in the sandbox inbox → Authorize → Feishu's consent
page → larkauth's success page → the same card now says Authorized, in local time; and
Decline."""

from __future__ import annotations

import pytest
from django.utils import timezone

from sessions_app.models import SessionState, UserAuthSession
from tests.browser.conftest import screenshot

pytestmark = pytest.mark.slow


def test_an_employee_authorizes_from_the_card(console, browser_context) -> None:
    from playwright.sync_api import expect

    zhang = console.zhang
    session_id = console.send_card(zhang["open_id"])
    inbox = browser_context.new_page()
    inbox.goto(console.inbox(zhang))
    card = inbox.locator(".card").first
    expect(card).to_contain_text("Authorization request")
    screenshot(inbox, "card-before")

    with browser_context.expect_page() as opened:
        card.get_by_role("link", name="授权 · Authorize").click()
    consent = opened.value
    expect(consent.get_by_role("heading", name="Authorize")).to_be_visible()
    consent.get_by_label("张三").check()
    consent.get_by_role("button", name="Approve").click()
    expect(consent.locator("body")).to_contain_text("Authorized")
    expect(consent.locator("body")).to_contain_text("授权成功")
    assert consent.url.startswith(f"{console.url}/oauth/callback")
    screenshot(consent, "success-page")

    session = UserAuthSession.objects.get(pk=session_id)
    assert session.state == SessionState.COMPLETED
    assert session.completed_at is not None
    local = timezone.localtime(session.completed_at, timezone.get_default_timezone())
    assert str(local.tzinfo) == "Asia/Shanghai"
    inbox.bring_to_front()
    inbox.reload()
    card = inbox.locator(".card").first
    expect(card).to_contain_text("已授权 · Authorized")
    expect(card).to_contain_text(f"张三 authorized on {local:%Y-%m-%d %H:%M}.")
    expect(card).to_contain_text(f"已于 {local:%Y-%m-%d %H:%M} 完成授权")
    assert inbox.locator(".card").count() == 1  # updated in place, not a second card
    screenshot(inbox, "card-after")


def test_an_employee_declines_from_the_card(console, browser_context) -> None:
    from playwright.sync_api import expect

    zhang = console.zhang
    session_id = console.send_card(zhang["open_id"])
    inbox = browser_context.new_page()
    inbox.goto(console.inbox(zhang))
    card = inbox.locator(".card").first
    card.get_by_role("button", name="拒绝 · Decline").click()

    card = inbox.locator(".card").first
    expect(card).to_contain_text("已拒绝 · Declined")
    expect(card.get_by_role("button", name="重新请求 · Request again")).to_be_visible()
    assert UserAuthSession.objects.get(pk=session_id).state == SessionState.REJECTED
    screenshot(inbox, "card-declined")
