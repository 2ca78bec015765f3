"""Where a card click's time goes at `POST /lark/events/`: signed, encrypted Decline clicks on
cards whose session is gone (as `bench.events_http`), and its floor (a plain JSON view plus
one committed insert), served in-process by Django's test client, N each under pyinstrument.
Prints each one's time per request and the profile of the clicks. Needs pyinstrument.
Run: `BENCH_DB=... .venv/bin/python -m bench.profile_events [--requests N]`.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time

from bench import events_http, harness


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1500)
    count = parser.parse_args().requests
    env = harness.bench_env(
        LARK_APP_ID=events_http.APP_ID,
        LARK_APP_SECRET="bench-app-secret",
        LARK_ENCRYPT_KEY=events_http.ENCRYPT_KEY,
        LARK_VERIFICATION_TOKEN=events_http.VERIFICATION_TOKEN,
        DJANGO_ALLOWED_HOSTS="testserver",
    )
    harness.recreate_database(env)
    harness.manage(env, "shell", "-c", events_http.ENSURE_APP)
    os.environ.update(env)
    events_http.application()  # Django set up, the bench views mounted
    from django.test import Client
    from pyinstrument import Profiler

    client = Client()
    clicks = list(itertools.islice(events_http.signed_events(events_http.card_click), count + 50))

    def post(path: str, body: bytes, headers: dict[str, str]) -> None:
        extra = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        response = client.post(path, body, content_type="application/json", headers=extra)
        assert response.status_code == 200, response.content

    runs = {
        "floor": lambda body, headers: post("/bench/dedupe-floor/", body, headers),
        "card clicks": lambda body, headers: post("/lark/events/", body, headers),
    }
    for name, send in runs.items():
        events = iter(clicks)
        for body, headers in itertools.islice(events, 50):
            send(body, headers)  # warm
        profiler = Profiler(interval=0.0005)
        started = time.perf_counter()
        with profiler:
            for body, headers in events:
                send(body, headers)
        per_request = (time.perf_counter() - started) / count * 1000
        print(f"{name}: {per_request:.2f} ms per request ({count} requests, profiled)")
        if name == "card clicks":
            print(profiler.output_text(unicode=False, color=False, show_all=False))


if __name__ == "__main__":
    main()
