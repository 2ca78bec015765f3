"""The operators' commands do the jobs' work in the foreground and say what they did."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from sessions_app.models import SessionState, UserAuthSession
from tests.factories import make_app, make_authorization, make_pending
from tests.jobs import helpers

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().strip()


def test_refresh_tokens(lark) -> None:
    helpers.keepalive_due(helpers.authorize(lark, lark.sandbox.alice))
    assert run("refresh_tokens", "--threads", "1").startswith(
        "Refreshed 1 (keep-alive 1, warm 0); needs re-authorization 0;"
    )


def test_sync_user_info(lark) -> None:
    make_authorization(lark.app, open_id=lark.sandbox.alice["open_id"], user_name="Old")
    assert run("sync_user_info", "--app", lark.app.app_id).endswith(
        "Checked 1 authorized users: 1 updated, 0 unchanged, 0 failed."
    )


def test_sync_user_info_fails_loudly_when_users_could_not_be_synced(lark) -> None:
    make_authorization(lark.app, open_id="ou_unknown")
    with pytest.raises(CommandError, match="1 users could not be synced"):
        run("sync_user_info")


def test_cleanup_sessions() -> None:
    app = make_app()
    # Expiring cards is the job of expire_pending_sessions, as in the hourly cleanup task.
    pending = make_pending(app, expires_at=timezone.now() - timedelta(minutes=1))
    old = make_pending(app, state=SessionState.REJECTED)
    then = timezone.now() - timedelta(days=8)
    UserAuthSession.objects.filter(pk=old.pk).update(created_at=then, updated_at=then)
    assert run("cleanup_sessions", "--days", "7") == (
        "Deleted 1 sessions older than 7 days and 0 handled event ids older than 7 days."
    )
    assert UserAuthSession.objects.get(pk=pending.pk).state == SessionState.PENDING


def test_check_token_expiry(lark) -> None:
    make_authorization(
        lark.app,
        open_id=lark.sandbox.alice["open_id"],
        completed_at=timezone.now() - timedelta(days=360),
    )
    assert run("check_token_expiry") == (
        "Authorizations ending within 7 days: 1, within 3 days: 0, ended but not yet marked: 0. "
        "Warned admins about 0 in 0 digests; sent 1 re-authorization cards; 0 sends failed."
    )
