"""Background upkeep: the refresh sweep, the user-info sync, expiring cards, deleting old rows.

The refresh sweep is sized for scale. Feishu allows an app 50 token calls a second, so
refreshing every access token at 80 % of its two hours (15 calls per user per day) would cap
an app near 250k users. The sweep refreshes only

- keep-alive: a refresh token in its last AUTH_KEEPALIVE_MARGIN (at most half its lifetime),
  about one call per user per five days. Never the last refresh token before the 365-day cap
  (FACTS.md §2.1): refreshing it cannot extend the authorization.
- warm: access tokens past AUTH_TOKEN_REFRESH_THRESHOLD of authorizations granted or used in
  the last AUTH_WARM_WINDOW, so that active callers rarely wait for a refresh.

Candidates come from the partial indexes on both expiry columns, in keyset pages, most urgent
first. Each goes through `token_refresh` (single-flight) only after the same predicate holds
again under the row lock, so a second sweep, worker or token request that refreshed first is
recognised and every token is refreshed once. A transient failure leaves the authorization
to a later run; it backs off from `refresh_failures` and `updated_at` (the row's last change,
which a failed refresh sets): 4 minutes (the next run) doubling to about an hour, but never
past the end of its refresh token.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import DatabaseError, connections, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from django_cryptography.utils.crypto import InvalidToken

from larkauth.backoff import Backoff
from larkauth.errors import AuthenticationRequiredError, Failure, FeishuError
from larkauth.feishu import ContactUser, FeishuClient
from sessions_app import metrics
from sessions_app.feishu import client_for
from sessions_app.models import (
    Application,
    SessionState,
    TokenEvent,
    UserAuthSession,
)
from sessions_app.services.attention import flagged_application_ids
from sessions_app.services.authorization import record_event, sessions_expire_stale
from sessions_app.services.tokens import (
    RefreshOutcome,
    RefreshResult,
    authorization_refresh,
    needs_refresh,
)

logger = logging.getLogger(__name__)

# Every authorization ends this long after the user granted it (FACTS.md §2.1).
AUTHORIZATION_LIFETIME = timedelta(days=365)
# Our `completed_at` trails Feishu's grant by the code exchange: a refresh token ending this
# close to the cap is the last one.
CAP_SLACK = timedelta(minutes=10)
# Access tokens live "about 2 h, not fixed": look ahead as if they could live twice that.
LONGEST_ACCESS_TOKEN = timedelta(hours=4)
# After a transient failure: 4 min (the next run) doubling to 64 min. No jitter: the delay
# is recomputed from `refresh_failures` and `updated_at` on every run.
RETRY_BACKOFF = Backoff(base=4 * 60, cap=64 * 60, jitter=0)
SWEEP_THREADS = 4
SWEEP_PAGE = 500
ENDED_REASON = "refresh_token_expired"

# What the sweep's predicates read: loading only these skips decrypting the tokens.
_PREDICATE_FIELDS = (
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


# --- When an authorization is due ------------------------------------------------------


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


# --- The sweep -----------------------------------------------------------------------------


class Outcome(enum.StrEnum):
    REFRESHED = "refreshed"
    NOT_DUE = "not_due"  # refreshed meanwhile (another worker, the token API) or ended
    BUSY = "busy"  # another process holds the row right now and does the work
    BACKING_OFF = "backing_off"
    NEEDS_REAUTH = "needs_reauth"
    FAILED = "failed"  # transient: a later run tries again
    # The application is misconfigured (services/attention.py): left alone but for a probe.
    APP_NEEDS_ATTENTION = "app_needs_attention"
    UNDECRYPTABLE = "undecryptable"  # no configured key decrypts a value: skipped, recorded


@dataclass
class SweepReport:
    outcomes: Counter[str] = field(default_factory=Counter)
    refreshed_by_reason: Counter[str] = field(default_factory=Counter)
    retired: int = 0  # ended without a call: see `authorizations_retire_ended`
    finished: bool = True  # False: the time budget ran out, the next run goes on

    def add(self, outcome: Outcome, reason: RefreshReason | None) -> None:
        self.outcomes[outcome] += 1
        if outcome == Outcome.REFRESHED and reason is not None:
            self.refreshed_by_reason[reason] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            **{outcome.value: self.outcomes[outcome] for outcome in Outcome},
            **{f"refreshed_{r.value}": self.refreshed_by_reason[r] for r in RefreshReason},
            "retired": self.retired,
            "finished": self.finished,
        }

    def __str__(self) -> str:
        o, r = self.outcomes, self.refreshed_by_reason
        text = (
            f"Refreshed {o[Outcome.REFRESHED]} (keep-alive {r[RefreshReason.KEEPALIVE]}, "
            f"warm {r[RefreshReason.WARM]}); needs re-authorization {o[Outcome.NEEDS_REAUTH]}; "
            f"failed, retried later {o[Outcome.FAILED]}; backing off {o[Outcome.BACKING_OFF]}; "
            f"already done elsewhere {o[Outcome.NOT_DUE] + o[Outcome.BUSY]}; "
            f"skipped, application needs attention {o[Outcome.APP_NEEDS_ATTENTION]}; "
            f"ended (refresh and access token expired) {self.retired}."
        )
        if o[Outcome.UNDECRYPTABLE]:
            text += (
                f" Skipped {o[Outcome.UNDECRYPTABLE]} that no key of LARKAUTH_ENCRYPTION_KEYS "
                "decrypts (see the log and their failure_reason)."
            )
        return text if self.finished else text + " Time budget used up: the next run goes on."


def tokens_refresh_expiring(
    *,
    threads: int = SWEEP_THREADS,
    time_budget: float | None = None,
    page_size: int = SWEEP_PAGE,
    actor: str = "beat",
) -> SweepReport:
    """Refresh every authorization due for keep-alive or warm refresh, each exactly once.

    `threads` refresh in parallel (the Feishu client waits for the app's rate limit);
    with 1 the work runs in the calling thread. `time_budget` (seconds) stops taking new
    candidates once spent.
    """
    now = timezone.now()
    deadline = None if time_budget is None else time.monotonic() + time_budget
    report = SweepReport()
    lock = threading.Lock()
    gate = _AttentionGate(flagged_application_ids())

    def refresh(pk: UUID) -> None:
        outcome, reason = _refresh_if_due(pk, actor, gate)
        with lock:
            report.add(outcome, reason)

    report.retired = authorizations_retire_ended(now, actor=actor)
    report.finished = _run(_candidates(now, page_size), refresh, threads, deadline)
    logger.info("Refresh sweep: %s", report)
    return report


def authorizations_retire_ended(now: datetime, *, actor: str = "beat") -> int:
    """Completed authorizations whose refresh token and access token have both expired
    need the user again: no refresh can save them (Feishu answers 20037), so say so now,
    without a call, rather than when a service next asks. States, admin and metrics stay
    true for authorizations nobody uses, such as those past the 365-day cap."""
    ended = Q(
        state=SessionState.COMPLETED,
        refresh_token_expires_at__lte=now,
        token_expires_at__lte=now,
    )
    retired = 0
    while batch := list(
        UserAuthSession.objects.filter(ended).only("id", "app_id", "open_id")[:SWEEP_PAGE]
    ):
        for session in batch:
            # The same condition again: a refresh that committed meanwhile wins.
            if UserAuthSession.objects.filter(ended, pk=session.pk).update(
                state=SessionState.NEEDS_REAUTH,
                failure_reason=ENDED_REASON,
                access_token=None,
                refresh_token=None,
                version=F("version") + 1,
                updated_at=timezone.now(),
            ):
                record_event(session, TokenEvent.Kind.NEEDS_REAUTH, actor, reason=ENDED_REASON)
                metrics.TOKEN_REFRESH.labels("expired").inc()
                retired += 1
    return retired


def _candidates(now: datetime, page_size: int) -> Iterator[UUID]:
    """Keep-alive candidates, most urgent first, then warm ones; each once."""
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
    rows = rows.only(*_PREDICATE_FIELDS).order_by(order, "id")
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


class _AttentionGate:
    """Which applications the sweep leaves alone (misconfigured), and their one probe a run:
    the probe's success clears the flag and lets the rest of that application through."""

    def __init__(self, flagged: set[int]) -> None:
        self._flagged = flagged
        self._probed: set[int] = set()
        self._lock = threading.Lock()

    def admit(self, app_pk: int) -> bool:
        with self._lock:
            if app_pk not in self._flagged:
                return True
            if app_pk in self._probed:
                return False
            self._probed.add(app_pk)
            return True

    def record(self, app_pk: int, result: RefreshResult) -> None:
        with self._lock:
            if result.failure is Failure.APP_MISCONFIGURED:
                self._flagged.add(app_pk)
                self._probed.add(app_pk)  # that call was this run's probe
            elif result.outcome is RefreshOutcome.REFRESHED:
                self._flagged.discard(app_pk)


def _refresh_if_due(
    pk: UUID, actor: str, gate: _AttentionGate | None = None
) -> tuple[Outcome, RefreshReason | None]:
    """Refresh one authorization if it is still due once its row lock is held.

    The lock is taken here, then again (re-entrant within this transaction) by
    `authorization_refresh`, so checking and refreshing are one step: another process that
    refreshed first has made the predicate false by the time we read the row. A row locked
    right now is skipped: its holder refreshes it.
    """
    gate = gate or _AttentionGate(flagged_application_ids())
    with transaction.atomic():
        session = (
            UserAuthSession.objects.select_for_update(skip_locked=True, no_key=True)
            .only(*_PREDICATE_FIELDS)
            .filter(pk=pk)
            .first()
        )
        if session is None:
            return Outcome.BUSY, None
        now = timezone.now()
        reason = refresh_reason(session, now)
        if reason is None:
            return Outcome.NOT_DUE, None
        if backing_off(session, now):
            return Outcome.BACKING_OFF, reason
        if not gate.admit(session.app_id):
            return Outcome.APP_NEEDS_ATTENTION, reason
        try:
            result = authorization_refresh(pk, force=True, actor=f"{actor}:{reason}")
        except AuthenticationRequiredError:
            return Outcome.NOT_DUE, None  # no longer completed
        except InvalidToken:
            _record_undecryptable(pk, actor)
            return Outcome.UNDECRYPTABLE, reason
    gate.record(session.app_id, result)
    if result.outcome is RefreshOutcome.REFRESHED:
        return Outcome.REFRESHED, reason
    if result.failure is Failure.GRANT_DEAD:
        return Outcome.NEEDS_REAUTH, reason
    if result.failure is Failure.APP_MISCONFIGURED:
        return Outcome.APP_NEEDS_ATTENTION, reason
    return Outcome.FAILED, reason


UNDECRYPTABLE_REASON = "undecryptable"


def _record_undecryptable(pk: UUID, actor: str) -> None:
    """No key of LARKAUTH_ENCRYPTION_KEYS decrypts a value this refresh needs (a key dropped
    too early, a damaged column). Say which, where admin shows it, and back off like a
    transient failure so the row never blocks the sweep. Nothing is wiped: putting the
    key back heals it."""
    session = UserAuthSession.objects.only("id", "app_id", "open_id").get(pk=pk)
    try:
        UserAuthSession.objects.only("id", "access_token", "refresh_token").get(pk=pk)
    except InvalidToken:
        part = "authorization"
    else:
        part = "application"
    failure_reason = f"{UNDECRYPTABLE_REASON}:{part}"
    UserAuthSession.objects.filter(pk=pk).update(
        failure_reason=failure_reason,
        refresh_failures=F("refresh_failures") + 1,
        updated_at=timezone.now(),
    )
    record_event(session, TokenEvent.Kind.REFRESH_FAILED, actor, reason=failure_reason)
    logger.error(
        "Refresh sweep: authorization %s skipped, a stored value of its %s cannot be decrypted "
        "with any key of LARKAUTH_ENCRYPTION_KEYS",
        pk,
        part,
    )


class _Feed:
    """The candidates, shared by the sweep's threads: each is handed out once, and none
    once the deadline has passed or a thread has failed."""

    def __init__(self, items: Iterable[UUID], deadline: float | None) -> None:
        self._items = iter(items)
        self._deadline = deadline
        self._lock = threading.Lock()
        self._stopped = False
        self.finished = True  # False: the deadline stopped the feed early

    def __iter__(self) -> Iterator[UUID]:
        return self

    def __next__(self) -> UUID:
        with self._lock:
            if self._stopped:
                raise StopIteration
            if self._deadline is not None and time.monotonic() >= self._deadline:
                self.finished, self._stopped = False, True
                raise StopIteration
            try:
                return next(self._items)
            except StopIteration:
                self._stopped = True
                raise

    def stop(self) -> None:
        with self._lock:
            self._stopped = True


def _run(
    items: Iterable[UUID],
    work: Callable[[UUID], None],
    threads: int,
    deadline: float | None,
) -> bool:
    """Do `work` for each of `items` in `threads` threads; False when the deadline stopped
    the feed early. The first error stops the feed and is raised here."""
    feed = _Feed(items, deadline)

    def worker() -> None:
        try:
            for item in feed:
                _guarded(work, item)
        except BaseException:
            feed.stop()
            raise
        finally:
            if threads > 1:
                connections.close_all()  # this thread's own connections

    if threads <= 1:
        worker()
    else:
        with ThreadPoolExecutor(threads, thread_name_prefix="refresh") as pool:
            futures = [pool.submit(worker) for _ in range(threads)]
        for future in futures:
            future.result()
    return feed.finished


def _guarded(work: Callable[[UUID], None], item: UUID) -> None:
    """A database error on one authorization (a lock timeout, a dropped connection) must not
    stop the sweep: the row stays due and a later run takes it."""
    try:
        work(item)
    except DatabaseError:
        logger.exception("Refresh sweep: authorization %s failed, left for the next run", item)


# --- User info ---------------------------------------------------------------------------


@dataclass
class SyncReport:
    checked: int = 0
    updated: int = 0
    failed: int = 0
    revoked: int = 0  # the user left the company: authorization revoked, tokens wiped
    finished: bool = True  # False: the time budget ran out; the next run goes on

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "checked": self.checked,
            "updated": self.updated,
            "failed": self.failed,
            "revoked": self.revoked,
        }
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
    apps = [app] if app is not None else Application.objects.filter(is_active=True)
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
    logger.info("User info sync: %s", report)
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


# --- Old sessions ------------------------------------------------------------------------


def sessions_expire_all_stale() -> int:
    """Expire every pending session past its time (cards updated), a page at a time."""
    total = 0
    while True:
        expired = sessions_expire_stale()
        total += expired
        if expired < EXPIRE_PAGE:
            return total


EXPIRE_PAGE = 500  # what one `sessions_expire_stale` call handles at most
