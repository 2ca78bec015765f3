"""Deleting old rows: sessions that are not authorizations, and handled event ids.

The hourly `cleanup_auth_sessions` task and the `cleanup_sessions` command both run
`cleanup_run`, so the command does in the foreground exactly what the job does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from sessions_app.models import ProcessedEvent, SessionState, UserAuthSession

logger = logging.getLogger(__name__)

# Authorizations stay: the user's current one and the one that needs the user again.
KEPT_STATES = (SessionState.COMPLETED, SessionState.NEEDS_REAUTH)
# Feishu redelivers an event for about 7 hours (docs/feishu.md §7); a week of ids is plenty.
PROCESSED_EVENT_RETENTION = timedelta(days=7)


@dataclass(frozen=True)
class CleanupReport:
    retention_days: int
    sessions: int
    events: int

    @property
    def total(self) -> int:
        return self.sessions + self.events

    def __str__(self) -> str:
        return (
            f"Deleted {self.sessions} sessions older than {self.retention_days} days and "
            f"{self.events} handled event ids older than {PROCESSED_EVENT_RETENTION.days} days."
        )


def cleanup_run(*, retention_days: int | None = None) -> CleanupReport:
    """Delete old sessions (AUTH_SESSION_RETENTION_DAYS unless given) and old event ids."""
    days = settings.AUTH_SESSION_RETENTION_DAYS if retention_days is None else retention_days
    report = CleanupReport(
        retention_days=days,
        sessions=auth_sessions_delete_old(retention_days=days),
        events=processed_events_delete_old(),
    )
    logger.log(logging.INFO if report.total else logging.DEBUG, "Cleanup: %s", report)
    return report


def auth_sessions_delete_old(*, retention_days: int | None = None, batch_size: int = 1000) -> int:
    """Delete sessions other than authorizations untouched for AUTH_SESSION_RETENTION_DAYS.

    Their audit events stay (`TokenEvent.session` becomes NULL).
    """
    days = settings.AUTH_SESSION_RETENTION_DAYS if retention_days is None else retention_days
    cutoff = timezone.now() - timedelta(days=days)
    old = (
        UserAuthSession.objects.filter(created_at__lt=cutoff, updated_at__lt=cutoff)
        .exclude(state__in=KEPT_STATES)
        .order_by("created_at")
        .values_list("pk", flat=True)
    )
    deleted = 0
    while batch := list(old[:batch_size]):
        _, per_model = (
            UserAuthSession.objects.filter(pk__in=batch).exclude(state__in=KEPT_STATES).delete()
        )
        deleted += per_model.get(UserAuthSession._meta.label, 0)
    return deleted


def processed_events_delete_old(*, batch_size: int = 5000) -> int:
    """Forget handled event ids older than any redelivery, in batches."""
    old = ProcessedEvent.objects.filter(
        received_at__lt=timezone.now() - PROCESSED_EVENT_RETENTION
    ).values_list("pk", flat=True)
    deleted = 0
    while batch := list(old[:batch_size]):
        deleted += ProcessedEvent.objects.filter(pk__in=batch).delete()[0]
    return deleted
