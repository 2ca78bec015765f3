"""What the benchmarks share: a scratch PostgreSQL database, gunicorn, the sandbox as a
process, and an asyncio load generator. Benchmarks run on demand (`make bench`), never in
the test suite, and print ratios against a reference measured in the same run."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
import psycopg

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
# Several checkouts on one machine each name their own (BENCH_DB=...).
BENCH_DB = os.environ.get("BENCH_DB", "larkauth_bench")
BENCH_KEY = "YmVuY2gta2V5LWJlbmNoLWtleS1iZW5jaC1rZXktMzI="  # 32 bytes, bench only


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bench_env(**extra: str) -> dict[str, str]:
    """The environment every bench process shares (gunicorn, sandbox, setup commands)."""
    env = {
        **os.environ,
        "DATABASE_URL": PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{BENCH_DB}",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "bench-secret-key-not-for-production-0123456789",
        "LARKAUTH_ENCRYPTION_KEYS": BENCH_KEY,
        "LOG_LEVEL": "WARNING",
        "LARKAUTH_VAR_DIR": str(ROOT / "var" / "bench"),
    }
    env.update(extra)
    return env


def recreate_database(env: dict[str, str]) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {BENCH_DB}")
    manage(env, "migrate", "--noinput", "-v", "0")


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


@contextmanager
def process(args: list[str], env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(port)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def gunicorn(
    env: dict[str, str], workers: int = 4, port: int = 0, threads: int = 1
) -> Iterator[str]:
    port = port or free_port()
    args = [
        sys.executable, "-m", "gunicorn", "config.wsgi",
        "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", str(threads),
        # Every worker is ready when the port opens: no round measures a worker booting.
        "--preload", "--log-level", "warning",
    ]  # fmt: skip
    with process(args, env, port):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def sandbox(env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    with process([sys.executable, "manage.py", "lark_sandbox", "--port", str(port)], env, port):
        yield f"http://127.0.0.1:{port}"


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies: list[float]

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000

    def line(self, name: str) -> str:
        return (
            f"{name:<34} {self.throughput:8.0f} req/s   p50 {self.percentile(0.5):6.1f} ms   "
            f"p99 {self.percentile(0.99):6.1f} ms   errors {self.errors}"
        )


Request = Callable[[aiohttp.ClientSession], Awaitable[bool]]


async def _load(request: Request, clients: int, seconds: float, warmup: float) -> LoadResult:
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        warm_until = time.monotonic() + warmup
        stop_at = warm_until + seconds

        async def client() -> None:
            nonlocal errors
            while (now := time.monotonic()) < stop_at:
                ok = await request(session)
                if now >= warm_until:
                    latencies.append(time.monotonic() - now)
                    errors += not ok

        await asyncio.gather(*(client() for _ in range(clients)))
    return LoadResult(len(latencies), errors, seconds, latencies)


def load(
    request: Request, *, clients: int = 16, seconds: float = 10, warmup: float = 2
) -> LoadResult:
    return asyncio.run(_load(request, clients, seconds, warmup))


async def _load_at_rate(request: Request, rate: float, seconds: float, warmup: float) -> LoadResult:
    latencies: list[float] = []
    errors = 0
    # No connection limit: a request waits in the server, not in the load generator.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        start = time.monotonic()
        warm_until = start + warmup

        async def one(scheduled: float) -> None:
            nonlocal errors
            ok = await request(session)
            if scheduled >= warm_until:
                # From when it was due, so a stall in the generator is not hidden.
                latencies.append(time.monotonic() - scheduled)
                errors += not ok

        sent = []
        for n in range(int(rate * (warmup + seconds))):
            scheduled = start + n / rate
            await asyncio.sleep(max(0.0, scheduled - time.monotonic()))
            sent.append(asyncio.create_task(one(scheduled)))
        await asyncio.gather(*sent)
    return LoadResult(len(latencies), errors, seconds, latencies)


def load_at_rate(
    request: Request, *, rate: float, seconds: float = 8, warmup: float = 1
) -> LoadResult:
    """Open loop: requests sent at a fixed rate whatever the answers, so the latencies are
    the server's at that load, not the queue a closed loop builds (Little's law)."""
    return asyncio.run(_load_at_rate(request, rate, seconds, warmup))


def profile_in_process(
    name: str, send: Callable[[], None], count: int, *, show: bool, warm: int = 50
) -> None:
    """Time `count` calls of `send` under pyinstrument after `warm` unprofiled ones (they
    warm connections, caches and first imports); print the time per request, and the
    profile when `show`."""
    from pyinstrument import Profiler

    for _ in range(warm):
        send()
    profiler = Profiler(interval=0.0005)
    started = time.perf_counter()
    with profiler:
        for _ in range(count):
            send()
    per_request = (time.perf_counter() - started) / count * 1000
    print(f"{name}: {per_request:.2f} ms per request ({count} requests, profiled)")
    if show:
        print(profiler.output_text(unicode=False, color=False, show_all=False))


def median(values: list[float]) -> float:
    return statistics.median(values)


# --- the one table of `make bench` ------------------------------------------------------

ROWS_ENV = "BENCH_ROWS"  # `python -m bench` collects every benchmark's rows in this file


@dataclass
class Row:
    """One figure of a benchmark, beside the reference measured in the same run."""

    bench: str
    figure: str
    value: str
    reference: str
    goal: str
    met: bool | None  # None: no goal to meet
    bound: str = ""  # what limits a figure that misses its goal


def report(*rows: Row) -> None:
    """Print the rows; hand them to `python -m bench` when it runs this benchmark."""
    print(table(list(rows)))
    path = os.environ.get(ROWS_ENV)
    if path:
        with open(path, "a") as out:
            for row in rows:
                out.write(json.dumps(asdict(row)) + "\n")


def table(rows: list[Row]) -> str:
    header = ("bench", "figure", "value", "same-run reference", "goal", "met")
    cells = [header] + [
        (
            r.bench,
            r.figure,
            r.value,
            r.reference,
            r.goal,
            "-" if r.met is None else "yes" if r.met else "NO",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [
        "| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    bounds = [f"- {r.bench} / {r.figure}: {r.bound}" for r in rows if r.bound]
    return "\n".join(lines + (["", "Bounded by:", *bounds] if bounds else []))
