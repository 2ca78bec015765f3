"""The browser side of OAuth: `/oauth/start/<session>` and `/oauth/callback`.

People see these pages, so every outcome is a friendly page with the right status; no
token, code or state ever appears on one.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from larkauth.errors import AuthFlowError
from sessions_app import metrics, services


@dataclass(frozen=True)
class Outcome:
    status: int
    title: str
    message: str
    title_zh: str
    message_zh: str
    ok: bool = False


OUTCOMES = {
    "success": Outcome(
        200,
        "Authorized",
        "You're all set. You can close this page and return to Feishu.",
        "授权成功",
        "已完成授权，可以关闭此页面并返回飞书。",
        ok=True,
    ),
    "declined": Outcome(
        200,
        "Authorization declined",
        "Nothing was shared. If that was a mistake, tap Request again on the card.",
        "已拒绝授权",
        "未共享任何信息。如需授权，请在卡片上点击“重新申请”。",
    ),
    "expired": Outcome(
        410,
        "This request has expired",
        "Authorization requests are valid for a limited time. Tap Request again on the card.",
        "请求已过期",
        "授权请求已过期，请在卡片上点击“重新申请”。",
    ),
    "already_used": Outcome(
        409,
        "This link was already used",
        "Each authorization link works once. If you are not authorized yet, request again.",
        "链接已使用",
        "每个授权链接只能使用一次。",
    ),
    "state_invalid": Outcome(
        400,
        "This link is not valid",
        "The authorization link is incomplete or was changed. Open it again from the card.",
        "链接无效",
        "授权链接不完整或已被修改，请从卡片重新打开。",
    ),
    "not_found": Outcome(
        404,
        "Unknown request",
        "We could not find this authorization request.",
        "未找到请求",
        "找不到此授权请求。",
    ),
    "missing_code": Outcome(
        400,
        "Authorization did not finish",
        "Feishu did not send back an authorization code. Please try again from the card.",
        "授权未完成",
        "飞书未返回授权码，请从卡片重试。",
    ),
    "code_expired": Outcome(
        400,
        "Authorization took too long",
        "The approval expired before it reached us. Please try again from the card.",
        "授权超时",
        "授权码已过期，请从卡片重试。",
    ),
    "wrong_user": Outcome(
        403,
        "This request was for someone else",
        "The account that approved is not the one this card was sent to. Nothing was stored.",
        "账号不匹配",
        "批准授权的账号与卡片接收人不一致，未保存任何信息。",
    ),
    "no_refresh_token": Outcome(
        502,
        "Authorization is not set up completely",
        "The app did not receive offline access. Ask the administrator to enable "
        "offline_access for the app.",
        "应用配置不完整",
        "应用未获得 offline_access 权限，请联系管理员。",
    ),
    "feishu_error": Outcome(
        502,
        "Feishu could not complete the authorization",
        "Something went wrong on Feishu's side. Please try again in a moment.",
        "飞书授权失败",
        "飞书暂时无法完成授权，请稍后重试。",
    ),
}


def render_outcome(request: HttpRequest, key: str) -> HttpResponse:
    outcome = OUTCOMES.get(key, OUTCOMES["feishu_error"])
    return render(request, "oauth/result.html", {"outcome": outcome}, status=outcome.status)


@never_cache
@require_GET
def oauth_start(request: HttpRequest, session_id: str) -> HttpResponse:
    try:
        return HttpResponseRedirect(services.authorization_start(session_id))
    except AuthFlowError as exc:
        return render_outcome(request, exc.reason)


@never_cache
@require_GET
def oauth_callback(request: HttpRequest) -> HttpResponse:
    state = request.GET.get("state", "")
    code = request.GET.get("code", "")
    error = request.GET.get("error", "")
    if "\x00" in state + code + error:
        # No link Feishu makes has a NUL, and PostgreSQL cannot compare text holding one:
        # a changed link, refused before anything is looked up or consumed.
        return render_outcome(request, "state_invalid")
    try:
        if error == "access_denied":
            services.authorization_reject(state=state)
            return render_outcome(request, "declined")
        if error:
            metrics.AUTH_FAILURES.labels("feishu_error").inc()
            return render_outcome(request, "feishu_error")
        services.authorization_complete(state, code)
    except AuthFlowError as exc:
        if exc.reason in {"state_invalid", "already_used", "not_found", "expired"}:
            metrics.AUTH_FAILURES.labels(
                "code_expired" if exc.reason == "expired" else "state_invalid"
            ).inc()
        return render_outcome(request, exc.reason)
    return render_outcome(request, "success")
