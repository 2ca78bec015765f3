"""When an authorization needs work, and when it really ends: the lifetime rules.

One place for the refresh sweep (`refresh_sweep.py`), the token API (`tokens.py`), the
expiry warnings (`expiry_warnings.py`) and the `larkauth_refresh_tokens_expiring` gauge.

- An access token is refreshed past AUTH_TOKEN_REFRESH_THRESHOLD of its life
  (`needs_refresh`).
- Keep-alive: a refresh token in its last AUTH_KEEPALIVE_MARGIN (at most half its lifetime)
  is refreshed, about one call per user per five days. Never the last refresh token before
  the 365-day cap (docs/feishu.md §2.1): refreshing it cannot extend the authorization.
- Warm: access tokens past the threshold of authorizations granted or used in the last
  AUTH_WARM_WINDOW, so that active callers rarely wait for a refresh.
- A transient failure backs off from `refresh_failures` and `updated_at` (the row's last
  change, which a failed refresh sets): 4 minutes (the next run) doubling to about an hour,
  but never past the end of its refresh token.
- An authorization really ends 365 days after the user's grant (docs/feishu.md §2.1): until then
  keep-alive replaces each ~7-day refresh token before it expires, so a refresh token's own
  expiry is the end only where keep-alive cannot extend it: the authorization already needs
  the user again (`needs_reauth`), or its refresh token ends before the next keep-alive run.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Q

from larkauth.backoff import Backoff
from sessions_app.models import SessionState, UserAuthSession

# Every authorization ends this long after the user granted it (docs/feishu.md §2.1).
AUTHORIZATION_LIFETIME = timedelta(days=365)
# Our `completed_at` trails Feishu's grant by the code exchange: a refresh token ending this
# close to the cap is the last one.
CAP_SLACK = timedelta(minutes=10)
# Access tokens live "about 2 h, not fixed": look ahead as if they could live twice that.
LONGEST_ACCESS_TOKEN = timedelta(hours=4)
# After a transient failure: 4 min (the next run) doubling to 64 min. No jitter: the delay
# is recomputed from `refresh_failures` and `updated_at` on every run.
RETRY_BACKOFF = Backoff(base=4 * 60, cap=64 * 60, jitter=0)
ENDED_REASON = "refresh_token_expired"  # failure_reason of an authorization that ran out
DEFAULT_ACCESS_TOKEN_LIFETIME = timedelta(hours=2)
# The refresh sweep runs every 5 minutes: a refresh token ending sooner is not extended.
KEEPALIVE_REACH = timedelta(minutes=5)


# --- Refreshing ------------------------------------------------------------------------


def needs_refresh(session: UserAuthSession, now: datetime) -> bool:
    """Past AUTH_TOKEN_REFRESH_THRESHOLD of the access token's lifetime."""
    if session.token_expires_at is None:
        return True
    issued_at = session.last_refreshed_at or session.completed_at
    lifetime = session.token_expires_at - issued_at if issued_at else DEFAULT_ACCESS_TOKEN_LIFETIME
    remaining = session.token_expires_at - now
    return remaining <= lifetime * (1 - settings.AUTH_TOKEN_REFRESH_THRESHOLD)


class RefreshReason(enum.StrEnum):
    KEEPALIVE = "keep-alive"
    WARM = "warm"


def authorization_cap(session: UserAuthSession) -> datetime | None:
    """When the authorization ends at the latest: 365 days after the user's grant."""
    return session.completed_at + AUTHORIZATION_LIFETIME if session.completed_at else None


def refresh_token_is_last(session: UserAuthSession) -> bool:
    """Feishu already cut this refresh token at the cap: refreshing cannot extend it."""
    cap = authorization_cap(session)
    expires = session.refresh_token_expires_at
    return cap is not None and expires is not None and expires >= cap - CAP_SLACK


