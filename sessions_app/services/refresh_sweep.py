"""The refresh sweep (Celery beat, every 5 minutes): keep-alive and warm refreshes.

It is sized for scale. Feishu allows an app 50 token calls a second, so refreshing every
access token at 80 % of its two hours (15 calls per user per day) would cap an app near
250k users. The sweep refreshes only what `policy.refresh_reason` names: keep-alive (about
one call per user per five days) and warm (authorizations in use).

Candidates come from the partial indexes on both expiry columns, in keyset pages, most urgent
first. Each goes through `authorization_refresh` (single-flight) only after the same
predicate holds again under the row lock, so a second sweep, worker or token request that
refreshed first is recognised and every token is refreshed once. A transient failure leaves
the authorization to a later run (`policy.backing_off`).
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
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import DatabaseError, connections, transaction
from django.db.models import F, Q
from django.utils import timezone
from django_cryptography.utils.crypto import InvalidToken

from larkauth.errors import AuthenticationRequiredError, Failure
from sessions_app import metrics, selectors
from sessions_app.models import SessionState, TokenEvent, UserAuthSession
from sessions_app.policy import (
    ENDED_REASON,
    RefreshReason,
    backing_off,
    refresh_reason,
)
from sessions_app.services.attention import flagged_application_ids
from sessions_app.services.audit import record_event
from sessions_app.services.tokens import RefreshOutcome, RefreshResult, authorization_refresh

logger = logging.getLogger(__name__)

SWEEP_THREADS = 4
SWEEP_PAGE = 500


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

    @property
    def did_work(self) -> bool:
        return bool(self.retired or sum(self.outcomes.values()) or not self.finished)

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
    report.finished = _run(selectors.refresh_candidates(now, page_size), refresh, threads, deadline)
    logger.log(logging.INFO if report.did_work else logging.DEBUG, "Refresh sweep: %s", report)
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
            .only(*selectors.SWEEP_FIELDS)
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
