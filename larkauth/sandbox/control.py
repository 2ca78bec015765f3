"""The control API under /_sandbox/api/ (documented in README.md next to this file)."""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web

from larkauth.sandbox import callbacks, oauth
from larkauth.sandbox.common import json_response, read_json, runtime
from larkauth.sandbox.delivery import complete_event, deliver
from larkauth.sandbox.state import App, Fault

PREFIX = "/_sandbox/api"
MAX_WAIT_MS = 60_000


class ControlError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@web.middleware
async def control_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    if not request.path.startswith(PREFIX):
        response: web.StreamResponse = await handler(request)
        return response
    try:
        response = await handler(request)
    except ControlError as error:
        return json_response({"error": str(error)}, status=error.status)
    except (ValueError, TypeError) as error:
        return json_response({"error": str(error)}, status=400)
    return response


async def _body(request: web.Request) -> dict[str, Any]:
    if not await request.read():
        return {}
    body = await read_json(request)
    if body is None:
        raise ControlError("the body must be a JSON object")
    return body


def _app(request: web.Request, app_id: Any) -> App:
    with runtime(request).state.lock:
        app = runtime(request).state.apps.get(str(app_id))
    if app is None:
        raise ControlError(f"unknown app {app_id}", 404)
    return app


def _int(value: Any, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ControlError(f"{name} must be an integer") from None


def _wait_ms(value: Any, name: str = "wait_ack_ms") -> int:
    return max(0, min(MAX_WAIT_MS, _int(value, name, 0)))


async def reset(request: web.Request) -> web.Response:
    body = await _body(request)
    rt = runtime(request)
    await rt.hub.reset()
    rt.state.reset(
        seed=bool(body.get("seed", True)), keep_app_tokens=bool(body.get("keep_app_tokens"))
    )
    return json_response({"ok": True})


_APP_FIELDS = {f.name for f in dataclasses.fields(App)}


async def add_app(request: web.Request) -> web.Response:
    body = await _body(request)
    unknown = set(body) - _APP_FIELDS
    if unknown:
        raise ControlError(f"unknown fields {sorted(unknown)}")
    app = runtime(request).state.add_app(**body)
    return json_response(app.public(), status=201)


async def list_apps(request: web.Request) -> web.Response:
    state = runtime(request).state
    with state.lock:
        return json_response([a.public() for a in state.apps.values()])


_USER_FIELDS = {
    "open_id",
    "union_id",
    "user_id",
    "name",
    "en_name",
    "email",
    "mobile",
    "employee_no",
    "job_title",
    "is_resigned",
    "is_frozen",
}


async def add_user(request: web.Request) -> web.Response:
    body = await _body(request)
    unknown = set(body) - _USER_FIELDS
    if unknown:
        raise ControlError(f"unknown fields {sorted(unknown)}")
    user = runtime(request).state.add_user(**body)
    return json_response(user.public(), status=201)


# What can change about an existing user (ids cannot): a resignation, a rename, ...
_USER_CHANGES = _USER_FIELDS - {"open_id", "union_id", "user_id"}


async def update_user(request: web.Request) -> web.Response:
    body = await _body(request)
    unknown = set(body) - _USER_CHANGES
    if unknown:
        raise ControlError(f"unknown or unchangeable fields {sorted(unknown)}")
    user = runtime(request).state.update_user(request.match_info["open_id"], **body)
    if user is None:
        raise ControlError(f"unknown user {request.match_info['open_id']}", 404)
    return json_response(user.public())


async def list_users(request: web.Request) -> web.Response:
    state = runtime(request).state
    with state.lock:
        return json_response([u.public() for u in state.users.values()])


async def get_config(request: web.Request) -> web.Response:
    state = runtime(request).state
    with state.lock:
        return json_response(dataclasses.asdict(state.config))


async def set_config(request: web.Request) -> web.Response:
    config = runtime(request).state.set_config(await _body(request))
    return json_response(dataclasses.asdict(config))


async def add_fault(request: web.Request) -> web.Response:
    fault = Fault.from_json(await _body(request))
    runtime(request).state.add_fault(fault)
    return json_response(dataclasses.asdict(fault), status=201)


async def list_faults(request: web.Request) -> web.Response:
    state = runtime(request).state
    with state.lock:
        return json_response([dataclasses.asdict(f) for f in state.faults])


async def clear_faults(request: web.Request) -> web.Response:
    runtime(request).state.clear_faults()
    return json_response({"ok": True})


async def revoke(request: web.Request) -> web.Response:
    body = await _body(request)
    if not body.get("open_id"):
        raise ControlError("open_id is required")
    counts = oauth.revoke_user(runtime(request).state, str(body["open_id"]), body.get("app_id"))
    return json_response(counts)


async def list_calls(request: web.Request) -> web.Response:
    calls = runtime(request).state.list_calls(request.query.get("api"))
    return json_response([c.public() for c in calls])


async def clear_calls(request: web.Request) -> web.Response:
    runtime(request).state.clear_calls()
    return json_response({"ok": True})


async def list_messages(request: web.Request) -> web.Response:
    state = runtime(request).state
    message_id = request.query.get("message_id")
    with state.lock:
        messages = [
            m.public()
            for m in state.messages_for(request.query.get("open_id"))
            if message_id is None or m.message_id == message_id
        ]
    return json_response(messages)


async def advance_clock(request: web.Request) -> web.Response:
    body = await _body(request)
    offset = runtime(request).state.advance_clock(float(body.get("seconds", 0)))
    return json_response({"offset": offset})


# --- long connection --------------------------------------------------------------------


async def ws_push(request: web.Request) -> web.Response:
    body = await _body(request)
    rt = runtime(request)
    app = _app(request, body.get("app_id"))
    frame_type = body.get("frame_type", "event")
    if frame_type not in ("event", "card"):
        raise ControlError("frame_type must be event or card")
    event = body.get("event")
    if not isinstance(event, dict):
        raise ControlError("event must be an object")
    event = complete_event(app, event, rt.state.now())
    wait_ms = _wait_ms(body.get("wait_ack_ms"))
    push = await rt.hub.push(
        app.app_id,
        event,
        frame_type=frame_type,
        parts=_int(body.get("parts"), "parts", 1),
        want_ack=wait_ms > 0,
    )
    if push is None:
        return json_response({"message_id": None, "delivered": False, "ack": None, "event": event})
    ack = await rt.hub.wait_ack(push.message_id, wait_ms / 1000) if wait_ms else None
    return json_response(
        {
            "message_id": push.message_id,
            "conn_id": push.conn_id,
            "delivered": True,
            "ack": ack,
            "event": event,
        }
    )


async def ws_acks(request: web.Request) -> web.Response:
    message_id = request.query.get("message_id")
    pushes = runtime(request).state.list_pushes(
        request.query.get("app_id"), [message_id] if message_id else None
    )
    return json_response([p.public() for p in pushes])


async def ws_drop(request: web.Request) -> web.Response:
    body = await _body(request)
    dropped = await runtime(request).hub.drop(body.get("app_id"))
    return json_response({"dropped": dropped})


async def ws_connections(request: web.Request) -> web.Response:
    """`?min=N&wait_ms=T` waits up to T ms for at least N live connections."""
    hub = runtime(request).hub
    app_id = request.query.get("app_id")
    wait_ms = _wait_ms(request.query.get("wait_ms"), "wait_ms")
    minimum = _int(request.query.get("min"), "min", 0)
    if wait_ms and minimum:
        await hub.wait_connections(app_id, minimum, wait_ms / 1000)
    return json_response([c.public() for c in hub.live(app_id)])


# --- HTTP delivery and card clicks ------------------------------------------------------


async def deliver_event(request: web.Request) -> web.Response:
    body = await _body(request)
    rt = runtime(request)
    app = _app(request, body.get("app_id"))
    event = body.get("event")
    if not isinstance(event, dict):
        raise ControlError("event must be an object")
    event = complete_event(app, event, rt.state.now())
    with rt.state.lock:
        timeout_ms = rt.state.config.callback_timeout_ms
    delivery = await deliver(
        rt.session,
        app,
        event,
        url=body.get("url"),
        timeout_ms=_int(body.get("timeout_ms"), "timeout_ms", timeout_ms),
        encrypted=body.get("encrypt"),
        timestamp=_opt_str(body.get("timestamp")),
        nonce=_opt_str(body.get("nonce")),
        signature=_opt_str(body.get("signature")),
    )
    return json_response({**delivery.public(), "event": event})


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


async def card_click(request: web.Request) -> web.Response:
    body = await _body(request)
    for name in ("open_id", "message_id"):
        if not body.get(name):
            raise ControlError(f"{name} is required")
    try:
        result = await callbacks.click(
            runtime(request),
            str(body["open_id"]),
            str(body["message_id"]),
            body.get("value", {}),
            channel=str(body.get("channel", "auto")),
            frame_type=str(body.get("frame_type", "event")),
            name=body.get("name"),
            form_value=body.get("form_value"),
        )
    except callbacks.ClickError as error:
        raise ControlError(str(error), 404 if "unknown" in str(error) else 400) from None
    return json_response(result.public())


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post(f"{PREFIX}/reset", reset)
    r.add_post(f"{PREFIX}/apps", add_app)
    r.add_get(f"{PREFIX}/apps", list_apps)
    r.add_post(f"{PREFIX}/users", add_user)
    r.add_get(f"{PREFIX}/users", list_users)
    r.add_patch(f"{PREFIX}/users/{{open_id}}", update_user)
    r.add_get(f"{PREFIX}/config", get_config)
    r.add_post(f"{PREFIX}/config", set_config)
    r.add_post(f"{PREFIX}/faults", add_fault)
    r.add_get(f"{PREFIX}/faults", list_faults)
    r.add_delete(f"{PREFIX}/faults", clear_faults)
    r.add_post(f"{PREFIX}/revoke", revoke)
    r.add_get(f"{PREFIX}/calls", list_calls)
    r.add_delete(f"{PREFIX}/calls", clear_calls)
    r.add_get(f"{PREFIX}/messages", list_messages)
    r.add_post(f"{PREFIX}/clock", advance_clock)
    r.add_post(f"{PREFIX}/ws/push", ws_push)
    r.add_get(f"{PREFIX}/ws/acks", ws_acks)
    r.add_post(f"{PREFIX}/ws/drop", ws_drop)
    r.add_get(f"{PREFIX}/ws/connections", ws_connections)
    r.add_post(f"{PREFIX}/events/deliver", deliver_event)
    r.add_post(f"{PREFIX}/card/click", card_click)
