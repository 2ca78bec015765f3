"""Warnings before authorizations end, and a re-authorization card before they do.

An authorization really ends 365 days after the user's grant (FACTS.md §2.1): until then
keep-alive replaces each ~7-day refresh token before it expires, so a refresh token's own
expiry is the end only where keep-alive cannot extend it: the authorization already needs
the user again (`needs_reauth`), or its refresh token ends before the next keep-alive run.

Application admins get one digest per run at 7 days, 3 days and on expiry, each at most once
per authorization (`expiry_warnings_sent`, changed under the row lock so two runs at once
cannot both claim it). The user gets one re-authorization card in the last 7 days so that
services see no gap. App tokens are renewed from the app secret and are not watched here.
"""

from __future__ import annotations

import enum
import hashlib
import logging
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from larkauth.cards import ReauthReason, markdown_text
from larkauth.errors import LarkauthError
from sessions_app.feishu import client_for
from sessions_app.models import Application, SessionState, UserAuthSession
from sessions_app.services.authorization import UserRef, auth_request
from sessions_app.services.maintenance import (
    AUTHORIZATION_LIFETIME,
    ENDED_REASON,
    authorization_cap,
    refresh_token_is_last,
)

logger = logging.getLogger(__name__)

# The refresh sweep runs every 5 minutes: a refresh token ending sooner is not extended.
KEEPALIVE_REACH = timedelta(minutes=5)
REAUTH_CARD = "reauth_card"  # marker in expiry_warnings_sent next to the windows
MAX_DIGEST_LINES = 40  # per window: keeps the card far below Feishu's 30 KB
MAX_NAME_CHARS = 64  # of a user's name in a digest line, however long the profile's is


class Window(enum.StrEnum):
    """From mild to severe."""

    DAYS_7 = "7d"
    DAYS_3 = "3d"
    EXPIRED = "expired"


_OPENS_AT = {Window.DAYS_7: timedelta(days=7), Window.DAYS_3: timedelta(days=3)}


class EndCause(enum.StrEnum):
    CAP = "cap"
    REFRESH_TOKEN = "refresh_token"  # noqa: S105
    NEEDS_REAUTH = "needs_reauth"


@dataclass(frozen=True)
class Ending:
    session: UserAuthSession
    at: datetime
    cause: EndCause
    window: Window


def authorization_end(session: UserAuthSession, now: datetime) -> tuple[datetime, EndCause]:
    """When the authorization will really end, and why."""
    expires = session.refresh_token_expires_at
    if session.state == SessionState.NEEDS_REAUTH:
        ended = min(expires, now) if expires else now
        # Retired by the sweep with the refresh token Feishu had cut at the cap.
        at_cap = session.failure_reason == ENDED_REASON and refresh_token_is_last(session)
        return ended, EndCause.CAP if at_cap else EndCause.NEEDS_REAUTH
    cap = authorization_cap(session)
    if expires is None:
        return (cap or now), EndCause.CAP
    if cap is None or (expires - now <= KEEPALIVE_REACH and expires < cap):
        return expires, EndCause.REFRESH_TOKEN
    return cap, EndCause.CAP


def expiry_window(end: datetime, now: datetime) -> Window | None:
    left = end - now
    if left <= timedelta(0):
        return Window.EXPIRED
    if left <= _OPENS_AT[Window.DAYS_3]:
        return Window.DAYS_3
    if left <= _OPENS_AT[Window.DAYS_7]:
        return Window.DAYS_7
    return None


def expiring_counts(now: datetime) -> dict[str, int]:
    """Completed authorizations by the window their end falls in (as `authorization_end`
    and `expiry_window` place them), counted in one query: the
    `larkauth_refresh_tokens_expiring{window}` gauge. Those that already need the user are
    `larkauth_authorizations{state="needs_reauth"}`."""

    def capped_by(at: datetime) -> Q:
        return Q(completed_at__lte=at - AUTHORIZATION_LIFETIME)

    def uncapped_by(at: datetime) -> Q:
        return Q(completed_at__isnull=True, refresh_token_expires_at__lte=at)

    ended = capped_by(now) | Q(refresh_token_expires_at__lte=now)
    within_3d = (
        capped_by(now + _OPENS_AT[Window.DAYS_3])
        | Q(refresh_token_expires_at__lte=now + KEEPALIVE_REACH)
        | uncapped_by(now + _OPENS_AT[Window.DAYS_3])
    )
    within_7d = capped_by(now + _OPENS_AT[Window.DAYS_7]) | uncapped_by(
        now + _OPENS_AT[Window.DAYS_7]
    )
    counts = UserAuthSession.objects.filter(state=SessionState.COMPLETED).aggregate(
        expired=Count("id", filter=ended),
        within_3d=Count("id", filter=within_3d & ~ended),
        within_7d=Count("id", filter=within_7d & ~within_3d & ~ended),
    )
    return {
        Window.DAYS_7.value: counts["within_7d"],
        Window.DAYS_3.value: counts["within_3d"],
        Window.EXPIRED.value: counts["expired"],
    }


