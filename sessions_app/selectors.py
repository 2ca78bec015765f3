"""Reads. Writes live in `sessions_app.services`; the rules the reads encode in
`sessions_app.policy`."""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any, cast
from uuid import UUID

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection
from django.db.models import F, Field, Max, Q, QuerySet
from django_cryptography.utils.crypto import InvalidToken

from larkauth import cards
from larkauth.caching import APPLICATION_SECONDS, TTLCache
from sessions_app.models import (
    SECRET_FIELDS,
    Application,
    AuthMethod,
    SessionState,
    UserAuthSession,
)
from sessions_app.policy import (
    AUTHORIZATION_LIFETIME,
    CAP_SLACK,
    LONGEST_ACCESS_TOKEN,
    backing_off,
    keepalive_due,
    warm_due,
)

logger = logging.getLogger(__name__)

# What handing out a token reads; the refresh path re-reads the whole row under its lock.
TOKEN_READ_FIELDS = (
    "app_id",
    "open_id",
    "user_id",
    "user_name",
    "state",
    "access_token",
    "scope",
    "token_expires_at",
    "last_refreshed_at",
    "last_used_at",
    "completed_at",
)


# Every API request names an application; rows change rarely (larkauth/caching.py).
_applications: TTLCache[str, Application] = TTLCache(APPLICATION_SECONDS)


def application_get(app_id: str | None) -> Application:
    """The named active application; unnamed: the LARK_APP_ID one, else the only one."""
    return _applications.get(app_id or "", lambda: _application_lookup(app_id))


def applications_active_readable() -> list[Application]:
    """The active applications, secrets decrypted, by app_id; one whose secrets no key of
    LARKAUTH_ENCRYPTION_KEYS decrypts is left out (an error in the log), so that one such
    row does not stop the listener or the event callback for every application."""
    active = Application.objects.filter(is_active=True).order_by("app_id")
    try:
        return list(active)
    except InvalidToken:
        pass
    readable = []
    for pk, app_id in active.values_list("pk", "app_id"):
        try:
            readable.append(Application.objects.get(pk=pk))
        except InvalidToken:
            logger.error(
                "Application %s skipped: no key of LARKAUTH_ENCRYPTION_KEYS decrypts its "
                "secrets (restore the key they were written under, or set them again)",
                app_id,
            )
    return readable


def applications_forget() -> None:
    _applications.clear()


def _application_lookup(app_id: str | None) -> Application:
    """Reads only: the environment's default application is created at fixed points
    (`services.application_ensure_default`), never here, so admin edits stay."""
    # Secrets are loaded (and decrypted) only when a Feishu call needs them.
    active = Application.objects.defer(*SECRET_FIELDS).filter(is_active=True)
    if app_id:
        return active.get(app_id=app_id)
    if settings.LARK_APP_ID:
        default = active.filter(app_id=settings.LARK_APP_ID).first()
        if default is not None:
            return default
    only = list(active[:2])
    if len(only) == 1:
        return only[0]
    raise Application.DoesNotExist("No app_id given and no single default application")


# The token read is the hottest query: compiling it through the ORM cost twice as much as
# running it (bench/token_api.py), so it is written out once per lookup column; the rest
# of the row stays deferred.
_TOKEN_READ_SQL = (
    f"SELECT id, {', '.join(TOKEN_READ_FIELDS)} FROM {UserAuthSession._meta.db_table} "  # noqa: S608 - constants
    "WHERE app_id = %s AND {column} = %s AND state = %s LIMIT 1"
)
_TOKEN_READ_COLUMNS: list[Field[Any, Any]] = [
    cast("Field[Any, Any]", UserAuthSession._meta.get_field(f)) for f in ("id", *TOKEN_READ_FIELDS)
]
_TOKEN_READ_ATTNAMES = [field.attname for field in _TOKEN_READ_COLUMNS]
_TOKEN_READ_BY = {
    "open_id": _TOKEN_READ_SQL.format(column="open_id"),
    "user_id": _TOKEN_READ_SQL.format(column="user_id"),
    "email": _TOKEN_READ_SQL.format(column="lower(email)"),
}


@functools.cache
def _token_read_converters() -> list[tuple[int, Any, list[Any]]]:
    """What the ORM would apply to each column on this database (decryption among them)."""
    converters = []
    for index, field in enumerate(_TOKEN_READ_COLUMNS):
        column = field.get_col(UserAuthSession._meta.db_table)
        found = connection.ops.get_db_converters(column) + field.get_db_converters(connection)
        if found:
            converters.append((index, column, found))
    return converters


def _token_read_row(row: tuple[Any, ...]) -> UserAuthSession:
    values = list(row)
    for index, column, converters in _token_read_converters():
        for convert in converters:
            values[index] = convert(values[index], column, connection)
    return UserAuthSession.from_db(DEFAULT_DB_ALIAS, _TOKEN_READ_ATTNAMES, values)


def user_filter(open_id: str = "", user_id: str = "", email: str = "") -> Q:
    if open_id:
        return Q(open_id=open_id)
    if user_id:
        return Q(user_id=user_id)
    return Q(email__iexact=email)


def authorization_get(
    app: Application, *, open_id: str = "", user_id: str = "", email: str = ""
) -> UserAuthSession | None:
    """The user's authorization: the completed row, else the latest that needs the user."""
    column, value = (
        ("open_id", open_id) if open_id else ("user_id", user_id) if user_id else ("email", email)
    )
    if column == "email":
        value = value.lower()
    with connection.cursor() as cursor:
        cursor.execute(_TOKEN_READ_BY[column], [app.pk, value, SessionState.COMPLETED.value])
        row = cursor.fetchone()
    if row is not None:
        return _token_read_row(row)
    who = user_filter(open_id=open_id, user_id=user_id, email=email)
    return (
        UserAuthSession.objects.filter(
            who, app=app, state__in=[SessionState.NEEDS_REAUTH, SessionState.REVOKED]
        )
        .only(*TOKEN_READ_FIELDS)
        .first()
    )


