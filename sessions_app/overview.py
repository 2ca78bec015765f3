"""What the admin's index shows an operator, per application, in a handful of queries:
authorizations by state, failures in the last 24 h, authorizations ending within 7 and 3
days, the long connection, the last run of each beat task, the audit backlog and the
applications that need attention. Read-only."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count
from django.utils import timezone

from events_app.models import ListenerConnection
from sessions_app import policy
from sessions_app.beat_runs import BEAT_TASKS, short_name
from sessions_app.models import (
    SECRET_FIELDS,
    Application,
    BeatRun,
    SessionState,
    TokenEvent,
    UserAuthSession,
)
from sessions_app.services.audit import token_audit_buffered

FAILURE_WINDOW = timedelta(hours=24)
FAILURE_KINDS = (TokenEvent.Kind.FAILED, TokenEvent.Kind.REFRESH_FAILED)
# The order states are shown in: the authorization first, then how attempts ended.
STATE_ORDER = [
    SessionState.COMPLETED,
    SessionState.NEEDS_REAUTH,
    SessionState.PENDING,
    SessionState.REVOKED,
    SessionState.REJECTED,
    SessionState.EXPIRED,
    SessionState.FAILED,
    SessionState.SUPERSEDED,
]


class Connection:
    """The long connection of an application, as the overview judges it."""

    UP = "up"  # a live listener holds it
    DOWN = "down"  # live listeners report it failing or backing off
    STALE = "stale"  # rows exist, but no listener wrote a heartbeat lately
    NONE = "none"  # no listener has reported this application


@dataclass
class AppOverview:
    app: Application
    states: dict[str, int] = field(default_factory=dict)
    failures_24h: int = 0
    ending_7d: int = 0
    ending_3d: int = 0
    ended: int = 0
    connection: str = Connection.NONE
    connection_detail: str = ""
    last_heartbeat_at: datetime | None = None

    @property
    def state_counts(self) -> list[tuple[str, int]]:
        return [(state.value, self.states[state]) for state in STATE_ORDER if state in self.states]


@dataclass
class Overview:
    apps: list[AppOverview]
    beat_runs: list[dict[str, Any]]
    audit_backlog: int | None
    attention: list[Application]
    now: datetime


def build(now: datetime | None = None) -> Overview:
    now = now or timezone.now()
    apps = list(Application.objects.defer(*SECRET_FIELDS))
    by_pk = {app.pk: AppOverview(app) for app in apps}

    for app_pk, state, n in (
        UserAuthSession.objects.values_list("app_id", "state")
        .annotate(n=Count("id"))
        .order_by()
        .values_list("app_id", "state", "n")
    ):
        by_pk[app_pk].states[state] = n

    endings = policy.ending_filters(now)
    for app_pk, ended, ending_3d, ending_7d in (
        UserAuthSession.objects.filter(state=SessionState.COMPLETED)
        .values_list("app_id")
        .annotate(
            ended=Count("id", filter=endings[policy.Window.EXPIRED]),
            ending_3d=Count("id", filter=endings[policy.Window.DAYS_3]),
            ending_7d=Count("id", filter=endings[policy.Window.DAYS_7]),
        )
        .order_by()
        .values_list("app_id", "ended", "ending_3d", "ending_7d")
    ):
        entry = by_pk[app_pk]
        entry.ended, entry.ending_3d, entry.ending_7d = ended, ending_3d, ending_7d

    for app_pk, n in (
        TokenEvent.objects.filter(kind__in=FAILURE_KINDS, created_at__gte=now - FAILURE_WINDOW)
        .values_list("app_id")
        .annotate(n=Count("id"))
        .order_by()
        .values_list("app_id", "n")
    ):
        by_pk[app_pk].failures_24h = n

    _judge_connections(by_pk, now)

    runs = {run.task: run for run in BeatRun.objects.all()}
    beat_runs = [{"name": short_name(task), "run": runs.get(task)} for task in sorted(BEAT_TASKS)]
    return Overview(
        apps=list(by_pk.values()),
        beat_runs=beat_runs,
        audit_backlog=token_audit_buffered(),
        attention=[app for app in apps if app.attention_reason],
        now=now,
    )


def _judge_connections(by_pk: dict[int, AppOverview], now: datetime) -> None:
    live_since = now - ListenerConnection.heartbeat_window()
    rows: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in ListenerConnection.objects.values(
        "app_id", "status", "last_error", "last_heartbeat_at"
    ):
        rows[row["app_id"]].append(dict(row))
    for app_pk, entry in by_pk.items():
        reports = rows.get(app_pk, [])
        if not reports:
            continue
        entry.last_heartbeat_at = max(r["last_heartbeat_at"] for r in reports)
        live = [r for r in reports if r["last_heartbeat_at"] >= live_since]
        up = [r for r in live if r["status"] == ListenerConnection.Status.CONNECTED]
        if up:
            entry.connection = Connection.UP
            entry.connection_detail = f"{len(up)} listener(s)"
        elif live:
            entry.connection = Connection.DOWN
            failing = [r for r in live if r["status"] != ListenerConnection.Status.STOPPED]
            entry.connection_detail = (
                failing[0]["last_error"] or failing[0]["status"] if failing else "stopped"
            )
        else:
            entry.connection = Connection.STALE
            entry.connection_detail = "no heartbeat since"


__all__ = ["Connection", "Overview", "build"]
