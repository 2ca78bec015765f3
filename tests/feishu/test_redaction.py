"""No token, secret or code reaches a log line: through the handler configured in settings,
in both log formats, from our loggers and from lark-oapi's "Lark" logger."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.utils.module_loading import import_string

from config.celery import app as celery_app
from larkauth import redaction
from larkauth.redaction import MARKER, RedactionFilter, redact
from tests.conftest import _missing
from tests.events.helpers import CONNECT_WAIT_MS, listener_env, start_listener
from tests.jobs.workers import running_workers

JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ6cTkiOiJzZW50aW5lbCJ9.Zq9v2SentinelSig_0123"
USER_TOKEN = "u-Zq9v1UserSentinel0123456789abcdef"
REFRESH_TOKEN = "ur-Zq9v1RefreshSentinel0123456789ab"
TENANT_TOKEN = "t-g104Zq9TenantSentinel0123456789ABCD"
CARD_TOKEN = "c-Zq9CardSentinel0123456789abcdef01"
CODE = "Zq9AuthCodeSentinel0123456789abcdef"
JSON_CODE = "Zq9JsonCodeSentinel0123456789"
STATE = "Zq9StateSentinel-0123456789_abcdefABCDEF"
CLIENT_SECRET = "Zq9ClientSecretSentinel0123456789"
APP_SECRET = "Zq9AppSecretSentinel0123456789"
ENCRYPT_KEY = "Zq9EncryptKeySentinel01234"
VERIFICATION_TOKEN = "Zq9VerificationTokenSentinel012"
VERIFIER = "Zq9VerifierSentinel" + "x" * 40
PASSWORD = "Zq9Password-Sentinel!"
BEARER = "Zq9OpaqueBearerSentinel0123456789"
API_KEY = "Zq9ApiKey.SentinelSecret0123456789"
FERNET_KEY = base64.urlsafe_b64encode(b"Zq9-fernet-key-sentinel-32bytes!").decode()
ESCAPED_SECRET = "Zq9EscapedSecretSentinel0123"
ESCAPED_CODE = "Zq9EscapedCodeSentinel0123"
NESTED_SECRET = "Zq9NestedSecretSentinel0123"
ENCODED_SECRET = "Zq9EncodedSecretSentinel0123"
ENCODED_CODE = "Zq9EncodedCodeSentinel0123"
ACCESS_KEY = "Zq9c1cc643bb2b5ecea461bb0d01efc1"
TICKET = "Zq9TicketSentinel-0123456789"
BASIC = base64.b64encode(b"cli_a:Zq9BasicSentinel").decode()

CASES = [
    pytest.param(JWT, f"user access token {JWT} issued", id="v2-jwt-token"),
    pytest.param(USER_TOKEN, f"calling user_info as {USER_TOKEN}", id="v1-user-token"),
    pytest.param(REFRESH_TOKEN, f"rotating {REFRESH_TOKEN}", id="v1-refresh-token"),
    pytest.param(TENANT_TOKEN, f"tenant token {TENANT_TOKEN} cached", id="tenant-token"),
    pytest.param(CARD_TOKEN, f"card callback carried {CARD_TOKEN}", id="card-token"),
    pytest.param(CODE, f"GET /oauth/callback?code={CODE}&state=x HTTP/1.1", id="code-in-query"),
    pytest.param(
        JSON_CODE,
        json.dumps({"grant_type": "authorization_code", "code": JSON_CODE}),
        id="code-in-json",
    ),
    pytest.param(STATE, f"GET /oauth/callback?code=x&state={STATE}", id="state-in-query"),
    pytest.param(
        CLIENT_SECRET,
        json.dumps({"client_id": "cli_a", "client_secret": CLIENT_SECRET}),
        id="client-secret-in-json",
    ),
    pytest.param(
        APP_SECRET, str({"app_id": "cli_a", "app_secret": APP_SECRET}), id="app-secret-dict"
    ),
    pytest.param(ENCRYPT_KEY, f"app_id=cli_a&encrypt_key={ENCRYPT_KEY}&x=1", id="encrypt-key-form"),
    pytest.param(
        VERIFICATION_TOKEN,
        json.dumps({"verification_token": VERIFICATION_TOKEN}),
        id="verification-token-json",
    ),
    pytest.param(
        VERIFIER,
        f"grant_type=authorization_code&code_verifier={VERIFIER}&redirect_uri=http%3A%2F%2Fx",
        id="code-verifier-form",
    ),
    pytest.param(PASSWORD, str({"user": "admin", "password": PASSWORD}), id="password-dict"),
    pytest.param(BEARER, str({"Authorization": f"Bearer {BEARER}"}), id="bearer-header"),
    pytest.param(API_KEY, f"Authorization: Api-Key {API_KEY}", id="api-key-header"),
    pytest.param(FERNET_KEY, f"rotating to key {FERNET_KEY}", id="fernet-key"),
    # A JSON document logged inside another one: its quotes arrive escaped.
    pytest.param(
        ESCAPED_SECRET,
        json.dumps({"body": json.dumps({"app_id": "cli_a", "app_secret": ESCAPED_SECRET})}),
        id="escaped-json",
    ),
    # A repr inside a repr under a harmless key, as Celery logs a task's headers.
    pytest.param(
        NESTED_SECRET,
        str({"argsrepr": str([{"app_secret": NESTED_SECRET}]), "kwargsrepr": "{}"}),
        id="nested-repr",
    ),
    # Escaped line breaks (JSON strings, reprs) run into the key after them.
    pytest.param(
        ESCAPED_CODE,
        json.dumps({"output": f"grant_type=authorization_code\ncode={ESCAPED_CODE}"}),
        id="escaped-line-break",
    ),
    pytest.param(
        ENCODED_SECRET,
        f"body=client_id%3Dcli_a%26client_secret%3D{ENCODED_SECRET}%26grant_type%3Dx",
        id="url-encoded-form",
    ),
    pytest.param(
        ENCODED_CODE,
        f"next=https%3A%2F%2Fx.example%2Foauth%2Fcallback%3Fstate%3Dabc%26code%3D{ENCODED_CODE}",
        id="url-encoded-query",
    ),
    # What lark-oapi and websockets log of the long-connection URL.
    pytest.param(
        ACCESS_KEY,
        "> GET /ws/v2?fpid=493&aid=552564&device_id=7473115962161912084"
        f"&access_key={ACCESS_KEY}&service_id=1131469589 HTTP/1.1",
        id="long-connection-access-key",
    ),
    pytest.param(
        TICKET,
        f"connected to wss://msg-frontier.feishu.cn/ws/v2?device_id=7&ticket={TICKET}",
        id="long-connection-ticket",
    ),
]
LOGGERS = [pytest.param("", id="root"), pytest.param("Lark", id="lark")]

Capture = Callable[[], str]


def _configured_handler() -> logging.StreamHandler[Any]:
    handlers = [
        handler
        for handler in logging.getLogger().handlers
        if any(isinstance(f, RedactionFilter) for f in handler.filters)
    ]
    assert handlers, "settings.LOGGING attaches RedactionFilter to the root handler"
    handler = handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    return handler


def _formatter_from_settings(name: str) -> logging.Formatter:
    config = dict(settings.LOGGING["formatters"][name])
    factory = config.pop("()", None)
    if factory:
        formatter: logging.Formatter = import_string(factory)(**config)
        return formatter
    return logging.Formatter(config["format"])


@pytest.fixture
def lark_installed() -> None:
    redaction.install()


def _capture(log_format: str) -> Iterator[Capture]:
    """Point the configured root handler and lark-oapi's own handler at a buffer."""
    stream = io.StringIO()
    root, lark = logging.getLogger(), logging.getLogger("Lark")
    handler = _configured_handler()
    lark_handlers = [h for h in lark.handlers if isinstance(h, logging.StreamHandler)]
    streams = [(h, h.setStream(stream)) for h in (handler, *lark_handlers)]
    formatter = handler.formatter
    handler.setFormatter(_formatter_from_settings(log_format))
    levels = [(logger, logger.level) for logger in (root, lark)]
    for logger, _ in levels:
        logger.setLevel(logging.DEBUG)
    try:
        yield stream.getvalue
    finally:
        for logger, level in levels:
            logger.setLevel(level)
        handler.setFormatter(formatter)
        for h, old in streams:
            h.setStream(old)


