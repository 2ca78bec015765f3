"""`POST /lark/events/` throughput under gunicorn as the Dockerfile runs it (4 workers x 4
threads), on PostgreSQL, 16 concurrent clients. Every request is a new event, encrypted and
signed as Feishu sends it: it is decrypted and its signature, timestamp and verification
token are checked. Two kinds of event are measured:
- a message to the bot that is not a command (`im.message.receive_v1`, text "hello"): most of
  a bot's traffic. Nothing is done with it, so it needs no dedupe row and gets none;
- a card click (`card.action.trigger`, Decline on a card whose session is gone): claimed
  exactly once (its `ProcessedEvent` row inserted and committed with the handler's
  transaction), looked up, answered with a toast.

Measured in the same run and the same server (bench-only URLs, mounted below):
- the reference: a plain JSON view that parses the body and answers `{"msg": "success"}`;
- the dedupe floor: the reference plus one committed `ProcessedEvent` insert, i.e. what
  exactly-once costs by itself, whatever the code around it.

Goals: messages ≥ 0.7x the plain view (issue 6); card clicks ≥ 0.9x the dedupe floor (issue
13). The bench prints what is left between the clicks and the floor: the server time per
click beyond the floor's, and what the profile (`bench.profile_events`) finds there.
Run: `.venv/bin/python -m bench.events_http` (gunicorn loads `bench.events_http:application()`).
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp

from bench import harness

APP_ID = "cli_bench"
ENCRYPT_KEY, VERIFICATION_TOKEN = "bench-encrypt-key", "bench-verification-token"
ROUNDS, SECONDS, CLIENTS = 5, 6, 16
PREPARED_EVENTS = 60_000
MESSAGE_GOAL, CLICK_GOAL = 0.7, 0.9  # x the plain view (issue 6), x the dedupe floor (issue 13)
# Measured by bench.profile_events (pyinstrument, 1,500 clicks in-process, 2026-12-03): what a
# click on a card whose session is gone does beyond the floor's insert and commit.
CLICK_GAP = (
    "authorization_reject's read of the session joined to its application, one SELECT per "
    "click (no lock and no savepoint since 08:33: a session gone or decided changes nothing)"
)
CLICK_MOVE = (
    "would move: the lookup and the claim INSERT in one statement (a CTE), one round trip "
    "per click like the floor: expected near the floor"
)
ENSURE_APP = "from sessions_app import services; services.application_ensure_default()"
COUNT_EVENTS = (
    "from sessions_app.models import ProcessedEvent as E; "
    "print(E.objects.filter(event_id__startswith='bench-click-').count(), "
    "E.objects.filter(event_id__startswith='bench-message-').count())"
)

urlpatterns: list[Any] = []


def application() -> Any:
    """gunicorn's app factory: the project's WSGI app, with the bench views in front."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application
    from django.db import transaction
    from django.http import HttpRequest, JsonResponse
    from django.urls import path
    from django.utils import timezone
    from django.views.decorators.csrf import csrf_exempt

    from config.urls import urlpatterns as project_urls
    from sessions_app.models import ProcessedEvent

    @csrf_exempt
    def plain_json(request: HttpRequest) -> JsonResponse:
        json.loads(request.body)
        return JsonResponse({"msg": "success"})

    @csrf_exempt
    def dedupe_floor(request: HttpRequest) -> JsonResponse:
        json.loads(request.body)
        with transaction.atomic():
            ProcessedEvent.objects.create(
                event_id=request.headers["X-Request-Id"], received_at=timezone.now()
            )
        return JsonResponse({"msg": "success"})

    urlpatterns[:] = [
        path("bench/plain-json/", plain_json),
        path("bench/dedupe-floor/", dedupe_floor),
        *project_urls,
    ]
    settings.ROOT_URLCONF = __name__
    return get_wsgi_application()


def message(n: int) -> dict[str, Any]:
    return {
        "header": {"event_type": "im.message.receive_v1", "event_id": f"bench-message-{n}"},
        "event": {
            "sender": {"sender_id": {"open_id": "ou_bench"}, "sender_type": "user"},
            "message": {
                "chat_type": "p2p",
                "message_type": "text",
                "content": json.dumps({"text": "hello"}),
            },
        },
    }


def card_click(n: int) -> dict[str, Any]:
    return {
        "header": {"event_type": "card.action.trigger", "event_id": f"bench-click-{n}"},
        "event": {
            "operator": {"open_id": "ou_bench"},
            "action": {"value": {"action": "decline", "session_id": str(uuid.uuid4())}},
        },
    }


def signed_events(make: Callable[[int], dict[str, Any]]) -> Iterator[tuple[bytes, dict[str, str]]]:
    """Distinct events, encrypted and signed with a fresh timestamp."""
    from larkauth.sandbox.delivery import build_request, complete_event
    from larkauth.sandbox.state import App

    app = App(APP_ID, "secret", encrypt_key=ENCRYPT_KEY, verification_token=VERIFICATION_TOKEN)
    for n in itertools.count():
        body, headers, _ = build_request(app, complete_event(app, make(n), time.time()))
        yield body, headers  # headers carry a unique X-Request-Id too


