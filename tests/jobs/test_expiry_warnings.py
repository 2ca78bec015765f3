"""Admins are warned before authorizations really end; users get one card to authorize again."""

from __future__ import annotations

import html
import re
from collections import Counter
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone
from markdown_it import MarkdownIt

from larkauth.cards import MAX_CARD_BYTES, MAX_DIGEST_LINES, card_content
from sessions_app import tasks
from sessions_app.encryption import generate_key
from sessions_app.models import Application, SessionState, UserAuthSession
from sessions_app.policy import (
    AUTHORIZATION_LIFETIME,
    EndCause,
    Window,
    authorization_end,
    expiring_counts,
    expiry_window,
)
from sessions_app.services import refresh_token_expiry_check
from sessions_app.services.expiry_warnings import Ending, digest_card
from tests.factories import make_app, make_authorization

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)
# Standard markdown with HTML and bare-URL links, as Card JSON 2.0 reads it.
_MARKDOWN = MarkdownIt("commonmark", {"linkify": True}).enable(["linkify"])


def _digests(lark, admin) -> list[str]:
    """The admin's digest cards, oldest first, as text."""
    messages = sorted(
        lark.sandbox.messages(open_id=admin["open_id"]), key=lambda m: m["created_at"]
    )
    return [str(m["content"]) for m in messages]


def _keep_alive(authorization: UserAuthSession) -> None:
    """What keep-alive does between checks: a refresh token ~5 days out, cut at the cap."""
    now = timezone.now()
    assert authorization.completed_at is not None
    cap = authorization.completed_at + AUTHORIZATION_LIFETIME
    UserAuthSession.objects.filter(pk=authorization.pk).update(
        refresh_token_expires_at=min(now + 5 * DAY, cap),
        token_expires_at=now + timedelta(hours=2),
    )


def test_admins_are_warned_at_7_days_3_days_and_on_expiry_each_once(lark) -> None:
    alice, bob = lark.sandbox.alice, lark.sandbox.bob
    Application.objects.filter(pk=lark.app.pk).update(admin_open_ids=[bob["open_id"]])
    start = timezone.now()
    # Granted almost a year ago: the 365-day cap is 6 days and 23 hours away.
    authorization = make_authorization(
        lark.app,
        open_id=alice["open_id"],
        user_name=alice["name"],
        completed_at=start - AUTHORIZATION_LIFETIME + 7 * DAY - timedelta(hours=1),
    )
    _keep_alive(authorization)

    with time_machine.travel(start, tick=True) as clock:
        first = refresh_token_expiry_check()
        assert (first.warned, first.digests, first.reauth_cards) == (1, 1, 1)
        assert refresh_token_expiry_check().warned == 0  # 12 hours later: nothing new

        clock.shift(4 * DAY)
        _keep_alive(authorization)
        assert refresh_token_expiry_check().warned == 1
        assert refresh_token_expiry_check().warned == 0

        clock.shift(3 * DAY)  # past the cap
        assert refresh_token_expiry_check().warned == 1
        assert refresh_token_expiry_check().warned == 0

    digests = _digests(lark, bob)
    assert len(digests) == 3
    assert "7 天内结束 · Ending within 7 days" in digests[0]
    assert "3 天内结束 · Ending within 3 days" in digests[1]
    assert "已结束 · Ended" in digests[2]
    assert all(alice["open_id"] in digest and "365-day limit" in digest for digest in digests)
    # One re-authorization card for alice, sent at the first warning, saying why.
    [card] = lark.sandbox.messages(open_id=alice["open_id"])
    assert "Your authorization ends within days" in str(card["content"])
    authorization.refresh_from_db()
    assert authorization.expiry_warnings_sent == ["7d", "reauth_card", "3d", "expired"]