def _windows_through(window: Window) -> list[Window]:
    """A 3-day warning also stands for the 7-day one: never send a milder one after it."""
    order = list(Window)
    return order[: order.index(window) + 1]


@dataclass
class ExpiryReport:
    expiring: Counter[str] = field(default_factory=Counter)
    warned: int = 0
    digests: int = 0
    reauth_cards: int = 0
    failures: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            **{f"expiring_{w.value}": self.expiring[w] for w in Window},
            "warned": self.warned,
            "digests": self.digests,
            "reauth_cards": self.reauth_cards,
            "failures": self.failures,
        }

    def __str__(self) -> str:
        return (
            f"Authorizations ending within 7 days: {self.expiring[Window.DAYS_7]}, within 3 "
            f"days: {self.expiring[Window.DAYS_3]}, ended but not yet marked: "
            f"{self.expiring[Window.EXPIRED]}. "
            f"Warned admins about {self.warned} in {self.digests} digests; sent "
            f"{self.reauth_cards} re-authorization cards; {self.failures} sends failed."
        )


def refresh_token_expiry_check(now: datetime | None = None) -> ExpiryReport:
    now = now or timezone.now()
    report = ExpiryReport()
    by_app: dict[int, list[Ending]] = defaultdict(list)
    report.expiring.update(expiring_counts(now))
    for ending in _endings(now):
        by_app[ending.session.app_id].append(ending)
    apps = Application.objects.in_bulk(list(by_app))
    for app_id, endings in by_app.items():
        _notify(apps[app_id], endings, report)
    logger.info("Expiry check: %s", report)
    return report


_ENDING_FIELDS = (
    "id",
    "app_id",
    "open_id",
    "user_name",
    "state",
    "failure_reason",
    "refresh_token_expires_at",
    "completed_at",
    "expiry_warnings_sent",
)


def _endings(now: datetime) -> Iterator[Ending]:
    week = _OPENS_AT[Window.DAYS_7]
    near_end = (
        Q(completed_at__lte=now + week - AUTHORIZATION_LIFETIME)
        | Q(refresh_token_expires_at__lte=now + KEEPALIVE_REACH)
        | Q(completed_at__isnull=True, refresh_token_expires_at__lte=now + week)
    )
    rows = UserAuthSession.objects.filter(
        Q(state=SessionState.NEEDS_REAUTH) | Q(near_end, state=SessionState.COMPLETED),
        app__is_active=True,
    ).only(*_ENDING_FIELDS)
    for session in rows.iterator(chunk_size=2000):
        at, cause = authorization_end(session, now)
        window = expiry_window(at, now)
        if window is not None:
            yield Ending(session, at, cause, window)


def _notify(app: Application, endings: list[Ending], report: ExpiryReport) -> None:
    admins = [str(admin) for admin in app.admin_open_ids or [] if admin]
    warned: dict[UUID, list[str]] = {}
    for ending in endings:
        sent = ending.session.expiry_warnings_sent or []
        wanted: list[str] = []
        if admins and ending.window not in sent:
            wanted += _windows_through(ending.window)
        if _wants_reauth_card(ending) and REAUTH_CARD not in sent:
            wanted.append(REAUTH_CARD)
        claimed = _claim(ending.session.pk, wanted)
        if ending.window in claimed:
            warned[ending.session.pk] = [m for m in claimed if m != REAUTH_CARD]
        if REAUTH_CARD in claimed:
            if _send_reauth_card(app, ending):
                report.reauth_cards += 1
            else:
                report.failures += 1
                _release(ending.session.pk, [REAUTH_CARD])
    if not warned:
        return
    digest = [ending for ending in endings if ending.session.pk in warned]
    delivered = 0
    for admin in admins:
        if _send_digest(app, admin, digest):
            delivered += 1
        else:
            report.failures += 1
    report.digests += delivered
    if delivered:
        report.warned += len(digest)
    else:  # nobody got it: the next run tries again
        for pk, markers in warned.items():
            _release(pk, markers)


def _wants_reauth_card(ending: Ending) -> bool:
    return ending.session.state == SessionState.COMPLETED and ending.window != Window.EXPIRED


def _claim(pk: UUID, markers: list[str]) -> list[str]:
    """Add the markers not yet present; returns those this call added."""
    if not markers:
        return []
    with transaction.atomic():
        row = (
            UserAuthSession.objects.select_for_update()
            .only("id", "expiry_warnings_sent")
            .get(pk=pk)
        )
        present = list(row.expiry_warnings_sent or [])
        added = [marker for marker in markers if marker not in present]
        if added:
            row.expiry_warnings_sent = present + added
            row.save(update_fields=["expiry_warnings_sent"])
    return added


