"""People read TIME_ZONE (cards, digests, admin); the REST API speaks UTC with a `Z`."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.utils import timezone

from larkauth import cards
from sessions_app.models import UserAuthSession

pytestmark = pytest.mark.django_db


def _text(card: dict) -> str:
    return str(card)


def test_the_authorized_card_shows_an_aware_time_in_time_zone(settings) -> None:
    settings.TIME_ZONE = "Asia/Shanghai"
    # 18:41 UTC is 02:41 the next day in Shanghai.
    card = cards.authorized("Li Lei", datetime(2026, 1, 19, 18, 41, tzinfo=UTC))
    assert "authorized on 2026-01-20 02:41" in _text(card)


def test_the_card_the_user_gets_after_authorizing_shows_local_time(lark, settings) -> None:
    settings.TIME_ZONE = "Asia/Shanghai"
    alice = lark.sandbox.alice
    lark.authorize(lark.open_card_session(alice["open_id"]), alice["open_id"])

    completed_at = UserAuthSession.objects.get(open_id=alice["open_id"]).completed_at
    assert completed_at is not None
    [card] = lark.sandbox.messages(open_id=alice["open_id"])
    local = completed_at.astimezone(timezone.get_default_timezone())
    assert f"authorized on {local:%Y-%m-%d %H:%M}" in _text(card["content"])


def test_the_api_speaks_utc_with_a_z(lark, settings) -> None:
    settings.TIME_ZONE = "Asia/Shanghai"
    alice = lark.sandbox.alice
    session_id = lark.open_card_session(alice["open_id"])
    pending = lark.api("get", f"/api/v1/auth-sessions/{session_id}/").json()
    assert pending["created_at"].endswith("Z"), pending
    assert pending["expires_at"].endswith("Z"), pending
    lark.authorize(session_id, alice["open_id"])

    token = lark.request_token(open_id=alice["open_id"]).json()
    [row] = lark.api("get", "/api/v1/authorizations/?app_id=cli_test_app").json()
    completed = lark.api("get", f"/api/v1/auth-sessions/{session_id}/").json()
    stamps = [
        token["expires_at"],
        row["token_expires_at"],
        row["refresh_token_expires_at"],
        row["completed_at"],
        completed["completed_at"],
    ]
    assert all(stamp.endswith("Z") and "+" not in stamp for stamp in stamps), stamps
    session = UserAuthSession.objects.get(pk=session_id)
    assert session.completed_at is not None
    assert completed["completed_at"] == session.completed_at.astimezone(UTC).isoformat().replace(
        "+00:00", "Z"
    )
