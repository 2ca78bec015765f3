"""The running stack for the fault suite: gunicorn with the Dockerfile's own command line, a
Celery worker and beat, as real processes on the test database and the test sandbox, with a
cuttable TCP proxy in front of PostgreSQL and one in front of Redis (cache, rate limit,
audit buffer and Celery broker).

Use it through the `start_stack` / `stack` fixtures (tests/faults/conftest.py):

    def test_x(start_stack):
        stack = start_stack(worker=True, FEISHU_HTTP_TIMEOUT="3")
        stack.post_token(open_id=...)        # POST /api/v1/tokens/ with the test's API key
        stack.database.cut()                 # PostgreSQL gone for the app processes
        stack.sandbox.add_fault(...)         # Feishu misbehaves
        stack.worker.process                 # the Celery worker (tests/jobs/workers.py)
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from django.conf import settings
from django.db import connection

from config.celery import app as celery_app
from tests.faults.proxy import TcpProxy, proxy_to
from tests.fixtures.sandbox import Sandbox
from tests.flow.helpers import LarkEnv
from tests.jobs.workers import Worker, Workers, broker_url, database_url, running_workers

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
# What the Dockerfile's ENV sets for production, besides paths.
PRODUCTION_ENV = {"DJANGO_DEBUG": "false", "LOG_FORMAT": "json"}


def dockerfile_command(dockerfile: Path = ROOT / "Dockerfile") -> list[str]:
    """The image's CMD (exec form), joined across continuation lines."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    commands = [line for line in text.splitlines() if line.strip().upper().startswith("CMD ")]
    if not commands:
        raise ValueError(f"{dockerfile} has no CMD")
    raw = commands[-1].strip()[4:].strip()
    return list(json.loads(raw)) if raw.startswith("[") else shlex.split(raw)


def web_command(port: int, dockerfile: Path = ROOT / "Dockerfile") -> list[str]:
    """The production web command with only its bind address changed (to loopback:port),
    run with this interpreter. A bind set in a `-c` config file is overridden by the
    command line's."""
    command = dockerfile_command(dockerfile)
    if Path(command[0]).name != "gunicorn":
        raise ValueError(f"the Dockerfile's CMD is not gunicorn: {command}")
    args: list[str] = []
    rest = iter(command[1:])
    for arg in rest:
        if arg in ("-b", "--bind"):
            next(rest, None)
        elif not arg.startswith("--bind="):
            args.append(arg)
    return [sys.executable, "-m", "gunicorn", *args, "--bind", f"127.0.0.1:{port}"]


@dataclass
class Process:
    """A stack process in a process group of its own, its output in a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def running(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        """To the main process only, as `docker stop` or `kill PID` would."""
        self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    def wait_idle(self, timeout: float = START_TIMEOUT) -> None:
        """Until the process has stopped computing (done starting up)."""
        deadline = time.monotonic() + timeout
        while not _idle([self.pid]):
            if time.monotonic() > deadline or not self.running():
                raise RuntimeError(f"{self.name} still busy or gone:\n{self.output()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL the whole group (the process and its children), as `docker kill` would."""
        if self.running():
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        stop_process(self.popen, timeout)


