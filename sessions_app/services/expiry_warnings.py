"""Warnings before authorizations end (Celery beat, 09:00 and 21:00), and a
re-authorization card to the user before they do.

When an authorization really ends is `policy.authorization_end`. Application admins get one
digest per run at 7 days, 3 days and on expiry, each at most once per authorization
(`expiry_warnings_sent`, changed under the row lock so two runs at once cannot both claim
it). The user gets one re-authorization card in the last 7 days so that services see no
gap. App tokens are renewed from the app secret and are not watched here.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from larkauth import cards
from larkauth.errors import LarkauthError
from sessions_app import selectors
from sessions_app.feishu import client_for
from sessions_app.models import Application, SessionState, UserAuthSession
from sessions_app.policy import (
    AUTHORIZATION_LIFETIME,
    KEEPALIVE_REACH,
    WINDOW_OPENS_AT,
    EndCause,
    Window,
    authorization_end,
    expiring_counts,
    expiry_window,
)
from sessions_app.services.sessions import UserRef, auth_request

logger = logging.getLogger(__name__)

REAUTH_CARD = "reauth_card"  # marker in expiry_warnings_sent next to the windows


@dataclass(frozen=True)
class Ending:
    session: UserAuthSession
    at: datetime
    cause: EndCause
    window: Window


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
    readable = {app.pk: app for app in selectors.applications_active_readable()}
    for app_id, endings in by_app.items():
        if app_id not in readable:  # its secrets undecryptable; nothing claimed: tried next run
            report.failures += len(endings)
            continue
        _notify(readable[app_id], endings, report)
    did_work = any(report.as_dict().values())
    logger.log(logging.INFO if did_work else logging.DEBUG, "Expiry check: %s", report)
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
    week = WINDOW_OPENS_AT[Window.DAYS_7]
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
            reason=cards.ReauthReason.ENDING,
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
        client_for(app).send_card(admin, digest_card(app, endings), dedupe_key=dedupe_key)
    except (LarkauthError, ValueError) as exc:
        logger.warning("Expiry digest to admin %s of %s not sent: %s", admin, app.app_id, exc)
        return False
    return True


def digest_card(app: Application, endings: list[Ending]) -> cards.Card:
    """The admins' digest of these endings (`cards.expiry_digest`), times in TIME_ZONE."""
    lines = [
        cards.DigestLine(
            window=ending.window,
            at=timezone.localtime(ending.at),
            cause=ending.cause,
            user_name=ending.session.user_name,
            open_id=ending.session.open_id,
            failure_reason=ending.session.failure_reason,
        )
        for ending in endings
    ]
    return cards.expiry_digest(app.name or app.app_id, lines)
