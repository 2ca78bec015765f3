"""Read-only admin of what the listeners report about their long connections."""

from __future__ import annotations

from django.contrib import admin
from django.utils import timezone

from events_app.models import ListenerConnection
from sessions_app.admin import ReadOnlyAdmin


@admin.register(ListenerConnection)
class ListenerConnectionAdmin(ReadOnlyAdmin):
    list_display = (
        "app",
        "listener_id",
        "status",
        "live",
        "failures",
        "last_error",
        "status_changed_at",
        "last_heartbeat_at",
    )
    list_filter = ("status", "app")
    list_select_related = ("app",)
    search_fields = ("app__app_id", "listener_id")

    @admin.display(boolean=True, description="listener alive")
    def live(self, obj: ListenerConnection) -> bool:
        return obj.last_heartbeat_at >= timezone.now() - ListenerConnection.heartbeat_window()
