"""Where an OAuth callback's time goes: `/oauth/callback` (code exchange at the sandbox,
user info, encrypted store, card update queued) served in-process by Django's test client
against the sandbox as a process, N callbacks under pyinstrument (the start and the consent
before each are not profiled). Prints the time per callback and the profile.
Needs pyinstrument. Run: `BENCH_DB=... .venv/bin/python -m bench.profile_callbacks [--requests N]`.
"""

from __future__ import annotations

import argparse
import os
import time
from urllib.parse import urlsplit

import requests

from bench import harness

PUBLIC_URL = "http://testserver"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    count = parser.parse_args().requests
    sandbox_port = harness.free_port()
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    env = harness.bench_env(
        LARK_APP_ID="cli_bench",
        LARK_APP_SECRET="bench-app-secret",
        LARK_DOMAIN=sandbox_url,
        LARK_ACCOUNTS_DOMAIN=sandbox_url,
        LARKAUTH_PUBLIC_URL=PUBLIC_URL,
        DJANGO_ALLOWED_HOSTS="testserver",
        AUTH_REQUEST_RATE_LIMIT="100000",
        FEISHU_RATE_LIMIT_PER_SECOND="100000",
    )
    harness.recreate_database(env)
    key = harness.manage(env, "create_api_key", "bench").strip().splitlines()[-1]
    sandbox_cmd = [harness.sys.executable, "manage.py", "lark_sandbox", "--port", str(sandbox_port)]
    with harness.process(sandbox_cmd, env, sandbox_port):
        os.environ.update(env, DJANGO_SETTINGS_MODULE="config.settings")
        import django

        django.setup()
        from django.test import Client
        from pyinstrument import Profiler

        from larkauth.sandbox.control_client import SandboxControl

        control = SandboxControl(sandbox_url)
        client = Client()
        api = {"Authorization": f"Api-Key {key}"}
        profiler = Profiler(interval=0.0005)
        spent = 0.0
        for n in range(count + 20):
            open_id = control.add_user(f"User {n}")["open_id"]
            created = client.post(
                "/api/v1/auth-sessions/", {"open_id": open_id}, "application/json", headers=api
            )
            assert created.status_code == 201, created.content
            start = client.get(f"/oauth/start/{created.json()['id']}")
            consent = requests.post(
                start["Location"],
                data={"open_id": open_id, "decision": "approve"},
                allow_redirects=False,
                timeout=30,
            )
            callback = urlsplit(consent.headers["Location"])
            url = f"{callback.path}?{callback.query}"
            profiled = n >= 20  # the first ones warm connections and caches
            started = time.perf_counter()
            if profiled:
                profiler.start()
            answer = client.get(url)
            if profiled:
                profiler.stop()
                spent += time.perf_counter() - started
            assert answer.status_code == 200, answer.content[:300]
    print(f"callbacks: {spent / count * 1000:.2f} ms per callback ({count}, profiled)")
    print(profiler.output_text(unicode=False, color=False, show_all=False))


if __name__ == "__main__":
    main()
