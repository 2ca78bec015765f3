"""What a failed refresh does depends on what Feishu's answer means (larkauth.errors.Failure):
only the user's grant dying ends an authorization."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.test import Client
from django.utils import timezone

from larkauth.errors import AuthenticationRequiredError, TokenRefreshFailedError
from sessions_app.models import Application, SessionState, TokenEvent, UserAuthSession
from sessions_app.services import get_active_token, tokens_refresh_expiring
from tests.conftest import _missing
from tests.flow.test_token_refresh import _authorize, _make_expiring
from tests.jobs.helpers import keepalive_due

APP = "cli_test_app"


def _expired(authorization: UserAuthSession) -> None:
    UserAuthSession.objects.filter(pk=authorization.pk).update(
        token_expires_at=timezone.now() - timedelta(seconds=1)
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ({"code": 20002}, "oauth_refresh:20002"),  # app secret reset in the console
        ({"code": 20074}, "oauth_refresh:20074"),  # refresh switched off
        ({"code": 20009}, "oauth_refresh:20009"),  # app not installed
        ({"code": 20048}, "oauth_refresh:20048"),
        ({"code": 20069}, "oauth_refresh:20069"),
        ({"http_status": 403, "html": True}, "oauth_refresh:403"),  # a proxy, not Feishu
        ({"http_status": 404, "html": True}, "oauth_refresh:404"),
    ],
)
def test_a_misconfigured_application_keeps_the_authorization_and_is_flagged(
    lark, fault, reason
) -> None:
    authorization = _authorize(lark, lark.sandbox.alice)
    tokens = (authorization.access_token, authorization.refresh_token)
    _make_expiring(authorization)
    lark.sandbox.add_fault("oauth_refresh", times=-1, **fault)

    # The token that still works is served; nothing about the user's grant changed.
    assert get_active_token(APP, open_id=authorization.open_id) == tokens[0]

    authorization.refresh_from_db()
    assert authorization.state == SessionState.COMPLETED
    assert (authorization.access_token, authorization.refresh_token) == tokens
    assert authorization.refresh_failures == 0
    app = Application.objects.get(app_id=APP)
    assert app.attention_reason == reason
    assert app.attention_since is not None
    metrics = Client().get("/metrics").content.decode()
    assert f'larkauth_application_needs_attention{{app_id="{APP}"}} 1.0' in metrics


@pytest.mark.django_db
def test_a_misconfigured_application_with_an_expired_token_answers_503_not_reauth(lark) -> None:
    authorization = _authorize(lark, lark.sandbox.alice)
    _expired(authorization)
    lark.sandbox.add_fault("oauth_refresh", code=20002, times=-1)

    response = lark.request_token(open_id=authorization.open_id)

    assert response.status_code == 503
    assert response.json()["code"] == "token_refresh_failed"
    authorization.refresh_from_db()
    assert authorization.state == SessionState.COMPLETED
    assert authorization.refresh_token is not None


@pytest.mark.django_db
def test_the_sweep_probes_a_flagged_application_once_and_clears_the_flag_when_it_works(
    lark,
) -> None:
    alice = _authorize(lark, lark.sandbox.alice)
    bob = _authorize(lark, lark.sandbox.bob)
    for authorization in (alice, bob):
        keepalive_due(authorization)
    lark.sandbox.add_fault("oauth_refresh", code=20002, times=-1)
    lark.sandbox.clear_calls()

    first = tokens_refresh_expiring(threads=1)

    # One call found the application misconfigured; the other user was left alone.
    assert len(lark.sandbox.calls(api="oauth_refresh")) == 1
    assert first.outcomes["app_needs_attention"] == 2
    assert Application.objects.get(app_id=APP).attention_reason == "oauth_refresh:20002"

    lark.sandbox.clear_calls()
    tokens_refresh_expiring(threads=1)
    assert len(lark.sandbox.calls(api="oauth_refresh")) == 1  # the probe, nothing more

    lark.sandbox.clear_faults()  # the operator fixed the secret
    lark.sandbox.clear_calls()
    fixed = tokens_refresh_expiring(threads=1)

    assert fixed.outcomes["refreshed"] == 2
    assert Application.objects.get(app_id=APP).attention_reason == ""
    assert set(
        UserAuthSession.objects.filter(state="completed").values_list("open_id", flat=True)
    ) == {alice.open_id, bob.open_id}


@pytest.mark.django_db
@pytest.mark.parametrize("code", [20037, 20064, 20073, 20026, 20024, 20008])
def test_a_dead_grant_needs_reauthorization(lark, code) -> None:
    authorization = _authorize(lark, lark.sandbox.alice)
    _make_expiring(authorization)
    lark.sandbox.add_fault("oauth_refresh", code=code)

    with pytest.raises(AuthenticationRequiredError):
        get_active_token(APP, open_id=authorization.open_id)

    authorization.refresh_from_db()
    assert authorization.state == SessionState.NEEDS_REAUTH
    assert authorization.access_token is None
    assert authorization.refresh_token is None
    assert authorization.failure_reason == f"refresh_failed:{code}"
    assert Application.objects.get(app_id=APP).attention_reason == ""


@pytest.mark.django_db
@pytest.mark.parametrize("code", [20010, 20066])
def test_a_user_who_cannot_use_the_app_now_keeps_the_grant(lark, code) -> None:
    authorization = _authorize(lark, lark.sandbox.alice)
    refresh_token = authorization.refresh_token
    _make_expiring(authorization)
    lark.sandbox.add_fault("oauth_refresh", code=code)

    assert get_active_token(APP, open_id=authorization.open_id) == authorization.access_token

    authorization.refresh_from_db()
    assert authorization.state == SessionState.COMPLETED
    assert authorization.refresh_token == refresh_token
    assert authorization.failure_reason == f"user_unavailable:{code}"
    assert authorization.refresh_failures == 1


@pytest.mark.django_db
def test_a_refresh_whose_answer_was_lost_is_reported_as_a_lost_rotation(lark, settings) -> None:
    settings.FEISHU_HTTP_TIMEOUT = 0.5
    authorization = _authorize(lark, lark.sandbox.alice)
    _make_expiring(authorization)
    # Feishu rotates the refresh token, but its answer never arrives.
    lark.sandbox.add_fault("oauth_refresh", latency_ms=1500)

    assert get_active_token(APP, open_id=authorization.open_id) == authorization.access_token
    authorization.refresh_from_db()
    assert authorization.failure_reason == "refresh_unanswered"

    time.sleep(1.2)  # the sandbox finished the rotation
    with pytest.raises(AuthenticationRequiredError):
        get_active_token(APP, open_id=authorization.open_id)

    authorization.refresh_from_db()
    assert authorization.state == SessionState.NEEDS_REAUTH
    assert authorization.failure_reason == "lost_rotation"
    metrics = Client().get("/metrics").content.decode()
    assert 'larkauth_token_refresh_total{outcome="lost_rotation"}' in metrics


@pytest.mark.django_db(transaction=True)
def test_a_refresh_held_elsewhere_bounds_the_wait(lark) -> None:
    """A process stuck in its refresh holds the row lock: others wait a bounded time, then
    get a still-valid token, or a clear TokenRefreshFailedError (503), never a queue."""
    if connection.vendor != "postgresql":
        _missing("PostgreSQL")
    authorization = _authorize(lark, lark.sandbox.alice)
    _make_expiring(authorization)

    def hold_lock(locked: threading.Event, release: threading.Event) -> None:
        try:
            with transaction.atomic():
                # As a refresh in flight holds it (services/tokens.py).
                UserAuthSession.objects.select_for_update(no_key=True).get(pk=authorization.pk)
                locked.set()
                release.wait(30)
        finally:
            connections.close_all()

    def while_locked(check) -> None:
        locked, release = threading.Event(), threading.Event()
        holder = threading.Thread(target=hold_lock, args=(locked, release))
        holder.start()
        try:
            assert locked.wait(10)
            started = time.monotonic()
            check()
            assert time.monotonic() - started < 6
        finally:
            release.set()
            holder.join()

    while_locked(
        lambda: get_active_token(APP, open_id=authorization.open_id) == authorization.access_token
    )
    _expired(authorization)

    def refused() -> None:
        with pytest.raises(TokenRefreshFailedError):
            get_active_token(APP, open_id=authorization.open_id)

    while_locked(refused)
    assert TokenEvent.objects.filter(kind="refreshed").count() == 0


def test_an_operator_sees_the_misconfigured_application_in_admin(lark, admin_client) -> None:
    authorization = _authorize(lark, lark.sandbox.alice)
    _make_expiring(authorization)
    lark.sandbox.add_fault("oauth_refresh", code=20074, times=-1)
    get_active_token(APP, open_id=authorization.open_id)

    page = admin_client.get("/admin/sessions_app/application/?attention=yes").content.decode()

    assert APP in page
    assert "oauth_refresh:20074" in page
    working = admin_client.get("/admin/sessions_app/application/?attention=no").content.decode()
    assert "oauth_refresh:20074" not in working