def stop_process(popen: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
    if popen.poll() is not None:
        return
    popen.send_signal(signal.SIGTERM)
    try:
        popen.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(popen.pid, signal.SIGKILL)
        popen.wait(timeout=10)


def start_process(name: str, args: list[str], env: Mapping[str, str], log: Path) -> Process:
    with log.open("wb") as out:
        popen = subprocess.Popen(
            args,
            cwd=ROOT,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Process(name, popen, log)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _through(url: str, proxy: TcpProxy) -> str:
    """`url` with its host and port replaced by the proxy's."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@{proxy.address}" if credentials else proxy.address
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass
class Stack:
    url: str
    sandbox_url: str
    database: TcpProxy  # between every app process and PostgreSQL
    redis: TcpProxy  # between every app process and Redis (the broker too)
    web: Process | None
    env: dict[str, str]  # what every app process was started with
    logs: Path
    workers: Workers | None = None
    lark: LarkEnv | None = None  # the test's application and API key (set per test)
    _extra: ExitStack = field(default_factory=ExitStack)

    @property
    def sandbox(self) -> Sandbox:
        assert self.lark is not None
        return self.lark.sandbox

    @property
    def worker(self) -> Worker:
        assert self.workers is not None, "start the stack with worker=True"
        return self.workers.workers[0]

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """`path` on gunicorn; `timeout` (default 20 s) and the rest as for requests."""
        timeout = kwargs.pop("timeout", 20)
        return requests.request(method, self.url + path, timeout=timeout, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def api(self, method: str, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        """`/api/v1<path>` with the test's API key."""
        assert self.lark is not None
        headers = {"Authorization": f"Api-Key {self.lark.api_key}", **kwargs.pop("headers", {})}
        return self.request(method, f"/api/v1{path}", json=body, headers=headers, **kwargs)

    def post_token(self, timeout: float = 20, **body: Any) -> requests.Response:
        """`POST /api/v1/tokens/` with `body`."""
        return self.api("POST", "/tokens/", body, timeout=timeout)

    def start_beat(self) -> Process:
        """`celery -A config beat`, as the Procfile and docker-compose run it."""
        args = [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO"]
        args += ["--schedule", str(self.logs / "celerybeat-schedule")]
        beat = start_process("beat", args, self.env, self.logs / "beat.log")
        self._extra.callback(beat.kill)
        return beat

    def output(self, chars: int = 3000) -> str:
        """The end of every process's log, for assertion messages."""
        parts = [f"--- web\n{self.web.output()[-chars:]}"] if self.web else []
        for worker in self.workers.workers if self.workers else []:
            parts.append(f"--- {worker.name}\n{worker.text()[-chars:]}")
        return "\n".join(parts)


def app_env(
    sandbox_url: str,
    public_url: str,
    database: TcpProxy,
    redis_url: str,
    queue: str,
    var_dir: Path,
) -> dict[str, str]:
    """The environment of every app process: the test's database, encryption keys and
    sandbox, PostgreSQL and Redis through their proxies, production's DEBUG and log format,
    and a Celery queue of the stack's own (tests/faults/settings.py)."""
    return {
        **os.environ,
        **PRODUCTION_ENV,
        "DJANGO_SETTINGS_MODULE": "tests.faults.settings",
        "LARKAUTH_TEST_CELERY_QUEUE": queue,
        "DJANGO_SECRET_KEY": "fault-suite-secret-key-not-for-production-0123456789",
        "DATABASE_URL": database_url("127.0.0.1", database.port),
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": broker_url(redis_url),
        "LARK_APP_ID": "",
        "LARK_APP_SECRET": "",
        "LARK_DOMAIN": sandbox_url,
        "LARK_ACCOUNTS_DOMAIN": sandbox_url,
        "LARKAUTH_PUBLIC_URL": public_url,
        "LARKAUTH_ENCRYPTION_KEYS": ",".join(settings.LARKAUTH_ENCRYPTION_KEYS),
        "LARKAUTH_VAR_DIR": str(var_dir),
        "LOG_LEVEL": "INFO",
        "LOG_LEVEL_CELERY": "INFO",  # the tests read Celery's "ready." and "succeeded" lines
        "PYTHONUNBUFFERED": "1",
        # gunicorn ≥ 25 opens a control socket at $XDG_RUNTIME_DIR/gunicorn.ctl (else
        # ~/.gunicorn/): one per stack, not one path for every gunicorn on the machine.
        "XDG_RUNTIME_DIR": str(var_dir),
    }


@contextmanager
def running_stack(
    sandbox_url: str,
    redis_url: str,
    logs: Path,
    *,
    web: bool = True,
    worker: bool = False,
    **env: str,
) -> Iterator[Stack]:
    """gunicorn (unless not `web`) and, with `worker`, one Celery worker, on the test
    database; `env` is added to every app process's environment."""
    db = connection.settings_dict
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    redis_parts = urlsplit(redis_url)
    queue = f"larkauth-test-{uuid.uuid4().hex[:8]}"
    with ExitStack() as stack:
        database = stack.enter_context(proxy_to(db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)))
        redis = stack.enter_context(
            proxy_to(redis_parts.hostname or "127.0.0.1", redis_parts.port or 6379)
        )
        stack.callback(_delete_queue, broker_url(redis_url), queue)
        process_env = app_env(sandbox_url, url, database, _through(redis_url, redis), queue, logs)
        process_env.update(env)
        web_process = None
        if web:
            web_process = start_process("web", web_command(port), process_env, logs / "web.log")
            # Killed, not stopped: a worker's interpreter takes seconds of CPU to exit, and
            # the tests of a clean stop do their own.
            stack.callback(web_process.kill)
        workers = None
        if worker:
            workers = stack.enter_context(
                running_workers(1, redis_url, sandbox_url, logs, env=process_env, queue=queue)
            )
        result = Stack(url, sandbox_url, database, redis, web_process, process_env, logs, workers)
        stack.enter_context(result._extra)
        # Run first at the end: nothing may hang on a cut proxy while being stopped.
        stack.callback(redis.restore)
        stack.callback(database.restore)
        if web_process is not None:
            _wait_until_serving(url, web_process)
        yield result


def _delete_queue(broker: str, queue: str) -> None:
    with celery_app.connection_for_write(broker) as conn:
        conn.default_channel.queue_delete(queue)  # type: ignore[attr-defined]


def _wait_until_serving(url: str, web: Process) -> None:
    """Until /healthz answers and every gunicorn worker has loaded the app (a worker still
    importing Django would delay a SIGTERM and skew timings)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if not web.running():
            raise RuntimeError(f"gunicorn exited:\n{web.output()[-4000:]}")
        try:
            serving = requests.get(f"{url}/healthz", timeout=5).status_code == 200
        except (requests.ConnectionError, requests.Timeout):
            serving = False  # not listening yet, or no worker booted yet
        if serving and _children_idle(web.pid):
            return
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn not serving in {START_TIMEOUT}s:\n{web.output()[-4000:]}")


def _children_idle(pid: int) -> bool:
    return _idle(_children(pid))


def _idle(pids: list[int], window: float = 0.5) -> bool:
    """Whether none of `pids` used more than a tick of CPU in `window` seconds: a process
    loading the app computes all the time, a started one waits."""
    before = _cpu_ticks(pids)
    time.sleep(window)
    after = _cpu_ticks(list(before))
    return bool(before) and all(
        pid in after and after[pid] - ticks <= 1 for pid, ticks in before.items()
    )


def _children(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in children.split()]


def _cpu_ticks(pids: list[int]) -> dict[int, int]:
    ticks = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks[pid] = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks
