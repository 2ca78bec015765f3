"""Authorization completions per second through `/oauth/callback` against the sandbox.

Each completion is what a person's browser does: `/oauth/start/<session>` (302) → the
sandbox's consent form (302) → `/oauth/callback` (code exchange, user info, encrypted
store, card patched in place). Gunicorn with 4 workers, PostgreSQL, 16 concurrent browsers.
Four measurements in the same run, each on its own sessions, all with the same driver
(16 browsers, each with its own cookies, taking the next item when done):
- the reference (issue 13): the Feishu side alone, i.e. the consent leg (`POST` of the
  consent form to the sandbox's authorize URL, answered by its 302 with a code) against the
  sandbox process, no larkauth request in the timed loop. The authorize URLs are the ones
  `/oauth/start` hands out, collected beforehand, each consented to `SANDBOX_REPEAT` times
  (the sandbox answers each with a new code);
- the trip without our callback: start and consent only; the callback URLs it ends at are
  kept;
- callbacks alone: those URLs opened by 16 browsers, i.e. completions per second through
  `/oauth/callback`, the figure the goal is about;
- the whole trip, start + consent + callback, printed beside the trip without callback.

Goal (issue 13): callbacks alone ≥ 0.5× the rate the sandbox sustains alone.
Run: `.venv/bin/python -m bench.callbacks`.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp

from bench import harness
from larkauth.sandbox.control_client import SandboxControl

USERS = 1500
T = TypeVar("T")
CONCURRENCY = 16
# The consent leg is short (~0.1 ms at the sandbox): each collected authorize URL is consented
# this many times, so the reference runs for seconds, not a fraction of one.
SANDBOX_REPEAT = 20
GOAL = 0.5  # issue 13: callbacks >= 0.5x the sandbox alone
BOUND = (
    "17 ms of serial waits per callback in a sync worker, 4 workers: 7 PostgreSQL "
    "statements (~2/3) and 2 Feishu calls (~1/4) (bench.profile_callbacks), against a "
    "consent leg that is one in-memory write in the sandbox; would move: gthread 4x4 "
    "(the waits overlap: expected up to ~4x, until the 2 CPUs saturate) and the state, "
    "authorization and supersede statements folded into 2 (expected -5 ms per callback)"
)


def main() -> None:
    sandbox_port = harness.free_port()
    web_port = harness.free_port()
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    web_url = f"http://127.0.0.1:{web_port}"
    env = harness.bench_env(
        LARK_APP_ID="cli_bench",
        LARK_APP_SECRET="bench-app-secret",
        LARK_DOMAIN=sandbox_url,
        LARK_ACCOUNTS_DOMAIN=sandbox_url,
        LARKAUTH_PUBLIC_URL=web_url,
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        AUTH_REQUEST_RATE_LIMIT="1000",
        # The sandbox enforces no rate limit: measure our own capacity, not the limiter.
        FEISHU_RATE_LIMIT_PER_SECOND="100000",
    )
    harness.recreate_database(env)
    key = harness.manage(env, "create_api_key", "bench").strip().splitlines()[-1]
    sandbox_cmd = ["manage.py", "lark_sandbox", "--port", str(sandbox_port)]
    with harness.process([harness.sys.executable, *sandbox_cmd], env, sandbox_port):
        control = SandboxControl(sandbox_url)
        users = [control.add_user(f"User {n}")["open_id"] for n in range(USERS)]
        with harness.gunicorn(env, port=web_port) as base:
            sessions = asyncio.run(_open_sessions(base, key, users))
            third = len(sessions) // 3
            consents = asyncio.run(_authorize_urls(base, sessions[:third]))
            sandbox_alone = asyncio.run(_per_second(consents * SANDBOX_REPEAT, _consent))
            reference, callback_urls = asyncio.run(_browse(base, sessions[third : 2 * third]))
            callbacks = asyncio.run(_per_second(callback_urls, _callback))
            whole, _ = asyncio.run(_browse(base, sessions[2 * third :], with_callback=True))

    print("Authorization completions through /oauth/callback (gunicorn 4 workers, sandbox)")
    print(f"reference: sandbox alone, consent leg  {sandbox_alone:7.1f} consents/s")
    print(f"start + consent only                   {reference:7.1f} trips/s")
    print(f"callbacks alone                        {callbacks:7.1f} completions/s")
    print(f"start + consent + callback             {whole:7.1f} completions/s")
    ratio = callbacks / sandbox_alone
    print(
        f"callbacks alone {ratio:.2f}x the sandbox alone (goal >= {GOAL}x); whole trips "
        f"{whole / reference:.2f}x the trip without callback"
    )
    sandbox_ref = f"{sandbox_alone:.0f}/s (sandbox alone: consent leg, same 16 browsers)"
    harness.report(
        harness.Row(
            "callbacks",
            "/oauth/callback alone",
            f"{callbacks:.0f} completions/s ({ratio:.2f}x)",
            sandbox_ref,
            f">= {GOAL}x reference",
            ratio >= GOAL,
            "" if ratio >= GOAL else f"{BOUND}; {_budget(GOAL * sandbox_alone)}",
        ),
        harness.Row(
            "callbacks",
            "start + consent + callback (no goal)",
            f"{whole:.0f} completions/s ({whole / reference:.2f}x)",
            f"{reference:.0f} trips/s (start + consent only)",
            "-",
            None,
        ),
    )


def _budget(rate: float) -> str:
    """What the goal's rate leaves per callback, all processes on this machine together."""
    cpus = os.cpu_count() or 1
    return (
        f"the goal, {rate:.0f}/s, leaves {cpus * 1000 / rate:.2f} ms of CPU per callback "
        f"on {cpus} CPUs, sandbox and driver included: out of reach for a Django view"
    )


