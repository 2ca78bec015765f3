"""The web server as the container runs it: the Dockerfile's own CMD and ENV, read from the
Dockerfile, with what docker-compose.yml and `.env` add, against the test database. It is
started once for the module: the tests below check what it answered and what it wrote.

Every line it writes is JSON, one access line per request, and no secret sent in a URL or
header reaches its output; with DEBUG off it serves the admin's CSS, `/readyz`, and
`/metrics` to Prometheus (the host name of deploy/prometheus/prometheus.yml, the bearer
token of METRICS_TOKEN) and to no one else."""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from django.db import connection

from tests.conftest import _missing
from tests.events.helpers import free_port
from tests.jobs.workers import database_url

ROOT = Path(__file__).resolve().parents[1]
# Four workers load Django at once on a busy 2-core machine: the first answer can be slow.
START_TIMEOUT = 90.0
STOP_TIMEOUT = 45.0

SECRET_KEY = "Zq9DjangoSecretKeySentinel-0123456789"
ENCRYPTION_KEY = base64.urlsafe_b64encode(b"Zq9-production-server-test-key!!").decode()
API_KEY = "Zq9ApiKeyPrefix.Zq9ApiKeySecretSentinel0123"
METRICS_TOKEN = "Zq9MetricsTokenSentinel-0123456789"
PUBLIC_HOST = "larkauth.example.com"  # what .env's DJANGO_ALLOWED_HOSTS names
REFERER = (
    "https://accounts.feishu.cn/open-apis/authen/v1/authorize?client_id=cli_a"
    "&state=SECRETREFSTATE987&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
)
# (path, headers): secrets in the query string and in headers. The first one waits for a
# worker to be ready.
REQUESTS: list[tuple[str, dict[str, str]]] = [
    ("/healthz", {}),
    ("/oauth/callback?code=SECRETCODE123&state=SECRETSTATE456", {"Referer": REFERER}),
    ("/oauth/callback?error=access_denied&state=SECRETSTATE789", {}),
    ("/healthz?token=SECRETTOKEN321&access_token=u-SECRETUSERTOKEN0123456789", {}),
    (
        "/api/v1/tokens/?client_secret=SECRETCLIENT654&app_secret=SECRETAPP852",
        {"Authorization": f"Api-Key {API_KEY}"},
    ),
    ("/oauth/start/00000000-0000-0000-0000-000000000000?code=abcdefgh", {}),
    ("/static/admin/css/base.css", {}),
    ("/readyz", {}),
]


def prometheus_target() -> str:
    """The host:port Prometheus scrapes the web service by."""
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = [
        t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]
    ]
    web = [target for target in targets if target.startswith("web:")]
    assert web, targets
    return str(web[0])


METRICS_REQUESTS: dict[str, dict[str, str]] = {
    "no token": {},
    "wrong token": {"Authorization": "Bearer not-the-token"},
    "token": {"Authorization": f"Bearer {METRICS_TOKEN}"},
}
SECRETS = [
    "SECRETCODE123",
    "SECRETSTATE456",
    "SECRETSTATE789",
    "SECRETREFSTATE987",
    "SECRETTOKEN321",
    "SECRETUSERTOKEN",
    "SECRETCLIENT654",
    "SECRETAPP852",
    "code=abcdefgh",
    METRICS_TOKEN,
    SECRET_KEY,
    ENCRYPTION_KEY,
    API_KEY,
]

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def dockerfile() -> tuple[list[str], dict[str, str]]:
    """The Dockerfile's CMD (exec form) and the variables its ENV lines set."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    command: list[str] = []
    env: dict[str, str] = {}
    for line in text.splitlines():
        instruction, _, rest = line.strip().partition(" ")
        if instruction.upper() == "ENV":
            for pair in shlex.split(rest):
                name, equals, value = pair.partition("=")
                assert equals, f"ENV {pair}: only the NAME=value form is read here"
                env[name] = value
        elif instruction.upper() == "CMD":
            command = json.loads(rest)
    assert command, "the Dockerfile has a CMD in exec form"
    return command, env


def compose_web_environment(dotenv: dict[str, str]) -> dict[str, str]:
    """The environment docker-compose.yml gives the web service, `${NAME...}` taken from
    `dotenv` (compose reads .env for these)."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    environment = compose["services"]["web"]["environment"]
    return {
        name: re.sub(r"\$\{(\w+)[^}]*\}", lambda m: dotenv[m.group(1)], str(value))
        for name, value in environment.items()
    }


def with_bind(command: list[str], bind: str) -> list[str]:
    """`command` with its bind address replaced (or added)."""
    args, kept = iter(command), []
    for arg in args:
        if arg in ("-b", "--bind"):
            next(args)
        elif not arg.startswith("--bind="):
            kept.append(arg)
    return [*kept, "--bind", bind]


