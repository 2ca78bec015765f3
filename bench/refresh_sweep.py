"""The refresh sweep over 10,000 due authorizations against the sandbox, limit 200 calls/s.

Two sweeps run at once as separate processes (`manage.py refresh_tokens`, as two Celery
workers would), sharing the rate limit through Redis, on PostgreSQL. Authorizations are made
at the sandbox's token endpoint (consent + code exchange, no browser) and bulk-inserted with
their refresh tokens in the keep-alive margin.

Goals (issues 7 and 13): achieved rate ≥ 0.9× min(the 200/s limit, the sandbox alone doing
the same refresh calls at the same concurrency, measured first in the same run), exactly 1
refresh call per token, 0 failures. Where the time goes: `bench.profile_refresh_sweep`.
Run: `.venv/bin/python -m bench.refresh_sweep [--authorizations N]`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import psycopg
import requests

from bench import harness

DB = f"{harness.BENCH_DB}_refresh"
# The limiter's Redis key is per app id (the same Redis for every checkout on the machine):
# each BENCH_DB its own app, so two checkouts' sweeps never share one 200/s.
APP_ID, APP_SECRET = f"cli_refresh_{harness.BENCH_DB}"[:64], "bench-refresh-secret"
REDIRECT_URI = "http://127.0.0.1:8000/oauth/callback"
RATE = 200
REFERENCE_CALLS = 2000


def bench_env(sandbox_url: str = "") -> dict[str, str]:
    return harness.bench_env(
        DATABASE_URL=harness.PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{DB}",
        REDIS_URL=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"),
        FEISHU_RATE_LIMIT_PER_SECOND=str(RATE),
        LARK_APP_ID=APP_ID,
        LARK_APP_SECRET=APP_SECRET,
        LARK_DOMAIN=sandbox_url or "http://127.0.0.1:9",
        LARK_ACCOUNTS_DOMAIN=sandbox_url or "http://127.0.0.1:9",
    )


def recreate_database(env: dict[str, str]) -> None:
    with psycopg.connect(harness.PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    harness.manage(env, "migrate", "--noinput", "-v", "0")


def issue_tokens(sandbox_url: str, count: int) -> list[dict[str, Any]]:
    """`count` users, each approving once: the token endpoint's answers."""
    http = requests.Session()
    http.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=16))

    def one(n: int) -> dict[str, Any]:
        user = http.post(
            f"{sandbox_url}/_sandbox/api/users", json={"name": f"Bench {n}"}, timeout=30
        ).json()
        consent = http.post(
            f"{sandbox_url}/open-apis/authen/v1/authorize",
            params={
                "client_id": APP_ID,
                "response_type": "code",
                "redirect_uri": REDIRECT_URI,
                "scope": "offline_access",
            },
            data={"open_id": user["open_id"], "decision": "approve"},
            allow_redirects=False,
            timeout=30,
        )
        code = consent.headers["Location"].split("code=")[1].split("&")[0]
        token = http.post(
            f"{sandbox_url}/open-apis/authen/v2/oauth/token",
            json={
                "grant_type": "authorization_code",
                "client_id": APP_ID,
                "client_secret": APP_SECRET,
                "code": code,
                "redirect_uri": REDIRECT_URI,
            },
            timeout=30,
        ).json()
        return {"user": user, "token": token}

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, range(count)))


def sandbox_alone(sandbox_url: str, issued: list[dict[str, Any]], concurrency: int) -> float:
    """The reference: the same refresh calls straight to the sandbox, as many at once as the
    sweeps make, no larkauth in between. Calls per second."""
    http = requests.Session()
    http.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=concurrency))

    def refresh(item: dict[str, Any]) -> None:
        answer = http.post(
            f"{sandbox_url}/open-apis/authen/v2/oauth/token",
            json={
                "grant_type": "refresh_token",
                "client_id": APP_ID,
                "client_secret": APP_SECRET,
                "refresh_token": item["token"]["refresh_token"],
            },
            timeout=30,
        ).json()
        if answer.get("code") not in (0, None) or "access_token" not in answer:
            raise RuntimeError(f"reference refresh failed: {answer}")

    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(refresh, issued))
    return len(issued) / (time.monotonic() - started)


def insert_authorizations(env: dict[str, str], issued: list[dict[str, Any]]) -> None:
    """Refresh tokens a day from their end: every one is due for keep-alive."""
    os.environ.update(env, DJANGO_SETTINGS_MODULE="config.settings")
    import django

    django.setup()
    from django.utils import timezone

    from sessions_app.models import Application, UserAuthSession

    app = Application.objects.get(app_id=APP_ID)
    now = timezone.now()
    UserAuthSession.objects.bulk_create(
        [
            UserAuthSession(
                app=app,
                open_id=item["user"]["open_id"],
                user_id=item["user"]["user_id"],
                user_name=item["user"]["name"],
                state="completed",
                auth_method="card",
                access_token=item["token"]["access_token"],
                refresh_token=item["token"]["refresh_token"],
                scope=item["token"]["scope"],
                token_expires_at=now + timedelta(hours=2),
                refresh_token_expires_at=now + timedelta(days=1),
                completed_at=now - timedelta(days=6),
                last_refreshed_at=now - timedelta(days=6),
            )
            for item in issued
        ],
        batch_size=1000,
    )


