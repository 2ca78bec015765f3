"""Prometheus metrics of the authorization flow. Names are the product contract."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

AUTH_SESSIONS = Counter(
    "larkauth_auth_sessions_total", "Authorization sessions by outcome.", ["app_id", "outcome"]
)
AUTH_FAILURES = Counter("larkauth_auth_failures_total", "Authorization failures.", ["reason"])
AUTH_SESSION_DURATION = Histogram(
    "larkauth_auth_session_duration_seconds",
    "From session opened to authorization completed.",
    buckets=(5, 10, 20, 30, 60, 120, 300, 600, 1800),
)
TOKEN_REQUESTS = Counter("larkauth_token_requests_total", "Token requests by result.", ["result"])
TOKEN_REFRESH = Counter("larkauth_token_refresh_total", "Token refreshes by outcome.", ["outcome"])