def wait_for_port(port: int, process: subprocess.Popen[Any], output: str) -> None:
    """The port accepts connections (no HTTP request: it would be an access line)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        assert process.poll() is None, f"gunicorn exited early:\n{output}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("gunicorn did not open its port in time")


class Deployed:
    """What the server answered and wrote."""

    def __init__(self) -> None:
        self.responses: dict[str, requests.Response] = {}
        self.metrics: dict[str, requests.Response] = {}
        self.written: dict[str, str] = {}


@pytest.fixture(scope="module")
def deployed(django_db_setup, tmp_path_factory) -> Deployed:
    if connection.vendor != "postgresql":
        _missing("PostgreSQL")
    redis_url = os.environ.get("REDIS_URL", "")
    if not redis_url:
        _missing("Redis")
    tmp_path = tmp_path_factory.mktemp("production-server")
    command, image_env = dockerfile()
    program = shutil.which(command[0], path=str(Path(sys.executable).parent))
    assert program, f"{command[0]} is installed beside the test's Python"
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        **image_env,
        # What a deployment sets (its .env, see .env.example) ...
        "DJANGO_SECRET_KEY": SECRET_KEY,
        "LARKAUTH_ENCRYPTION_KEYS": ENCRYPTION_KEY,
        "METRICS_TOKEN": METRICS_TOKEN,
        # ... and what docker-compose.yml adds for the web service, with this machine's
        # servers in place of the stack's.
        **compose_web_environment(
            {"DJANGO_ALLOWED_HOSTS": PUBLIC_HOST, "METRICS_TOKEN": METRICS_TOKEN}
        ),
        "DATABASE_URL": database_url(),
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        # /app/var exists only in the image.
        "LARKAUTH_VAR_DIR": str(tmp_path / "var"),
    }
    (tmp_path / "metrics").mkdir()
    # As the Dockerfile does at build time: the static files go to STATIC_ROOT under var/.
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        check=True,
        timeout=120,
    )
    result = Deployed()
    stdout, stderr = tmp_path / "stdout.log", tmp_path / "stderr.log"
    with stdout.open("w") as out, stderr.open("w") as err:
        process = subprocess.Popen(
            [program, *with_bind(command[1:], f"127.0.0.1:{port}")],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=err,
        )
    try:
        wait_for_port(port, process, stderr.read_text())
        for i, (path, headers) in enumerate(REQUESTS):
            result.responses[path] = requests.get(
                f"http://127.0.0.1:{port}{path}",
                headers=headers,
                timeout=START_TIMEOUT if i == 0 else 30,
                allow_redirects=False,
            )
        # A worker that is creating its metrics file has left it empty for a moment; a scrape
        # that reads it then must still answer.
        (tmp_path / "metrics" / "counter_99999.db").touch()
        for name, headers in METRICS_REQUESTS.items():
            result.metrics[name] = requests.get(
                f"http://127.0.0.1:{port}/metrics",
                headers={"Host": prometheus_target(), **headers},
                timeout=30,
            )
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    result.written = {"stdout": stdout.read_text(), "stderr": stderr.read_text()}
    return result


def test_it_writes_json_lines_one_access_line_per_request_and_no_secret(deployed) -> None:
    statuses = [response.status_code for response in deployed.responses.values()]
    assert all(status < 500 for status in statuses), statuses

    everything = "\n".join(deployed.written.values())
    for secret in SECRETS:
        assert secret not in everything
    assert "[REDACTED]" in everything
    lines = {
        name: [line for line in text.splitlines() if line]
        for name, text in deployed.written.items()
    }
    for name, stream in lines.items():
        for line in stream:
            parsed = json.loads(line)
            assert isinstance(parsed, dict), f"{name}: not a JSON object: {line}"
            assert {"time", "level", "logger", "message"} <= parsed.keys(), line
            # One clock for every process, before and after Django sets TIME_ZONE: UTC.
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", parsed["time"]), line
    access = [json.loads(line) for line in lines["stdout"]]
    access = [line for line in access if line["logger"] == "gunicorn.access"]
    # Workers write in the order they finish, not in the order of the requests.
    logged = Counter(re.findall(r'"GET ([^?\s]+)', "\n".join(a["message"] for a in access)))
    expected = Counter(path.partition("?")[0] for path, _ in REQUESTS)
    expected["/metrics"] = len(METRICS_REQUESTS)
    assert logged == expected, access
    for line in access:
        assert re.fullmatch(r"[0-9a-f]{32}", line["request_id"]), line


def test_it_serves_the_admin_css_with_debug_off(deployed) -> None:
    response = deployed.responses["/static/admin/css/base.css"]
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/css")
    assert b"body" in response.content


def test_it_is_ready(deployed) -> None:
    response = deployed.responses["/readyz"]
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ok"


def test_it_serves_metrics_to_prometheus_host_with_the_token(deployed) -> None:
    response = deployed.metrics["token"]
    assert response.status_code == 200, deployed.written["stderr"][-4000:]
    assert "larkauth_authorizations" in response.text


def test_it_refuses_metrics_without_the_token(deployed) -> None:
    missing, wrong = deployed.metrics["no token"], deployed.metrics["wrong token"]
    assert missing.status_code == 401
    assert missing.json()["code"] == "not_authenticated"
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert wrong.status_code == 403
    assert wrong.json()["code"] == "permission_denied"
    assert "larkauth_" not in missing.text + wrong.text


def test_it_does_not_start_without_its_secrets(tmp_path) -> None:
    """gunicorn runs no system checks of its own: the application stops the start."""
    command, image_env = dockerfile()
    program = shutil.which(command[0], path=str(Path(sys.executable).parent))
    assert program
    env = {
        "PATH": os.environ["PATH"],
        **image_env,
        "GUNICORN_WORKERS": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path}/db",
        "LARKAUTH_VAR_DIR": str(tmp_path / "var"),
    }
    result = subprocess.run(
        [program, *with_bind(command[1:], f"127.0.0.1:{free_port()}")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        check=False,
    )
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr
    assert "LARKAUTH_ENCRYPTION_KEYS is not set" in result.stderr