def authorizations_list(app: Application) -> QuerySet[UserAuthSession]:
    return UserAuthSession.objects.filter(
        app=app, state__in=[SessionState.COMPLETED, SessionState.NEEDS_REAUTH]
    ).order_by("user_name", "open_id")


def session_get(pk: Any, *, app_pks: Iterable[int] | None = None) -> UserAuthSession | None:
    """A session with its application; with `app_pks`, only one of those applications."""
    rows = UserAuthSession.objects.select_related("app").filter(pk=pk)
    if app_pks is not None:
        rows = rows.filter(app__in=app_pks)
    return rows.first()


def session_state(pk: Any) -> str | None:
    return UserAuthSession.objects.filter(pk=pk).values_list("state", flat=True).first()


def pending_card_get(app: Application, open_id: str) -> UserAuthSession | None:
    """The user's open card session (at most one: uq_auth_session_one_pending_card)."""
    return UserAuthSession.objects.filter(
        app=app, open_id=open_id, state=SessionState.PENDING, auth_method=AuthMethod.CARD
    ).first()


def card_sent_since_last_grant(
    app: Application, open_id: str, now: datetime
) -> UserAuthSession | None:
    """A card delivered within AUTH_REAUTH_CARD_INTERVAL and after the user's last grant."""
    rows = UserAuthSession.objects.filter(app=app, open_id=open_id)
    since = now - timedelta(seconds=settings.AUTH_REAUTH_CARD_INTERVAL)
    last_grant = rows.aggregate(Max("completed_at"))["completed_at__max"]
    if last_grant is not None and last_grant > since:
        since = last_grant
    return (
        rows.filter(auth_method=AuthMethod.CARD, created_at__gt=since)
        .exclude(message_id="")  # only cards Feishu delivered count
        .order_by("-created_at")
        .first()
    )


def reauth_reason(app: Application, open_id: str) -> cards.ReauthReason | None:
    previous = (
        UserAuthSession.objects.filter(
            app=app, open_id=open_id, state__in=[SessionState.NEEDS_REAUTH, SessionState.REVOKED]
        )
        .order_by("-updated_at")
        .values_list("state", flat=True)
        .first()
    )
    if previous == SessionState.NEEDS_REAUTH:
        return cards.ReauthReason.EXPIRED
    if previous == SessionState.REVOKED:
        return cards.ReauthReason.REVOKED
    return None


# --- The refresh sweep's candidates -------------------------------------------------------

# What the refresh sweep's predicates (sessions_app/policy.py) read: loading only these
# skips decrypting the tokens.
SWEEP_FIELDS = (
    "id",
    "app_id",
    "state",
    "token_expires_at",
    "refresh_token_expires_at",
    "last_refreshed_at",
    "last_used_at",
    "completed_at",
    "refresh_failures",
    "updated_at",
)


def refresh_candidates(now: datetime, page_size: int) -> Iterator[UUID]:
    """The sweep's keep-alive candidates, most urgent first, then warm ones; each once
    (`policy.keepalive_due`, `policy.warm_due`, not `policy.backing_off`)."""
    seen: set[UUID] = set()
    for session in _keepalive_rows(now, page_size):
        if keepalive_due(session, now) and not backing_off(session, now):
            seen.add(session.pk)
            yield session.pk
    for session in _warm_rows(now, page_size):
        if session.pk not in seen and warm_due(session, now) and not backing_off(session, now):
            yield session.pk


def _keepalive_rows(now: datetime, page_size: int) -> Iterator[UserAuthSession]:
    rows = UserAuthSession.objects.filter(
        Q(completed_at__isnull=True)
        | Q(refresh_token_expires_at__lt=F("completed_at") + (AUTHORIZATION_LIFETIME - CAP_SLACK)),
        state=SessionState.COMPLETED,
        refresh_token_expires_at__lte=now + timedelta(seconds=settings.AUTH_KEEPALIVE_MARGIN),
    )
    return _pages(rows, "refresh_token_expires_at", page_size)


def _warm_rows(now: datetime, page_size: int) -> Iterator[UserAuthSession]:
    # A token handed out or granted in the window was valid then, so it expires after the
    # window's start: that bounds the index range from below.
    since = now - timedelta(seconds=settings.AUTH_WARM_WINDOW)
    lookahead = LONGEST_ACCESS_TOKEN * (1 - settings.AUTH_TOKEN_REFRESH_THRESHOLD)
    rows = UserAuthSession.objects.filter(
        Q(completed_at__gte=since) | Q(last_used_at__gte=since),
        state=SessionState.COMPLETED,
        token_expires_at__gt=since,
        token_expires_at__lte=now + lookahead,
    )
    return _pages(rows, "token_expires_at", page_size)


def _pages(
    rows: QuerySet[UserAuthSession], order: str, page_size: int
) -> Iterator[UserAuthSession]:
    """Keyset pagination on (order, id): rows refreshed meanwhile move out of the range,
    rows left behind (failed, busy) are not read twice."""
    rows = rows.only(*SWEEP_FIELDS).order_by(order, "id")
    after: tuple[Any, UUID] | None = None
    while True:
        page = rows
        if after is not None:
            page = rows.filter(
                Q(**{f"{order}__gt": after[0]}) | Q(**{order: after[0]}, id__gt=after[1])
            )
        batch = list(page[:page_size])
        yield from batch
        if len(batch) < page_size:
            return
        after = (getattr(batch[-1], order), batch[-1].pk)
