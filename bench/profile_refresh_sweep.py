"""Where the refresh sweep's time goes, in every sweep thread: `bench.refresh_sweep`'s setup
(sandbox process, PostgreSQL, 200/s limit shared through Redis), then two sweeps at once as
there (`--processes`, `--threads`), each in its own process under yappi (wall clock, every
thread: pyinstrument only follows the thread that started it), so both carry the same
profiler overhead and still share the limit.

Prints, over all sweep threads and per refresh, the wall time in the rate limiter (Redis
script calls and the sleeps between them), the Feishu call at the sandbox (HTTP),
PostgreSQL (statements and commits), waiting for the next candidate (the feeding thread
pages and filters them), and the rest; then the busiest functions. The profiler slows the
Python code down, so the rate under it is a lower bound of the benchmark's.
Needs yappi. Run: `BENCH_DB=... .venv/bin/python -m bench.profile_refresh_sweep
[--authorizations N] [--processes N] [--threads N]`.
"""

from __future__ import annotations

import argparse
import json
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
        "Feishu call at the sandbox: the token request's post()",
        lambda s: s.name == "post" and s.module.endswith("larkauth/feishu/client.py"),
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
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        profiled_sweep(args.threads)
        return

    with harness.sandbox(refresh_sweep.bench_env()) as sandbox_url:
        env = refresh_sweep.bench_env(sandbox_url)
        print(f"Setting up {args.authorizations} authorizations ...", flush=True)
        refresh_sweep.recreate_database(env)
        issued = refresh_sweep.issue_tokens(sandbox_url, args.authorizations)
        refresh_sweep.insert_authorizations(env, issued)
        requests.delete(f"{sandbox_url}/_sandbox/api/calls", timeout=30)
        print(f"Sweeping: {args.processes} processes x {args.threads} threads, each profiled")
        command = [sys.executable, "-m", "bench.profile_refresh_sweep", "--child"]
        runs = [
            subprocess.Popen(
                [*command, "--threads", str(args.threads)],
                cwd=harness.ROOT,
                env={**env, "DJANGO_SETTINGS_MODULE": "config.settings"},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(args.processes)
        ]
        summaries = []
        for run in runs:
            out, err = run.communicate(timeout=900)
            if run.returncode:
                raise RuntimeError(f"profiled sweep failed:\n{err[-3000:]}")
            summaries.append(json.loads(out.strip().splitlines()[-1]))
        result = refresh_sweep.check(sandbox_url, args.authorizations)

    rate = result["calls"] / result["calls_span"] if result["calls_span"] else 0.0
    for n, summary in enumerate(summaries, 1):
        print(f"  sweep {n}: {summary['report']} in {summary['elapsed']:.1f} s")
    print(
        f"refresh calls at the sandbox: {result['calls']} ({result['call_errors']} errors), "
        f"{rate:.1f}/s first to last (limit {refresh_sweep.RATE}/s, every sweep profiled)"
    )
    refreshed = sum(s["refreshed"] for s in summaries)
    attempts = sum(s["attempts"] for s in summaries)
    thread_time = sum(s["thread_time"] for s in summaries)
    threads = sum(s["threads"] for s in summaries)
    print(
        f"\n{threads} sweep threads, {thread_time:.1f} thread-seconds; {attempts} candidates "
        f"taken, {refreshed} refreshed (a candidate the other sweep had done costs one locked "
        "read)"
    )
    print(f"{'':56} {'share':>6} {'ms per refresh':>15}")
    accounted = 0.0
    for label, _ in PARTS:
        total = sum(s["parts"][label] for s in summaries)
        if not label.startswith(" "):
            accounted += total
        print(f"{label:<56} {total / thread_time:6.1%} {total / refreshed * 1000:15.2f}")
    rest = thread_time - accounted
    print(
        f"{'the rest (Django ORM, refresh logic, audit, GIL waits)':<56} "
        f"{rest / thread_time:6.1%} {rest / refreshed * 1000:15.2f}"
    )
    print(f"{'a sweep thread, all of it':<56} {1:6.1%} {thread_time / refreshed * 1000:15.2f}")
    print("\nBusiest functions in the sweep threads (wall time, all threads, all sweeps):")
    merged: dict[str, list[float]] = {}
    for summary in summaries:
        for name, ttot, tsub, ncall in summary["top"]:
            entry = merged.setdefault(name, [0.0, 0.0, 0.0])
            for i, value in enumerate((ttot, tsub, ncall)):
                entry[i] += value
    for name, (ttot, tsub, ncall) in sorted(merged.items(), key=lambda i: -i[1][0])[:30]:
        print(f"{ttot:8.2f} s tot {tsub:7.2f} s own {int(ncall):8d} calls  {name}")


def profiled_sweep(threads: int) -> None:
    """One sweep under yappi (every thread, wall clock); a JSON summary on the last line."""
    import django

    django.setup()
    import yappi  # type: ignore[import-untyped]

    from sessions_app import services

    yappi.set_clock_type("wall")
    yappi.start(builtins=False, profile_threads=True)
    started = time.monotonic()
    report = services.tokens_refresh_expiring(threads=threads, actor="bench")
    elapsed = time.monotonic() - started
    yappi.stop()

    every = list(yappi.get_func_stats())
    # The sweep's threads: those that ran `_run`'s worker (yappi names threads by class;
    # get_func_stats() merges the threads, so this also keeps the feeding thread's few).
    workers = [s for s in every if s.name == "worker" and s.module.endswith("maintenance.py")]
    ctx = {s.ctx_id for s in workers}
    stats = [s for s in every if s.ctx_id in ctx]
    merged: dict[str, list[float]] = {}
    for s in stats:
        where = os.path.relpath(s.module, harness.ROOT) if s.module.startswith("/") else s.module
        entry = merged.setdefault(f"{s.name}  ({where}:{s.lineno})", [0.0, 0.0, 0.0])
        for i, value in enumerate((s.ttot, s.tsub, s.ncall)):
            entry[i] += value
    top = sorted(merged.items(), key=lambda i: -i[1][0])[:40]
    summary = {
        "report": str(report),
        "elapsed": elapsed,
        "refreshed": report.as_dict()["refreshed"],
        "attempts": sum(s.ncall for s in stats if s.name == "_refresh_if_due"),
        "threads": int(sum(s.ncall for s in workers)),
        "thread_time": sum(s.ttot for s in workers),
        "parts": {label: sum(s.ttot for s in stats if matches(s)) for label, matches in PARTS},
        "top": [[name, *values] for name, values in top],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
