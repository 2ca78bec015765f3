from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import connection, models
from django.db.models import Q
from django.utils import timezone
from rest_framework_api_key.models import AbstractAPIKey

from larkauth import domains
from sessions_app.encryption import EncryptedTextField

# The encrypted, write-only fields of an application: never shown, loaded only for a call.
SECRET_FIELDS = ("app_secret", "encrypt_key", "verification_token")


class Application(models.Model):
    class Domain(models.TextChoices):
        FEISHU = "feishu", "Feishu (open.feishu.cn)"
        LARK = "lark", "Lark (open.larksuite.com)"

    app_id = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=100, blank=True)
    app_secret = EncryptedTextField()
    encrypt_key = EncryptedTextField(blank=True, default="")
    verification_token = EncryptedTextField(blank=True, default="")
    domain = models.CharField(max_length=10, choices=Domain.choices, default=Domain.FEISHU)
    admin_open_ids = models.JSONField(
        default=list, blank=True, help_text="open_ids warned before refresh tokens expire."
    )
    is_active = models.BooleanField(default=True)
    # Set when Feishu says the application itself is misconfigured (a reset secret, refresh
    # switched off): the refresh sweep leaves its authorizations alone, but for one probe a
    # run, until a call succeeds again.
    attention_reason = models.CharField(max_length=64, blank=True, default="")
    attention_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["app_id"]

    def __str__(self) -> str:
        return self.name or self.app_id

    @property
    def hosts(self) -> domains.Domains:
        return domains.application_domains(
            self.domain == self.Domain.LARK, settings.LARK_DOMAIN, settings.LARK_ACCOUNTS_DOMAIN
        )

    @property
    def api_base_url(self) -> str:
        return self.hosts.api

    @property
    def accounts_base_url(self) -> str:
        return self.hosts.accounts


class SessionState(models.TextChoices):
    PENDING = "pending"
    COMPLETED = "completed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    FAILED = "failed"
    NEEDS_REAUTH = "needs_reauth"
    REVOKED = "revoked"
    # A completed authorization replaced by a newer one for the same user.
    SUPERSEDED = "superseded"


class AuthMethod(models.TextChoices):
    CARD = "card"
    LINK = "link"
    DEVICE = "device"