def sweep(env: dict[str, str], processes: int, threads: int) -> tuple[float, list[str]]:
    started = time.monotonic()
    runs = [
        subprocess.Popen(
            [sys.executable, "manage.py", "refresh_tokens", "--threads", str(threads)],
            cwd=harness.ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    reports = []
    for run in runs:
        out, err = run.communicate(timeout=600)
        if run.returncode != 0:
            raise RuntimeError(f"refresh_tokens failed:\n{err[-3000:]}")
        reports.append(out.strip())
    return time.monotonic() - started, reports


def check(sandbox_url: str, expected: int) -> dict[str, Any]:
    from django.db.models import Count

    from sessions_app.models import TokenEvent, UserAuthSession

    calls = requests.get(
        f"{sandbox_url}/_sandbox/api/calls", params={"api": "oauth_refresh"}, timeout=60
    ).json()
    at = sorted(call["at"] for call in calls)
    per_session = Counter(
        TokenEvent.objects.filter(kind="refreshed")
        .values("session")
        .annotate(n=Count("id"))
        .values_list("n", flat=True)
    )
    sessions = UserAuthSession.objects.all()
    return {
        "calls": len(calls),
        "call_errors": sum(call["status"] != 200 for call in calls),
        "calls_span": at[-1] - at[0] if len(at) > 1 else 0.0,
        "refreshed_per_session": dict(per_session),
        "not_refreshed": expected - sum(per_session.values()),
        "not_completed": sessions.exclude(state="completed").count(),
        "with_failures": sessions.filter(refresh_failures__gt=0).count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--authorizations", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()

    with harness.sandbox(bench_env()) as sandbox_url:
        env = bench_env(sandbox_url)
        print(f"Setting up {args.authorizations} authorizations ...", flush=True)
        recreate_database(env)
        issued = issue_tokens(sandbox_url, args.authorizations + REFERENCE_CALLS)
        sandbox_rate = sandbox_alone(
            sandbox_url, issued[args.authorizations :], args.processes * args.threads
        )
        insert_authorizations(env, issued[: args.authorizations])
        requests.delete(f"{sandbox_url}/_sandbox/api/calls", timeout=30)

        print(
            f"Sweeping: {args.processes} processes x {args.threads} threads, limit {RATE}/s ...",
            flush=True,
        )
        elapsed, reports = sweep(env, args.processes, args.threads)
        result = check(sandbox_url, args.authorizations)

    rate = result["calls"] / result["calls_span"] if result["calls_span"] else 0.0
    wall_rate = result["calls"] / elapsed
    print("\n".join(f"  sweep {n}: {report}" for n, report in enumerate(reports, 1)))
    print(f"authorizations              {args.authorizations}")
    print(f"refresh calls at Feishu     {result['calls']} ({result['call_errors']} errors)")
    print(f"calls per token             {result['calls'] / args.authorizations:.4f}")
    print(f"refreshed events / session  {result['refreshed_per_session']}")
    print(f"not refreshed               {result['not_refreshed']}")
    print(f"failures                    {result['not_completed'] + result['with_failures']}")
    print(f"achieved rate (first→last)  {rate:.1f}/s = {rate / RATE:.3f} of the limit")
    print(
        f"wall clock incl. start-up   {elapsed:.1f} s = {wall_rate:.1f}/s "
        f"= {wall_rate / RATE:.3f} of the limit"
    )
    print(f"reference: the sandbox alone, same calls, same concurrency: {sandbox_rate:.1f}/s")
    failures = result["not_completed"] + result["with_failures"]
    bound = min(RATE, sandbox_rate)
    harness.report(
        harness.Row(
            "refresh_sweep",
            f"refresh rate, {args.authorizations} due",
            f"{rate:.1f}/s ({rate / bound:.3f}x)",
            f"min({RATE}/s limit, {sandbox_rate:.0f}/s sandbox alone, same calls)",
            ">= 0.9x min(limit, sandbox alone)",
            rate >= 0.9 * bound,
        ),
        harness.Row(
            "refresh_sweep",
            "refresh calls per token, failures",
            f"{result['calls'] / args.authorizations:.4f}, {failures}",
            "-",
            "1 call, 0 failures",
            result["calls"] == args.authorizations and failures == 0,
        ),
    )


if __name__ == "__main__":
    main()
