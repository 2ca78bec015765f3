"""Resident memory (RSS) of larkauth's processes after 10,000 requests or events, so that
growth shows, beside a bare Django + DRF worker measured in the same run (issue 13).

- web: one gunicorn worker with the production settings (`-c config/gunicorn.py`, the
  Dockerfile's CMD; GUNICORN_WORKERS=1, threads as configured), after one card sent through
  the sandbox and then token reads (`POST /api/v1/tokens/`) and signed, encrypted messages
  (`POST /lark/events/`), alternately, 16 clients;
- reference: the same gunicorn settings serving `bench.bare_settings` (Django + DRF, one
  view reading one row), the same number of requests;
- celery: the child of `celery -A config worker --concurrency 1` after that many
  `expire_pending_sessions` tasks;
- listener: `manage.py run_ws_listener`, one application connected to the sandbox, after
  that many messages pushed over the long connection (8 in flight), each acknowledged.

Goals: web worker and Celery child ≤ 2× the reference; listener ≤ 150 MiB.
Run: `.venv/bin/python -m bench.memory [--count N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp

from bench import harness

APP_ID, APP_SECRET = "cli_bench", "bench-app-secret"
ENCRYPT_KEY, VERIFICATION_TOKEN = "bench-encrypt-key", "bench-verification-token"
CLIENTS, IN_FLIGHT = 16, 8
WEB_FACTOR = CELERY_FACTOR = 2.0
LISTENER_GOAL_MIB = 150.0
GUNICORN = [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.py"]
SETUP = """
from datetime import timedelta
from django.utils import timezone
from sessions_app.models import ServiceClient, UserAuthSession
from sessions_app.services import application_ensure_default
app = application_ensure_default()
now = timezone.now()
UserAuthSession.objects.create(
    app=app, open_id="ou_bench_user", user_id="bench", user_name="Bench User",
    state="completed", access_token="eyJ" + "a" * 1200, refresh_token="eyJ" + "r" * 1200,
    token_expires_at=now + timedelta(days=300), refresh_token_expires_at=now + timedelta(days=300),
    completed_at=now, last_used_at=now)
