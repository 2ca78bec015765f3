"""The outbound Feishu rate limit: shared through Redis by every process, per process
without Redis, and back to Redis when it returns."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from larkauth.ratelimit import RateLimiter, RateLimitTimeout

REPO = Path(__file__).resolve().parents[2]
TIMING_SLACK = 0.05  # seconds a grant may be recorded after Redis granted it

# Waits for "go" on stdin so both processes start together, then acquires N permits and
# prints the wall-clock time of each grant (same host, so comparable across processes).
WORKER = """
import json, sys, time
from larkauth.ratelimit import RateLimiter
url, prefix, rate, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
limiter = RateLimiter(rate, url, key_prefix=prefix, max_wait=30)
print("ready", flush=True)
sys.stdin.readline()
grants = []
for _ in range(count):
    limiter.acquire("cli_shared")
    grants.append(time.time())
print(json.dumps({"grants": grants, "shared": limiter.shared}), flush=True)
"""


def _max_in_any_window(times: list[float], window: float) -> int:
    times = sorted(times)
    return max(sum(1 for t in times[i:] if t < start + window) for i, start in enumerate(times))


def _acquire_all(limiter: RateLimiter, count: int, app_id: str = "cli_a") -> list[float]:
    grants = []
    for _ in range(count):
        limiter.acquire(app_id)
        grants.append(time.monotonic())
    return grants


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def key_prefix(redis_url: str) -> Iterator[str]:
    prefix = f"larkauth-test:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)


@pytest.mark.slow
def test_the_limit_holds_across_two_processes(redis_url: str, key_prefix: str):
    rate, per_process = 10, 10
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, redis_url, key_prefix, str(rate), str(per_process)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "ready"
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        results = [json.loads(worker.communicate(timeout=30)[0]) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()

    assert all(result["shared"] for result in results)
    grants = [t for result in results for t in result["grants"]]
    assert len(grants) == 2 * per_process
    # Twice the per-second limit: the second half had to wait for the first second to pass.
    assert max(grants) - min(grants) >= 1.0 - TIMING_SLACK
    assert _max_in_any_window(grants, 1.0 - TIMING_SLACK) <= rate


def test_it_limits_per_process_without_redis_and_warns_once(caplog):
    limiter = RateLimiter(5, f"redis://127.0.0.1:{_closed_port()}/0", window=0.2)
    with caplog.at_level(logging.WARNING, logger="larkauth.ratelimit"):
        grants = _acquire_all(limiter, 15)
    assert not limiter.shared
    assert _max_in_any_window(grants, 0.2) <= 5
    assert grants[-1] - grants[0] >= 2 * 0.2
    warnings = [r for r in caplog.records if r.name == "larkauth.ratelimit"]
    assert len(warnings) == 1
    assert "Redis is unreachable" in warnings[0].getMessage()


def test_it_limits_per_process_when_redis_is_not_configured(caplog):
    limiter = RateLimiter(5, "", window=0.2)
    with caplog.at_level(logging.WARNING, logger="larkauth.ratelimit"):
        grants = _acquire_all(limiter, 10)
    assert _max_in_any_window(grants, 0.2) <= 5
    assert [r.getMessage() for r in caplog.records if r.name == "larkauth.ratelimit"] == [
        "REDIS_URL is not set: limiting Feishu calls per process (5 per 0.2s each), "
        "not across processes"
    ]


def test_it_keeps_apps_apart(redis_url: str, key_prefix: str):
    limiter = RateLimiter(3, redis_url, key_prefix=key_prefix, window=10, max_wait=0)
    _acquire_all(limiter, 3, "cli_a")
    _acquire_all(limiter, 3, "cli_b")
    with pytest.raises(RateLimitTimeout):
        limiter.acquire("cli_a")


def test_it_gives_up_after_the_longest_wait(redis_url: str, key_prefix: str):
    limiter = RateLimiter(2, redis_url, key_prefix=key_prefix, window=10, max_wait=0.1)
    _acquire_all(limiter, 2)
    started = time.monotonic()
    with pytest.raises(RateLimitTimeout, match="no permit"):
        limiter.acquire("cli_a")
    assert time.monotonic() - started < 0.1  # the wait would be ~10 s: refused at once


class _FlakyRedisProxy:
    """A TCP proxy to the real Redis that can be cut and restored, counting connections."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.connections = 0
        self.up = True
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                if not self.up:
                    client.close()
                    continue
                upstream = socket.create_connection(self.target)
                self._open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                sock.close()

    def cut(self) -> None:
        with self._lock:
            self.up = False
            for sock in self._open:
                sock.close()
            self._open.clear()

    def restore(self) -> None:
        with self._lock:
            self.up = True

    def close(self) -> None:
        self.cut()
        self._listener.close()


@pytest.fixture
def redis_proxy(redis_url: str) -> Iterator[_FlakyRedisProxy]:
    pool_kwargs = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs
    proxy = _FlakyRedisProxy((pool_kwargs.get("host", "127.0.0.1"), pool_kwargs.get("port", 6379)))
    yield proxy
    proxy.close()


def test_it_falls_back_without_hammering_redis_and_returns_to_it(
    redis_url: str, redis_proxy: _FlakyRedisProxy, key_prefix: str, caplog
):
    db = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs.get("db", 0)
    limiter = RateLimiter(
        1000,
        f"redis://127.0.0.1:{redis_proxy.port}/{db}",
        key_prefix=key_prefix,
        redis_retry_interval=0.3,
    )
    window = redis.Redis.from_url(redis_url)
    key = f"{key_prefix}cli_a"

    limiter.acquire("cli_a")
    assert limiter.shared
    assert window.zcard(key) == 1

    redis_proxy.cut()
    connections_before = redis_proxy.connections
    with caplog.at_level(logging.INFO, logger="larkauth.ratelimit"):
        _acquire_all(limiter, 50)
        assert not limiter.shared
        assert window.zcard(key) == 1, "counted in this process only"
        assert redis_proxy.connections - connections_before <= 1, "one try, then wait"

        redis_proxy.restore()
        deadline = time.monotonic() + 5
        while window.zcard(key) == 1 and time.monotonic() < deadline:
            limiter.acquire("cli_a")
            time.sleep(0.01)
    assert limiter.shared
    assert window.zcard(key) > 1
    messages = [r.getMessage() for r in caplog.records if r.name == "larkauth.ratelimit"]
    assert len(messages) == 2
    assert "Redis is unreachable" in messages[0]
    assert messages[1] == "Feishu rate limit is shared through Redis again"
