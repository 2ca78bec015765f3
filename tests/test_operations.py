"""What operators rely on: health endpoints, /metrics, and deploy/ matching the code."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client import REGISTRY

import events_app.metrics  # noqa: F401  (registers the metrics)
import larkauth.feishu.metrics  # noqa: F401
import sessions_app.metrics  # noqa: F401
from config.metrics import _database_registry
from tests.events.helpers import free_port

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


# --- /metrics guard ---------------------------------------------------------------------


@pytest.mark.django_db
def test_metrics_refuse_a_scrape_without_the_bearer_token(client, settings) -> None:
    settings.METRICS_TOKEN = "scrape-token"
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.django_db
def test_metrics_refuse_a_wrong_bearer_token(client, settings) -> None:
    settings.METRICS_TOKEN = "scrape-token"
    response = client.get("/metrics", headers={"Authorization": "Bearer scrape-tokeN"})
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


@pytest.mark.django_db
def test_metrics_answer_the_bearer_token(client, settings) -> None:
    settings.METRICS_TOKEN = "scrape-token"
    response = client.get("/metrics", headers={"Authorization": "Bearer scrape-token"})
    assert response.status_code == 200
    assert b"larkauth_authorizations" in response.content


# --- docker-compose.yml, .env.example, Prometheus -----------------------------------------


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _documented() -> set[str]:
    """Names .env.example sets or shows (commented out)."""
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))


@pytest.mark.slow
def test_compose_file_follows_the_compose_specification() -> None:
    """No container engine runs here: the file is checked against the Compose schema that
    check-jsonschema ships (no network)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(ROOT / "docker-compose.yml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_variable_compose_reads_is_documented_in_env_example() -> None:
    compose_text = (ROOT / "docker-compose.yml").read_text()
    referenced = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", compose_text))
    referenced |= {
        secret["environment"]
        for secret in _compose().get("secrets", {}).values()
        if "environment" in secret
    }
    assert referenced  # the test reads something
    assert referenced <= _documented()
    for service in _compose()["services"].values():
        if service.get("build"):
            assert service["env_file"] == ".env"


def test_env_example_documents_only_real_settings() -> None:
    code = (ROOT / "config/settings.py").read_text() + (ROOT / "config/gunicorn.py").read_text()
    for name in _documented():
        assert f'"{name}"' in code, name


def test_env_example_requires_what_a_production_start_needs() -> None:
    required = set(
        re.findall(r"^([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.MULTILINE)
    )
    assert {
        "DJANGO_SECRET_KEY",
        "LARKAUTH_ENCRYPTION_KEYS",
        "DJANGO_ALLOWED_HOSTS",
        "LARKAUTH_PUBLIC_URL",
        "METRICS_TOKEN",
    } <= required


def test_prometheus_scrape_host_is_allowed_by_the_web_service() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = [
        t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]
    ]
    web_target = next(target for target in targets if target.startswith("web:"))
    allowed = str(_compose()["services"]["web"]["environment"]["DJANGO_ALLOWED_HOSTS"])
    assert web_target.partition(":")[0] in allowed.split(",")


def test_every_container_keeps_its_own_metrics_directory_and_is_scraped() -> None:
    """prometheus_client names its files by PID, and PIDs repeat across containers: a
    directory shared by containers mixes their samples. Each container has its own (a
    tmpfs, empty at start), so each one that counts something is scraped on its own."""
    compose = _compose()
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {
        t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]
    }
    for name, service in compose["services"].items():
        directory = (service.get("environment") or {}).get("PROMETHEUS_MULTIPROC_DIR")
        if not directory:
            continue
        assert directory in service.get("tmpfs", []), name
        mounted = [str(volume).split(":")[1] for volume in service.get("volumes", [])]
        assert directory not in mounted, name
        command = service.get("command") or []
        if "config.metrics_exporter" in command:
            assert f"{name}:9100" in targets, name
    assert "web:8000" in targets
    assert compose["services"]["celery-worker"]["command"][:3] == [
        "python",
        "-m",
        "config.metrics_exporter",
    ]
    assert "config.metrics_exporter" in compose["services"]["ws-listener"]["command"]


# --- the metrics exporter beside a worker or the listener --------------------------------

COUNTING_COMMAND = """
import os, signal, sys, time
from prometheus_client import Counter
Counter("larkauth_exporter_test", "a sample written by the command").inc(3)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))
open(os.environ["READY_FILE"], "w").close()
time.sleep(60)
"""


@pytest.mark.slow
def test_the_exporter_serves_its_commands_samples_behind_the_token(tmp_path) -> None:
    port = free_port()
    ready = tmp_path / "ready"
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "METRICS_PORT": str(port),
        "METRICS_TOKEN": "exporter-token",
        "READY_FILE": str(ready),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "config.metrics_exporter", sys.executable, "-c", COUNTING_COMMAND],
        cwd=ROOT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert process.poll() is None
            assert time.monotonic() < deadline, "the command did not start"
            time.sleep(0.1)
        url = f"http://127.0.0.1:{port}/metrics"
        refused = requests.get(url, timeout=10)
        served = requests.get(url, headers={"Authorization": "Bearer exporter-token"}, timeout=10)
        process.send_signal(signal.SIGTERM)
        status = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert refused.status_code == 401
    assert "larkauth_exporter_test_total 3.0" in served.text
    assert status == 7  # SIGTERM reached the command, and its status is the exporter's
