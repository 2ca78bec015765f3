"""The admin as the operator's console: the overview on its index, search, an
authorization's timeline and its confirmed actions (change permission only)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from events_app.models import ListenerConnection
from sessions_app import overview, tasks
from sessions_app.models import BeatRun, SessionState, TokenEvent, UserAuthSession
from sessions_app.policy import expiring_counts
from tests.factories import make_app, make_authorization, make_pending

pytestmark = pytest.mark.django_db


def _html(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def _row(html: str, marker: str) -> str:
    start = html.index(marker)
    return html[start : html.index("</tr>", start)]


def test_the_site_is_titled_for_larkauth(admin_client) -> None:
    html = _html(admin_client.get(reverse("admin:index")))
    assert "Django administration" not in html
    assert "larkauth console" in html
    assert "<title>Overview | larkauth</title>" in html


def test_the_index_shows_each_applications_overview(admin_client) -> None:
    now = timezone.now()
    busy = make_app(name="Busy")
    quiet = make_app(name="Quiet", attention_reason="app_secret_invalid", attention_since=now)
    make_authorization(busy)
    make_authorization(busy)
    make_authorization(busy, refresh_token_expires_at=now + timedelta(minutes=2))  # ≤ 3 d
    # Granted 361 days ago: the 365-day cap is 4 days away.
    make_authorization(busy, completed_at=now - timedelta(days=361))
    make_pending(busy)
    needs = make_authorization(quiet, state=SessionState.NEEDS_REAUTH)
    TokenEvent.objects.create(app=busy, open_id="ou_x", kind=TokenEvent.Kind.REFRESH_FAILED)
    TokenEvent.objects.create(app=busy, open_id="ou_x", kind=TokenEvent.Kind.FAILED)
    TokenEvent.objects.create(
        app=busy, open_id="ou_x", kind=TokenEvent.Kind.FAILED, created_at=now - timedelta(days=2)
    )
    TokenEvent.objects.create(app=quiet, open_id=needs.open_id, kind=TokenEvent.Kind.REFRESHED)
    ListenerConnection.objects.create(
        app=busy,
        listener_id="host:1",
        status="connected",
        status_changed_at=now,
        last_heartbeat_at=now,
    )
    ListenerConnection.objects.create(
        app=quiet,
        listener_id="host:1",
        status="connected",
        status_changed_at=now - timedelta(hours=1),
        last_heartbeat_at=now - timedelta(hours=1),  # the listener is gone
    )
    tasks.expire_pending_sessions.apply()

    html = _html(admin_client.get(reverse("admin:index")))

    row = _row(html, f'data-app-id="{busy.app_id}"')
    assert 'data-state="completed"' in row
    assert "completed</a>: 4" in row
    assert "pending</a>: 1" in row
    assert '<td class="failures bad">' in row
    assert ">2</a>" in row
    assert '<td class="ending-7d warn">1</td>' in row
    assert '<td class="ending-3d bad">1</td>' in row
    assert 'data-connection="up"' in row
    row = _row(html, f'data-app-id="{quiet.app_id}"')
    assert "needs_reauth</a>: 1" in row
    assert '<td class="failures">0</td>' in row
    assert 'data-connection="stale"' in row
    assert "app_secret_invalid" in row
    assert "app_secret_invalid" in html[html.index('id="overview-attention"') :]
    beat = _row(html, 'data-task="expire_pending_sessions"')
    assert ">ok</span>" in beat
    assert "not run yet" in _row(html, 'data-task="refresh_expiring_tokens"')
    assert 'class="audit-backlog"' in html
    # Django's list of models is still there below.
    assert reverse("admin:sessions_app_userauthsession_changelist") in html


def test_the_overview_counts_endings_as_the_metrics_gauge_does() -> None:
    now = timezone.now()
    apps = [make_app(), make_app()]
    for app in apps:
        make_authorization(app, refresh_token_expires_at=now + timedelta(minutes=1))
        make_authorization(app, refresh_token_expires_at=now - timedelta(minutes=1))
        make_authorization(app, completed_at=now - timedelta(days=363))
        make_authorization(app, completed_at=now - timedelta(days=359))
        make_authorization(app, completed_at=now - timedelta(days=100))
    counts = expiring_counts(now)
    built = overview.build(now)
    assert sum(a.ending_7d for a in built.apps) == counts["7d"] == 2
    assert sum(a.ending_3d for a in built.apps) == counts["3d"] == 4
    assert sum(a.ended for a in built.apps) == counts["expired"] == 2


def test_a_beat_task_keeps_one_row_with_its_last_run(monkeypatch) -> None:
    tasks.flush_token_audit.apply()
    tasks.flush_token_audit.apply()
    [run] = BeatRun.objects.all()
    assert (run.task, run.succeeded, run.result) == (
        "sessions_app.tasks.flush_token_audit",
        True,
        "0",
    )
    first_success = run.last_success_at

    def broken(*args, **kwargs):
        raise RuntimeError("database on fire")

    monkeypatch.setattr("sessions_app.services.token_audit_flush", broken)
    tasks.flush_token_audit.apply()
    [run] = BeatRun.objects.all()
    assert not run.succeeded
    assert run.result == "RuntimeError: database on fire"
    assert run.last_success_at == first_success


def test_card_tasks_are_not_recorded_as_beat_runs() -> None:
    tasks.show_auth_card.apply(args=("om_unknown",))
    assert not BeatRun.objects.exists()


@pytest.mark.parametrize("query", ["Zhang San", "zhang@example.com", "ou_zhang", "zhangsan"])
def test_search_finds_a_person_by_name_email_open_id_or_user_id(admin_client, query) -> None:
    app = make_app()
    make_authorization(
        app,
        user_name="Zhang San",
        email="zhang@example.com",
        open_id="ou_zhang",
        user_id="zhangsan",
    )
    make_authorization(app, user_name="Li Si", email="li@example.com")
    url = reverse("admin:sessions_app_userauthsession_changelist")
    html = _html(admin_client.get(url, {"q": query}))
    assert "Zhang San" in html
    assert "Li Si" not in html


# --- an authorization's page -------------------------------------------------------------


def _authorized(lark) -> UserAuthSession:
    alice = lark.sandbox.alice
    lark.authorize(lark.open_card_session(alice["open_id"]), alice["open_id"])
    return UserAuthSession.objects.get(state=SessionState.COMPLETED)


def _change_url(session: UserAuthSession) -> str:
    return reverse("admin:sessions_app_userauthsession_change", args=[session.pk])


def _act_url(session: UserAuthSession, name: str) -> str:
    return reverse("admin:sessions_app_userauthsession_act", args=[session.pk, name])


def test_the_page_shows_the_timeline_and_the_actions(operator) -> None:
    authorization = _authorized(operator)
    html = _html(operator.client.get(_change_url(authorization)))
    timeline = html[html.index('id="timeline"') :]
    kinds = [
        kind for kind in ("completed", "card_sent", "created") if f'data-kind="{kind}"' in timeline
    ]
    assert kinds == ["completed", "card_sent", "created"]
    assert timeline.index('data-kind="completed"') < timeline.index('data-kind="created"')
    for name in ("refresh", "revoke", "resend"):
        assert f'href="{_act_url(authorization, name)}"' in html


@pytest.mark.parametrize("name", ["refresh", "revoke", "resend"])
def test_an_action_asks_first_and_get_changes_nothing(operator, name) -> None:
    authorization = _authorized(operator)
    operator.sandbox.clear_calls()
    html = _html(operator.client.get(_act_url(authorization, name)))
    assert "are you sure?" in html
    assert 'method="post"' in html
    after = UserAuthSession.objects.get(pk=authorization.pk)
    assert (after.state, after.access_token) == (authorization.state, authorization.access_token)
    assert operator.sandbox.calls() == []


def test_refresh_now_from_the_page(operator) -> None:
    authorization = _authorized(operator)
    response = operator.client.post(_act_url(authorization, "refresh"), follow=True)
    assert "Refreshed 1 authorization(s)." in _html(response)
    assert response.redirect_chain[-1][0] == _change_url(authorization)
    after = UserAuthSession.objects.get(pk=authorization.pk)
    assert after.access_token != authorization.access_token
    assert TokenEvent.objects.get(kind="refreshed").actor == "admin:ops"
    assert 'data-kind="refreshed"' in _html(response)


def test_revoke_from_the_page(operator) -> None:
    authorization = _authorized(operator)
    response = operator.client.post(_act_url(authorization, "revoke"), follow=True)
    html = _html(response)
    assert "Revoked 1 authorization(s)." in html
    after = UserAuthSession.objects.get(pk=authorization.pk)
    assert (after.state, after.access_token, after.refresh_token) == ("revoked", None, None)
    # Neither refresh nor revoke applies to a revoked authorization any more.
    assert f'href="{_act_url(authorization, "refresh")}"' not in html
    assert f'href="{_act_url(authorization, "revoke")}"' not in html
    assert f'href="{_act_url(authorization, "resend")}"' in html
    again = operator.client.post(_act_url(authorization, "refresh"), follow=True)
    assert "Nothing done: the authorization is revoked." in _html(again)


def test_send_the_card_again_from_the_page(operator) -> None:
    authorization = _authorized(operator)
    response = operator.client.post(_act_url(authorization, "resend"), follow=True)
    assert "Sent 1 card(s)" in _html(response)
    alice = operator.sandbox.alice
    assert len(operator.sandbox.messages(open_id=alice["open_id"])) == 2


def test_view_only_staff_see_the_timeline_but_no_action(viewer) -> None:
    authorization = _authorized(viewer)
    html = _html(viewer.client.get(_change_url(authorization)))
    assert 'id="timeline"' in html
    assert "object-action" not in html
    assert "/act/" not in html


@pytest.mark.parametrize("name", ["refresh", "revoke", "resend"])
def test_view_only_staff_get_403_on_the_action_urls(viewer, name) -> None:
    authorization = _authorized(viewer)
    viewer.sandbox.clear_calls()
    assert viewer.client.get(_act_url(authorization, name)).status_code == 403
    assert viewer.client.post(_act_url(authorization, name)).status_code == 403
    after = UserAuthSession.objects.get(pk=authorization.pk)
    assert (after.state, after.access_token) == (authorization.state, authorization.access_token)
    assert not TokenEvent.objects.filter(actor="admin:viewer").exists()
    assert viewer.sandbox.calls() == []


def test_an_unknown_action_is_not_found(operator) -> None:
    authorization = _authorized(operator)
    assert operator.client.get(_act_url(authorization, "explode")).status_code == 404
