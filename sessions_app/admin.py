"""Operators' admin. Secrets are write-only and tokens are never rendered: pages show only
whether a token is present and when it expires."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey

from larkauth.errors import LarkauthError
from sessions_app import services
from sessions_app.models import (
    SECRET_FIELDS,
    Application,
    BeatRun,
    ProcessedEvent,
    ServiceClient,
    SessionState,
    TokenEvent,
    UserAuthSession,
)

# The library's own key model is unused: service keys are ServiceClient rows.
admin.site.unregister(APIKey)


class ApplicationForm(forms.ModelForm):
    """Secrets can be typed in but are never sent back to the browser; blank keeps them."""

    app_secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Write-only. Leave blank to keep the stored value.",
    )
    encrypt_key = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Write-only. Leave blank to keep the stored value.",
    )
    verification_token = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Write-only. Leave blank to keep the stored value.",
    )

    class Meta:
        model = Application
        fields = ("app_id", "name", "domain", "admin_open_ids", "is_active", *SECRET_FIELDS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The form must never carry stored secrets, not even as initial data.
        for name in SECRET_FIELDS:
            self.initial.pop(name, None)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        creating = self.instance.pk is None
        if creating and not cleaned.get("app_secret"):
            self.add_error("app_secret", "An application needs its app secret.")
        for name in SECRET_FIELDS:
            if not cleaned.get(name) and not creating:
                cleaned[name] = getattr(Application.objects.get(pk=self.instance.pk), name)
            elif not cleaned.get(name):
                cleaned[name] = ""
        return cleaned


class NeedsAttentionFilter(admin.SimpleListFilter):
    title = "needs attention"
    parameter_name = "attention"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Misconfigured"), ("no", "Working")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.exclude(attention_reason="")
        if self.value() == "no":
            return queryset.filter(attention_reason="")
        return queryset


@admin.register(Application)
class ApplicationAdmin(admin.ModelAdmin):
    form = ApplicationForm
    list_display = (
        "app_id",
        "name",
        "domain",
        "is_active",
        "secret_set",
        "attention_reason",
        "attention_since",
        "updated_at",
    )
    list_filter = ("domain", "is_active", NeedsAttentionFilter)
    search_fields = ("app_id", "name")
    # Set by larkauth when Feishu says the application is misconfigured; cleared by the next
    # call that succeeds (services/attention.py).
    readonly_fields = ("attention_reason", "attention_since")

    @admin.display(boolean=True, description="secret set")
    def secret_set(self, obj: Application) -> bool:
        return bool(obj.app_secret)


@dataclass(frozen=True)
class ObjectAction:
    """A button on an authorization's page: GET asks for confirmation, POST does it."""

    name: str  # in the URL
    action: str  # the bulk action it runs on this one row
    label: str
    question: str
    states: tuple[str, ...] = ()  # where it applies; empty: every state


OBJECT_ACTIONS = {
    a.name: a
    for a in (
        ObjectAction(
            "refresh",
            "refresh_now",
            "Refresh now",
            "Refresh this authorization's access token now? Feishu rotates its refresh token.",
            (SessionState.COMPLETED,),
        ),
        ObjectAction(
            "revoke",
            "revoke",
            "Revoke",
            "Revoke this authorization? Its tokens are wiped; services get no token for this "
            "user until the user authorizes again.",
            (SessionState.COMPLETED, SessionState.NEEDS_REAUTH),
        ),
        ObjectAction(
            "resend",
            "resend_card",
            "Send the card again",
            "Send this user the authorization card again? A pending card is reused.",
        ),
    )
}
TIMELINE_LENGTH = 100