class UserAuthSession(models.Model):
    """One authorization attempt; the latest `completed` row per (app, open_id) is the
    user's authorization."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    app = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="sessions")
    open_id = models.CharField(max_length=64, blank=True, default="")
    user_id = models.CharField(max_length=64, blank=True, default="")
    union_id = models.CharField(max_length=64, blank=True, default="")
    user_name = models.CharField(max_length=255, blank=True, default="")
    mobile = models.CharField(max_length=32, blank=True, default="")
    email = models.CharField(max_length=255, blank=True, default="")
    avatar_url = models.URLField(max_length=1024, blank=True, default="")

    state = models.CharField(
        max_length=16, choices=SessionState.choices, default=SessionState.PENDING
    )
    auth_method = models.CharField(
        max_length=8, choices=AuthMethod.choices, default=AuthMethod.CARD
    )
    state_token = models.CharField(
        max_length=64,
        null=True,
        blank=True,
        unique=True,
        help_text="SHA-256 of the OAuth state parameter; cleared once used.",
    )
    pkce_verifier = EncryptedTextField(null=True, blank=True)
    message_id = models.CharField(max_length=64, blank=True, default="")

    access_token = EncryptedTextField(null=True, blank=True)
    refresh_token = EncryptedTextField(null=True, blank=True)
    scope = models.TextField(blank=True, default="")
    token_expires_at = models.DateTimeField(null=True, blank=True)
    refresh_token_expires_at = models.DateTimeField(null=True, blank=True)
    last_refreshed_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    refresh_failures = models.PositiveIntegerField(default=0)
    failure_reason = models.CharField(max_length=64, blank=True, default="")
    expiry_warnings_sent = models.JSONField(default=list, blank=True)
    # When `sync_user_info` last asked the directory about this user (whatever it answered):
    # each run starts with the users asked least recently, so an interrupted run resumes.
    user_info_synced_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(default=0)

    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    if TYPE_CHECKING:
        app_id: int

    class Meta:
        db_table = "user_auth_sessions"
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                name="ck_auth_method_valid",
                condition=Q(auth_method__in=AuthMethod.values),
            ),
            models.CheckConstraint(
                name="ck_state_valid",
                condition=Q(state__in=SessionState.values),
            ),
            models.CheckConstraint(
                name="ck_user_id_or_open_id",
                condition=~Q(open_id="") | ~Q(user_id=""),
            ),
            models.CheckConstraint(
                name="ck_token_data_present",
                condition=~Q(state=SessionState.COMPLETED)
                | Q(
                    access_token__isnull=False,
                    refresh_token__isnull=False,
                    token_expires_at__isnull=False,
                    refresh_token_expires_at__isnull=False,
                ),
            ),
            # One live card per user: concurrent requests reuse it instead of sending two.
            models.UniqueConstraint(
                name="uq_auth_session_one_pending_card",
                fields=["app", "open_id"],
                condition=Q(state=SessionState.PENDING, auth_method=AuthMethod.CARD)
                & ~Q(open_id=""),
            ),
            models.UniqueConstraint(
                name="uq_auth_session_one_completed",
                fields=["app", "open_id"],
                condition=Q(state=SessionState.COMPLETED),
            ),
        ]
        indexes = [
            models.Index(name="idx_auth_session_user", fields=["app", "user_id"]),
            models.Index(name="idx_auth_session_open_id", fields=["app", "open_id"]),
            models.Index(
                name="idx_auth_session_token_expires",
                fields=["token_expires_at"],
                condition=Q(state=SessionState.COMPLETED),
            ),
            models.Index(
                name="idx_auth_session_rt_expires",
                fields=["refresh_token_expires_at"],
                condition=Q(state=SessionState.COMPLETED),
            ),
            models.Index(
                name="idx_auth_session_pending",
                fields=["expires_at"],
                condition=Q(state=SessionState.PENDING),
            ),
            models.Index(name="idx_auth_session_created", fields=["created_at"]),
            models.Index(
                name="idx_auth_session_user_sync",
                fields=["app", "user_info_synced_at"],
                condition=Q(state=SessionState.COMPLETED),
            ),
        ]

    def __str__(self) -> str:
        who = self.user_name or self.open_id or self.user_id
        return f"{who} ({self.state})"

    @property
    def has_access_token(self) -> bool:
        return self.access_token is not None

    @property
    def has_refresh_token(self) -> bool:
        return self.refresh_token is not None

    def token_valid_at(self, now: datetime) -> bool:
        return (
            self.state == SessionState.COMPLETED
            and self.access_token is not None
            and self.token_expires_at is not None
            and self.token_expires_at > now
        )


class TokenEvent(models.Model):
    """Append-only audit log. Never holds a secret."""

    class Kind(models.TextChoices):
        CREATED = "created"
        CARD_SENT = "card_sent"
        COMPLETED = "completed"
        REJECTED = "rejected"
        FAILED = "failed"
        REFRESHED = "refreshed"
        REFRESH_FAILED = "refresh_failed"
        NEEDS_REAUTH = "needs_reauth"
        REVOKED = "revoked"
        EXPIRED = "expired"
        TOKEN_ISSUED = "token_issued"  # noqa: S105

    session = models.ForeignKey(
        UserAuthSession, null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    app = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="token_events")
    open_id = models.CharField(max_length=64, blank=True, default="")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    actor = models.CharField(max_length=128, blank=True, default="")
    detail = models.JSONField(default=dict, blank=True)
    # When it happened: token hand-outs are written in batches, later (services/audit.py).
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(name="idx_token_event_user", fields=["app", "open_id"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.open_id} by {self.actor}"


class ProcessedEventManager(models.Manager["ProcessedEvent"]):
    def claim(self, event_id: str, event_type: str = "", channel: str = "") -> bool:
        """Insert the id's row (in the caller's transaction); False when it already exists.

        One statement: `ON CONFLICT DO NOTHING` spares the savepoint an `IntegrityError`
        would need, and waits for a concurrent insert of the same id just like the unique
        index does (PostgreSQL, SQLite ≥ 3.24).
        """
        table = self.model._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (event_id, event_type, channel, received_at)"  # noqa: S608
                " VALUES (%s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING",
                [event_id, event_type[:64], channel, timezone.now()],
            )
            return cursor.rowcount == 1


class ProcessedEvent(models.Model):
    """Ids already handled, for exactly-once: Feishu events across channels and listeners,
    and batches of token audit rows (`audit:<batch>`)."""

    event_id = models.CharField(max_length=128, unique=True)
    event_type = models.CharField(max_length=64, blank=True, default="")
    channel = models.CharField(max_length=8, blank=True, default="")
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = ProcessedEventManager()

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return self.event_id


class ServiceClient(AbstractAPIKey):
    """An API key of an internal service, allowed to read tokens of some applications."""

    applications = models.ManyToManyField(Application, related_name="service_clients")

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "service client"
        verbose_name_plural = "service clients"


class BeatRun(models.Model):
    """The last run of each beat-scheduled task, for the admin overview: one row per task,
    overwritten by every run (written from Celery's task_success/task_failure signals)."""

    task = models.CharField(max_length=200, unique=True)
    succeeded = models.BooleanField()
    result = models.CharField(
        max_length=300, blank=True, default="", help_text="What it returned, or its error."
    )
    finished_at = models.DateTimeField()
    last_success_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["task"]
        verbose_name = "beat run"

    def __str__(self) -> str:
        return f"{self.task}: {'ok' if self.succeeded else 'failed'} at {self.finished_at}"
