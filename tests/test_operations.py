"""What operators rely on: health endpoints, /metrics, and deploy/ matching the code."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

import events_app.metrics  # noqa: F401  (registers the metrics)
import larkauth.feishu.metrics  # noqa: F401
import sessions_app.metrics  # noqa: F401
from config.metrics import _database_registry

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = {  # PRODUCT.md "Observability"
    "larkauth_auth_sessions_total",
    "larkauth_auth_failures_total",
    "larkauth_auth_session_duration_seconds",
    "larkauth_token_requests_total",
    "larkauth_token_refresh_total",
    "larkauth_authorizations",
    "larkauth_refresh_tokens_expiring",
    "larkauth_card_actions_total",
    "larkauth_events_total",
    "larkauth_feishu_api_requests_total",
    "larkauth_feishu_api_request_duration_seconds",
    "larkauth_websocket_connection_status",
    "larkauth_websocket_reconnects_total",
}


def _exported_names() -> set[str]:
    names = set(REGISTRY._names_to_collectors) | set(_database_registry._names_to_collectors)
    return {name for name in names if name.startswith("larkauth_")}


def _names_in(text: str) -> set[str]:
    return set(re.findall(r"larkauth_[a-z_]+", text))


def test_the_code_exports_every_metric_of_the_contract() -> None:
    exported = _exported_names()
    missing = {name for name in CONTRACT if name not in exported}
    assert not missing


def test_alerts_and_dashboard_use_only_exported_metrics() -> None:
    alerts = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    exprs = " ".join(rule["expr"] for group in alerts["groups"] for rule in group["rules"])
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/larkauth.json").read_text())
    panels = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    exported = _exported_names()
    for used in _names_in(exprs) | _names_in(panels):
        base = re.sub(r"_(bucket|sum|count)$", "", used)
        assert used in exported or base in exported, used
    # Every metric of the contract is on the dashboard.
    assert {re.sub(r"_(bucket)$", "", n) for n in _names_in(panels)} >= CONTRACT


def test_healthz_answers(client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_checks_database_migrations_and_broker(client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json()["checks"] == {"database": "ok", "migrations": "ok", "broker": "ok"}


@pytest.mark.django_db
def test_readyz_fails_when_the_broker_is_unreachable(client, settings) -> None:
    from config.celery import app

    previous = app.conf["broker_url"]
    app.conf["broker_url"] = "redis://127.0.0.1:1/0"
    try:
        response = client.get("/readyz")
    finally:
        app.conf["broker_url"] = previous
    assert response.status_code == 503
    assert response.json()["checks"]["broker"].startswith("error")


def _sample(body: str, name: str, **labels: str) -> float:
    label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(f"{name}{{{label_text}}}" if labels else name) + r" ([0-9.e+]+)"
    found = re.search(pattern, body)
    return float(found.group(1)) if found else 0.0


@pytest.mark.django_db
def test_metrics_count_a_completed_authorization(lark, settings) -> None:
    before = lark.client.get("/metrics").content.decode()
    alice = lark.sandbox.alice
    lark.authorize(lark.open_card_session(alice["open_id"]), alice["open_id"])
    lark.request_token(open_id=alice["open_id"])
    after = lark.client.get("/metrics").content.decode()

    completed = {"app_id": "cli_test_app", "outcome": "completed"}
    assert _sample(after, "larkauth_auth_sessions_total", **completed) == (
        _sample(before, "larkauth_auth_sessions_total", **completed) + 1
    )
    assert _sample(after, "larkauth_authorizations", state="completed") == 1
    assert _sample(after, "larkauth_token_requests_total", result="served") >= 1
    if settings.REDIS_URL:  # the hand-out's audit row waits for flush_token_audit
        assert _sample(after, "larkauth_token_audit_buffered") >= 1
    exchange = {"api": "oauth_code_exchange", "outcome": "success"}
    assert _sample(after, "larkauth_feishu_api_requests_total", **exchange) > _sample(
        before, "larkauth_feishu_api_requests_total", **exchange
    )
    assert alice["open_id"] not in after  # no per-user labels