@admin.register(UserAuthSession)
class UserAuthSessionAdmin(admin.ModelAdmin):
    list_display = (
        "user_name",
        "open_id",
        "app",
        "state",
        "auth_method",
        "has_access_token",
        "token_expires_at",
        "refresh_token_expires_at",
        "created_at",
    )
    list_filter = ("app", "state", "auth_method")
    # Find a person by name, email, open_id or user_id.
    search_fields = ("user_name", "email", "open_id", "user_id", "union_id")
    search_help_text = "Name, email, open_id, user_id or union_id."
    change_form_template = "admin/sessions_app/userauthsession/change_form.html"
    list_select_related = ("app",)
    date_hierarchy = "created_at"
    # Token, verifier and state-hash fields are left out entirely: not even a form widget.
    fields = (
        "id",
        "app",
        "state",
        "auth_method",
        "open_id",
        "user_id",
        "union_id",
        "user_name",
        "email",
        "mobile",
        "avatar_url",
        "message_id",
        "has_access_token",
        "has_refresh_token",
        "scope",
        "token_expires_at",
        "refresh_token_expires_at",
        "last_refreshed_at",
        "last_used_at",
        "refresh_failures",
        "failure_reason",
        "expiry_warnings_sent",
        "version",
        "created_at",
        "expires_at",
        "completed_at",
        "updated_at",
    )
    readonly_fields = fields
    # Each needs the change permission: staff who may only view see no action and cannot
    # post one (Django drops actions the user lacks the permission for).
    actions = ("resend_card", "refresh_now", "revoke")

    @admin.action(description="Send the authorization card again", permissions=["change"])
    def resend_card(self, request: HttpRequest, queryset: QuerySet[UserAuthSession]) -> None:
        sent = 0
        for session in queryset.select_related("app"):
            who = services.UserRef(open_id=session.open_id, user_id=session.user_id)
            try:
                result = services.auth_request(
                    session.app, who, force=True, actor=_admin_actor(request)
                )
            except LarkauthError as exc:
                self.message_user(request, f"{session}: {exc}", messages.ERROR)
                continue
            sent += int(result.created)
        self.message_user(request, f"Sent {sent} card(s); pending cards were reused.")

    @admin.action(description="Refresh the access token now", permissions=["change"])
    def refresh_now(self, request: HttpRequest, queryset: QuerySet[UserAuthSession]) -> None:
        refreshed = 0
        for session in queryset.filter(state="completed"):
            try:
                services.token_refresh(session.pk, force=True, actor=_admin_actor(request))
                refreshed += 1
            except LarkauthError as exc:
                self.message_user(request, f"{session}: {exc}", messages.ERROR)
        self.message_user(request, f"Refreshed {refreshed} authorization(s).")

    @admin.action(description="Revoke (wipe tokens)", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[UserAuthSession]) -> None:
        revoked = sum(
            services.authorization_revoke(s.app, s.open_id, actor=_admin_actor(request))
            for s in queryset.select_related("app")
        )
        self.message_user(request, f"Revoked {revoked} authorization(s).")

    @admin.display(boolean=True, description="access token")
    def has_access_token(self, obj: UserAuthSession) -> bool:
        return obj.has_access_token

    @admin.display(boolean=True, description="refresh token")
    def has_refresh_token(self, obj: UserAuthSession) -> bool:
        return obj.has_refresh_token

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    # --- the authorization's page: its timeline and one-row actions ----------------------

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<path:object_id>/act/<str:name>/",
                self.admin_site.admin_view(self.object_action_view),
                name=f"{self.opts.app_label}_{self.opts.model_name}_act",
            ),
            *super().get_urls(),
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        obj = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if obj is not None:
            context["timeline"] = timeline(obj)
            if self.has_change_permission(request, obj):
                context["object_actions"] = [
                    (a, reverse("admin:sessions_app_userauthsession_act", args=[obj.pk, a.name]))
                    for a in OBJECT_ACTIONS.values()
                    if not a.states or obj.state in a.states
                ]
        return super().change_view(request, object_id, form_url, context)

    def object_action_view(self, request: HttpRequest, object_id: str, name: str) -> HttpResponse:
        action = OBJECT_ACTIONS.get(name)
        obj = self.get_object(request, object_id)
        if action is None or obj is None:
            raise Http404("No such authorization or action.")
        # The same permission as the bulk actions: view-only staff get a 403.
        if not self.has_change_permission(request, obj):
            raise PermissionDenied
        change_url = reverse("admin:sessions_app_userauthsession_change", args=[obj.pk])
        if request.method == "POST":
            if action.states and obj.state not in action.states:
                self.message_user(
                    request, f"Nothing done: the authorization is {obj.state}.", messages.WARNING
                )
            else:
                getattr(self, action.action)(request, self.get_queryset(request).filter(pk=obj.pk))
            return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "title": f"{action.label}: are you sure?",
            "subtitle": str(obj),
            "opts": self.opts,
            "object": obj,
            "action": action,
            "change_url": change_url,
            "applies": not action.states or obj.state in action.states,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(
            request, "admin/sessions_app/userauthsession/confirm_action.html", context
        )


def timeline(session: UserAuthSession) -> list[TokenEvent]:
    """The audit events of this row and of the person's other rows in the app, newest first."""
    who = Q(session=session)
    if session.open_id:
        who |= Q(app_id=session.app_id, open_id=session.open_id)
    return list(TokenEvent.objects.filter(who).order_by("-created_at", "-pk")[:TIMELINE_LENGTH])


def _admin_actor(request: HttpRequest) -> str:
    return f"admin:{request.user.get_username()}"


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(TokenEvent)
class TokenEventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "kind", "app", "open_id", "actor")
    list_filter = ("kind", "app")
    search_fields = ("open_id", "actor")
    list_select_related = ("app",)
    date_hierarchy = "created_at"


@admin.register(ProcessedEvent)
class ProcessedEventAdmin(ReadOnlyAdmin):
    list_display = ("received_at", "event_id", "event_type", "channel")
    list_filter = ("event_type", "channel")
    search_fields = ("event_id",)


@admin.register(ServiceClient)
class ServiceClientAdmin(APIKeyModelAdmin):
    model = ServiceClient
    list_display = (*APIKeyModelAdmin.list_display, "application_list")  # type: ignore[assignment]
    filter_horizontal = ("applications",)

    @admin.display(description="applications")
    def application_list(self, obj: ServiceClient) -> str:
        return ", ".join(app.app_id for app in obj.applications.all())


@admin.register(BeatRun)
class BeatRunAdmin(ReadOnlyAdmin):
    list_display = ("task", "succeeded", "finished_at", "last_success_at", "result")