client, key = ServiceClient.objects.create_key(name="bench")
client.applications.add(app)
print(key)
"""


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    assert match, status
    return int(match.group(1)) / 1024


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def only_child(pid: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = children(pid)
        if len(found) == 1:
            return found[0]
        time.sleep(0.1)
    raise RuntimeError(f"process {pid} has children {children(pid)}, expected one")


# --- load --------------------------------------------------------------------------------

Send = Callable[[aiohttp.ClientSession, int], Any]


async def _send_all(send: Send, count: int, clients: int) -> int:
    """`count` requests from `clients` at once; returns how many failed."""
    errors = 0
    numbers = iter(range(count))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:

        async def client() -> None:
            nonlocal errors
            for n in numbers:
                errors += not await send(session, n)

        await asyncio.gather(*(client() for _ in range(clients)))
    return errors


def send_all(send: Send, count: int) -> None:
    errors = asyncio.run(_send_all(send, count, CLIENTS))
    if errors:
        raise RuntimeError(f"{errors} of {count} requests failed")


def gunicorn_worker(env: dict[str, str], wsgi: str) -> Any:
    port = harness.free_port()
    args = [*GUNICORN, wsgi]
    return harness.process(args, {**env, "PORT": str(port), "GUNICORN_WORKERS": "1"}, port), port


def measure_web(env: dict[str, str], sandbox: str, key: str, count: int) -> float:
    from larkauth.sandbox.delivery import build_request, complete_event
    from larkauth.sandbox.state import App

    app = App(APP_ID, APP_SECRET, ENCRYPT_KEY, VERIFICATION_TOKEN)
    api = {"Authorization": f"Api-Key {key}", "Content-Type": "application/json"}
    token_body = json.dumps({"open_id": "ou_bench_user"})
    # The card is sent by the web process itself, not queued for a Celery worker.
    server, port = gunicorn_worker({**env, "CELERY_TASK_ALWAYS_EAGER": "true"}, "config.wsgi")
    with server as master:
        base = f"http://127.0.0.1:{port}"
        user = _sandbox_user(sandbox)
        card = _post(f"{base}/api/v1/auth-sessions/", {"open_id": user}, api)
        if card.status not in (200, 201):
            raise RuntimeError(f"no card sent: {card.status} {card.text}")

        async def send(session: aiohttp.ClientSession, n: int) -> bool:
            if n % 2:
                event = _hello(user)
                full = complete_event(app, event, time.time())
                body, headers, _ = build_request(app, full, encrypted=True)
                url, data = f"{base}/lark/events/", body
            else:
                url, data, headers = f"{base}/api/v1/tokens/", token_body.encode(), api
            async with session.post(url, data=data, headers=headers) as response:
                await response.read()
                return response.status == 200

        send_all(send, count)
        return rss_mib(only_child(master.pid))


def measure_bare(env: dict[str, str], count: int) -> float:
    bare = {**env, "DJANGO_SETTINGS_MODULE": "bench.bare_settings"}
    server, port = gunicorn_worker(bare, "django.core.wsgi:get_wsgi_application()")
    with server as master:

        async def send(session: aiohttp.ClientSession, n: int) -> bool:
            async with session.post(f"http://127.0.0.1:{port}/one-row") as response:
                await response.read()
                return response.status == 200

        send_all(send, count)
        return rss_mib(only_child(master.pid))


def measure_celery(env: dict[str, str], count: int, log: Path) -> float:
    queue = f"bench-memory-{uuid.uuid4().hex[:8]}"
    args = [
        *(sys.executable, "-m", "celery", "-A", "config", "worker", "--concurrency", "1"),
        *("--pool", "prefork", "--queues", queue, "--loglevel", "INFO"),
        *("--without-gossip", "--without-mingle", "--without-heartbeat"),
    ]
    with log.open("w") as out:  # larkauth's LOGGING writes the task lines to stderr
        worker = subprocess.Popen(
            args,
            cwd=harness.ROOT,
            # Celery's "succeeded" lines, counted below, are INFO (LOG_LEVEL_CELERY).
            env={**env, "LOG_LEVEL": "INFO", "LOG_LEVEL_CELERY": "INFO"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        child = only_child(worker.pid, timeout=60)
        from config.celery import app as celery_app

        with celery_app.connection_for_write(env["CELERY_BROKER_URL"]) as conn:
            for _ in range(count):
                celery_app.send_task(
                    "sessions_app.tasks.expire_pending_sessions", queue=queue, connection=conn
                )
        deadline = time.monotonic() + max(60, count / 20)
        while _succeeded(log) < count:
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError(f"{_succeeded(log)} of {count} tasks ran")
            time.sleep(0.5)
        return rss_mib(child)
    finally:
        worker.terminate()
        worker.wait(timeout=60)


def _succeeded(log: Path) -> int:
    return len(re.findall(r"Task \S+\[[^\]]+\] succeeded", log.read_text())) if log.exists() else 0


def measure_listener(env: dict[str, str], sandbox: str, count: int) -> float:
    from larkauth.sandbox.control_client import SandboxControl

    control = SandboxControl(sandbox)
    user = _sandbox_user(sandbox)
    args = [sys.executable, "manage.py", "run_ws_listener"]
    listener = subprocess.Popen(args, cwd=harness.ROOT, env=env, stdout=subprocess.DEVNULL)
    try:
        if not control.ws_connections(APP_ID, min_count=1, wait_ms=60_000):
            raise RuntimeError("run_ws_listener did not connect")

        def push(_: int) -> bool:
            event = _hello(user)
            ack = control.ws_push(APP_ID, event, wait_ack_ms=10_000)["ack"]
            return ack is not None and ack["code"] == 200

        with ThreadPoolExecutor(IN_FLIGHT) as pool:
            failed = sum(not ok for ok in pool.map(push, range(count)))
        if failed:
            raise RuntimeError(f"{failed} of {count} events were not acknowledged")
        return rss_mib(listener.pid)
    finally:
        listener.terminate()
        listener.wait(timeout=30)


# --- helpers ------------------------------------------------------------------------------


class _Answer:
    def __init__(self, status: int, text: str) -> None:
        self.status, self.text = status, text


def _post(url: str, body: dict[str, Any], headers: dict[str, str]) -> _Answer:
    import requests

    response = requests.post(url, json=body, headers=headers, timeout=60)
    return _Answer(response.status_code, response.text)


def _sandbox_user(sandbox: str) -> str:
    from larkauth.sandbox.control_client import SandboxControl

    return str(SandboxControl(sandbox).add_user(f"Memory {uuid.uuid4().hex[:6]}")["open_id"])


@contextmanager
def _sandbox(env: dict[str, str], port: int) -> Iterator[str]:
    args = [sys.executable, "manage.py", "lark_sandbox", "--port", str(port)]
    with harness.process(args, env, port):
        yield f"http://127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=10_000)
    count = parser.parse_args().count

    sandbox_port = harness.free_port()
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    redis_url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/15"
    env = harness.bench_env(
        LARK_APP_ID=APP_ID,
        LARK_APP_SECRET=APP_SECRET,
        LARK_ENCRYPT_KEY=ENCRYPT_KEY,
        LARK_VERIFICATION_TOKEN=VERIFICATION_TOKEN,
        LARK_DOMAIN=sandbox_url,
        LARK_ACCOUNTS_DOMAIN=sandbox_url,
        LARKAUTH_PUBLIC_URL="http://127.0.0.1:8000",
        FEISHU_RATE_LIMIT_PER_SECOND="100000",
        REDIS_URL=redis_url,
        CELERY_BROKER_URL=redis_url,
        LOG_LEVEL="WARNING",
    )
    os.environ.update(env)
    harness.recreate_database(env)
    key = harness.manage(env, "shell", "-c", SETUP).split()[-1]
    log = harness.ROOT / "var" / "bench" / "memory-celery.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)
    with _sandbox(env, sandbox_port) as sandbox:
        bare = measure_bare(env, count)
        web = measure_web(env, sandbox, key, count)
        celery = measure_celery(env, count, log)
        listener = measure_listener(env, sandbox, count)

    print(f"Resident memory after {count:,} requests / tasks / events each (MiB)")
    reference = f"{bare:.0f} MiB (bare Django + DRF worker)"
    harness.report(
        harness.Row(
            "memory",
            "web worker RSS (gunicorn, config/gunicorn.py)",
            f"{web:.0f} MiB ({web / bare:.2f}x)",
            reference,
            f"<= {WEB_FACTOR:g}x reference",
            web <= WEB_FACTOR * bare,
        ),
        harness.Row(
            "memory",
            "Celery worker child RSS",
            f"{celery:.0f} MiB ({celery / bare:.2f}x)",
            reference,
            f"<= {CELERY_FACTOR:g}x reference",
            celery <= CELERY_FACTOR * bare,
        ),
        harness.Row(
            "memory",
            "run_ws_listener RSS, one app connected",
            f"{listener:.0f} MiB",
            reference,
            f"<= {LISTENER_GOAL_MIB:g} MiB",
            listener <= LISTENER_GOAL_MIB,
        ),
    )


def _hello(open_id: str) -> dict[str, Any]:
    """A direct text message to the bot, which larkauth receives and does not act on."""
    return {
        "header": {"event_type": "im.message.receive_v1"},
        "event": {
            "sender": {"sender_id": {"open_id": open_id}, "sender_type": "user"},
            "message": {
                "message_id": f"om_{uuid.uuid4().hex}",
                "chat_type": "p2p",
                "message_type": "text",
                "content": json.dumps({"text": "hello"}),
            },
        },
    }


if __name__ == "__main__":
    main()
