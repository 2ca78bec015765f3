"""User info, contact users, sending and updating cards (docs/feishu.md §4, §5)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from larkauth.sandbox import util
from larkauth.sandbox.common import (
    AuthError,
    authenticate,
    begin,
    envelope,
    envelope_error,
    origin,
    read_json,
    runtime,
)
from larkauth.sandbox.state import Message, SandboxState, User

# user_info leaves these fields out unless the token carries the field scope (docs/feishu.md §4).
FIELD_SCOPES = {
    "email": "contact:user.email:readonly",
    "enterprise_email": "contact:user.email:readonly",
    "mobile": "contact:user.phone:readonly",
    "user_id": "contact:user.employee_id:readonly",
    "employee_no": "contact:user.employee:readonly",
}
RECEIVE_ID_TYPES = ("open_id", "user_id", "union_id", "email", "chat_id")
USER_ID_TYPES = ("open_id", "union_id", "user_id")
MSG_TYPES = ("text", "post", "interactive", "image", "file", "share_chat", "share_user")
CARD_MAX_BYTES = 30 * 1024
TEXT_MAX_BYTES = 150 * 1024
PATCH_WINDOW = 14 * 24 * 3600
UUID_WINDOW = 3600

INVALID_PARAM = 230001
BOT_NOT_IN_CHAT = 230002
NOT_SENDER = 230012
NO_AVAILABILITY = 230013
CONTENT_TOO_LONG = 230025
PATCH_TOO_LATE = 230031
BAD_CARD = 230099
FIELD_VALIDATION = 99992402
NO_USER_AUTHORITY = 41050


def avatar_urls(base: str, user: User) -> dict[str, str]:
    url = f"{base}/_sandbox/avatar/{user.open_id}"
    return {
        "avatar_72": f"{url}?size=72",
        "avatar_240": f"{url}?size=240",
        "avatar_640": f"{url}?size=640",
        "avatar_origin": url,
    }


async def user_info(request: web.Request) -> web.Response:
    """GET /open-apis/authen/v1/user_info with a user access token."""
    if fault := await begin(
        request, "user_info", {"authorization": request.headers.get("Authorization", "")}
    ):
        return fault
    try:
        caller = authenticate(request, "user")
    except AuthError as error:
        return error.response()
    assert caller.user_token is not None
    state = runtime(request).state
    with state.lock:
        user = state.users.get(caller.user_token.open_id)
    if user is None:
        return envelope_error(20008, "the user does not exist")
    avatars = avatar_urls(origin(request), user)
    data: dict[str, Any] = {
        "name": user.name,
        "en_name": user.en_name,
        "avatar_url": avatars["avatar_origin"],
        "avatar_thumb": avatars["avatar_72"],
        "avatar_middle": avatars["avatar_240"],
        "avatar_big": avatars["avatar_640"],
        "open_id": user.open_id,
        "union_id": user.union_id,
        "tenant_key": util.TENANT_KEY,
    }
    granted = set(caller.user_token.scope.split())
    values = {
        "email": user.email,
        "enterprise_email": user.email,
        "mobile": user.mobile,
        "user_id": user.user_id,
        "employee_no": user.employee_no,
    }
    for name, scope in FIELD_SCOPES.items():
        if scope in granted and values[name]:
            data[name] = values[name]
    return envelope(data)


def contact_user_body(base: str, user: User) -> dict[str, Any]:
    return {
        "union_id": user.union_id,
        "user_id": user.user_id,
        "open_id": user.open_id,
        "name": user.name,
        "en_name": user.en_name,
        "nickname": "",
        "email": user.email,
        "enterprise_email": user.email,
        "mobile": user.mobile,
        "mobile_visible": True,
        "gender": 0,
        "avatar": avatar_urls(base, user),
        "status": {
            "is_frozen": user.is_frozen,
            "is_resigned": user.is_resigned,
            "is_activated": not user.is_resigned,
            "is_exited": user.is_resigned,
            "is_unjoin": False,
        },
        "department_ids": ["0"],
        "leader_user_id": "",
        "city": "",
        "country": "",
        "work_station": "",
        "join_time": 1_600_000_000,
        "is_tenant_manager": False,
        "employee_no": user.employee_no,
        "employee_type": 1,
        "job_title": user.job_title,
        "time_zone": "Asia/Shanghai",
    }


async def contact_user(request: web.Request) -> web.Response:
    """GET /open-apis/contact/v3/users/:user_id with a tenant or user token."""
    user_id = request.match_info["user_id"]
    id_type = request.query.get("user_id_type", "open_id")
    if fault := await begin(request, "contact_user", {"user_id": user_id, "user_id_type": id_type}):
        return fault
    try:
        authenticate(request, "tenant", "user")
    except AuthError as error:
        return error.response()
    if id_type not in USER_ID_TYPES:
        return envelope_error(FIELD_VALIDATION, f"field validation failed: user_id_type {id_type}")
    user = runtime(request).state.find_user(user_id, id_type)
    if user is None:
        return envelope_error(NO_USER_AUTHORITY, "no user authority error")
    return envelope({"user": contact_user_body(origin(request), user)})


# --- messages ---------------------------------------------------------------------------


def message_body(message: Message) -> dict[str, Any]:
    """The `data` of a send response: the message as Feishu describes it."""
    return {
        "message_id": message.message_id,
        "root_id": "",
        "parent_id": "",
        "thread_id": "",
        "msg_type": message.msg_type,
        "create_time": str(int(message.created_at * 1000)),
        "update_time": str(int(message.updated_at * 1000)),
        "deleted": False,
        "updated": message.updated_at != message.created_at,
        "chat_id": message.chat_id,
        "sender": {
            "id": message.app_id,
            "id_type": "app_id",
            "sender_type": "app",
            "tenant_key": util.TENANT_KEY,
        },
        "body": {"content": message.content},
        "mentions": [],
        "upper_message_id": "",
    }


class MessageError(Exception):
    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


def parse_card(content: str) -> dict[str, Any]:
    try:
        card = json.loads(content)
    except ValueError as error:
        msg = f"Failed to create card content, ext=invalid JSON: {error}"
        raise MessageError(BAD_CARD, msg) from None
    if not isinstance(card, dict):
        raise MessageError(BAD_CARD, "Failed to create card content, ext=card must be an object")
    return card


def check_content(msg_type: str, content: Any) -> None:
    if not isinstance(content, str) or not content:
        raise MessageError(INVALID_PARAM, "content must be a non-empty JSON string")
    limit = CARD_MAX_BYTES if msg_type in ("interactive", "post") else TEXT_MAX_BYTES
    if len(content.encode()) > limit:
        raise MessageError(CONTENT_TOO_LONG, "The length of the message content reaches its limit.")
    if msg_type == "interactive":
        parse_card(content)
    else:
        try:
            json.loads(content)
        except ValueError:
            raise MessageError(INVALID_PARAM, "content must be a JSON string") from None


def resolve_receiver(state: SandboxState, app_id: str, id_type: str, receive_id: str) -> User:
    if id_type == "chat_id":
        for member in state.users.values():
            if util.p2p_chat_id(app_id, member.open_id) == receive_id:
                return member
        raise MessageError(BOT_NOT_IN_CHAT, "The bot can not be outside the group.")
    user = state.find_user(receive_id, id_type)
    if user is None:
        raise MessageError(NO_AVAILABILITY, "Bot has NO availability to this user.")
    return user


async def message_create(request: web.Request) -> web.Response:
    """POST /open-apis/im/v1/messages?receive_id_type=..."""
    id_type = request.query.get("receive_id_type", "")
    body = await read_json(request)
    fields = body or {}
    logged = {
        "receive_id_type": id_type,
        "receive_id": fields.get("receive_id"),
        "msg_type": fields.get("msg_type"),
        "uuid": fields.get("uuid"),
    }
    if fault := await begin(request, "message_create", logged):
        return fault
    try:
        caller = authenticate(request, "tenant")
    except AuthError as error:
        return error.response()
    if id_type not in RECEIVE_ID_TYPES:
        return envelope_error(FIELD_VALIDATION, "field validation failed: receive_id_type")
    if body is None:
        return envelope_error(INVALID_PARAM, "the request body must be a JSON object")
    msg_type = fields.get("msg_type")
    receive_id = fields.get("receive_id")
    uuid = fields.get("uuid") or ""
    if not isinstance(receive_id, str) or not receive_id or msg_type not in MSG_TYPES:
        return envelope_error(INVALID_PARAM, "receive_id and a valid msg_type are required")
    state = runtime(request).state
    try:
        check_content(str(msg_type), fields.get("content"))
        with state.lock:
            now = state.now()
            if uuid:
                seen = state.message_uuids.get((caller.app.app_id, uuid))
                if seen is not None and now - seen[1] < UUID_WINDOW:
                    return envelope(message_body(state.messages[seen[0]]))
            user = resolve_receiver(state, caller.app.app_id, id_type, receive_id)
            content = str(fields["content"])
            message = Message(
                message_id=util.new_message_id(),
                app_id=caller.app.app_id,
                chat_id=util.p2p_chat_id(caller.app.app_id, user.open_id),
                open_id=user.open_id,
                receive_id_type=id_type,
                receive_id=receive_id,
                msg_type=str(msg_type),
                content=content,
                created_at=now,
                updated_at=now,
                uuid=uuid,
                history=[{"at": now, "source": "create", "content": content}],
            )
            state.messages[message.message_id] = message
            if uuid:
                state.message_uuids[(caller.app.app_id, uuid)] = (message.message_id, now)
            return envelope(message_body(message))
    except MessageError as error:
        return envelope_error(error.code, error.msg)


def _is_shared(card: dict[str, Any]) -> bool:
    if card.get("type") == "template":
        return True  # a template's config is not visible here
    config = card.get("config")
    return isinstance(config, dict) and config.get("update_multi") is True


def replace_card(
    state: SandboxState, message: Message, content: str, source: str, *, check_shared: bool
) -> None:
    """Checks of PATCH im/v1/messages/:id, then the new content with its history entry."""
    if message.msg_type != "interactive":
        raise MessageError(INVALID_PARAM, "only interactive messages can be updated")
    check_content("interactive", content)
    old, new = parse_card(message.content), parse_card(content)
    if check_shared and not (_is_shared(old) and _is_shared(new)):
        raise MessageError(
            BAD_CARD,
            "Failed to create card content, ext=config.update_multi must be true "
            "in both the sent card and the new card",
        )
    if old.get("schema") == "2.0" and new.get("schema") != "2.0" and new.get("type") != "template":
        raise MessageError(BAD_CARD, "Failed to create card content, ext=ErrCode: 200830")
    with state.lock:
        now = state.now()
        message.content = content
        message.updated_at = now
        message.history.append({"at": now, "source": source, "content": content})


async def message_patch(request: web.Request) -> web.Response:
    """PATCH /open-apis/im/v1/messages/:message_id"""
    message_id = request.match_info["message_id"]
    body = await read_json(request)
    if fault := await begin(request, "message_patch", {"message_id": message_id}):
        return fault
    try:
        caller = authenticate(request, "tenant")
    except AuthError as error:
        return error.response()
    state = runtime(request).state
    try:
        with state.lock:
            message = state.messages.get(message_id)
            if message is None:
                raise MessageError(INVALID_PARAM, "invalid message_id: record not found")
            if message.app_id != caller.app.app_id:
                raise MessageError(NOT_SENDER, "Bot is NOT the sender of the message.")
            if state.now() - message.created_at > PATCH_WINDOW:
                raise MessageError(
                    PATCH_TOO_LATE, "Message can only be modified within 14 days after sending."
                )
            content = (body or {}).get("content")
            if not isinstance(content, str):
                raise MessageError(INVALID_PARAM, "content must be a JSON string")
            replace_card(state, message, content, "patch", check_shared=True)
    except MessageError as error:
        return envelope_error(error.code, error.msg)
    return envelope()


async def card_update(request: web.Request) -> web.Response:
    """POST /open-apis/interactive/v1/card/update: delayed update with a callback's c- token."""
    body = await read_json(request) or {}
    if fault := await begin(request, "card_update", {"token": body.get("token")}):
        return fault
    try:
        caller = authenticate(request, "tenant")
    except AuthError as error:
        return error.response()
    card = body.get("card")
    token = body.get("token")
    if not isinstance(card, dict) or not isinstance(token, str):
        return envelope_error(INVALID_PARAM, "token and card are required")
    state = runtime(request).state
    try:
        with state.lock:
            record = state.card_tokens.get(token)
            if (
                record is None
                or record.app_id != caller.app.app_id
                or record.expires_at <= state.now()
                or record.uses_left <= 0
            ):
                raise MessageError(INVALID_PARAM, "the card token is invalid or expired")
            message = state.messages[record.message_id]
            card = {k: v for k, v in card.items() if k != "open_ids"}
            replace_card(state, message, json.dumps(card), "card_update", check_shared=False)
            record.uses_left -= 1
    except MessageError as error:
        return envelope_error(error.code, error.msg)
    return envelope()