@pytest.fixture(params=["console", "json"])
def output(request: pytest.FixtureRequest, lark_installed: None) -> Iterator[Capture]:
    yield from _capture(request.param)


@pytest.fixture
def json_output(lark_installed: None) -> Iterator[Capture]:
    yield from _capture("json")


def _assert_redacted(text: str, secret: str) -> None:
    assert text, "something was logged"
    assert secret not in text
    assert "Zq9" not in text, "no fragment of the sentinel either"
    assert MARKER in text


@pytest.mark.parametrize("logger_name", LOGGERS)
@pytest.mark.parametrize(("secret", "text"), CASES)
def test_it_redacts_percent_args(output: Capture, logger_name: str, secret: str, text: str):
    logging.getLogger(logger_name).debug("Feishu exchange: %s", text)
    _assert_redacted(output(), secret)


@pytest.mark.parametrize("logger_name", LOGGERS)
@pytest.mark.parametrize(("secret", "text"), CASES)
def test_it_redacts_exception_text_and_traceback(
    output: Capture, logger_name: str, secret: str, text: str
):
    try:
        raise RuntimeError(f"Feishu rejected {text}")
    except RuntimeError:
        logging.getLogger(logger_name).debug("call failed", exc_info=True)
    logged = output()
    assert "Traceback" in logged
    _assert_redacted(logged, secret)