async def _open_sessions(base: str, key: str, users: list[str]) -> list[tuple[str, str]]:
    headers = {"Authorization": f"Api-Key {key}"}
    semaphore = asyncio.Semaphore(CONCURRENCY)
    async with aiohttp.ClientSession(headers=headers) as http:

        async def open_one(open_id: str) -> tuple[str, str]:
            async with (
                semaphore,
                http.post(f"{base}/api/v1/auth-sessions/", json={"open_id": open_id}) as r,
            ):
                assert r.status == 201, await r.text()
                return (await r.json())["id"], open_id

        return await asyncio.gather(*(open_one(u) for u in users))


async def _browse(
    base: str, sessions: list[tuple[str, str]], *, with_callback: bool = False
) -> tuple[float, list[str]]:
    """Trips per second, and the callback URLs of the trips that stopped before them."""
    callback_urls: list[str] = []

    async def trip(http: aiohttp.ClientSession, session: tuple[str, str]) -> None:
        session_id, open_id = session
        async with http.get(f"{base}/oauth/start/{session_id}", allow_redirects=False) as r:
            authorize_url = r.headers["Location"]
        form = {"open_id": open_id, "decision": "approve"}
        async with http.post(authorize_url, data=form, allow_redirects=False) as r:
            callback_url = r.headers["Location"]
        if with_callback:
            await _callback(http, callback_url)
        else:
            callback_urls.append(callback_url)

    return await _per_second(sessions, trip), callback_urls


async def _authorize_urls(base: str, sessions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The sandbox authorize URL `/oauth/start` hands out for each session (not timed)."""
    async with aiohttp.ClientSession() as http:

        async def one(session: tuple[str, str]) -> tuple[str, str]:
            session_id, open_id = session
            url = f"{base}/oauth/start/{session_id}"
            async with http.get(url, allow_redirects=False) as r:
                return r.headers["Location"], open_id

        return [await one(session) for session in sessions]


async def _consent(http: aiohttp.ClientSession, consent: tuple[str, str]) -> None:
    """The Feishu side alone: the consent form posted to the sandbox, its 302 with a code."""
    authorize_url, open_id = consent
    form = {"open_id": open_id, "decision": "approve"}
    async with http.post(authorize_url, data=form, allow_redirects=False) as r:
        if r.status != 302 or "code=" not in r.headers.get("Location", ""):
            raise RuntimeError(f"consent answered {r.status}: {(await r.text())[:200]}")


async def _callback(http: aiohttp.ClientSession, url: str) -> None:
    async with http.get(url) as r:
        body = await r.text()
        if r.status != 200:
            raise RuntimeError(f"callback answered {r.status}: {body[:200]}")


async def _per_second(
    items: list[T], visit: Callable[[aiohttp.ClientSession, T], Awaitable[None]]
) -> float:
    """Each item visited once by one of 16 browsers (each with its own cookies)."""
    queue: asyncio.Queue[T] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)

    async def browser() -> None:
        async with aiohttp.ClientSession() as http:
            while not queue.empty():
                await visit(http, queue.get_nowait())

    started = time.monotonic()
    await asyncio.gather(*(browser() for _ in range(CONCURRENCY)))
    return len(items) / (time.monotonic() - started)


if __name__ == "__main__":
    main()
