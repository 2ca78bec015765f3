"""Reads. Writes live in `sessions_app.services`."""

from __future__ import annotations

import functools
from typing import Any, cast

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection
from django.db.models import Field, Q, QuerySet

from larkauth.caching import APPLICATION_SECONDS, TTLCache
from sessions_app.models import (
    SECRET_FIELDS,
    Application,
    AuthMethod,
    SessionState,
    UserAuthSession,
)

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


def pending_card_get(app: Application, open_id: str) -> UserAuthSession | None:
    """The user's open card session (at most one: uq_auth_session_one_pending_card)."""
    return UserAuthSession.objects.filter(
        app=app, open_id=open_id, state=SessionState.PENDING, auth_method=AuthMethod.CARD
    ).first()