@pytest.mark.parametrize("logger_name", LOGGERS)
@pytest.mark.parametrize(("secret", "text"), CASES)
def test_it_redacts_extra_fields(json_output: Capture, logger_name: str, secret: str, text: str):
    logging.getLogger(logger_name).debug("with extra", extra={"detail": text})
    _assert_redacted(json_output(), secret)


# Raw HTTP as bytes: their repr (`b'...\\r\\ncode=...'`) escapes line breaks and non-ASCII.
RAW_REQUEST = (
    "POST /open-apis/authen/v2/oauth/token HTTP/1.1\r\n"
    f"Authorization: Basic {BASIC}\r\n\r\n"
    f"code={CODE}\r\n用户code={JSON_CODE}"
).encode()


@pytest.mark.parametrize("logger_name", LOGGERS)
def test_it_redacts_bytes_args(output: Capture, logger_name: str):
    logging.getLogger(logger_name).debug("sent %s", RAW_REQUEST)
    logged = output()
    for secret in (BASIC, CODE, JSON_CODE):
        assert secret not in logged
    assert "Zq9" not in logged
    assert f"Basic {MARKER}" in logged


@pytest.mark.parametrize("logger_name", LOGGERS)
def test_it_redacts_a_bytes_message(output: Capture, logger_name: str):
    logging.getLogger(logger_name).debug(RAW_REQUEST)
    logged = output()
    assert "Zq9" not in logged
    assert MARKER in logged


def test_it_redacts_secret_keys_and_nested_values_in_extra(json_output: Capture):
    logging.getLogger("larkauth.test").info(
        "token exchange",
        extra={
            "client_secret": CLIENT_SECRET,
            "request": {
                "headers": {"Authorization": f"Bearer {BEARER}"},
                "body": [{"code_verifier": VERIFIER}],
            },
        },
    )
    line = json.loads(json_output().splitlines()[0])
    assert line["client_secret"] == MARKER
    assert line["request"]["headers"]["Authorization"] == MARKER
    assert "Zq9" not in json.dumps(line)


def test_it_keeps_ordinary_text_intact(output: Capture):
    text = (
        "Sent card om_123 to ou_456 for app cli_789 (session 5f1c): state: pending, "
        "code=20037, error=authorization_required, token_type=Bearer, expires_in=7200, "
        "scope=offline_access contact:user.base:readonly, url=https://open.feishu.cn/open-apis"
    )
    logging.getLogger("larkauth.test").info("%s", text)
    logged = output()
    assert text in logged or json.dumps(text)[1:-1] in logged
    assert MARKER not in logged


def test_install_is_idempotent():
    redaction.install()
    redaction.install()
    lark = logging.getLogger("Lark")
    for target in (lark, *lark.handlers):
        assert sum(isinstance(f, RedactionFilter) for f in target.filters) == 1


