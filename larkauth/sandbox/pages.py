"""HTML pages: the index, each user's inbox with working card buttons, the consent page."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from larkauth.sandbox import callbacks, cardview, templates
from larkauth.sandbox.common import runtime
from larkauth.sandbox.state import App, Message, User


def _page(title: str, content: str, script: str = "", status: int = 200) -> web.Response:
    html = templates.LAYOUT.substitute(title=escape(title), content=content, script=script)
    return web.Response(text=html, content_type="text/html", status=status)


def error_page(code: int, message: str) -> web.Response:
    content = templates.ERROR.substitute(code=code, message=escape(message))
    return _page("Error", content, status=400)


def consent_page(
    app: App, scopes: list[str], users: list[User], hidden: Mapping[str, str]
) -> web.Response:
    scope_items = "".join(f"<li><code>{escape(s)}</code></li>" for s in scopes) or (
        "<li>basic profile</li>"
    )
    hidden_inputs = "".join(
        f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in hidden.items()
    )
    user_choices = (
        "".join(
            templates.CONSENT_USER.substitute(
                open_id=escape(u.open_id),
                checked=" checked" if i == 0 else "",
                name=escape(u.name),
                en_name=escape(u.en_name),
                email=escape(u.email),
            )
            for i, u in enumerate(users)
        )
        or '<p class="muted">No sandbox users: add some with POST /_sandbox/api/users.</p>'
    )
    content = templates.CONSENT.substitute(
        app_name=escape(app.name or app.app_id),
        app_id=escape(app.app_id),
        scopes=scope_items,
        hidden=hidden_inputs,
        users=user_choices,
    )
    return _page("Authorize", content)


async def index(request: web.Request) -> web.Response:
    rt = runtime(request)
    with rt.state.lock:
        users = list(rt.state.users.values())
        apps = list(rt.state.apps.values())
        counts = {u.open_id: len(rt.state.messages_for(u.open_id)) for u in users}
    user_rows = "".join(
        templates.USER_ROW.substitute(
            name=escape(u.name),
            en_name=escape(u.en_name),
            email=escape(u.email),
            open_id=escape(u.open_id),
            inbox=f"/_sandbox/inbox/{quote(u.open_id)}",
            count=counts[u.open_id],
        )
        for u in users
    )
    app_rows = "".join(
        templates.APP_ROW.substitute(
            app_id=escape(a.app_id),
            callback=escape(a.event_callback_url) or '<span class="muted">none</span>',
            connections=len(rt.hub.live(a.app_id)),
        )
        for a in apps
    )
    return _page("Sandbox", templates.INDEX.substitute(users=user_rows, apps=app_rows))


def _version(messages: list[Message]) -> str:
    return f"{len(messages)}:{max((m.updated_at for m in messages), default=0):.6f}"


def _card_html(message: Message) -> str:
    action = f"/_sandbox/inbox/{quote(message.open_id)}/click"

    def button_form(label: str, style: str, value: Any, name: str) -> str:
        return templates.CALLBACK_BUTTON.substitute(
            action=action,
            message_id=escape(message.message_id),
            value=escape(json.dumps(value, ensure_ascii=False)),
            name=escape(name),
            style=escape(style),
            label=label,
        )

    title, colour, body = cardview.render(message.msg_type, message.parsed_content(), button_form)
    updates = len(message.history) - 1
    updated = f" · updated {updates} time{'s' if updates > 1 else ''}" if updates else ""
    return templates.CARD.substitute(
        message_id=escape(message.message_id),
        colour=escape(colour),
        title=title,
        body=body,
        app_id=escape(message.app_id),
        when=time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(message.created_at)),
        updated=updated,
    )


async def inbox(request: web.Request) -> web.Response:
    rt = runtime(request)
    open_id = request.match_info["open_id"]
    with rt.state.lock:
        user = rt.state.users.get(open_id)
        messages = rt.state.messages_for(open_id)
        cards = "".join(_card_html(m) for m in reversed(messages))
    if user is None:
        return error_page(404, f"no sandbox user {open_id}")
    toast = ""
    if request.query.get("toast"):
        kind = request.query.get("toast_type", "info")
        toast = templates.TOAST.substitute(
            kind=escape(kind), content=escape(request.query["toast"])
        )
    content = templates.INBOX.substitute(
        name=escape(user.name),
        en_name=escape(user.en_name),
        toast=toast,
        cards=cards or '<p class="muted">No cards yet.</p>',
    )
    base = f"/_sandbox/inbox/{quote(open_id)}"
    script = templates.INBOX_SCRIPT.substitute(
        version=_version(messages), version_url=f"{base}/version", self_url=base
    )
    return _page(f"Inbox of {user.name}", content, script)


async def inbox_version(request: web.Request) -> web.Response:
    state = runtime(request).state
    return web.json_response(
        {"version": _version(state.messages_for(request.match_info["open_id"]))}
    )


async def inbox_click(request: web.Request) -> web.StreamResponse:
    """A callback button of the inbox: deliver card.action.trigger, then show the toast."""
    open_id = request.match_info["open_id"]
    form = await request.post()
    message_id = str(form.get("message_id", ""))
    try:
        value = json.loads(str(form.get("value", "{}")))
    except ValueError:
        value = str(form.get("value"))
    try:
        result = await callbacks.click(
            runtime(request), open_id, message_id, value, name=str(form.get("name", "")) or None
        )
    except callbacks.ClickError as error:
        return error_page(400, str(error))
    if result.ok:
        toast = result.toast or {}
        text = str(toast.get("content") or (toast.get("i18n") or {}).get("en_us") or "")
        kind = str(toast.get("type", "info"))
        if not text:
            text = "Card updated." if result.card_updated else "Done (no toast in the answer)."
    else:
        text = f"Error {result.error_code}: {result.error}"
        kind = "error"
    query = urlencode({"toast": text, "toast_type": kind})
    location = f"/_sandbox/inbox/{quote(open_id)}?{query}#{quote(message_id)}"
    return web.Response(status=303, headers={"Location": location})


_AVATAR_COLOURS = ("#3370ff", "#34c724", "#ff8800", "#7f3bf5", "#f54a45", "#14c0ff")


async def avatar(request: web.Request) -> web.Response:
    state = runtime(request).state
    user = state.find_user(request.match_info["open_id"])
    if user is None:
        raise web.HTTPNotFound()
    try:
        size = max(16, min(1024, int(request.query.get("size", "240"))))
    except ValueError:
        size = 240
    colour = _AVATAR_COLOURS[sum(map(ord, user.open_id)) % len(_AVATAR_COLOURS)]
    svg = templates.AVATAR.substitute(
        size=size, colour=colour, initial=escape((user.en_name or user.name or "?")[0])
    )
    return web.Response(text=svg, content_type="image/svg+xml")
