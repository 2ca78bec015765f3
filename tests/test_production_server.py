"""The web server as the container runs it: the Dockerfile's own CMD and ENV, read from the
Dockerfile, against the test database. Every line it writes is JSON, one access line per
request, and no secret sent in a URL or header reaches its output."""

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
]
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


def test_it_writes_json_lines_one_access_line_per_request_and_no_secret(tmp_path, redis_url):
    if connection.vendor != "postgresql":
        _missing("PostgreSQL")
    command, image_env = dockerfile()
    program = shutil.which(command[0], path=str(Path(sys.executable).parent))
    assert program, f"{command[0]} is installed beside the test's Python"
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        **image_env,
        # What a deployment sets (docker-compose.yml and its .env).
        "DATABASE_URL": database_url(),
        "REDIS_URL": redis_url,
        "DJANGO_SECRET_KEY": SECRET_KEY,
        "LARKAUTH_ENCRYPTION_KEYS": ENCRYPTION_KEY,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        # /app/var exists only in the image.
        "LARKAUTH_VAR_DIR": str(tmp_path / "var"),
    }
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
        statuses = [
            requests.get(
                f"http://127.0.0.1:{port}{path}",
                headers=headers,
                timeout=START_TIMEOUT if i == 0 else 30,
                allow_redirects=False,
            ).status_code
            for i, (path, headers) in enumerate(REQUESTS)
        ]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert all(status < 500 for status in statuses), statuses

    written = {"stdout": stdout.read_text(), "stderr": stderr.read_text()}
    everything = "\n".join(written.values())
    for secret in SECRETS:
        assert secret not in everything
    assert "[REDACTED]" in everything
    lines = {name: [line for line in text.splitlines() if line] for name, text in written.items()}
    for name, stream in lines.items():
        for line in stream:
            parsed = json.loads(line)
            assert isinstance(parsed, dict), f"{name}: not a JSON object: {line}"
            assert {"time", "level", "logger", "message"} <= parsed.keys(), line
    access = [json.loads(line) for line in lines["stdout"]]
    access = [line for line in access if line["logger"] == "gunicorn.access"]
    # Workers write in the order they finish, not in the order of the requests.
    logged = Counter(re.findall(r'"GET ([^?\s]+)', "\n".join(a["message"] for a in access)))
    assert logged == Counter(path.partition("?")[0] for path, _ in REQUESTS), access
    for line in access:
        assert re.fullmatch(r"[0-9a-f]{32}", line["request_id"]), line
