"""The user-info sync (Celery beat, `USER_INFO_SYNC_SCHEDULE`): profiles from the directory.

Users are taken least recently synced first, and each is stamped when asked, so a run
stopped by its time budget or a lost worker is resumed by the next. A user the directory
reports as resigned loses the authorization.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from django.db.models import F, Q
from django.utils import timezone

from larkauth.errors import FeishuError
from larkauth.feishu import ContactUser, FeishuClient
from sessions_app import selectors
from sessions_app.feishu import client_for
from sessions_app.models import (
    Application,
    SessionState,
    TokenEvent,
    UserAuthSession,
)
from sessions_app.services.audit import record_event

logger = logging.getLogger(__name__)


@dataclass
class SyncReport:
    checked: int = 0
    updated: int = 0
    failed: int = 0
    revoked: int = 0  # the user left the company: authorization revoked, tokens wiped
    apps_skipped: int = 0  # no key decrypts the application's secret
    finished: bool = True  # False: the time budget ran out; the next run goes on

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "checked": self.checked,
            "updated": self.updated,
            "failed": self.failed,
            "revoked": self.revoked,
        }
        if self.apps_skipped:
            result["apps_skipped"] = self.apps_skipped
        if not self.finished:
            result["finished"] = False
        return result

    def __str__(self) -> str:
        unchanged = self.checked - self.updated - self.failed - self.revoked
        text = (
            f"Checked {self.checked} authorized users: {self.updated} updated, "
            f"{unchanged} unchanged, {self.failed} failed."
        )
        if self.revoked:
            text += f" Revoked {self.revoked} of users who left (resigned)."
        if self.apps_skipped:
            text += f" Skipped {self.apps_skipped} applications whose secret no key decrypts."
        if not self.finished:
            text += " Stopped at the time budget; the next run goes on."
        return text


_PROFILE_FIELDS = {
    "user_name": "name",
    "email": "email",
    "mobile": "mobile",
    "user_id": "user_id",
    "union_id": "union_id",
    "avatar_url": "avatar_url",
}


def users_sync_info(
    *, app: Application | None = None, page_size: int = 200, time_budget: float | None = None
) -> SyncReport:
    """Update name, email, mobile and ids of authorized users from the contact directory.

    Users are taken least recently synced first, and each is stamped when asked, so a run
    stopped by `time_budget` (seconds) or a lost worker is resumed by the next. A user
    Feishu cannot answer for is counted and skipped. Empty fields in the answer (the app
    lacks that field's scope) keep what is stored. A user the directory reports as resigned
    loses the authorization: revoked, tokens wiped, recorded in the audit log.
    """
    report = SyncReport()
    started = timezone.now()
    deadline = None if time_budget is None else time.monotonic() + time_budget
    if app is not None:
        apps = [app]
    else:
        apps = selectors.applications_active_readable()
        report.apps_skipped = Application.objects.filter(is_active=True).count() - len(apps)
    for application in apps:
        client = client_for(application)
        due = (
            UserAuthSession.objects.filter(app=application, state=SessionState.COMPLETED)
            .exclude(open_id="")
            .filter(Q(user_info_synced_at__isnull=True) | Q(user_info_synced_at__lt=started))
            .order_by(F("user_info_synced_at").asc(nulls_first=True), "id")
            .only("id", "app_id", "open_id", *_PROFILE_FIELDS)
        )
        while page := list(due[:page_size]):
            for session in page:
                _sync_user(client, session, report)
            if deadline is not None and time.monotonic() >= deadline:
                report.finished = not due.exists()
                break
        if not report.finished:
            break
    logger.log(logging.INFO if report.checked else logging.DEBUG, "User info sync: %s", report)
    return report


def _sync_user(client: FeishuClient, session: UserAuthSession, report: SyncReport) -> None:
    report.checked += 1
    changes: dict[str, Any] = {}
    try:
        contact = client.get_contact_user(session.open_id)
    except FeishuError as exc:
        report.failed += 1
        logger.warning("User info of %s not synced: %s", session.open_id, exc)
    else:
        if contact.is_resigned:
            report.revoked += _revoke_resigned(session)
            return
        changes = _profile_changes(session, contact)
        report.updated += bool(changes)
    now = timezone.now()
    UserAuthSession.objects.filter(pk=session.pk).update(
        **changes, user_info_synced_at=now, **({"updated_at": now} if changes else {})
    )


RESIGNED_REASON = "user_resigned"


def _revoke_resigned(session: UserAuthSession) -> bool:
    """The user left: no service may act as them any more. The UPDATE waits for a refresh
    holding the row and re-checks the state after it, so its new tokens are wiped too."""
    now = timezone.now()
    revoked = UserAuthSession.objects.filter(pk=session.pk, state=SessionState.COMPLETED).update(
        state=SessionState.REVOKED,
        failure_reason=RESIGNED_REASON,
        access_token=None,
        refresh_token=None,
        version=F("version") + 1,
        user_info_synced_at=now,
        updated_at=now,
    )
    if revoked:
        record_event(session, TokenEvent.Kind.REVOKED, "sync", reason=RESIGNED_REASON)
        logger.info("Authorization %s revoked: the user has resigned", session.pk)
    return bool(revoked)


def _profile_changes(session: UserAuthSession, contact: ContactUser) -> dict[str, str]:
    changes = {}
    for ours, theirs in _PROFILE_FIELDS.items():
        value = getattr(contact, theirs)
        if value and value != getattr(session, ours):
            changes[ours] = value
    return changes
