"""What the listener processes report about their long connections (see `events_app.ws.status`)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models

from sessions_app.models import Application


class ListenerConnection(models.Model):
    """One listener process's view of one application's long connection.

    Written by the listener when the connection comes up, fails or is closed, and every
    WEBSOCKET_HEARTBEAT_INTERVAL: a row whose heartbeat is old belongs to a listener that
    is gone (killed, or cut off from the database).
    """

    class Status(models.TextChoices):
        CONNECTED = "connected"
        # A failed attempt (or a lost connection): retried after a back-off.
        BACKING_OFF = "backing_off"
        # WEBSOCKET_MAX_RECONNECT_RETRIES attempts in a row failed (still retried).
        FAILED = "failed"
        # Closed by the listener: SIGTERM, or the application was changed or deactivated.
        STOPPED = "stopped"

    # A listener writes its heartbeat every WEBSOCKET_HEARTBEAT_INTERVAL; one that missed
    # this many is taken for gone (killed, or cut off from the database).
    MISSED_HEARTBEATS = 3

    app = models.ForeignKey(
        Application, on_delete=models.CASCADE, related_name="listener_connections"
    )
    listener_id = models.CharField(max_length=255, help_text="host:pid of the listener process")
    status = models.CharField(max_length=16, choices=Status.choices)
    failures = models.PositiveIntegerField(default=0, help_text="Failed attempts in a row.")
    last_error = models.CharField(max_length=300, blank=True, default="")
    status_changed_at = models.DateTimeField()
    last_heartbeat_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["app", "listener_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["app", "listener_id"], name="one_listener_connection_per_app"
            )
        ]

    def __str__(self) -> str:
        return f"{self.app} on {self.listener_id}: {self.status}"

    @classmethod
    def heartbeat_window(cls) -> timedelta:
        """How old a heartbeat may be for its listener to count as alive."""
        return timedelta(seconds=cls.MISSED_HEARTBEATS * settings.WEBSOCKET_HEARTBEAT_INTERVAL)
