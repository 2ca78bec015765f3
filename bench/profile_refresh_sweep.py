"""Where the refresh sweep's time goes, in every sweep thread: `bench.refresh_sweep`'s setup
(sandbox process, PostgreSQL, 200/s limit shared through Redis), then two sweeps at once as
there: one `manage.py refresh_tokens` in a subprocess, one in this process under yappi
(wall clock, every thread: pyinstrument only follows the thread that started it).

Prints, per sweep thread and per refresh made by the profiled sweep, the wall time in the
rate limiter (Redis script calls and the sleeps between them), the Feishu call at the sandbox
(HTTP), PostgreSQL (statements and commits), waiting for the next candidate (the feeding
thread pages and filters them), and the rest; then the busiest functions. The profiler
slows Python code down, so the profiled sweep's own rate is not the benchmark's.
Needs yappi. Run: `BENCH_DB=... .venv/bin/python -m bench.profile_refresh_sweep
[--authorizations N] [--threads N]`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import requests

from bench import harness, refresh_sweep

# (label, does this function's total time belong to it): summed over the sweep threads.
Matcher = Callable[[Any], bool]
PARTS: list[tuple[str, Matcher]] = [
    (
        "rate limiter: RateLimiter.acquire (Redis + sleeps)",
        lambda s: s.name == "RateLimiter.acquire" and "ratelimit" in s.module,
    ),
    (
        "  of which Redis script calls (_try_acquire)",
        lambda s: s.name == "RateLimiter._try_acquire" and "ratelimit" in s.module,
    ),
    (
        "Feishu call at the sandbox: requests Session.send",
        lambda s: s.name == "Session.send" and s.module.endswith("requests/sessions.py"),
    ),
    (
        "PostgreSQL: psycopg Cursor.execute + Connection.commit",
        lambda s: s.name in ("Cursor.execute", "Connection.commit") and "psycopg" in s.module,
    ),
    (
        "Fernet encrypt/decrypt",
        lambda s: (
            s.name in ("Fernet.encrypt", "Fernet.decrypt", "MultiFernet.decrypt")
            and "fernet" in s.module
        ),
    ),
    (
        "waiting for the next candidate: Queue.get",
        lambda s: s.name == "Queue.get" and s.module.endswith("queue.py"),
    ),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--authorizations", type=int, default=4000)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()

    with harness.sandbox(refresh_sweep.bench_env()) as sandbox_url:
        env = refresh_sweep.bench_env(sandbox_url)
        print(f"Setting up {args.authorizations} authorizations ...", flush=True)
        refresh_sweep.recreate_database(env)
        issued = refresh_sweep.issue_tokens(sandbox_url, args.authorizations)
        refresh_sweep.insert_authorizations(env, issued)  # django.setup() with env
        requests.delete(f"{sandbox_url}/_sandbox/api/calls", timeout=30)

        import yappi  # type: ignore[import-untyped]

        from sessions_app import services

        other = subprocess.Popen(
            [sys.executable, "manage.py", "refresh_tokens", "--threads", str(args.threads)],
            cwd=harness.ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        yappi.set_clock_type("wall")
        yappi.start(builtins=False, profile_threads=True)
        started = time.monotonic()
        report = services.tokens_refresh_expiring(threads=args.threads, actor="bench")
        elapsed = time.monotonic() - started
        yappi.stop()
        out, err = other.communicate(timeout=600)
        if other.returncode:
            raise RuntimeError(f"refresh_tokens failed:\n{err[-3000:]}")
        result = refresh_sweep.check(sandbox_url, args.authorizations)

    rate = result["calls"] / result["calls_span"] if result["calls_span"] else 0.0
    ours = report.as_dict()
    print(f"profiled sweep:   {report} in {elapsed:.1f} s")
    print(f"the other sweep:  {out.strip()}")
    print(
        f"refresh calls at the sandbox: {result['calls']} ({result['call_errors']} errors), "
        f"{rate:.1f}/s first to last (limit {refresh_sweep.RATE}/s, one sweep profiled)"
    )

    sweep_threads = {t.id for t in yappi.get_thread_stats() if t.name.startswith("refresh-")}
    stats = [s for s in yappi.get_func_stats() if s.ctx_id in sweep_threads]
    thread_time = sum(
        s.ttot for s in stats if s.name == "worker" and s.module.endswith("maintenance.py")
    )
    refreshed = ours["refreshed"]
    attempts = sum(
        s.ncall for s in stats if s.name == "_refresh_if_due" and s.module.endswith(".py")
    )
    print(
        f"\n{len(sweep_threads)} sweep threads, {thread_time:.1f} thread-seconds; "
        f"{attempts} candidates taken, {refreshed} refreshed by this sweep "
        f"(the others were done by the other sweep: one locked read each)"
    )
    print(f"{'':56} {'share':>6} {'ms per refresh':>15}")
    accounted = 0.0
    for label, matches in PARTS:
        total = sum(s.ttot for s in stats if matches(s))
        if not label.startswith(" "):
            accounted += total
        share = total / thread_time if thread_time else 0.0
        print(f"{label:<56} {share:6.1%} {total / max(refreshed, 1) * 1000:15.2f}")
    rest = thread_time - accounted
    print(
        f"{'the rest (Django ORM, refresh logic, audit, GIL waits)':<56} "
        f"{rest / thread_time:6.1%} {rest / max(refreshed, 1) * 1000:15.2f}"
    )
    print(
        f"{'a sweep thread, all of it':<56} {1:6.1%} {thread_time / max(refreshed, 1) * 1000:15.2f}"
    )

    print("\nBusiest functions in the sweep threads (total wall time, all threads):")
    merged: dict[tuple[str, str], list[float]] = {}
    for s in stats:
        entry = merged.setdefault((s.module, s.name), [0.0, 0.0, 0.0])
        entry[0] += s.ttot
        entry[1] += s.tsub
        entry[2] += s.ncall
    top = sorted(merged.items(), key=lambda item: item[1][0], reverse=True)[:30]
    for (module, name), (ttot, tsub, ncall) in top:
        where = os.path.relpath(module, harness.ROOT) if module.startswith("/") else module
        print(f"{ttot:8.2f} s tot {tsub:7.2f} s own {int(ncall):8d} calls  {name}  ({where})")


if __name__ == "__main__":
    main()