def test_a_refresh_token_keep_alive_will_replace_is_not_a_reason_to_warn(lark) -> None:
    Application.objects.filter(pk=lark.app.pk).update(admin_open_ids=[lark.sandbox.bob["open_id"]])
    now = timezone.now()
    # Its refresh token ends in 2 days, but the next keep-alive run replaces it.
    make_authorization(lark.app, completed_at=now - 30 * DAY, refresh_token_expires_at=now + DAY)
    report = refresh_token_expiry_check()
    assert report.warned == 0
    assert lark.sandbox.messages() == []


def test_an_authorization_that_needs_the_user_is_reported_as_ended_once(lark) -> None:
    alice, bob = lark.sandbox.alice, lark.sandbox.bob
    Application.objects.filter(pk=lark.app.pk).update(admin_open_ids=[bob["open_id"]])
    make_authorization(
        lark.app,
        open_id=alice["open_id"],
        state=SessionState.NEEDS_REAUTH,
        failure_reason="refresh_failed:20064",
        access_token=None,
        refresh_token=None,
    )
    assert tasks.check_refresh_token_expiry()["warned"] == 1
    assert tasks.check_refresh_token_expiry()["warned"] == 0
    (digest,) = _digests(lark, bob)
    assert "refresh_failed:20064" in digest
    # No card to the user from here: the next token request with `prompt` sends it.
    assert lark.sandbox.messages(open_id=alice["open_id"]) == []


def test_one_digest_per_admin_lists_every_authorization_of_the_run(lark) -> None:
    bob = lark.sandbox.bob
    Application.objects.filter(pk=lark.app.pk).update(admin_open_ids=[bob["open_id"]])
    now = timezone.now()
    for days_left in (1, 2, 6):
        make_authorization(lark.app, completed_at=now - AUTHORIZATION_LIFETIME + days_left * DAY)
    lark.sandbox.add_fault("message_create", code=230013, times=3)  # the users' cards fail

    report = refresh_token_expiry_check()

    assert (report.warned, report.digests, report.failures) == (3, 1, 3)
    assert len(lark.sandbox.messages(open_id=bob["open_id"])) == 1
    # The cards that failed are tried again next run, the warnings are not sent again.
    rerun = refresh_token_expiry_check()
    assert (rerun.warned, rerun.digests) == (0, 0)


def test_an_authorization_retired_at_the_cap_is_reported_as_ended_by_the_cap() -> None:
    now = timezone.now()
    granted = now - AUTHORIZATION_LIFETIME - DAY
    session = UserAuthSession(
        state=SessionState.NEEDS_REAUTH,
        failure_reason="refresh_token_expired",
        completed_at=granted,
        refresh_token_expires_at=granted + AUTHORIZATION_LIFETIME - timedelta(seconds=1),
    )
    assert authorization_end(session, now) == (session.refresh_token_expires_at, EndCause.CAP)
    session.failure_reason = "refresh_failed:20064"
    assert authorization_end(session, now)[1] == EndCause.NEEDS_REAUTH


def test_without_admins_nothing_is_marked_as_warned() -> None:
    app = make_app(admin_open_ids=[])
    authorization = make_authorization(
        app, state=SessionState.NEEDS_REAUTH, access_token=None, refresh_token=None
    )
    assert refresh_token_expiry_check().warned == 0
    authorization.refresh_from_db()
    assert authorization.expiry_warnings_sent == []


