"""Refresh tokens are single-use: every refresh must happen exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from larkauth.errors import AuthenticationRequiredError
from sessions_app.models import SessionState, TokenEvent, UserAuthSession
from sessions_app.services import get_active_token
from tests.conftest import _missing

ROOT = Path(__file__).resolve().parents[2]


def _authorize(lark, user) -> UserAuthSession:
    lark.authorize(lark.open_card_session(user["open_id"]), user["open_id"])
    return UserAuthSession.objects.get(open_id=user["open_id"], state="completed")


def _make_expiring(authorization: UserAuthSession) -> None:
    """90 % of the access token's two hours are gone: past the 0.8 threshold."""
    now = timezone.now()
    UserAuthSession.objects.filter(pk=authorization.pk).update(
        last_refreshed_at=now - timedelta(seconds=6480),
        token_expires_at=now + timedelta(seconds=720),
    )


@pytest.mark.django_db
def test_an_expiring_token_is_refreshed_and_the_new_refresh_token_kept(lark) -> None:
    authorization = _authorize(lark, lark.sandbox.alice)
    old_access, old_refresh = authorization.access_token, authorization.refresh_token
    old_version = authorization.version
    _make_expiring(authorization)

    token = get_active_token("cli_test_app", open_id=authorization.open_id)

    authorization.refresh_from_db()
    assert token == authorization.access_token != old_access
    assert authorization.refresh_token != old_refresh
    assert authorization.version == old_version + 1
    assert len(lark.sandbox.calls(api="oauth_refresh")) == 1
    # The rotated refresh token is the one Feishu now accepts: a second refresh works.
    _make_expiring(authorization)
    assert get_active_token("cli_test_app", open_id=authorization.open_id) != token


@pytest.mark.django_db
def test_a_fresh_token_is_served_without_calling_feishu(lark) -> None:
    authorization = _authorize(lark, lark.sandbox.alice)
    lark.sandbox.clear_calls()
    assert (
        get_active_token("cli_test_app", open_id=authorization.open_id)
        == authorization.access_token
    )
    assert lark.sandbox.calls() == []


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_requests_from_four_processes_refresh_once(lark, settings) -> None:
    if connection.vendor != "postgresql":
        _missing("PostgreSQL")
    authorization = _authorize(lark, lark.sandbox.alice)
    old_access = authorization.access_token
    _make_expiring(authorization)
    lark.sandbox.clear_calls()
    # Slow Feishu down so the requests really overlap while one refresh is in flight.
    lark.sandbox.add_fault("oauth_refresh", latency_ms=300, times=1)

    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "LARK_DOMAIN": lark.sandbox.url,
        "LARK_ACCOUNTS_DOMAIN": lark.sandbox.url,
        "LARKAUTH_ENCRYPTION_KEYS": ",".join(settings.LARKAUTH_ENCRYPTION_KEYS),
    }
    start_at = time.time() + 3  # after every process has imported Django
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.flow.token_worker",
                "cli_test_app",
                authorization.open_id,
                "5",
                str(start_at),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    tokens: list[str] = []
    for process in processes:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        tokens += json.loads(out.strip().splitlines()[-1])

    authorization.refresh_from_db()
    assert len(tokens) == 20
    assert set(tokens) == {authorization.access_token}, tokens
    assert authorization.access_token != old_access
    assert len(lark.sandbox.calls(api="oauth_refresh")) == 1
    assert TokenEvent.objects.filter(kind="refreshed").count() == 1


@pytest.mark.django_db
def test_a_revoked_refresh_token_needs_reauth_and_sends_one_card(lark) -> None:
    alice = lark.sandbox.alice
    authorization = _authorize(lark, alice)
    _make_expiring(authorization)
    lark.sandbox.revoke(alice["open_id"])

    with pytest.raises(AuthenticationRequiredError) as raised:
        get_active_token("cli_test_app", open_id=alice["open_id"])
    assert raised.value.reason == "needs_reauth"
    authorization.refresh_from_db()
    assert authorization.state == SessionState.NEEDS_REAUTH
    assert authorization.access_token is None
    assert authorization.refresh_token is None

    cards_before = len(lark.sandbox.messages(open_id=alice["open_id"]))
    for _ in range(3):  # a caller retrying in a loop
        response = lark.request_token(open_id=alice["open_id"], prompt=True)
        assert response.status_code == 404
        assert response.json()["code"] == "authorization_required"
    assert len(lark.sandbox.messages(open_id=alice["open_id"])) == cards_before + 1
    assert len(lark.sandbox.calls(api="oauth_refresh")) == 1  # never retried a dead token


@pytest.mark.django_db
def test_a_transient_refresh_failure_serves_the_still_valid_token(lark) -> None:
    authorization = _authorize(lark, lark.sandbox.alice)
    _make_expiring(authorization)
    lark.sandbox.add_fault("oauth_refresh", http_status=503, code=20072)

    token = get_active_token("cli_test_app", open_id=authorization.open_id)

    authorization.refresh_from_db()
    assert token == authorization.access_token
    assert (authorization.state, authorization.refresh_failures) == ("completed", 1)
    # Next time Feishu answers, the refresh goes through.
    assert get_active_token("cli_test_app", open_id=authorization.open_id) != token


@pytest.mark.django_db
def test_an_expired_token_that_cannot_be_refreshed_now_is_a_503(lark) -> None:
    authorization = _authorize(lark, lark.sandbox.alice)
    UserAuthSession.objects.filter(pk=authorization.pk).update(
        token_expires_at=timezone.now() - timedelta(seconds=1)
    )
    lark.sandbox.add_fault("oauth_refresh", http_status=500, code=20050)
    response = lark.request_token(open_id=authorization.open_id)
    assert response.status_code == 503
    assert response.json()["code"] == "token_refresh_failed"


@pytest.mark.django_db
def test_get_active_token_can_return_none_instead_of_raising(lark) -> None:
    assert get_active_token("cli_test_app", open_id="ou_nobody", raise_if_missing=False) is None