def prepared(make: Callable[[int], dict[str, Any]]) -> Iterator[tuple[bytes, dict[str, str]]]:
    """Made ahead (the load generator shares the machine); more on the fly if they run out."""
    fresh = signed_events(make)
    return itertools.chain(list(itertools.islice(fresh, PREPARED_EVENTS)), fresh)


def main() -> None:
    env = harness.bench_env(
        LARK_APP_ID=APP_ID,
        LARK_APP_SECRET="bench-app-secret",
        LARK_ENCRYPT_KEY=ENCRYPT_KEY,
        LARK_VERIFICATION_TOKEN=VERIFICATION_TOKEN,
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
    )
    harness.recreate_database(env)
    harness.manage(env, "shell", "-c", ENSURE_APP)
    messages, clicks = prepared(message), prepared(card_click)

    port = harness.free_port()
    base = f"http://127.0.0.1:{port}"
    gunicorn = [
        sys.executable, "-m", "gunicorn", "bench.events_http:application()",
        "--bind", f"127.0.0.1:{port}", "--workers", "4", "--threads", "4",
        # Every worker is ready when the port opens; the steady state is the Dockerfile's.
        "--preload", "--log-level", "warning",
    ]  # fmt: skip

    def poster(path: str, events: Iterator[tuple[bytes, dict[str, str]]] = messages) -> Any:
        async def post(session: aiohttp.ClientSession) -> bool:
            body, headers = next(events)
            async with session.post(base + path, data=body, headers=headers) as response:
                await response.read()
                return response.status == 200

        return post

    targets = {
        "reference: plain JSON view": poster("/bench/plain-json/"),
        "floor: plain JSON + one insert": poster("/bench/dedupe-floor/"),
        "/lark/events/ message, nothing to do": poster("/lark/events/"),
        "/lark/events/ card click, deduped": poster("/lark/events/", clicks),
    }
    results: dict[str, list[harness.LoadResult]] = {name: [] for name in targets}
    with harness.process(gunicorn, env, port):
        # Interleaved rounds so all see the same machine state; the medians are reported.
        for _ in range(ROUNDS):
            for name, post in targets.items():
                results[name].append(harness.load(post, clients=CLIENTS, seconds=SECONDS))

    median = {
        name: sorted(runs, key=lambda run: run.throughput)[ROUNDS // 2]
        for name, runs in results.items()
    }
    reference, floor, ignored, clicked = (median[name] for name in targets)
    print(f"POST /lark/events/ (gunicorn 4x4, {CLIENTS} clients, median of {ROUNDS} rounds)")
    for name, result in median.items():
        print(result.line(name))
    click_ratio = clicked.throughput / floor.throughput
    print(
        f"messages: {ignored.throughput / reference.throughput:.2f}x the reference "
        f"(goal >= {MESSAGE_GOAL}x); card clicks: {clicked.throughput / reference.throughput:.2f}x "
        f"the reference, {click_ratio:.2f}x the dedupe floor (goal >= {CLICK_GOAL}x)"
    )
    # Server time per request (the 4x4 server saturated): the part a click adds to the floor.
    gap_ms = 1000 / clicked.throughput - 1000 / floor.throughput
    print(
        f"left between card clicks and the floor: {gap_ms:.2f} ms of server time per click "
        f"({1000 / clicked.throughput:.2f} vs {1000 / floor.throughput:.2f} ms); by the "
        f"profile, that is {CLICK_GAP}"
    )
    click_rows, message_rows = harness.manage(env, "shell", "-c", COUNT_EVENTS).split()[-2:]
    print(f"dedupe rows: {click_rows} card clicks, {message_rows} messages")
    plain = f"{reference.throughput:.0f} req/s (plain JSON view)"
    harness.report(
        harness.Row(
            "events_http",
            "messages nobody acts on",
            f"{ignored.throughput:.0f} req/s ({ignored.throughput / reference.throughput:.2f}x)",
            plain,
            f">= {MESSAGE_GOAL}x reference",
            ignored.throughput >= MESSAGE_GOAL * reference.throughput,
        ),
        harness.Row(
            "events_http",
            "card clicks, claimed once",
            f"{clicked.throughput:.0f} req/s ({clicked.throughput / floor.throughput:.2f}x)",
            f"{floor.throughput:.0f} req/s (floor: plain view + one committed insert)",
            f">= {CLICK_GOAL}x reference",
            click_ratio >= CLICK_GOAL,
            ""
            if click_ratio >= CLICK_GOAL
            else f"{gap_ms:.2f} ms per click beyond the floor: {CLICK_GAP}; {CLICK_MOVE}",
        ),
    )


if __name__ == "__main__":
    main()
