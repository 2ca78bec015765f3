"""larkauth's admin site: the operator's console. Titled for larkauth; its index opens with
an overview per application (`sessions_app.overview`) above Django's list of models.

Installed as the default admin site (`LarkauthAdminConfig` in INSTALLED_APPS in place of
`django.contrib.admin`), so every `@admin.register` lands here.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.http import HttpRequest
from django.template.response import TemplateResponse


class LarkauthAdminSite(admin.AdminSite):
    site_header = "larkauth console"
    site_title = "larkauth"
    index_title = "Overview"
    index_template = "admin/larkauth_index.html"

    def index(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> TemplateResponse:
        from sessions_app import overview

        context = {
            "overview": overview.build(),
            "time_zone": settings.TIME_ZONE,
            **(extra_context or {}),
        }
        return super().index(request, context)


class LarkauthAdminConfig(AdminConfig):
    default_site = "larkauth.admin_site.LarkauthAdminSite"