def test_the_gauge_counts_completed_authorizations_where_the_warnings_place_them() -> None:
    app = make_app()
    now = timezone.now()
    year = AUTHORIZATION_LIFETIME
    rows = [
        # (completed_at, refresh_token_expires_at)
        (now - 30 * DAY, now + 5 * DAY),  # kept alive: ends in 335 days
        (now - year + 6 * DAY, now + 5 * DAY),  # cap in 6 days
        (now - year + 2 * DAY, now + 2 * DAY),  # cap in 2 days
        (now - year - DAY, now - DAY),  # past the cap
        (now - 30 * DAY, now + timedelta(minutes=3)),  # before the next keep-alive: 3d
        (now - 30 * DAY, now - timedelta(minutes=3)),  # refresh token gone: ended
        (None, now + 4 * DAY),  # no grant time: its refresh token is the end
    ]
    sessions = [
        make_authorization(app, completed_at=granted, refresh_token_expires_at=expires)
        for granted, expires in rows
    ]
    make_authorization(app, state=SessionState.NEEDS_REAUTH, access_token=None)

    windows = [expiry_window(authorization_end(s, now)[0], now) for s in sessions]
    assert windows == [
        None,
        Window.DAYS_7,
        Window.DAYS_3,
        Window.EXPIRED,
        Window.DAYS_3,
        Window.EXPIRED,
        Window.DAYS_7,
    ]
    expected = Counter(w.value for w in windows if w is not None)
    assert expiring_counts(now) == {w.value: expected[w.value] for w in Window}
    assert authorization_end(sessions[4], now)[1] == EndCause.REFRESH_TOKEN
    assert authorization_end(sessions[1], now)[1] == EndCause.CAP


def test_user_names_in_the_digest_show_as_typed_and_add_no_markup(lark) -> None:
    bob = lark.sandbox.bob
    Application.objects.filter(pk=lark.app.pk).update(admin_open_ids=[bob["open_id"]])
    hostile = "[click](http://evil.example) <at id=all></at> **now**"
    make_authorization(
        lark.app,
        user_name=hostile,
        state=SessionState.NEEDS_REAUTH,
        failure_reason="refresh_failed:20064",
        access_token=None,
        refresh_token=None,
    )
    assert refresh_token_expiry_check().warned == 1

    (message,) = lark.sandbox.messages(open_id=bob["open_id"])
    rendered = "".join(
        _MARKDOWN.render(element["content"])
        for element in message["content"]["body"]["elements"]
        if element["tag"] == "markdown"
    )
    assert hostile in html.unescape(re.sub(r"<[^>]*>", "", rendered))
    assert "<a " not in rendered
    assert "<at" not in rendered


def test_a_long_name_is_shortened_in_the_digest() -> None:
    app = make_app(admin_open_ids=["ou_admin"])
    now = timezone.now()
    authorization = make_authorization(
        app, user_name="~" * 255, completed_at=now - AUTHORIZATION_LIFETIME + DAY
    )
    ending = Ending(authorization, now + DAY, EndCause.CAP, Window.DAYS_3)
    digest = digest_card(app, [ending] * MAX_DIGEST_LINES)
    # Forty of the longest names a profile allows still fit Feishu's 30 KB.
    assert len(card_content(digest).encode()) < MAX_CARD_BYTES


def test_an_application_whose_secret_no_key_decrypts_is_skipped_and_the_others_warned(
    lark, settings
) -> None:
    alice, bob = lark.sandbox.alice, lark.sandbox.bob
    ending = timezone.now() - AUTHORIZATION_LIFETIME + 2 * DAY
    broken = make_app(admin_open_ids=[bob["open_id"]])
    lost = make_authorization(broken, open_id="ou_lost", completed_at=ending)
    keys = list(settings.LARKAUTH_ENCRYPTION_KEYS)
    settings.LARKAUTH_ENCRYPTION_KEYS = [generate_key()]
    Application.objects.filter(pk=broken.pk).update(app_secret="written-under-a-lost-key")
    settings.LARKAUTH_ENCRYPTION_KEYS = keys
    Application.objects.filter(pk=lark.app.pk).update(admin_open_ids=[bob["open_id"]])
    make_authorization(lark.app, open_id=alice["open_id"], completed_at=ending)

    report = refresh_token_expiry_check()

    assert (report.warned, report.digests, report.failures) == (1, 1, 1)
    assert len(_digests(lark, bob)) == 1
    lost.refresh_from_db()
    assert lost.expiry_warnings_sent in (None, [])  # nothing claimed: the next run tries
