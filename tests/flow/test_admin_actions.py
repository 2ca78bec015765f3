"""Operators act on authorizations from the admin: resend the card, refresh now, revoke;
staff who may only view cannot."""

from __future__ import annotations

import pytest
from django.urls import reverse

from sessions_app.models import SessionState, TokenEvent, UserAuthSession

pytestmark = pytest.mark.django_db


def _act(lark, action: str, *sessions: UserAuthSession):
    return lark.client.post(
        reverse("admin:sessions_app_userauthsession_changelist"),
        {"action": action, "_selected_action": [str(s.pk) for s in sessions]},
        follow=True,
    )


def _authorized(lark) -> UserAuthSession:
    alice = lark.sandbox.alice
    lark.authorize(lark.open_card_session(alice["open_id"]), alice["open_id"])
    return UserAuthSession.objects.get(state=SessionState.COMPLETED)


def test_refresh_now_rotates_the_tokens(operator) -> None:
    authorization = _authorized(operator)
    old_access = authorization.access_token
    page = _act(operator, "refresh_now", authorization)
    assert "Refreshed 1 authorization(s)." in page.content.decode()
    authorization.refresh_from_db()
    assert authorization.access_token != old_access
    assert TokenEvent.objects.get(kind="refreshed").actor == "admin:ops"


def test_revoke_wipes_the_tokens(operator) -> None:
    authorization = _authorized(operator)
    page = _act(operator, "revoke", authorization)
    assert "Revoked 1 authorization(s)." in page.content.decode()
    authorization.refresh_from_db()
    assert (authorization.state, authorization.access_token) == ("revoked", None)


def test_resend_card_opens_a_new_session_for_the_user(operator) -> None:
    authorization = _authorized(operator)
    page = _act(operator, "resend_card", authorization)
    assert "Sent 1 card(s)" in page.content.decode()
    alice = operator.sandbox.alice
    assert len(operator.sandbox.messages(open_id=alice["open_id"])) == 2
    assert UserAuthSession.objects.filter(state=SessionState.PENDING).count() == 1
    # The existing authorization stays valid until the user completes the new card.
    assert UserAuthSession.objects.filter(state=SessionState.COMPLETED).count() == 1


def test_view_only_staff_see_the_authorizations_but_no_action(viewer) -> None:
    authorization = _authorized(viewer)
    page = viewer.client.get(reverse("admin:sessions_app_userauthsession_changelist"))
    assert page.status_code == 200
    html = page.content.decode()
    assert authorization.open_id in html
    for action in ("resend_card", "refresh_now", "revoke"):
        assert f'value="{action}"' not in html


@pytest.mark.parametrize("action", ["resend_card", "refresh_now", "revoke"])
def test_view_only_staff_cannot_post_an_action(viewer, action: str) -> None:
    authorization = _authorized(viewer)
    before = (authorization.state, authorization.access_token, authorization.refresh_token)
    viewer.sandbox.clear_calls()

    _act(viewer, action, authorization)

    authorization.refresh_from_db()
    assert (authorization.state, authorization.access_token, authorization.refresh_token) == before
    assert UserAuthSession.objects.count() == 1
    assert not TokenEvent.objects.filter(actor="admin:viewer").exists()
    assert viewer.sandbox.calls() == []