def test_it_stays_fast_on_a_run_of_backslashes_without_a_closing_quote():
    # Each backslash could be read two ways: the time doubled with every few more.
    started = time.monotonic()
    assert redact('key: "' + "\\" * 36 + "x") == 'key: "' + "\\" * 36 + "x"
    assert time.monotonic() - started < 0.2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abcdef123456", f"Authorization: Bearer {MARKER}"),
        ("postgres://larkauth:hunter2@db:5432/x", f"postgres://larkauth:{MARKER}@db:5432/x"),
        ('{"AppID":"cli_a","AppSecret":"s3cr3t"}', f'{{"AppID":"cli_a","AppSecret":"{MARKER}"}}'),
        ("LARK_APP_SECRET=s3cr3t-value", f"LARK_APP_SECRET={MARKER}"),
        ('{"code": 0, "msg": "success"}', '{"code": 0, "msg": "success"}'),
        ("token expired: re-run the t-shirt job", "token expired: re-run the t-shirt job"),
        # In a query string `code` and `state` are always OAuth values, however they look.
        (
            "GET /oauth/callback?code=abcdefgh&state=pending HTTP/1.1",
            f"GET /oauth/callback?code={MARKER}&state={MARKER} HTTP/1.1",
        ),
        ("cb%3Fstate%3Dpending%26code%3D0", f"cb%3Fstate%3D{MARKER}%26code%3D{MARKER}"),
        ("GET /admin/?state__exact=needs_reauth", "GET /admin/?state__exact=needs_reauth"),
        ('{\\"code\\": 0, \\"msg\\": \\"ok\\"}', '{\\"code\\": 0, \\"msg\\": \\"ok\\"}'),
        ("redirect_uri=http%3A%2F%2F127.0.0.1%3A8000%2Foauth%2Fcallback", None),
    ],
)
def test_redact(text: str, expected: str | None):
    assert redact(text) == (text if expected is None else expected)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_listener_logs_the_long_connection_url_redacted(lark, settings, tmp_path):
    # At DEBUG the websockets library under lark-oapi logs the handshake's request line:
    # the long-connection URL with its access_key and ticket.
    if connection.vendor != "postgresql":
        _missing("PostgreSQL")
    env = listener_env(lark.sandbox, settings, LOG_LEVEL="DEBUG", LOG_FORMAT="json")
    listener = start_listener(env, tmp_path / "listener.log")
    try:
        connected = lark.sandbox.ws_connections(
            lark.app.app_id, min_count=1, wait_ms=CONNECT_WAIT_MS
        )
        assert connected, listener.output()[-3000:]
    finally:
        assert listener.stop() == 0
    output = listener.output()
    log_lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    [request_line] = [
        line["message"] for line in log_lines if line["message"].startswith("> GET /ws/v2?")
    ]
    assert f"access_key={MARKER}" in request_line
    assert f"ticket={MARKER}" in request_line
    assert not re.search(rf"(?:access_key|ticket)=(?!{re.escape(MARKER)})", output)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_celery_worker_logs_task_arguments_redacted(sandbox, redis_url, tmp_path, monkeypatch):
    # Celery logs a task's arguments when it is received, when it fails and when it is
    # unknown (the whole message body, as bytes): through settings.LOGGING, not its own.
    if connection.vendor != "postgresql":
        _missing("PostgreSQL")
    monkeypatch.setenv("LOG_FORMAT", "json")
    args = [f"code={CODE}", {"app_secret": APP_SECRET}]
    with running_workers(1, redis_url, sandbox.url, tmp_path) as workers:
        with celery_app.connection_for_write(workers.broker_url) as conn:
            for task in ("larkauth.no_such_task", "sessions_app.tasks.cleanup_auth_sessions"):
                celery_app.send_task(
                    task, args=args, kwargs={"token": USER_TOKEN}, queue=workers.queue,
                    connection=conn,
                )  # fmt: skip
        [worker] = workers.workers
        deadline = time.monotonic() + 30
        while worker.text().count('"level": "ERROR"') < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        output = worker.text()
    errors = [json.loads(line) for line in output.splitlines() if '"level": "ERROR"' in line]
    assert len(errors) == 2, output[-3000:]
    assert "Zq9" not in output
    assert MARKER in output
