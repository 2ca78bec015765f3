"""User-info sync, expiring stale cards, deleting old sessions."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import pytest
from django.utils import timezone

from sessions_app import tasks
from sessions_app.encryption import generate_key
from sessions_app.models import Application, SessionState, TokenEvent, UserAuthSession
from sessions_app.services import auth_sessions_delete_old, users_sync_info
from sessions_app.services.audit import record_event
from tests.factories import make_app, make_authorization, make_pending
from tests.jobs.helpers import authorize

pytestmark = pytest.mark.django_db


def test_sync_updates_profiles_and_keeps_going_past_a_failing_user(lark) -> None:
    alice, bob = lark.sandbox.alice, lark.sandbox.bob
    stale = make_authorization(
        lark.app, open_id=alice["open_id"], user_id="", user_name="Old Name", email=""
    )
    # First in the sync's order (by id), and unknown to the directory.
    unknown = make_authorization(
        lark.app, id=UUID(int=1), open_id="ou_" + "0" * 32, user_name="Gone"
    )
    make_authorization(
        lark.app,
        open_id=bob["open_id"],
        user_id=bob["user_id"],
        union_id=bob["union_id"],
        user_name=bob["name"],
        email=bob["email"],
        mobile=bob["mobile"],
    )
    report = users_sync_info()

    assert (report.checked, report.updated, report.failed) == (3, 2, 1)
    stale.refresh_from_db()
    assert (stale.user_name, stale.user_id, stale.email, stale.mobile) == (
        alice["name"],
        alice["user_id"],
        alice["email"],
        alice["mobile"],
    )
    unknown.refresh_from_db()
    assert unknown.user_name == "Gone"
    assert len(lark.sandbox.calls(api="contact_user")) == 3


def test_a_sync_stopped_by_its_time_budget_is_resumed_by_the_next(lark) -> None:
    carol = lark.sandbox.add_user("Carol")
    people = [lark.sandbox.alice, lark.sandbox.bob, carol]
    for n, person in enumerate(people, start=1):
        make_authorization(lark.app, id=UUID(int=n), open_id=person["open_id"], user_name="Old")

    stopped = [users_sync_info(page_size=1, time_budget=0) for _ in range(2)]
    # Each stopped run did one page; the next took up who was left.
    assert [(run.checked, run.finished) for run in stopped] == [(1, False), (1, False)]

    full = users_sync_info(page_size=1)

    # Carol, never asked, comes first; then the others, least recently asked first.
    assert (full.checked, full.finished) == (3, True)
    asked = [call["params"]["user_id"] for call in lark.sandbox.calls(api="contact_user")]
    a, b, c = (person["open_id"] for person in people)
    assert asked == [a, b, c, a, b]
    names = UserAuthSession.objects.order_by("id").values_list("user_name", flat=True)
    assert list(names) == [person["name"] for person in people]


def test_sync_task_does_nothing_unless_enabled(lark, settings) -> None:
    settings.USER_INFO_SYNC_ENABLED = False
    make_authorization(lark.app, open_id=lark.sandbox.alice["open_id"], user_name="Old")
    assert tasks.sync_user_info() == {"skipped": "USER_INFO_SYNC_ENABLED is off"}
    assert lark.sandbox.calls(api="contact_user") == []
    settings.USER_INFO_SYNC_ENABLED = True
    assert tasks.sync_user_info() == {"checked": 1, "updated": 1, "failed": 0, "revoked": 0}


def test_sync_revokes_the_authorization_of_a_user_who_left(lark) -> None:
    alice, bob = lark.sandbox.alice, lark.sandbox.bob
    leaver = authorize(lark, alice)
    stayer = authorize(lark, bob)
    lark.sandbox.update_user(alice["open_id"], is_resigned=True)

    report = users_sync_info()

    # No service gets a token for her any more.
    response = lark.request_token(open_id=alice["open_id"])
    assert response.status_code == 404, "a token was handed out"
    assert response.json()["code"] == "authorization_required"
    leaver = UserAuthSession.objects.get(pk=leaver.pk)
    assert (leaver.state, leaver.failure_reason) == (SessionState.REVOKED, "user_resigned")
    assert (leaver.access_token, leaver.refresh_token) == (None, None)
    event = leaver.events.get(kind="revoked")
    assert (event.actor, event.detail) == ("sync", {"reason": "user_resigned"})
    assert UserAuthSession.objects.get(pk=stayer.pk).state == SessionState.COMPLETED
    assert (report.checked, report.revoked) == (2, 1)
    assert "Revoked 1 of users who left (resigned)." in str(report)


def test_expiring_a_stale_card_patches_it_with_a_request_again_button(lark) -> None:
    alice = lark.sandbox.alice
    session = UserAuthSession.objects.get(pk=lark.open_card_session(alice["open_id"]))
    UserAuthSession.objects.filter(pk=session.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    assert tasks.expire_pending_sessions() == 1

    session.refresh_from_db()
    assert session.state == SessionState.EXPIRED
    card = lark.sandbox.message(session.message_id)
    assert [entry["source"] for entry in card["history"]] == ["create", "patch"]
    patched = str(card["content"])
    assert "Expired" in patched
    assert "request_again" in patched
    assert tasks.expire_pending_sessions() == 0


def _aged(session: UserAuthSession, days: int) -> UserAuthSession:
    then = timezone.now() - timedelta(days=days)
    UserAuthSession.objects.filter(pk=session.pk).update(created_at=then, updated_at=then)
    return session


def test_cleanup_deletes_old_sessions_and_keeps_authorizations_and_the_audit_log() -> None:
    app = make_app()
    kept = [
        _aged(make_authorization(app), 400),
        _aged(make_authorization(app, state=SessionState.NEEDS_REAUTH), 90),
        _aged(make_pending(app, state=SessionState.REJECTED), 29),
    ]
    deleted = [
        _aged(make_pending(app, state=state), 31)
        for state in (
            SessionState.PENDING,
            SessionState.EXPIRED,
            SessionState.REJECTED,
            SessionState.FAILED,
        )
    ] + [
        _aged(make_authorization(app, state=SessionState.REVOKED), 60),
        _aged(make_authorization(app, state=SessionState.SUPERSEDED), 60),
    ]
    for session in deleted:
        record_event(session, TokenEvent.Kind.CREATED)

    assert auth_sessions_delete_old(retention_days=30, batch_size=2) == len(deleted)

    assert set(UserAuthSession.objects.values_list("pk", flat=True)) == {s.pk for s in kept}
    events = TokenEvent.objects.filter(kind="created")
    assert events.count() == len(deleted)
    assert all(event.session_id is None for event in events)
    assert tasks.cleanup_auth_sessions() == 0


def test_sync_skips_an_application_whose_secret_no_key_decrypts_and_goes_on(
    lark, settings, caplog
) -> None:
    broken = make_app()
    make_authorization(broken, user_name="Unreachable")
    keys = list(settings.LARKAUTH_ENCRYPTION_KEYS)
    settings.LARKAUTH_ENCRYPTION_KEYS = [generate_key()]
    Application.objects.filter(pk=broken.pk).update(app_secret="written-under-a-lost-key")
    settings.LARKAUTH_ENCRYPTION_KEYS = keys
    alice = lark.sandbox.alice
    stale = make_authorization(lark.app, open_id=alice["open_id"], user_name="Old Name")

    report = users_sync_info()

    assert (report.checked, report.updated, report.apps_skipped) == (1, 1, 1)
    stale.refresh_from_db()
    assert stale.user_name == alice["name"]
    assert f"Application {broken.app_id} skipped" in caplog.text
    assert "written-under-a-lost-key" not in caplog.text
