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
from collections.abc import Callable

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

    client = Client()
    clicks = list(itertools.islice(events_http.signed_events(events_http.card_click), count + 50))

    def post(path: str, body: bytes, headers: dict[str, str]) -> None:
        extra = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        response = client.post(path, body, content_type="application/json", headers=extra)
        assert response.status_code == 200, response.content

    def sender(path: str) -> Callable[[], None]:
        """Posts the clicks in turn (warm-up and profiled ones alike) to `path`."""
        events = iter(clicks)
        return lambda: post(path, *next(events))

    harness.profile_in_process("floor", sender("/bench/dedupe-floor/"), count, show=False)
    harness.profile_in_process("card clicks", sender("/lark/events/"), count, show=True)


if __name__ == "__main__":
    main()