def _release(pk: UUID, markers: list[str]) -> None:
    with transaction.atomic():
        row = (
            UserAuthSession.objects.select_for_update()
            .only("id", "expiry_warnings_sent")
            .get(pk=pk)
        )
        row.expiry_warnings_sent = [m for m in row.expiry_warnings_sent or [] if m not in markers]
        row.save(update_fields=["expiry_warnings_sent"])


def _send_reauth_card(app: Application, ending: Ending) -> bool:
    """A pending card the user already has counts: the unique pending-card constraint
    lets `auth_request` return it instead of sending a second one."""
    try:
        auth_request(
            app,
            UserRef(open_id=ending.session.open_id),
            force=True,
            reason=ReauthReason.ENDING,
            actor="expiry",
            send_now=True,  # this job is off the request path; it counts what failed
        )
    except LarkauthError as exc:
        logger.warning("Re-authorization card to %s not sent: %s", ending.session.open_id, exc)
        return False
    return True


def _send_digest(app: Application, admin: str, endings: list[Ending]) -> bool:
    # The same digest sent twice (a redelivered task) is deduplicated by Feishu.
    content = "|".join(sorted(f"{e.session.pk}:{e.window}" for e in endings))
    dedupe_key = hashlib.sha256(f"{app.app_id}|{admin}|{content}".encode()).hexdigest()[:32]
    try:
        client_for(app).send_card(admin, expiry_digest(app, endings), dedupe_key=dedupe_key)
    except (LarkauthError, ValueError) as exc:
        logger.warning("Expiry digest to admin %s of %s not sent: %s", admin, app.app_id, exc)
        return False
    return True


# --- The digest card -----------------------------------------------------------------------

_SECTIONS = {
    Window.EXPIRED: (
        "已结束 · Ended",
        "这些用户需要重新授权，服务已无法代其调用飞书。\n"
        "These users must authorize again: services can no longer act for them.",
    ),
    Window.DAYS_3: (
        "3 天内结束 · Ending within 3 days",
        "请立即提醒这些用户重新授权（他们已收到授权卡片）。\n"
        "Ask these users to authorize again now (they have been sent a card).",
    ),
    Window.DAYS_7: (
        "7 天内结束 · Ending within 7 days",
        "这些用户已收到重新授权卡片；授权后不会中断。\n"
        "These users have been sent a card to authorize again; once they do, nothing stops.",
    ),
}
_CAUSES = {
    EndCause.CAP: "365 天上限 · 365-day limit",
    EndCause.REFRESH_TOKEN: "刷新令牌到期 · refresh token expires",
    EndCause.NEEDS_REAUTH: "需重新授权 · needs re-authorization",
}
_COLORS = {Window.EXPIRED: "red", Window.DAYS_3: "orange", Window.DAYS_7: "yellow"}


def expiry_digest(app: Application, endings: list[Ending]) -> dict[str, Any]:
    """Card JSON 2.0 listing the authorizations by window, most severe first."""
    elements: list[dict[str, Any]] = []
    present = {ending.window for ending in endings}
    for window in reversed(Window):
        rows = sorted((e for e in endings if e.window == window), key=lambda e: e.at)
        if not rows:
            continue
        title, advice = _SECTIONS[window]
        lines = [_line(ending) for ending in rows[:MAX_DIGEST_LINES]]
        if len(rows) > MAX_DIGEST_LINES:
            lines.append(f"… +{len(rows) - MAX_DIGEST_LINES}")
        elements.append({"tag": "markdown", "content": f"**{title}** ({len(rows)})\n{advice}"})
        elements.append({"tag": "markdown", "content": "\n".join(lines)})
    elements.append(
        {
            "tag": "markdown",
            "text_size": "notation",
            "content": "这与用户的授权有关，无需更换应用密钥。\n"
            "This is about users' authorizations, not the app secret: nothing to change in the "
            "developer console.",
        }
    )
    severest = next(window for window in reversed(Window) if window in present)
    title = f"授权到期提醒 · Authorizations ending — {app.name or app.app_id}"
    return {
        "schema": "2.0",
        "config": {"update_multi": True, "summary": {"content": title}},
        "header": {
            "title": {"tag": "plain_text", "content": title},
            "template": _COLORS[severest],
        },
        "body": {"elements": elements},
    }


def _line(ending: Ending) -> str:
    session = ending.session
    name = session.user_name or session.open_id
    if len(name) > MAX_NAME_CHARS:
        name = name[: MAX_NAME_CHARS - 1] + "…"
    # Names come from Feishu profiles: shown as typed, never read as markdown.
    who = markdown_text(name)
    at = timezone.localtime(ending.at).strftime("%Y-%m-%d %H:%M")
    cause = _CAUSES[ending.cause]
    if ending.cause == EndCause.NEEDS_REAUTH and session.failure_reason:
        cause += f" ({session.failure_reason})"
    return f"- {who} `{session.open_id}` · {at} · {cause}"
