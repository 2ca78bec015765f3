"""Applications that need an operator: Feishu said the application itself is misconfigured.

A reset app secret answers every refresh with 20002. That says nothing about the users'
grants, so no authorization changes; the application is flagged instead (admin, `/metrics`,
alert `LarkauthApplicationMisconfigured`), and the refresh sweep stops calling Feishu for it
but for one probe a run. The first call that succeeds again clears the flag.
"""

from __future__ import annotations

import logging

from django.db.models import Q
from django.utils import timezone

from larkauth.errors import FeishuError
from sessions_app.models import Application

logger = logging.getLogger(__name__)


def application_flag(app: Application, exc: FeishuError) -> None:
    """Flag the application (once: the first failure's time is kept)."""
    reason = f"{exc.api}:{exc.code or exc.http_status or 'error'}"[:64]
    flagged = Application.objects.filter(pk=app.pk, attention_reason="").update(
        attention_reason=reason, attention_since=timezone.now()
    )
    if flagged:
        logger.error(
            "Application %s is misconfigured (%s): authorizations are kept; fix it in the "
            "Feishu console or in admin",
            app.app_id,
            exc,
        )
    app.attention_reason = app.attention_reason or reason


def application_unflag(app: Application) -> None:
    """A call succeeded: clear the flag if it is set (one cheap UPDATE otherwise none)."""
    if not app.attention_reason:
        return
    cleared = Application.objects.filter(Q(pk=app.pk) & ~Q(attention_reason="")).update(
        attention_reason="", attention_since=None
    )
    if cleared:
        logger.info("Application %s works again: attention flag cleared", app.app_id)
    app.attention_reason = ""
    app.attention_since = None


def flagged_application_ids() -> set[int]:
    return set(Application.objects.exclude(attention_reason="").values_list("pk", flat=True))
