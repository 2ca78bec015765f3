"""The authorization card and each state it is updated to (Card JSON 2.0, docs/feishu.md §5).

Pure functions returning the card as a dict; `card_content()` turns one into the string
`im/v1/messages` expects. Every built-in card has `config.update_multi: true`, before and
after each update, because Feishu only patches shared cards. Copy is bilingual: Chinese
first, English second.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone

from larkauth.redaction import redact

# Feishu refuses card bodies over 30 KB (docs/feishu.md §5).
MAX_CARD_BYTES = 30 * 1024
_MAX_REASON_CHARS = 300

Card = dict[str, Any]


class ReauthReason(enum.StrEnum):
    """Why an existing authorization needs the user again."""

    EXPIRED = "expired"
    REVOKED = "revoked"
    ENDING = "ending"  # still valid, but ends within days: authorize again to keep it


_REAUTH_TEXT = {
    ReauthReason.EXPIRED: (
        "你的授权已过期，请重新授权。",
        "Your authorization has expired. Please authorize again.",
    ),
    ReauthReason.REVOKED: (
        "你的授权已被撤销，请重新授权。",
        "Your authorization was revoked. Please authorize again.",
    ),
    ReauthReason.ENDING: (
        "你的授权将在几天内到期。请重新授权，以免依赖它的服务中断。",
        "Your authorization ends within days. Authorize again so the services that rely on "
        "it keep working.",
    ),
}


# Characters that start markdown syntax inside a line of a card's markdown element: links
# and images `[..](..)`, emphasis `* _ ~`, code, tables, the HTML-like tags Feishu reads
# (`<at id=all></at>`, `<font>`, `<link>`), character references `&..;`, bare URLs and
# `:EMOJI:` (`:`), and the escape character itself. Block markers (`- `, `1.`) matter only
# at the start of a line, where user text never is.
_MARKDOWN_SPECIAL = frozenset("\\`*_~[]()<>#|!&:")


def markdown_text(value: str) -> str:
    """User-supplied text (names from Feishu profiles, reasons) as literal text in card
    markdown: `[click](http://evil)` shows as typed, not as a link, and `<at id=all></at>`
    mentions nobody.

    Each special character becomes a numeric character reference, which standard markdown
    shows as that character and never parses (Card JSON 2.0 rich text reads standard
    markdown and HTML, says Feishu's card FAQ; docs/feishu.md §5 is silent). Line breaks and other
    control characters become spaces, so the text cannot start a block of its own.
    """
    return "".join(_literal(char) for char in value)


def _literal(char: str) -> str:
    if char in _MARKDOWN_SPECIAL:
        return f"&#{ord(char)};"
    if ord(char) < 32 or char == "\x7f":
        return " "
    return char


def local_time(when: datetime) -> str:
    """`when` as people read it in cards and digests: `TIME_ZONE`, to the minute."""
    if timezone.is_aware(when):
        when = timezone.localtime(when)
    return when.strftime("%Y-%m-%d %H:%M")


def oauth_start_url(public_url: str, session_id: str) -> str:
    """Where *Authorize* leads: larkauth's start page, which redirects to Feishu."""
    return f"{public_url.rstrip('/')}/oauth/start/{session_id}"


def authorization_request(
    session_id: str,
    *,
    start_url: str,
    include_description: bool = True,
    expires_in_minutes: int | None = None,
    reason: ReauthReason | None = None,
    template_id: str = "",
) -> Card:
    """The card asking the user to authorize; with `reason`, the re-authorization variant.

    *Authorize* opens `start_url` (see `oauth_start_url`); *Decline* calls back with
    `{"action": "decline", "session_id": ...}`.

    With `template_id` it is a template card (built in the Feishu card builder) that gets
    the variables `session_id`, `authorize_url`, `reason` (empty for a first request) and
    `expires_in_minutes`; its Decline button should send `{"action": "decline",
    "session_id": "${session_id}"}`.
    """
    if template_id:
        return {
            "type": "template",
            "data": {
                "template_id": template_id,
                "template_variable": {
                    "session_id": session_id,
                    "authorize_url": start_url,
                    "reason": reason.value if reason else "",
                    "expires_in_minutes": expires_in_minutes or "",
                },
            },
        }
    if reason is None:
        title = "授权请求 · Authorization request"
        color = "blue"
        zh = "有内部服务需要以你的身份访问飞书。点击 **授权** 继续。"
        en = "An internal service needs to access Feishu on your behalf. Tap **Authorize**."
    else:
        title = "请重新授权 · Please authorize again"
        color = "orange"
        zh, en = _REAUTH_TEXT[reason]
    elements = [_markdown(f"{zh}\n{en}")]
    if include_description:
        elements.append(_description(expires_in_minutes))
    elements += [
        _button("授权 · Authorize", "primary", {"type": "open_url", "default_url": start_url}),
        _button(
            "拒绝 · Decline",
            "default",
            {"type": "callback", "value": {"action": "decline", "session_id": session_id}},
        ),
    ]
    return _card(title, color, elements)


def authorized(user_name: str, when: datetime) -> Card:
    """People read `TIME_ZONE`: an aware `when` (the database's UTC) is shown in it; a
    naive one is taken as already local."""
    at = local_time(when)
    who = markdown_text(user_name) if user_name else "你 / You"
    return _card(
        "已授权 · Authorized",
        "green",
        [_markdown(f"**{who}** 已于 {at} 完成授权。\n**{who}** authorized on {at}.")],
    )


def declined(session_id: str) -> Card:
    return _card(
        "已拒绝 · Declined",
        "grey",
        [
            _markdown(
                "你已拒绝本次授权请求。\n"
                "You declined this request. Changed your mind? Request again."
            ),
            _request_again_button(session_id),
        ],
    )


def expired(session_id: str) -> Card:
    return _card(
        "已过期 · Expired",
        "grey",
        [
            _markdown("本次授权请求已过期。\nThis authorization request has expired."),
            _request_again_button(session_id),
        ],
    )


def failed(session_id: str, reason: str) -> Card:
    """`reason` is shown to the user: keep it plain; it is redacted and shortened anyway."""
    reason = markdown_text(redact(reason.strip())[:_MAX_REASON_CHARS]) or "未知错误 / unknown error"
    return _card(
        "授权失败 · Authorization failed",
        "red",
        [
            _markdown(f"授权未能完成：{reason}\nAuthorization could not be completed: {reason}"),
            _request_again_button(session_id),
        ],
    )


def wrong_user(session_id: str) -> Card:
    """Someone other than the card's recipient approved: nothing was stored."""
    return _card(
        "账号不匹配 · Wrong account",
        "red",
        [
            _markdown(
                "本次授权需要由卡片接收人本人完成，但使用了其他账号。"
                "请用你自己的账号重新授权。\n"
                "This request is for the card's recipient, but another account "
                "approved it. Please authorize again with your own account."
            ),
            _request_again_button(session_id),
        ],
    )


def card_content(card: Mapping[str, Any]) -> str:
    """The card as the JSON string `content` of `im/v1/messages`. Raises if too large."""
    content = json.dumps(card, ensure_ascii=False, separators=(",", ":"))
    size = len(content.encode())
    if size > MAX_CARD_BYTES:
        raise ValueError(f"card is {size} bytes, Feishu accepts at most {MAX_CARD_BYTES}")
    return content


def authorization_request_from_settings(
    session_id: str, reason: ReauthReason | None = None
) -> Card:
    """`authorization_request` configured by `LARKAUTH_PUBLIC_URL`, `AUTH_CARD_*`."""
    from django.conf import settings

    return authorization_request(
        session_id,
        start_url=oauth_start_url(settings.LARKAUTH_PUBLIC_URL, session_id),
        include_description=settings.AUTH_CARD_INCLUDE_DESCRIPTION,
        expires_in_minutes=max(1, settings.AUTH_SESSION_EXPIRY_SECONDS // 60),
        reason=reason,
        template_id=settings.AUTH_CARD_TEMPLATE_ID,
    )


def _card(title: str, color: str, elements: list[dict[str, Any]]) -> Card:
    return {
        "schema": "2.0",
        "config": {"update_multi": True, "summary": {"content": title}},
        "header": {"title": {"tag": "plain_text", "content": title}, "template": color},
        "body": {"elements": elements},
    }


def _markdown(content: str) -> dict[str, Any]:
    return {"tag": "markdown", "content": content}


def _description(expires_in_minutes: int | None) -> dict[str, Any]:
    zh = "授权后，内部服务可在你同意的权限范围内代你调用飞书接口。你可以随时撤销。"
    en = (
        "Once you authorize, internal services can call Feishu as you, within the "
        "permissions you approve. You can revoke this at any time."
    )
    if expires_in_minutes:
        zh += f"本请求 {expires_in_minutes} 分钟内有效。"
        en += f" This request is valid for {expires_in_minutes} minutes."
    return {"tag": "markdown", "content": f"{zh}\n{en}", "text_size": "notation"}


def _button(label: str, kind: str, behavior: dict[str, Any]) -> dict[str, Any]:
    return {
        "tag": "button",
        "text": {"tag": "plain_text", "content": label},
        "type": kind,
        "behaviors": [behavior],
    }


def _request_again_button(session_id: str) -> dict[str, Any]:
    return _button(
        "重新请求 · Request again",
        "primary",
        {"type": "callback", "value": {"action": "request_again", "session_id": session_id}},
    )


# --- The expiry digest (to application admins) ---------------------------------------------

MAX_DIGEST_LINES = 40  # per window: keeps the card far below Feishu's 30 KB
MAX_NAME_CHARS = 64  # of a user's name in a digest line, however long the profile's is


@dataclass(frozen=True)
class DigestLine:
    """One authorization ending: `window` and `cause` as `sessions_app.policy`
    names them (`Window`, `EndCause`); `at` is shown as given (the reader's time zone)."""

    window: str
    at: datetime
    cause: str
    user_name: str
    open_id: str
    failure_reason: str = ""


# By window, most severe first.
_SECTIONS = {
    "expired": (
        "已结束 · Ended",
        "这些用户需要重新授权，服务已无法代其调用飞书。\n"
        "These users must authorize again: services can no longer act for them.",
    ),
    "3d": (
        "3 天内结束 · Ending within 3 days",
        "请立即提醒这些用户重新授权（他们已收到授权卡片）。\n"
        "Ask these users to authorize again now (they have been sent a card).",
    ),
    "7d": (
        "7 天内结束 · Ending within 7 days",
        "这些用户已收到重新授权卡片；授权后不会中断。\n"
        "These users have been sent a card to authorize again; once they do, nothing stops.",
    ),
}
_CAUSES = {
    "cap": "365 天上限 · 365-day limit",
    "refresh_token": "刷新令牌到期 · refresh token expires",
    "needs_reauth": "需重新授权 · needs re-authorization",
}
_COLORS = {"expired": "red", "3d": "orange", "7d": "yellow"}


def expiry_digest(app_name: str, lines: list[DigestLine]) -> Card:
    """Card JSON 2.0 listing the authorizations by window, most severe first."""
    elements: list[dict[str, Any]] = []
    for window, (title, advice) in _SECTIONS.items():
        rows = sorted((line for line in lines if line.window == window), key=lambda r: r.at)
        if not rows:
            continue
        shown = [_digest_line(row) for row in rows[:MAX_DIGEST_LINES]]
        if len(rows) > MAX_DIGEST_LINES:
            shown.append(f"… +{len(rows) - MAX_DIGEST_LINES}")
        elements.append(_markdown(f"**{title}** ({len(rows)})\n{advice}"))
        elements.append(_markdown("\n".join(shown)))
    elements.append(
        {
            "tag": "markdown",
            "text_size": "notation",
            "content": "这与用户的授权有关，无需更换应用密钥。\n"
            "This is about users' authorizations, not the app secret: nothing to change in the "
            "developer console.",
        }
    )
    present = {line.window for line in lines}
    severest = next(window for window in _SECTIONS if window in present)
    title = f"授权到期提醒 · Authorizations ending — {app_name}"
    return {
        "schema": "2.0",
        "config": {"update_multi": True, "summary": {"content": title}},
        "header": {
            "title": {"tag": "plain_text", "content": title},
            "template": _COLORS[severest],
        },
        "body": {"elements": elements},
    }


def _digest_line(line: DigestLine) -> str:
    name = line.user_name or line.open_id
    if len(name) > MAX_NAME_CHARS:
        name = name[: MAX_NAME_CHARS - 1] + "…"
    # Names come from Feishu profiles: shown as typed, never read as markdown.
    who = markdown_text(name)
    cause = _CAUSES[line.cause]
    if line.cause == "needs_reauth" and line.failure_reason:
        cause += f" ({line.failure_reason})"
    return f"- {who} `{line.open_id}` · {line.at.strftime('%Y-%m-%d %H:%M')} · {cause}"
