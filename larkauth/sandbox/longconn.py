"""The WebSocket long connection as lark-oapi's `ws.Client` speaks it (docs/feishu.md §8).

1. `POST /callback/ws/endpoint {"AppID","AppSecret"}` returns a `ws://.../ws/v2?device_id=..
   &service_id=..&ticket=..` URL and the ClientConfig (seconds).
2. The client connects; a failed handshake answers with `handshake-status`,
   `handshake-msg` and `handshake-autherrcode` headers (1000040350: too many connections).
3. Frames are protobuf `pbbp2.Frame`s: the client pings (CONTROL, type=ping) and gets a
   pong carrying the ClientConfig JSON; the sandbox pushes DATA frames (type=event|card,
   message_id, trace_id, sum, seq) and the client acks by echoing the frame with a JSON
   payload `{"code":200,"data":"<base64 of the handler's result>"}`.

Each app may hold `ws_max_connections` live connections; each push goes to one of them,
chosen at random (cluster mode, no broadcast).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import json
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import WSCloseCode, WSMsgType, web

# lark-oapi's own generated protobuf module, so the wire format cannot drift from the SDK's.
from lark_oapi.ws.pb.pbbp2_pb2 import Frame

from larkauth.sandbox.common import (
    AUTH_FAILED,
    begin,
    handshake_failure,
    json_response,
    runtime,
)
from larkauth.sandbox.oauth import OAuthFailure, check_app_credentials
from larkauth.sandbox.state import Config, SandboxState, WsPush

logger = logging.getLogger("larkauth.sandbox.ws")

WS_PATH = "/ws/v2"
METHOD_CONTROL = 0
METHOD_DATA = 1
TICKET_TTL = 300
# lark-oapi gives up on this handshake auth error code; any other one it retries.
EXCEED_CONN_LIMIT = 1000040350
BAD_TICKET = 1000040351  # the sandbox's own


def client_config(config: Config) -> dict[str, int]:
    return {
        "ReconnectCount": config.ws_reconnect_count,
        "ReconnectInterval": config.ws_reconnect_interval,
        "ReconnectNonce": config.ws_reconnect_nonce,
        "PingInterval": config.ws_ping_interval,
    }


@dataclass
class Ticket:
    ticket: str
    app_id: str
    conn_id: str
    service_id: int
    expires_at: float


@dataclass(eq=False)
class LiveConnection:
    conn_id: str
    app_id: str
    service_id: int
    ws: web.WebSocketResponse
    remote: str
    connected_at: float
    last_ping_at: float | None = None
    pings: int = 0
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send(self, data: bytes) -> None:
        async with self.send_lock:
            await self.ws.send_bytes(data)

    def public(self) -> dict[str, Any]:
        return {
            "conn_id": self.conn_id,
            "app_id": self.app_id,
            "service_id": self.service_id,
            "remote": self.remote,
            "connected_at": self.connected_at,
            "last_ping_at": self.last_ping_at,
            "pings": self.pings,
        }


def _new_frame(method: int, service_id: int, headers: Mapping[str, str], payload: bytes) -> Any:
    frame = Frame()
    frame.SeqID = 0
    frame.LogID = 0
    frame.service = service_id
    frame.method = method
    for key, value in headers.items():
        header = frame.headers.add()
        header.key = key
        header.value = value
    frame.payload = payload
    return frame


def _decode_ack_data(data: Any) -> Any:
    if not isinstance(data, str) or not data:
        return data
    try:
        text = base64.b64decode(data, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return data
    try:
        return json.loads(text)
    except ValueError:
        return text


class Hub:
    """Live connections, tickets and ack waiters; used on the server's event loop only."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.tickets: dict[str, Ticket] = {}
        self.connections: dict[str, LiveConnection] = {}
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._changed = asyncio.Condition()
        self._seq = itertools.count(1)

    # --- tickets and connections ---------------------------------------------------------

    def issue_ticket(self, app_id: str) -> Ticket:
        now = self.state.now()
        self.tickets = {k: t for k, t in self.tickets.items() if t.expires_at > now}
        ticket = Ticket(
            ticket=secrets.token_urlsafe(24),
            app_id=app_id,
            conn_id=str(7 * 10**18 + secrets.randbelow(10**18)),
            service_id=1 + secrets.randbelow(2**31 - 2),
            expires_at=now + TICKET_TTL,
        )
        self.tickets[ticket.ticket] = ticket
        return ticket

    def take_ticket(self, ticket: str, conn_id: str) -> Ticket | None:
        found = self.tickets.pop(ticket, None)
        if found is None or found.conn_id != conn_id or found.expires_at <= self.state.now():
            return None
        return found

    def live(self, app_id: str | None = None) -> list[LiveConnection]:
        return [
            c
            for c in self.connections.values()
            if (app_id is None or c.app_id == app_id) and not c.ws.closed
        ]

    async def notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_connections(self, app_id: str | None, count: int, timeout: float) -> bool:
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: len(self.live(app_id)) >= count), timeout
                )
            except TimeoutError:
                return False
        return True

    async def drop(self, app_id: str | None = None) -> int:
        conns = self.live(app_id)
        await asyncio.gather(
            *(c.ws.close(code=WSCloseCode.GOING_AWAY, message=b"dropped") for c in conns),
            return_exceptions=True,
        )
        return len(conns)

    async def reset(self) -> None:
        self.tickets.clear()
        await self.drop()
        for waiter in self._waiters.values():
            waiter.cancel()
        self._waiters.clear()

    # --- frames ------------------------------------------------------------------------

    async def handle_frame(self, conn: LiveConnection, data: bytes) -> None:
        frame = Frame()
        try:
            frame.ParseFromString(data)
        except Exception:  # the vendored protobuf raises its own DecodeError
            logger.warning("undecodable frame from %s", conn.conn_id)
            return
        headers = {h.key: h.value for h in frame.headers}
        if frame.method == METHOD_CONTROL and headers.get("type") == "ping":
            conn.last_ping_at = self.state.now()
            conn.pings += 1
            with self.state.lock:
                config = client_config(self.state.config)
            pong = _new_frame(
                METHOD_CONTROL, frame.service, {"type": "pong"}, json.dumps(config).encode()
            )
            await conn.send(pong.SerializeToString())
        elif frame.method == METHOD_DATA:
            self._record_ack(conn, headers, bytes(frame.payload))

    def _record_ack(self, conn: LiveConnection, headers: dict[str, str], payload: bytes) -> None:
        message_id = headers.get("message_id", "")
        try:
            body = json.loads(payload)
        except ValueError:
            body = {"raw": payload.decode("utf-8", "replace")}
        ack = {
            "code": body.get("code"),
            "data": _decode_ack_data(body.get("data")),
            "biz_rt": headers.get("biz_rt"),
            "conn_id": conn.conn_id,
            "at": self.state.now(),
        }
        with self.state.lock:
            push = self.state.ws_pushes.get(message_id)
            if push is not None:
                push.ack = ack
        waiter = self._waiters.pop(message_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(ack)

    async def push(
        self,
        app_id: str,
        event: dict[str, Any],
        *,
        frame_type: str = "event",
        parts: int = 1,
        want_ack: bool = False,
    ) -> WsPush | None:
        """Send the event to one live connection of the app; None when there is none."""
        live = self.live(app_id)
        if not live:
            return None
        conn = secrets.choice(live)
        header = event.get("header", {})
        push = WsPush(
            message_id=secrets.token_hex(16),
            app_id=app_id,
            conn_id=conn.conn_id,
            frame_type=frame_type,
            event_type=str(header.get("event_type", "")),
            event_id=str(header.get("event_id", "")),
            pushed_at=self.state.now(),
        )
        # Recorded (and awaited) before sending: the ack can come back at once.
        self.state.record_push(push)
        if want_ack:
            self._waiters[push.message_id] = asyncio.get_running_loop().create_future()
        payload = json.dumps(event, ensure_ascii=False).encode()
        try:
            for frame in self._data_frames(conn, push, payload, parts):
                await conn.send(frame)
        except (ConnectionError, RuntimeError) as error:
            logger.warning("push %s to %s failed: %s", push.message_id, conn.conn_id, error)
            self._waiters.pop(push.message_id, None)
            return None
        return push

    def _data_frames(
        self, conn: LiveConnection, push: WsPush, payload: bytes, parts: int
    ) -> list[bytes]:
        parts = max(1, min(parts, len(payload)))
        size = -(-len(payload) // parts)
        trace_id = secrets.token_hex(16)
        frames = []
        for seq in range(parts):
            frame = _new_frame(
                METHOD_DATA,
                conn.service_id,
                {
                    "type": push.frame_type,
                    "message_id": push.message_id,
                    "trace_id": trace_id,
                    "sum": str(parts),
                    "seq": str(seq),
                },
                payload[seq * size : (seq + 1) * size],
            )
            frame.SeqID = next(self._seq)
            frame.LogID = secrets.randbits(63)
            frames.append(frame.SerializeToString())
        return frames

    async def wait_ack(self, message_id: str, timeout: float) -> dict[str, Any] | None:
        waiter = self._waiters.get(message_id)
        if waiter is None:
            with self.state.lock:
                push = self.state.ws_pushes.get(message_id)
                return push.ack if push is not None else None
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except (TimeoutError, asyncio.CancelledError):
            return None
        finally:
            self._waiters.pop(message_id, None)


# --- handlers ---------------------------------------------------------------------------


async def endpoint(request: web.Request) -> web.Response:
    """POST /callback/ws/endpoint"""
    try:
        body = json.loads(await request.read() or b"{}")
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    logged = {"AppID": body.get("AppID"), "AppSecret": body.get("AppSecret")}
    if fault := await begin(request, "ws_endpoint", logged):
        return fault
    rt = runtime(request)
    try:
        app = check_app_credentials(rt.state, body.get("AppID"), body.get("AppSecret"))
    except OAuthFailure as failure:
        return json_response({"code": failure.code, "msg": failure.description, "data": None})
    ticket = rt.hub.issue_ticket(app.app_id)
    scheme = "wss" if request.scheme == "https" else "ws"
    query = urlencode(
        {
            "fpid": "493",
            "aid": "552564",
            "device_id": ticket.conn_id,
            "access_key": secrets.token_hex(16),
            "service_id": str(ticket.service_id),
            "ticket": ticket.ticket,
        }
    )
    with rt.state.lock:
        config = client_config(rt.state.config)
    data = {"URL": f"{scheme}://{request.host}{WS_PATH}?{query}", "ClientConfig": config}
    return json_response({"code": 0, "msg": "ok", "data": data})


async def connect(request: web.Request) -> web.StreamResponse:
    """GET /ws/v2: the WebSocket handshake and the frame loop of one client."""
    query = request.query
    logged = {k: query.get(k) for k in ("device_id", "service_id", "ticket")}
    if fault := await begin(request, "ws_connect", logged):
        return fault
    rt = runtime(request)
    hub = rt.hub
    ticket = hub.take_ticket(query.get("ticket", ""), query.get("device_id", ""))
    if ticket is None:
        return handshake_failure(AUTH_FAILED, "invalid or expired ticket", BAD_TICKET)
    with rt.state.lock:
        app = rt.state.apps.get(ticket.app_id)
        limit = rt.state.config.ws_max_connections
    if app is None:
        return handshake_failure(AUTH_FAILED, "app not found", BAD_TICKET)
    if len(hub.live(app.app_id)) >= limit:
        return handshake_failure(AUTH_FAILED, "exceeded connection limit", EXCEED_CONN_LIMIT)
    ws = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024)
    conn = LiveConnection(
        conn_id=ticket.conn_id,
        app_id=app.app_id,
        service_id=ticket.service_id,
        ws=ws,
        remote=request.remote or "",
        connected_at=rt.state.now(),
    )
    # Registered before the first await so concurrent handshakes see it in the limit.
    hub.connections[conn.conn_id] = conn
    try:
        await ws.prepare(request)
        logger.info("ws connected app=%s conn=%s", app.app_id, conn.conn_id)
        await hub.notify()
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                await hub.handle_frame(conn, msg.data)
    finally:
        hub.connections.pop(conn.conn_id, None)
        logger.info("ws disconnected app=%s conn=%s", app.app_id, conn.conn_id)
        await hub.notify()
    return ws
