"""The keep-alive and warm refresh sweep, run in the test process against the sandbox."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from sessions_app.encryption import generate_key
from sessions_app.models import Application, SessionState, TokenEvent, UserAuthSession
from sessions_app.policy import AUTHORIZATION_LIFETIME, backing_off, keepalive_due, retry_delay
from sessions_app.services import token_refresh, tokens_refresh_expiring
from sessions_app.services.refresh_sweep import Outcome, _refresh_if_due
from tests.factories import make_app, make_authorization
from tests.jobs import helpers
from tests.jobs.helpers import authorize, refreshed_events

pytestmark = pytest.mark.django_db


def sweep():
    return tokens_refresh_expiring(threads=1, actor="test")


def test_it_refreshes_a_refresh_token_in_its_last_two_days(lark) -> None:
    authorization = authorize(lark, lark.sandbox.alice)
    helpers.keepalive_due(authorization)
    old_refresh = authorization.refresh_token

    report = sweep()

    authorization.refresh_from_db()
    assert report.outcomes[Outcome.REFRESHED] == 1
    assert report.refreshed_by_reason["keep-alive"] == 1
    assert authorization.refresh_token != old_refresh
    assert authorization.refresh_token_expires_at is not None
    assert authorization.refresh_token_expires_at > timezone.now() + timedelta(days=6)
    assert authorization.events.get(kind="refreshed").actor == "test:keep-alive"
    assert len(lark.sandbox.calls(api="oauth_refresh")) == 1


def test_it_refreshes_expiring_access_tokens_only_of_recently_used_authorizations(lark) -> None:
    used = authorize(lark, lark.sandbox.alice)
    helpers.warm_due(used)
    idle = authorize(lark, lark.sandbox.bob)
    now = timezone.now()
    UserAuthSession.objects.filter(pk=idle.pk).update(
        completed_at=now - timedelta(days=3),
        last_used_at=now - timedelta(days=2),
        last_refreshed_at=now - timedelta(seconds=6480),
        token_expires_at=now + timedelta(seconds=720),
    )
    old_access = used.access_token

    report = sweep()

    used.refresh_from_db()
    assert report.refreshed_by_reason["warm"] == 1
    assert used.access_token != old_access
    assert refreshed_events(idle) == 0
    assert len(lark.sandbox.calls(api="oauth_refresh")) == 1


def test_it_leaves_fresh_authorizations_alone(lark) -> None:
    authorize(lark, lark.sandbox.alice)
    lark.sandbox.clear_calls()
    report = sweep()
    assert sum(report.outcomes.values()) == 0
    assert lark.sandbox.calls(api="oauth_refresh") == []


def test_it_never_refreshes_the_last_refresh_token_before_the_365_day_cap(lark) -> None:
    now = timezone.now()
    granted = now - AUTHORIZATION_LIFETIME + timedelta(days=1)
    authorization = authorize(lark, lark.sandbox.alice)
    UserAuthSession.objects.filter(pk=authorization.pk).update(
        completed_at=granted,
        last_refreshed_at=now - timedelta(days=6),
        # Feishu cut it at the cap: within the margin, but a refresh cannot extend it.
        refresh_token_expires_at=granted + AUTHORIZATION_LIFETIME - timedelta(seconds=2),
    )
    assert sum(sweep().outcomes.values()) == 0
    assert lark.sandbox.calls(api="oauth_refresh") == []


def test_a_keepalive_refresh_another_process_did_first_is_recognised_under_the_lock(
    lark,
) -> None:
    authorization = authorize(lark, lark.sandbox.alice)
    helpers.keepalive_due(authorization)
    # The sweep picked it; before it takes the lock, another worker refreshes it.
    token_refresh(authorization.pk, force=True, actor="other-worker")

    outcome, _ = _refresh_if_due(authorization.pk, "test")

    assert outcome == Outcome.NOT_DUE
    assert len(lark.sandbox.calls(api="oauth_refresh")) == 1
    assert refreshed_events(authorization) == 1


def test_a_transient_failure_keeps_the_token_and_is_retried_by_a_later_run(lark) -> None:
    authorization = authorize(lark, lark.sandbox.alice)
    helpers.keepalive_due(authorization)
    authorization.refresh_from_db()
    lark.sandbox.add_fault("oauth_refresh", http_status=503, code=20072)

    with time_machine.travel(timezone.now(), tick=True) as clock:
        assert sweep().outcomes[Outcome.FAILED] == 1
        kept = UserAuthSession.objects.get(pk=authorization.pk)
        assert kept.state == SessionState.COMPLETED
        assert kept.refresh_failures == 1
        assert (kept.access_token, kept.refresh_token) == (
            authorization.access_token,
            authorization.refresh_token,
        )
        assert TokenEvent.objects.filter(session=kept, kind="refresh_failed").count() == 1

        sweep()  # right away: backing off, Feishu is left alone
        assert len(lark.sandbox.calls(api="oauth_refresh")) == 1

        clock.shift(timedelta(minutes=5))  # the next scheduled run
        assert sweep().outcomes[Outcome.REFRESHED] == 1

    kept.refresh_from_db()
    assert kept.refresh_failures == 0
    assert kept.refresh_token != authorization.refresh_token
    assert len(lark.sandbox.calls(api="oauth_refresh")) == 2


def test_it_retires_authorizations_whose_refresh_and_access_tokens_have_ended(lark) -> None:
    authorization = authorize(lark, lark.sandbox.alice)
    now = timezone.now()
    UserAuthSession.objects.filter(pk=authorization.pk).update(
        refresh_token_expires_at=now - timedelta(hours=1),
        token_expires_at=now - timedelta(minutes=1),
    )
    lark.sandbox.clear_calls()

    assert sweep().retired == 1

    authorization.refresh_from_db()
    assert authorization.state == SessionState.NEEDS_REAUTH
    assert authorization.failure_reason == "refresh_token_expired"
    assert (authorization.access_token, authorization.refresh_token) == (None, None)
    assert lark.sandbox.calls() == []


def test_a_refresh_token_lifetime_shorter_than_twice_the_margin_is_refreshed_at_half_life(
    settings,
) -> None:
    settings.AUTH_KEEPALIVE_MARGIN = 48 * 3600
    now = timezone.now()
    session = UserAuthSession(
        state=SessionState.COMPLETED,
        completed_at=now,
        refresh_token_expires_at=now + timedelta(days=1),
    )
    assert not keepalive_due(session, now)  # else every run would refresh it
    assert not keepalive_due(session, now + timedelta(hours=11))
    assert keepalive_due(session, now + timedelta(hours=12))


def test_backoff_doubles_to_about_an_hour_but_never_past_the_refresh_tokens_end() -> None:
    assert [retry_delay(n).total_seconds() / 60 for n in range(8)] == [0, 4, 8, 16, 32, 64, 64, 64]
    now = timezone.now()
    session = UserAuthSession(refresh_failures=3, updated_at=now)
    session.refresh_token_expires_at = now + timedelta(days=1)
    assert backing_off(session, now + timedelta(minutes=15))
    assert not backing_off(session, now + timedelta(minutes=16))
    session.refresh_token_expires_at = now + timedelta(minutes=10)
    assert not backing_off(session, now + timedelta(minutes=1))


def test_candidates_are_read_in_pages_each_row_once(settings) -> None:
    """Rows that stay due (their refresh failed) do not make the keyset pages repeat."""
    settings.LARK_DOMAIN = "http://127.0.0.1:9"  # nothing listens: every refresh fails
    app = make_app()
    now = timezone.now()
    for _ in range(7):
        make_authorization(
            app,
            refresh_token_expires_at=now + timedelta(hours=1),
            completed_at=now - timedelta(days=6),
        )
    report = tokens_refresh_expiring(threads=1, page_size=3)
    assert report.outcomes == {Outcome.FAILED: 7}
    assert report.finished


def _written_under_a_dropped_key(settings, authorization: UserAuthSession) -> None:
    """Its refresh token was encrypted with a key no longer in LARKAUTH_ENCRYPTION_KEYS."""
    keys = list(settings.LARKAUTH_ENCRYPTION_KEYS)
    settings.LARKAUTH_ENCRYPTION_KEYS = [generate_key()]
    UserAuthSession.objects.filter(pk=authorization.pk).update(refresh_token="eyJ-gone")
    settings.LARKAUTH_ENCRYPTION_KEYS = keys


def test_a_row_no_key_decrypts_is_skipped_recorded_and_the_sweep_goes_on(
    lark, settings, caplog
) -> None:
    lost = authorize(lark, lark.sandbox.alice)
    helpers.keepalive_due(lost)
    UserAuthSession.objects.filter(pk=lost.pk).update(  # the most urgent: first in the queue
        refresh_token_expires_at=timezone.now() + timedelta(hours=1)
    )
    _written_under_a_dropped_key(settings, lost)
    kept = authorize(lark, lark.sandbox.bob)
    helpers.keepalive_due(kept)

    report = sweep()

    assert (report.outcomes[Outcome.UNDECRYPTABLE], report.outcomes[Outcome.REFRESHED]) == (1, 1)
    assert refreshed_events(kept) == 1
    lost_now = UserAuthSession.objects.only("state", "failure_reason").get(pk=lost.pk)
    assert (lost_now.state, lost_now.failure_reason) == (
        SessionState.COMPLETED,  # nothing wiped: putting the key back heals it
        "undecryptable:authorization",
    )
    event = TokenEvent.objects.get(open_id=lost.open_id, kind="refresh_failed")
    assert event.detail == {"reason": "undecryptable:authorization"}
    assert str(lost.pk) in caplog.text
    assert "eyJ" not in caplog.text
    assert "Skipped 1 that no key of LARKAUTH_ENCRYPTION_KEYS decrypts" in str(report)
    # It backs off like a transient failure: the next run passes it by.
    assert sweep().outcomes[Outcome.UNDECRYPTABLE] == 0


def test_an_application_secret_no_key_decrypts_is_named_as_such(lark, settings) -> None:
    authorization = authorize(lark, lark.sandbox.alice)
    helpers.keepalive_due(authorization)
    keys = list(settings.LARKAUTH_ENCRYPTION_KEYS)
    settings.LARKAUTH_ENCRYPTION_KEYS = [generate_key()]
    Application.objects.filter(pk=lark.app.pk).update(app_secret="written-under-a-lost-key")
    settings.LARKAUTH_ENCRYPTION_KEYS = keys

    report = sweep()

    assert report.outcomes[Outcome.UNDECRYPTABLE] == 1
    authorization = UserAuthSession.objects.only("failure_reason").get(pk=authorization.pk)
    assert authorization.failure_reason == "undecryptable:application"
    assert lark.sandbox.calls(api="oauth_refresh") == []
