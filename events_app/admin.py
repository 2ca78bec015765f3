"""Read-only admin of what the listeners report about their long connections."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils import timezone

from events_app.models import ListenerConnection


@admin.register(ListenerConnection)
class ListenerConnectionAdmin(admin.ModelAdmin):
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

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
