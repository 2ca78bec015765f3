"""What a card click answers: a toast only (docs/feishu.md §6.1).

Never a `card` in the answer: the card is updated through the message API, so every
copy of it (and the chat history) shows the same state.
"""

from __future__ import annotations

from typing import Any

Answer = dict[str, Any]


def toast(kind: str, zh: str, en: str) -> Answer:
    return {
        "toast": {
            "type": kind,
            "content": f"{zh} · {en}",
            "i18n": {"zh_cn": zh, "en_us": en},
        }
    }


DECLINED = toast("success", "已拒绝授权", "Authorization declined")
REQUESTED_AGAIN = toast(
    "success", "已重新发起授权请求", "A new authorization request is on the card"
)
ALREADY_HANDLED = toast("info", "已处理", "Already handled")
UNKNOWN_ACTION = toast("warning", "不支持的操作", "This button is not supported")

# Why a click could not act, by `AuthFlowError.reason`.
NOT_ACTED = {
    "not_recipient": toast(
        "warning", "只有卡片的接收人可以操作", "Only the person this card was sent to can use it"
    ),
    "not_found": toast(
        "warning", "找不到该授权请求", "This authorization request no longer exists"
    ),
    "declined": toast("info", "该请求已被拒绝", "This request was already declined"),
    "expired": toast("info", "该请求已过期", "This request has expired"),
    "already_used": toast("info", "该请求已结束", "This request is no longer open"),
    "already_authorized": toast("info", "你已完成授权", "You have already authorized"),
    "already_requested": toast(
        "info", "已重新发起授权请求", "A new request is already on the card"
    ),
    "still_pending": toast(
        "info", "该请求仍然有效，请点击“授权”", "This request is still open: tap Authorize"
    ),
    "pending_elsewhere": toast(
        "info",
        "你已有一个待处理的授权请求，请在那张卡片上操作",
        "You already have an open request on another card",
    ),
}
STALE = NOT_ACTED["already_used"]


def rate_limited(retry_after: int) -> Answer:
    return toast(
        "warning",
        f"请求过于频繁，请 {retry_after} 秒后再试",
        f"Too many requests; try again in {retry_after} s",
    )
