"""The sandbox's whole world, in memory, behind one lock.

Handlers run on the server's event loop while tests and the control client may read or
change the state from other threads, so every access holds `SandboxState.lock`. Nothing
awaits while holding it.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from larkauth.sandbox import util

# Names accepted by `POST /_sandbox/api/faults` (and used in the calls listing).
API_NAMES = (
    "tenant_token",
    "app_token",
    "authorize",
    "oauth_token",
    "oauth_refresh",
    "oidc_token",
    "oidc_refresh",
    "user_info",
    "contact_user",
    "message_create",
    "message_patch",
    "card_update",
    "ws_endpoint",
    "ws_connect",
)


@dataclass
class Config:
    """Lifetimes in seconds; `ws_*` are sent to lark-oapi as its ClientConfig."""

    access_token_ttl: int = 7200
    refresh_token_ttl: int = 604800
    code_ttl: int = 300
    tenant_token_ttl: int = 7200
    callback_timeout_ms: int = 3000
    ws_ping_interval: int = 120
    ws_reconnect_interval: int = 120
    ws_reconnect_nonce: int = 30
    ws_reconnect_count: int = -1
    ws_max_connections: int = 50

    def updated(self, changes: Mapping[str, Any]) -> Config:
        known = {f.name for f in dataclasses.fields(self)}
        for key, value in changes.items():
            if key not in known:
                raise ValueError(f"unknown config key {key!r}; known: {sorted(known)}")
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{key} must be an integer")
            if value < (-1 if key == "ws_reconnect_count" else 0):
                raise ValueError(f"{key} is out of range")
        return dataclasses.replace(self, **changes)


@dataclass
class App:
    app_id: str
    app_secret: str
    encrypt_key: str = ""
    verification_token: str = ""
    event_callback_url: str = ""
    name: str = ""
    # Empty: any redirect_uri is accepted (the console's whitelist is not configured).
    redirect_uris: list[str] = field(default_factory=list)
    # None: every scope is enabled for the app.
    scopes: list[str] | None = None
    # The console switch "refresh user_access_token" (off → 20074).
    allow_refresh: bool = True

    def public(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in ("app_secret", "encrypt_key", "verification_token"):
            data[key] = util.mask(data[key]) if data[key] else ""
        return data


@dataclass
class User:
    open_id: str
    union_id: str
    user_id: str
    name: str
    en_name: str = ""
    email: str = ""
    mobile: str = ""
    employee_no: str = ""
    job_title: str = ""
    is_resigned: bool = False
    is_frozen: bool = False

    def public(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class AppToken:
    token: str
    kind: str  # "tenant" | "app"
    app_id: str
    expires_at: float


@dataclass
class AuthCode:
    code: str
    app_id: str
    open_id: str
    redirect_uri: str
    scopes: list[str]
    code_challenge: str
    code_challenge_method: str
    expires_at: float
    used: bool = False


@dataclass
class UserToken:
    token: str
    app_id: str
    open_id: str
    scope: str
    expires_at: float
    version: str  # "v2" (eyJ...) | "v1" (u-...)
    revoked: bool = False


@dataclass
class RefreshToken:
    token: str
    app_id: str
    open_id: str
    grant_scopes: list[str]  # what the user granted; narrowing is relative to this
    expires_at: float
    authorized_at: float
    access_token: str
    version: str
    status: str = "active"  # active | used | revoked


@dataclass
class Message:
    message_id: str
    app_id: str
    chat_id: str
    open_id: str
    receive_id_type: str
    receive_id: str
    msg_type: str
    content: str
    created_at: float
    updated_at: float
    uuid: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)

    def parsed_content(self) -> Any:
        try:
            return json.loads(self.content)
        except ValueError:
            return self.content

    def public(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "app_id": self.app_id,
            "chat_id": self.chat_id,
            "open_id": self.open_id,
            "receive_id_type": self.receive_id_type,
            "receive_id": self.receive_id,
            "msg_type": self.msg_type,
            "content": self.parsed_content(),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "uuid": self.uuid,
            "history": [
                {**entry, "content": _parse_json(entry["content"])} for entry in self.history
            ],
        }


@dataclass
class CardToken:
    """The `c-...` token of one card callback, for interactive/v1/card/update."""

    token: str
    app_id: str
    message_id: str
    open_id: str
    expires_at: float
    uses_left: int = 2


@dataclass
class Call:
    seq: int
    api: str
    at: float
    method: str
    path: str
    params: dict[str, Any]
    status: int | None = None
    code: int | None = None
    log_id: str | None = None
    client_port: int | None = None  # the caller's TCP port: calls on one connection share it

    def public(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Fault:
    api: str
    code: int | None = None
    http_status: int | None = None
    latency_ms: int = 0
    times: int = 1  # -1: until cleared
    drop_connection: bool = False
    html: bool = False  # answer `http_status` with an HTML page, as a proxy would

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Fault:
        api = data.get("api")
        if api not in API_NAMES:
            raise ValueError(f"api must be one of {list(API_NAMES)}")
        fault = cls(api=str(api))
        for name in ("code", "http_status", "latency_ms", "times"):
            value = data.get(name)
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{name} must be an integer")
            setattr(fault, name, value)
        fault.drop_connection = bool(data.get("drop_connection", False))
        fault.html = bool(data.get("html", False))
        if fault.times == 0 or fault.times < -1:
            raise ValueError("times must be positive, or -1 for until cleared")
        return fault


@dataclass
class WsPush:
    message_id: str
    app_id: str
    conn_id: str
    frame_type: str
    event_type: str
    event_id: str
    pushed_at: float
    ack: dict[str, Any] | None = None

    def public(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


Seed = Callable[["SandboxState"], None]


class SandboxState:
    CALL_LIMIT = 10_000
    PUSH_LIMIT = 10_000

    def __init__(self, config: Config | None = None, seed: Seed | None = None) -> None:
        self.lock = threading.RLock()
        self.default_config = config or Config()
        self.seed = seed
        self._clear(keep_app_tokens=False)
        if seed is not None:
            seed(self)

    def _clear(self, *, keep_app_tokens: bool) -> None:
        self.config = dataclasses.replace(self.default_config)
        self.clock_offset = 0.0
        self.apps: dict[str, App] = {}
        self.users: dict[str, User] = {}
        if not keep_app_tokens:
            self.app_tokens: dict[str, AppToken] = {}
        self.codes: dict[str, AuthCode] = {}
        self.user_tokens: dict[str, UserToken] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        # Scopes each user ever granted each app (grants accumulate, docs/feishu.md §1).
        self.grants: dict[tuple[str, str], list[str]] = {}
        self.messages: dict[str, Message] = {}
        self.message_uuids: dict[tuple[str, str], tuple[str, float]] = {}
        self.card_tokens: dict[str, CardToken] = {}
        self.calls: deque[Call] = deque(maxlen=self.CALL_LIMIT)
        self.call_seq = 0
        self.faults: list[Fault] = []
        self.ws_pushes: dict[str, WsPush] = {}

    def reset(self, *, seed: bool = True, keep_app_tokens: bool = False) -> None:
        """Back to the start-up state: default config, empty world, then the seed if any.

        `keep_app_tokens` keeps issued tenant/app tokens valid for apps registered again
        with the same id, so SDK clients that cache them (lark-oapi does, per process)
        keep working across test resets.
        """
        with self.lock:
            self._clear(keep_app_tokens=keep_app_tokens)
            if seed and self.seed is not None:
                self.seed(self)

    def now(self) -> float:
        return time.time() + self.clock_offset

    def advance_clock(self, seconds: float) -> float:
        with self.lock:
            self.clock_offset += seconds
            return self.clock_offset

    def set_config(self, changes: Mapping[str, Any]) -> Config:
        with self.lock:
            self.config = self.config.updated(changes)
            return self.config

    # --- registry -------------------------------------------------------------------

    def add_app(self, **fields: Any) -> App:
        app = App(**fields)
        if not app.app_id or not app.app_secret:
            raise ValueError("app_id and app_secret are required")
        with self.lock:
            self.apps[app.app_id] = app
        return app

    def add_user(self, **fields: Any) -> User:
        if not fields.get("name"):
            raise ValueError("name is required")
        fields.setdefault("open_id", None)
        fields["open_id"] = fields["open_id"] or util.new_open_id()
        fields["union_id"] = fields.get("union_id") or util.new_union_id()
        fields["user_id"] = fields.get("user_id") or util.new_user_id()
        user = User(**fields)
        with self.lock:
            for other in self.users.values():
                if other.open_id != user.open_id and (
                    other.union_id == user.union_id or other.user_id == user.user_id
                ):
                    raise ValueError("union_id and user_id must be unique")
            self.users[user.open_id] = user
        return user

    def update_user(self, open_id: str, **changes: Any) -> User | None:
        """Change an existing user, e.g. `is_resigned=True` when they leave the company."""
        for flag in ("is_resigned", "is_frozen"):
            if flag in changes and not isinstance(changes[flag], bool):
                raise ValueError(f"{flag} must be true or false")
        with self.lock:
            user = self.users.get(open_id)
            if user is not None:
                for name, value in changes.items():
                    setattr(user, name, value)
            return user

    def find_user(self, value: str, id_type: str = "open_id") -> User | None:
        with self.lock:
            if id_type == "open_id":
                return self.users.get(value)
            for user in self.users.values():
                if id_type == "email" and user.email and user.email == value:
                    return user
                if id_type in ("union_id", "user_id") and getattr(user, id_type) == value:
                    return user
            return None

    # --- calls and faults -------------------------------------------------------------

    def record_call(
        self,
        api: str,
        method: str,
        path: str,
        params: Mapping[str, Any],
        client_port: int | None = None,
    ) -> Call:
        with self.lock:
            self.call_seq += 1
            call = Call(
                self.call_seq,
                api,
                self.now(),
                method,
                path,
                util.mask_params(params),
                client_port=client_port,
            )
            self.calls.append(call)
            return call

    def list_calls(self, api: str | None = None) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if api is None or c.api == api]

    def clear_calls(self) -> None:
        with self.lock:
            self.calls.clear()

    def add_fault(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def take_fault(self, api: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.api != api:
                    continue
                if fault.times > 0:
                    fault.times -= 1
                    if fault.times == 0:
                        self.faults.remove(fault)
                return dataclasses.replace(fault)
            return None

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    # --- messages and pushes -----------------------------------------------------------

    def messages_for(self, open_id: str | None = None) -> list[Message]:
        with self.lock:
            return [m for m in self.messages.values() if open_id is None or m.open_id == open_id]

    def record_push(self, push: WsPush) -> None:
        with self.lock:
            self.ws_pushes[push.message_id] = push
            while len(self.ws_pushes) > self.PUSH_LIMIT:
                del self.ws_pushes[next(iter(self.ws_pushes))]

    def list_pushes(
        self, app_id: str | None = None, message_ids: Iterable[str] | None = None
    ) -> list[WsPush]:
        wanted = set(message_ids) if message_ids is not None else None
        with self.lock:
            return [
                dataclasses.replace(p)
                for p in self.ws_pushes.values()
                if (app_id is None or p.app_id == app_id)
                and (wanted is None or p.message_id in wanted)
            ]
