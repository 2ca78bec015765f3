"""`/metrics`: every process's counters (prometheus_client multiprocess mode when
PROMETHEUS_MULTIPROC_DIR is set: web workers, Celery workers and listeners on one host write
there) plus gauges read from the database (and Redis) at scrape time, so they are right whichever
process changed the rows.

With `METRICS_TOKEN` set, only a request with `Authorization: Bearer <METRICS_TOKEN>` is
answered: a scrape runs database counts, so it is not for anyone who can reach the port."""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterator

from django.conf import settings
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from config.multiproc import ProcessFilesCollector


class DatabaseCollector(Collector):
    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("larkauth_authorizations", "", labels=["state"])
        yield GaugeMetricFamily("larkauth_refresh_tokens_expiring", "", labels=["window"])
        yield GaugeMetricFamily("larkauth_token_audit_buffered", "")
        yield GaugeMetricFamily("larkauth_application_needs_attention", "", labels=["app_id"])

    def collect(self) -> Iterator[Metric]:
        from sessions_app.models import Application, SessionState, UserAuthSession
        from sessions_app.policy import expiring_counts
        from sessions_app.services.audit import token_audit_buffered

        authorizations = GaugeMetricFamily(
            "larkauth_authorizations", "Authorizations by state.", labels=["state"]
        )
        counts = dict(
            UserAuthSession.objects.filter(
                state__in=[SessionState.COMPLETED, SessionState.NEEDS_REAUTH, SessionState.REVOKED]
            )
            .values_list("state")
            .annotate(n=Count("id"))
            .values_list("state", "n")
        )
        for state in (SessionState.COMPLETED, SessionState.NEEDS_REAUTH, SessionState.REVOKED):
            authorizations.add_metric([state.value], counts.get(state, 0))
        yield authorizations

        expiring = GaugeMetricFamily(
            "larkauth_refresh_tokens_expiring",
            "Completed authorizations by when they really end: 7d (3 to 7 days left), "
            "3d (up to 3 days), expired (ended, not yet marked needs_reauth).",
            labels=["window"],
        )
        for window, count in expiring_counts(timezone.now()).items():
            expiring.add_metric([window], count)
        yield expiring

        attention = GaugeMetricFamily(
            "larkauth_application_needs_attention",
            "1 while Feishu says the application itself is misconfigured (admin shows why).",
            labels=["app_id"],
        )
        for app_id, reason in Application.objects.filter(is_active=True).values_list(
            "app_id", "attention_reason"
        ):
            attention.add_metric([app_id], 1 if reason else 0)
        yield attention

        buffered = token_audit_buffered()
        if buffered is not None:
            yield GaugeMetricFamily(
                "larkauth_token_audit_buffered",
                "Tokens handed out whose audit row waits in Redis for flush_token_audit.",
                value=buffered,
            )


_database_registry = CollectorRegistry()
_database_registry.register(DatabaseCollector())


def refusal(authorization: str, token: str) -> tuple[int, dict[str, str]] | None:
    """Why a scrape with this `Authorization` header is refused (status, JSON body), or None.
    Without a configured token every scrape is answered."""
    if not token:
        return None
    scheme, _, given = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return 401, {"code": "not_authenticated", "detail": "Send Authorization: Bearer <token>."}
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return 403, {"code": "permission_denied", "detail": "The bearer token is not valid."}
    return None


def metrics_view(request: HttpRequest) -> HttpResponse:
    refused = refusal(request.headers.get("Authorization", ""), settings.METRICS_TOKEN)
    if refused:
        status, reason = refused
        response = JsonResponse(reason, status=status)
        if status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    registry = REGISTRY
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        ProcessFilesCollector(registry)
    body = generate_latest(registry) + generate_latest(_database_registry)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
