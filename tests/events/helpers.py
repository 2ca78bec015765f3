"""Events as Feishu sends them, and larkauth's listener as a real process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from django.db import connection
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from larkauth.sandbox.delivery import build_request, complete_event
from larkauth.sandbox.state import App
from sessions_app.models import UserAuthSession
from sessions_app.services import UserRef, auth_request
from tests.fixtures.sandbox import TEST_APP, Sandbox
from tests.flow.helpers import PUBLIC_URL, LarkEnv

ROOT = Path(__file__).resolve().parents[2]
CONNECT_WAIT_MS = 20_000
SANDBOX_APP = App(
    app_id=TEST_APP["app_id"],
    app_secret=TEST_APP["app_secret"],
    encrypt_key=TEST_APP["encrypt_key"],
    verification_token=TEST_APP["verification_token"],
)


def card_action(
    operator_open_id: str, value: Any, message_id: str = "om_test", event_id: str | None = None
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "schema": "2.0",
        "header": {"event_type": "card.action.trigger"},
        "event": {
            "operator": {"open_id": operator_open_id},
            "token": "c-test",
            "action": {"value": value, "tag": "button"},
            "host": "im_message",
            "context": {"open_message_id": message_id},
        },
    }
    if event_id:
        event["header"]["event_id"] = event_id
    return event


def decline(session: UserAuthSession, operator_open_id: str | None = None, **kw: Any):
    value = {"action": "decline", "session_id": str(session.pk)}
    return card_action(operator_open_id or session.open_id, value, session.message_id, **kw)


def request_again(session: UserAuthSession, operator_open_id: str | None = None, **kw: Any):
    value = {"action": "request_again", "session_id": str(session.pk)}
    return card_action(operator_open_id or session.open_id, value, session.message_id, **kw)


def message(sender_open_id: str, text: str, chat_type: str = "p2p") -> dict[str, Any]:
    return {
        "schema": "2.0",
        "header": {"event_type": "im.message.receive_v1"},
        "event": {
            "sender": {"sender_id": {"open_id": sender_open_id}, "sender_type": "user"},
            "message": {
                "message_id": "om_" + uuid.uuid4().hex,
                "chat_type": chat_type,
                "message_type": "text",
                "content": json.dumps({"text": text}),
            },
        },
    }


def open_card(lark: LarkEnv, user: dict[str, Any]) -> UserAuthSession:
    """A pending session whose card the sandbox delivered to the user."""
    result = auth_request(lark.app, UserRef(open_id=user["open_id"]), actor="test")
    assert result.created
    assert result.session is not None
    return UserAuthSession.objects.get(pk=result.session.pk)  # with the card's message_id


def decline_over_ws(lark: LarkEnv, session: UserAuthSession, **kw: Any) -> dict[str, Any]:
    """The user taps Decline; the sandbox delivers the click over the long connection."""
    value = {"action": "decline", "session_id": str(session.pk)}
    return lark.sandbox.card_click(session.open_id, session.message_id, value, channel="ws", **kw)


def card_history(sandbox: Sandbox, message_id: str) -> list[dict[str, Any]]:
    return list(sandbox.message(message_id)["history"])


def card_title(sandbox: Sandbox, message_id: str) -> str:
    return str(sandbox.message(message_id)["content"]["header"]["title"]["content"])


# --- HTTP -------------------------------------------------------------------------------


def signed_request(
    event: dict[str, Any], *, encrypt: bool = True, **overrides: Any
) -> tuple[bytes, dict[str, str], dict[str, Any]]:
    """Body and headers exactly as the sandbox (and Feishu) would POST them."""
    full = complete_event(SANDBOX_APP, event, time.time())
    body, headers, _ = build_request(SANDBOX_APP, full, encrypted=encrypt, **overrides)
    return body, headers, full


def unsigned_request(event: dict[str, Any], *, encrypt: bool) -> tuple[bytes, dict[str, str]]:
    """Like Feishu's URL check: encrypted when asked, never signed (docs/feishu.md §7)."""
    body, headers, _ = build_request(SANDBOX_APP, event, encrypted=encrypt, signature="")
    headers.pop("X-Lark-Signature", None)
    return body, headers


def post(client: Client, body: bytes, headers: dict[str, str]):
    extra = {k: v for k, v in headers.items() if k.lower() != "content-type"}
    return client.post("/lark/events/", body, content_type="application/json", headers=extra)


# --- the listener process ----------------------------------------------------------------


@dataclass
class Listener:
    process: subprocess.Popen[str]
    log: Path

    def output(self) -> str:
        return self.log.read_text()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)


def listener_env(sandbox: Sandbox, settings: Any, **extra: str) -> dict[str, str]:
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return {
        **os.environ,
        "DATABASE_URL": (
            f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
        ),
        "LARK_APP_ID": "",
        "LARK_DOMAIN": sandbox.url,
        "LARK_ACCOUNTS_DOMAIN": sandbox.url,
        "LARKAUTH_PUBLIC_URL": PUBLIC_URL,
        "LARKAUTH_ENCRYPTION_KEYS": ",".join(settings.LARKAUTH_ENCRYPTION_KEYS),
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "console",
        # No Celery worker here: the card updates a click causes run in the listener.
        "CELERY_TASK_ALWAYS_EAGER": "true",
        **extra,
    }


def start_listener(env: dict[str, str], log: Path, *args: str) -> Listener:
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "run_ws_listener", *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    return Listener(process, log)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(port: int, name: str, **labels: str) -> float | None:
    """One sample from a process's Prometheus endpoint."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


def wait_for(condition: Callable[[], Any], timeout: float = 10, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