def keepalive_due(session: UserAuthSession, now: datetime) -> bool:
    """The refresh token is in its last AUTH_KEEPALIVE_MARGIN, or its last half when it
    lives shorter than twice the margin (else every run would refresh it)."""
    expires = session.refresh_token_expires_at
    if expires is None or refresh_token_is_last(session):
        return False
    margin = timedelta(seconds=settings.AUTH_KEEPALIVE_MARGIN)
    issued = session.last_refreshed_at or session.completed_at
    if issued is not None and issued < expires:
        margin = min(margin, (expires - issued) / 2)
    return expires - now <= margin


def in_warm_window(session: UserAuthSession, now: datetime) -> bool:
    since = now - timedelta(seconds=settings.AUTH_WARM_WINDOW)
    return any(
        at is not None and at >= since for at in (session.completed_at, session.last_used_at)
    )


def warm_due(session: UserAuthSession, now: datetime) -> bool:
    return in_warm_window(session, now) and needs_refresh(session, now)


def refresh_reason(session: UserAuthSession, now: datetime) -> RefreshReason | None:
    if session.state != SessionState.COMPLETED:
        return None
    if keepalive_due(session, now):
        return RefreshReason.KEEPALIVE
    if warm_due(session, now):
        return RefreshReason.WARM
    return None


def retry_delay(failures: int) -> timedelta:
    return timedelta(seconds=RETRY_BACKOFF.delay(failures))


def backing_off(session: UserAuthSession, now: datetime) -> bool:
    """A transient failure was recent: wait before trying again, unless the refresh token
    would be gone by then."""
    retry_at = session.updated_at + retry_delay(session.refresh_failures)
    if now >= retry_at:
        return False
    expires = session.refresh_token_expires_at
    return expires is None or expires > retry_at


# --- The end of an authorization --------------------------------------------------------


class Window(enum.StrEnum):
    """From mild to severe."""

    DAYS_7 = "7d"
    DAYS_3 = "3d"
    EXPIRED = "expired"


WINDOW_OPENS_AT = {Window.DAYS_7: timedelta(days=7), Window.DAYS_3: timedelta(days=3)}


class EndCause(enum.StrEnum):
    CAP = "cap"
    REFRESH_TOKEN = "refresh_token"  # noqa: S105
    NEEDS_REAUTH = "needs_reauth"


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
    if left <= WINDOW_OPENS_AT[Window.DAYS_3]:
        return Window.DAYS_3
    if left <= WINDOW_OPENS_AT[Window.DAYS_7]:
        return Window.DAYS_7
    return None


def ending_filters(now: datetime) -> dict[Window, Q]:
    """Conditions on completed authorizations, one per window their end falls in (as
    `authorization_end` and `expiry_window` place them), for counting in one query."""

    def capped_by(at: datetime) -> Q:
        return Q(completed_at__lte=at - AUTHORIZATION_LIFETIME)

    def uncapped_by(at: datetime) -> Q:
        return Q(completed_at__isnull=True, refresh_token_expires_at__lte=at)

    ended = capped_by(now) | Q(refresh_token_expires_at__lte=now)
    within_3d = (
        capped_by(now + WINDOW_OPENS_AT[Window.DAYS_3])
        | Q(refresh_token_expires_at__lte=now + KEEPALIVE_REACH)
        | uncapped_by(now + WINDOW_OPENS_AT[Window.DAYS_3])
    )
    within_7d = capped_by(now + WINDOW_OPENS_AT[Window.DAYS_7]) | uncapped_by(
        now + WINDOW_OPENS_AT[Window.DAYS_7]
    )
    return {
        Window.EXPIRED: ended,
        Window.DAYS_3: within_3d & ~ended,
        Window.DAYS_7: within_7d & ~within_3d & ~ended,
    }


def expiring_counts(now: datetime) -> dict[str, int]:
    """Completed authorizations by the window their end falls in, counted in one query: the
    `larkauth_refresh_tokens_expiring{window}` gauge. Those that already need the user are
    `larkauth_authorizations{state="needs_reauth"}`."""
    counts = UserAuthSession.objects.filter(state=SessionState.COMPLETED).aggregate(
        **{window.value: Count("id", filter=q) for window, q in ending_filters(now).items()}
    )
    return {window.value: counts[window.value] for window in Window}
