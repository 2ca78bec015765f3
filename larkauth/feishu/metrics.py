"""Prometheus metrics of outgoing Feishu calls: one sample per HTTP attempt."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

feishu_api_requests = Counter(
    "larkauth_feishu_api_requests_total",
    "Feishu API HTTP requests, by API and outcome (success, retryable_error, permanent_error).",
    ["api", "outcome"],
)
feishu_api_request_duration = Histogram(
    "larkauth_feishu_api_request_duration_seconds",
    "Duration of Feishu API HTTP requests.",
    ["api"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
